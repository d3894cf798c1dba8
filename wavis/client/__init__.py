"""WAVIS client SDK: keys, encryption and decryption stay on your machine; the server only
sees the public/evaluation keys and ciphertexts.

Async::

    from wavis.client import AsyncClient, KeyPair
    keys = KeyPair.generate({"poly_degree": 8192, "scale_bits": 40, "max_depth": 2})
    async with AsyncClient("http://127.0.0.1:8080") as c:
        await c.create_temp_key()               # or AsyncClient(url, api_key="wvs_…")
        key_id = await c.upload_keys(keys)
        a = await c.upload_ciphertext(key_id, keys.encrypt(x))
        b = await c.upload_ciphertext(key_id, keys.encrypt(y))
        r = await c.compute("multiply", key_id, [a.ciphertext_id, b.ciphertext_id])
        xy = keys.decrypt(r.ciphertext)

Sync: ``Client`` has the same methods without ``await``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import aiohttp
import numpy as np

from wavis import serialize
from wavis.ckks import (
    Ciphertext, CkksParameters, Decryptor, Encoder, Encryptor, EvaluationKeys, KeyGenerator, PublicKey, SecretKey,
)

from .webhooks import WebhookSignatureError, verify_signature

__all__ = ["ApiError", "KeyPair", "AsyncClient", "Client", "CiphertextRef", "ComputeResult", "verify_signature",
           "WebhookSignatureError"]

API_PREFIX = "/api/v1"


class ApiError(Exception):
    """An error answer from the server: ``status``, ``code`` (stable), ``message``, ``request_id``."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 details: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message} (request {request_id})")
        self.status, self.code, self.message = status, code, message
        self.request_id, self.details, self.retry_after = request_id, details or {}, retry_after


@dataclass
class KeyPair:
    """A CKKS key pair made locally. ``secret_key`` never leaves this object."""

    params: CkksParameters
    secret_key: SecretKey
    public_key: PublicKey
    eval_keys: EvaluationKeys
    key_id: str | None = None  # set by upload_keys
    _encoder: Encoder | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, params: CkksParameters | Mapping[str, Any], galois_steps: Iterable[int] = (),
                 conjugation: bool = False, seed: bytes | None = None, bootstrappable: bool = False,
                 bootstrap_slots: int | None = None) -> "KeyPair":
        """A fresh key pair. ``bootstrappable`` adds every key a server-side bootstrap of
        ``bootstrap_slots`` slots needs (the parameters must name a ``bootstrap_preset``;
        :meth:`bootstrap_key_plan` gives the steps and the key-set size before generating)."""
        if not isinstance(params, CkksParameters):
            params = CkksParameters.from_dict(dict(params))
        steps, encaps = set(int(s) for s in galois_steps), None
        if bootstrappable:
            plan = cls.bootstrap_key_plan(params, bootstrap_slots)
            steps |= set(plan.galois_steps)
            conjugation, encaps = True, plan.encapsulation_hamming_weight
        kg = KeyGenerator(params, seed=seed)
        return cls(params, kg.secret_key, kg.public_key(),
                   kg.evaluation_keys(galois_steps=tuple(sorted(steps)), conjugation=conjugation,
                                      encapsulation_hamming_weight=encaps))

    @staticmethod
    def bootstrap_key_plan(params: CkksParameters | Mapping[str, Any], slots: int | None = None):
        """The Galois steps, conjugation, encapsulation keys and the key-set size (bytes) a
        bootstrap needs, before anything is generated (``Bootstrapper.key_plan``)."""
        from wavis.ckks.bootstrap import Bootstrapper

        if not isinstance(params, CkksParameters):
            params = CkksParameters.from_dict(dict(params))
        return Bootstrapper.key_plan(params, slots)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder(self.params)
        return self._encoder

    def encrypt(self, values) -> Ciphertext:
        return Encryptor(self.params, self.public_key).encrypt(self.encoder.encode(values))

    def decrypt(self, ct: Ciphertext) -> np.ndarray:
        """Complex slot values, shape (slot_count,); take ``.real`` for real inputs."""
        return self.encoder.decode(Decryptor(self.params, self.secret_key).decrypt(ct))

    def upload_body(self) -> dict[str, Any]:
        """The POST /keys/upload body with every evaluation key (may exceed the 40 MB limit
        for large key sets: :meth:`upload_parts` splits them)."""
        return self.upload_parts()[0]

    def upload_parts(self, max_bytes: int = 28 * 1024 * 1024) -> list[dict[str, Any]]:
        """The key upload split into request bodies of at most ~``max_bytes`` of key data
        (base64 grows it by 4/3, under the server's 40 MB): the first for POST /keys/upload
        (public key, relinearization key and the Galois keys that fit), the rest for
        POST /keys/{key_id}/galois-keys (Galois keys only). For a bootstrap preset the
        relinearization and encapsulation keys go in chunks of their own when they do not fit
        (one key-switching key at N = 2^16 is ~43 MB: the server accepts one key per chunk)."""
        evk = self.eval_keys
        fp, tag = evk.params_fingerprint, evk.key_tag
        pk_blob = serialize.dumps(self.public_key)
        extra: list[dict[str, Any]] = []
        head = EvaluationKeys(fp, tag, evk.relin_key, {}, evk.encapsulation)
        if self.params.bootstrap_preset is not None and len(pk_blob) + len(serialize.dumps(head)) > max_bytes:
            head = EvaluationKeys(fp, tag, None, {})
            for part in (EvaluationKeys(fp, tag, evk.relin_key, {}),
                         EvaluationKeys(fp, tag, None, {}, evk.encapsulation)):
                if part.relin_key is not None or part.encapsulation is not None:
                    extra.append({"eval_key": serialize.b64encode(serialize.dumps(part))})
        used = len(pk_blob) + (len(serialize.dumps(head)) if head.relin_key or head.encapsulation else 0)
        chunks: list[dict[int, Any]] = [{}]
        size = 0  # every Galois key has the same serialized size
        for elt in sorted(evk.galois_keys):
            if not size:
                size = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None,
                                                          {elt: evk.galois_keys[elt]})))
            if chunks[-1] and used + size > max_bytes:
                chunks.append({})
                used = 0
            chunks[-1][elt] = evk.galois_keys[elt]
            used += size
        head.galois_keys = chunks[0]
        if head.relin_key is None and head.encapsulation is None and not head.galois_keys and chunks[1:]:
            head.galois_keys = chunks.pop(1)  # the first request must carry at least one key
        bodies = [{"params": self.params.to_dict(), "public_key": serialize.b64encode(pk_blob),
                   "eval_key": serialize.b64encode(serialize.dumps(head))}]
        bodies += extra
        for part in chunks[1:]:
            blob = serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None, part))
            bodies.append({"eval_key": serialize.b64encode(blob)})
        return bodies


@dataclass(frozen=True)
class CiphertextRef:
    ciphertext_id: str
    key_id: str
    level: int
    scale_bits: float
    meta: dict[str, Any]


@dataclass(frozen=True)
class ComputeResult:
    ciphertext_id: str
    ciphertext: Ciphertext | None  # parsed when the client knows the key's parameters
    level: int
    meta: dict[str, Any]


class AsyncClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8080", api_key: str | None = None, *,
                 session: aiohttp.ClientSession | None = None, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith(API_PREFIX):
            self.base_url += API_PREFIX
        self.api_key = api_key
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._params: dict[str, CkksParameters] = {}  # key_id → parameters (for parsing results)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request(self, method: str, path: str, json: Any = None, *, auth: bool = True) -> tuple[int, Any, Any]:
        headers = {"Accept": "application/json"}
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        async with self._sess().request(method, self.base_url + path, json=json, headers=headers) as resp:
            data = await resp.json(content_type=None) if method != "HEAD" else None
            if resp.status >= 400:
                err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
                ra = resp.headers.get("Retry-After")
                raise ApiError(resp.status, err.get("code", "HTTP_ERROR"), err.get("message", resp.reason or ""),
                               err.get("request_id") or resp.headers.get("X-Request-ID"), err.get("details"),
                               float(ra) if ra and ra.replace(".", "", 1).isdigit() else None)
            return resp.status, data, resp.headers

    # -- endpoints ---------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        return (await self.request("GET", "/health", auth=False))[1]

    async def create_temp_key(self, use: bool = True) -> dict[str, Any]:
        """A trial key (30 min, 10 operations); ``use`` makes this client use it."""
        _, data, _ = await self.request("POST", "/onboarding/temp-key", auth=False)
        if use:
            self.api_key = data["api_key"]
        return data

    async def upload_keys(self, keys: KeyPair, max_bytes: int = 28 * 1024 * 1024) -> str:
        """Upload the public and evaluation keys (in several requests when the Galois keys are
        larger than one 40 MB request); returns the key id."""
        bodies = await asyncio.to_thread(keys.upload_parts, max_bytes)
        _, data, _ = await self.request("POST", "/keys/upload", bodies[0])
        for body in bodies[1:]:
            await self.request("POST", f"/keys/{data['key_id']}/galois-keys", body)
        keys.key_id = data["key_id"]
        self._params[data["key_id"]] = keys.params
        return data["key_id"]

    async def get_key(self, key_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"/keys/{key_id}"))[1]

    async def upload_ciphertext(self, key_id: str, ct: Ciphertext) -> CiphertextRef:
        text = await asyncio.to_thread(lambda: serialize.b64encode(serialize.dumps(ct)))
        _, data, _ = await self.request("POST", "/ciphertexts", {"key_id": key_id, "ciphertext_b64": text})
        return CiphertextRef(data["ciphertext_id"], data["key_id"], data["level"], data["scale_bits"], data)

    def _parse(self, key_id: str, text: str, params: CkksParameters | None) -> Ciphertext | None:
        params = params or self._params.get(key_id)
        if params is None:
            return None
        return serialize.loads(serialize.b64decode(text), expected_type=Ciphertext, params=params)

    async def get_ciphertext(self, ciphertext_id: str, params: CkksParameters | None = None) -> Ciphertext | None:
        _, data, _ = await self.request("GET", f"/ciphertexts/{ciphertext_id}")
        return await asyncio.to_thread(self._parse, data["key_id"], data["ciphertext_b64"], params)

    async def compute(self, operation: str, key_id: str, ciphertext_ids: Sequence[str], **fields: Any) -> ComputeResult:
        body = {"key_id": key_id, "ciphertext_ids": list(ciphertext_ids), **fields}
        _, data, _ = await self.request("POST", f"/compute/{operation}", body)
        ct = await asyncio.to_thread(self._parse, key_id, data["result_ciphertext"], None)
        return ComputeResult(data["result_ciphertext_id"], ct, data["level"], data)

    async def add(self, key_id: str, a: str, b: str) -> ComputeResult:
        return await self.compute("add", key_id, [a, b])

    async def multiply(self, key_id: str, a: str, b: str) -> ComputeResult:
        return await self.compute("multiply", key_id, [a, b])


class Client:
    """Synchronous wrapper around :class:`AsyncClient` (its own event loop in a thread)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", api_key: str | None = None, *,
                 timeout: float = 120.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wavis-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(base_url, api_key, timeout=timeout)

    @property
    def api_key(self) -> str | None:
        return self._async.api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._async.api_key = value

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str):
        attr = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr
        return lambda *a, **kw: self._run(attr(*a, **kw))

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
