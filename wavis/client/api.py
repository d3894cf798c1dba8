"""The HTTP clients: :class:`AsyncClient` (aiohttp) and :class:`Client` (the same methods,
synchronous). One method per endpoint of the REST API (API.md §2) that the server has.

Retries (:class:`RetryPolicy`): 429 and 503 wait ``Retry-After`` (never longer than
``max_wait_s``: a longer wait is raised at once), 409 IDEMPOTENCY_IN_PROGRESS, 502, 504 and
connection failures back off exponentially with jitter. A synchronous job that outlives the
server's request timeout (504 ``JOB_TIMEOUT``, or 409 ``IDEMPOTENCY_IN_PROGRESS`` naming its
job) is waited for through ``GET /jobs/{id}`` within the client's own ``timeout``, then the
request is sent again and answered from the completed job (a long bootstrap under load). 402 and every other 4xx are never
retried. Every POST and PATCH carries an ``Idempotency-Key`` (generated unless given), the same
on each retry, so a retried request runs at most once on the server.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json as jsonlib
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

import aiohttp
import numpy as np

from wavis import serialize
from wavis.ckks import Ciphertext, CkksParameters

from .ckks import DEFAULT_KEY_CHUNK_BYTES, KeyPair
from .discovery import default_url
from .errors import ApiError, ConnectionFailedError, JobFailedError, error_for
from .tfhe import Circuit, TfheKeys, Wire, ct_from_b64, ct_to_b64

__all__ = ["AsyncClient", "Client", "RetryPolicy", "CiphertextRef", "ComputeResult", "TfheSession", "Job",
           "Progress", "COMPUTE_OPERATIONS"]

API_PREFIX = "/api/v1"
COMPUTE_OPERATIONS = ("add", "subtract", "multiply", "add-plain", "multiply-plain", "negate", "rescale", "rotate",
                      "conjugate", "matmul", "poly-eval", "bootstrap", "sum", "inner-product")
MAX_CIRCUIT_GATES = 1024  # gates per /tfhe/batch request (API.md)
UPLOAD_PIECE = 1 << 20  # streamed request bodies go out (and report progress) in 1 MiB pieces

# progress(sent_bytes, total_bytes) during large uploads
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; ``max_wait_s``: the longest
    ``Retry-After`` the client waits out (a longer one is raised as the error);
    backoff ``base_s``·2^attempt (± 25 % jitter), at most ``max_backoff_s``."""

    max_retries: int = 5
    max_wait_s: float = 60.0
    base_s: float = 0.25
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        d = min(self.max_backoff_s, self.base_s * (2 ** attempt))
        return d * random.uniform(0.75, 1.25)


NO_RETRY = RetryPolicy(max_retries=0)


@dataclass(frozen=True)
class CiphertextRef:
    """A ciphertext stored on the server: ``ciphertext_id``, ``key_id``, ``level``,
    ``scale_bits`` and the whole answer in ``meta``."""

    ciphertext_id: str
    key_id: str
    level: int
    scale_bits: float
    meta: dict[str, Any]


@dataclass(frozen=True)
class ComputeResult:
    """A compute answer: the stored result's id, the result (parsed when the client knows the
    key's parameters: keys uploaded by this client, or ``params=``), its level, and the whole
    answer in ``meta`` (cost, noise budget, times)."""

    ciphertext_id: str
    ciphertext: Ciphertext | None
    level: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class TfheSession:
    """A TFHE session: ``session_id``, ``preset``, ``n``, ``big_n``, ``is_blind``; ``keys``
    are the client's own keys for a blind session (results are parsed and checked against them)."""

    session_id: str
    preset: str
    n: int
    big_n: int
    is_blind: bool
    meta: dict[str, Any]
    keys: TfheKeys | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Job:
    """``GET /jobs/{id}``: ``job_id``, ``status`` (QUEUED, RUNNING, COMPLETED, FAILED) and the
    whole answer in ``meta``."""

    job_id: str
    status: str
    meta: dict[str, Any]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class AsyncClient:
    """Asynchronous WAVIS client.

    ``base_url``: the server (``http://host:port``, with or without ``/api/v1``); default
    :func:`wavis.client.discovery.default_url` (``WAVIS_URL``, else the running ``wavis serve``,
    else ``http://127.0.0.1:8080``). ``api_key``: ``wvs_…`` (default ``WAVIS_API_KEY``; or
    :meth:`create_temp_key`). ``retry``: :class:`RetryPolicy`. ``timeout``: seconds per request.
    Every method raises :class:`~wavis.client.errors.ApiError` (a subclass per status and code)
    for an error answer and :class:`~wavis.client.errors.ConnectionFailedError` when the server
    cannot be reached.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 session: aiohttp.ClientSession | None = None, timeout: float = 300.0,
                 retry: RetryPolicy | None = None) -> None:
        import os  # noqa: PLC0415

        self.base_url = (base_url or default_url()).rstrip("/")
        if not self.base_url.endswith(API_PREFIX):
            self.base_url += API_PREFIX
        self.api_key = api_key if api_key is not None else (os.environ.get("WAVIS_API_KEY") or None)
        self.retry = retry or RetryPolicy()
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._params: dict[str, CkksParameters] = {}  # key_id → parameters (for parsing results)
        self.last_request_id: str | None = None
        self.last_headers: Mapping[str, str] = {}
        self._key_chunk_bytes: int | None = None  # key_chunk_bytes(), from the server's /health

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

    # -- transport ---------------------------------------------------------------------------
    async def request(self, method: str, path: str, json: Any = None, *, auth: bool = True,
                      params: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
                      progress: Progress | None = None, retry: RetryPolicy | None = None,
                      raw: bytes | None = None) -> tuple[int, Any, Any]:
        """One API call with the retry policy: ``(status, parsed JSON body or None, headers)``.
        ``json``: the body as an object, or ``raw``: the body already encoded as JSON bytes.
        ``progress(sent, total)`` streams the body in 1 MiB pieces and reports each."""
        method = method.upper()
        policy = retry or self.retry
        headers = {"Accept": "application/json"}
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = idempotency_key or f"sdk_{uuid.uuid4().hex}"
        body = raw
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        attempt = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._timeout.total or 3600.0)  # this client's own bound on one call
        while True:
            data: Any = body
            if body is not None and progress is not None:
                data = self._pieces(body, progress)
            try:
                async with self._sess().request(method, url, data=data, headers=headers, params=params) as resp:
                    text = await resp.read() if method != "HEAD" else b""
                    status, rh = resp.status, resp.headers
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt < policy.max_retries:
                    await asyncio.sleep(policy.backoff(attempt))
                    attempt += 1
                    continue
                raise ConnectionFailedError(0, "CONNECTION_FAILED",
                                            f"cannot reach the WAVIS server at {self.base_url}: "
                                            f"{exc or type(exc).__name__}") from exc
            self.last_request_id, self.last_headers = rh.get("X-Request-ID"), rh
            try:
                parsed = jsonlib.loads(text) if text else None
            except ValueError:
                parsed = None
            if status < 400:
                return status, parsed, rh
            err = parsed.get("error", {}) if isinstance(parsed, dict) else {}
            code = err.get("code") or "HTTP_ERROR"
            wait = _retry_after(rh.get("Retry-After"))
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
            job_id = details.get("job_id")
            if (method == "POST" and isinstance(job_id, str) and loop.time() < deadline
                    and (status, code) in ((504, "JOB_TIMEOUT"), (409, "IDEMPOTENCY_IN_PROGRESS"))):
                # The job outlived the server's request timeout (or an earlier attempt's job still
                # runs): it goes on and completes once. Wait for its end within this client's own
                # timeout, then send the same request again with the same Idempotency-Key: the
                # server answers from the completed job, without running or charging it twice.
                await self._wait_job_end(job_id, deadline)
                continue
            retryable = (status in (429, 503) and code != "TOO_MANY_AUTH_FAILURES") or status in (502, 504) or (
                status == 409 and code == "IDEMPOTENCY_IN_PROGRESS")
            if retryable and attempt < policy.max_retries and (wait is None or wait <= policy.max_wait_s):
                await asyncio.sleep(wait if wait is not None and status in (429, 503) else policy.backoff(attempt))
                attempt += 1
                continue
            cls = error_for(status, code)
            raise cls(status, code, err.get("message") or (text[:200].decode(errors="replace") or "error"),
                      err.get("request_id") or rh.get("X-Request-ID"), err.get("details"), wait)

    async def _wait_job_end(self, job_id: str, deadline: float) -> None:
        """Poll ``GET /jobs/{job_id}`` until the job leaves QUEUED/RUNNING or the loop time
        passes ``deadline``. A job that ended FAILED raises :class:`JobFailedError` with its
        error (re-sending the request would run it again)."""
        loop = asyncio.get_running_loop()
        delay = 0.2
        while loop.time() < deadline:
            job = await self.get_job(job_id)
            if job.status == "FAILED":
                err = job.meta.get("error") or {}
                raise JobFailedError(200, err.get("code", "JOB_FAILED"), err.get("message", "the job failed"),
                                     self.last_request_id, {"job_id": job_id, **err})
            if job.status not in ("QUEUED", "RUNNING"):
                return
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(2.0, delay * 1.5)

    @staticmethod
    async def _pieces(body: bytes, progress: Progress) -> AsyncIterator[bytes]:
        total = len(body)
        progress(0, total)
        for off in range(0, total, UPLOAD_PIECE):
            piece = body[off:off + UPLOAD_PIECE]
            yield piece
            progress(min(total, off + len(piece)), total)

    async def _get(self, path: str, **params: Any) -> Any:
        q = {k: str(v) for k, v in params.items() if v is not None}
        return (await self.request("GET", path, params=q or None))[1]

    async def _post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return (await self.request("POST", path, body if body is not None else {}, **kw))[1]

    async def _delete(self, path: str) -> Any:
        return (await self.request("DELETE", path))[1]

    async def _pages(self, path: str, limit: int = 100, **params: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self._get(path, limit=limit, cursor=cursor, **params)
            for item in page["data"]:
                yield item
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    # -- public information ------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """``GET /health`` (public): status, version, backend, dependencies."""
        return (await self.request("GET", "/health", auth=False))[1]

    async def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI 3.1 document."""
        return (await self.request("GET", "/openapi.json", auth=False))[1]

    async def tfhe_pricing(self) -> dict[str, Any]:
        """``GET /tfhe/pricing``: per-gate prices and the presets with their security."""
        return (await self.request("GET", "/tfhe/pricing", auth=False))[1]

    # -- onboarding and API keys -------------------------------------------------------------
    async def create_temp_key(self, use: bool = True) -> dict[str, Any]:
        """A trial key (30 min, 10 operations); ``use`` makes this client use it."""
        data = (await self.request("POST", "/onboarding/temp-key", {}, auth=False))[1]
        if use:
            self.api_key = data["api_key"]
        return data

    async def revoke_temp_key(self, key_prefix: str) -> dict[str, Any]:
        """Revoke a trial key by its first ≥ 16 characters."""
        return (await self.request("DELETE", f"/onboarding/temp-key/{key_prefix}", auth=False))[1]

    async def rotate_api_key(self, use: bool = True) -> dict[str, Any]:
        """A new key for this one (the old one keeps working 24 h); ``use`` switches to it."""
        data = await self._post("/keys/apikey/rotate")
        if use:
            self.api_key = data["new_api_key"]
        return data

    async def list_api_keys(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of this account's API keys (never the keys themselves; account_admin)."""
        return await self._get("/api-keys", limit=limit, cursor=cursor)

    async def create_api_key(self, environment: str = "live", role: str = "developer") -> dict[str, Any]:
        """A new API key of this account (``key`` shown once; account_admin)."""
        return await self._post("/api-keys", {"environment": environment, "role": role})

    async def revoke_api_key(self, api_key_id: str) -> None:
        """Revoke an API key now (account_admin)."""
        await self._delete(f"/api-keys/{api_key_id}")

    # -- CKKS keys ---------------------------------------------------------------------------
    async def key_chunk_bytes(self) -> int:
        """Key data per upload request for this server: 7/10 of the key-upload body limit it
        states in ``GET /health`` (``limits.key_upload_body_bytes``; base64 makes the data 4/3 larger,
        plus the JSON around it), so 28 MiB under the default 40 MiB. A server that does not state
        it (or does not answer) gets the default, ``DEFAULT_KEY_CHUNK_BYTES``. Asked once per client."""
        if self._key_chunk_bytes is None:
            chunk = DEFAULT_KEY_CHUNK_BYTES
            try:
                limit = ((await self.health()).get("limits") or {}).get("key_upload_body_bytes")
                if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
                    chunk = max(1, limit * 7 // 10)
            except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
                pass  # an older or unreachable server: the default (the upload itself reports an outage)
            self._key_chunk_bytes = chunk
        return self._key_chunk_bytes

    async def upload_keys(self, keys: KeyPair, *, progress: Progress | None = None,
                          max_bytes: int | None = None) -> str:
        """Upload the public and evaluation keys; returns the key id (also set on ``keys``).
        Large key sets (Galois keys of big matmuls, bootstrapping keys, a relinearization key
        that with the public key passes the 40 MiB body: N = 2^15 at depth 16) go in several requests
        (``POST /keys/{id}/galois-keys``) of at most ~``max_bytes`` of key data each (default: what
        the server's stated body limit allows, :meth:`key_chunk_bytes`);
        ``progress(sent_bytes, total_bytes)`` is called as the bodies stream out."""
        if max_bytes is None:
            max_bytes = await self.key_chunk_bytes()
        bodies = await asyncio.to_thread(keys.upload_parts, max_bytes)

        def encode(body: dict[str, Any]) -> bytes:
            return jsonlib.dumps(body, separators=(",", ":")).encode()

        # sizes first (each body encoded and dropped: a bootstrappable key set at N = 2^16 is
        # ~2.4 GB of base64, never held twice)
        total = sum([len(await asyncio.to_thread(encode, b)) for b in bodies]) if progress is not None else 0
        done, key_id = 0, None
        for i in range(len(bodies)):
            raw = await asyncio.to_thread(encode, bodies[i])
            bodies[i] = None  # type: ignore[call-overload]  (free the base64 as it goes out)
            cb = None
            if progress is not None:
                base = done
                cb = lambda sent, _t, base=base: progress(base + sent, total)  # noqa: E731
            path = "/keys/upload" if i == 0 else f"/keys/{key_id}/galois-keys"
            data = (await self.request("POST", path, raw=raw, progress=cb))[1]
            if i == 0:
                key_id = data["key_id"]
            done += len(raw)
            del raw
        keys.key_id = key_id
        self._params[key_id] = keys.params
        return key_id

    async def generate_key(self, params: CkksParameters | Mapping[str, Any], *, rotation_steps: Iterable[int] = (),
                           bootstrappable: bool = False, bootstrap_preset: str | None = None,
                           bootstrap_slots: int | None = None) -> dict[str, Any]:
        """Server-managed keys (``POST /keys/generate``, deprecated, for demos): the server keeps
        the secret key sealed and can encrypt/decrypt for it (:meth:`encrypt`, :meth:`decrypt`)."""
        p = params.to_dict() if isinstance(params, CkksParameters) else dict(params)
        body: dict[str, Any] = {"params": p, "rotation_steps": [int(s) for s in rotation_steps]}
        if bootstrappable:
            body["bootstrappable"] = True
        if bootstrap_preset:
            body["bootstrap_preset"] = bootstrap_preset
        if bootstrap_slots:
            body["bootstrap_slots"] = int(bootstrap_slots)
        data = await self._post("/keys/generate", body)
        self._params[data["key_id"]] = CkksParameters.from_dict(data["params"])
        return data

    async def get_key(self, key_id: str, matmul_shape: tuple[int, int] | None = None) -> dict[str, Any]:
        """Key metadata (Galois steps, levels, limits); ``matmul_shape=(rows, cols)`` adds
        which Galois keys that matmul needs and which are missing."""
        shape = f"{matmul_shape[0]}x{matmul_shape[1]}" if matmul_shape else None
        return await self._get(f"/keys/{key_id}", matmul_shape=shape)

    async def list_keys(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        return await self._get("/keys", limit=limit, cursor=cursor)

    async def iter_keys(self) -> AsyncIterator[dict[str, Any]]:
        """Every key of the account, page by page."""
        async for item in self._pages("/keys"):
            yield item

    async def delete_key(self, key_id: str) -> dict[str, Any]:
        """Delete a key and every ciphertext under it: ``{deleted, ciphertexts_deleted}``."""
        self._params.pop(key_id, None)
        return await self._delete(f"/keys/{key_id}")

    # -- ciphertexts -------------------------------------------------------------------------
    @staticmethod
    def _ref(data: dict[str, Any]) -> CiphertextRef:
        return CiphertextRef(data["ciphertext_id"], data["key_id"], data["level"], data["scale_bits"], data)

    async def upload_ciphertext(self, key_id: str, ct: Ciphertext, *, progress: Progress | None = None) -> CiphertextRef:
        """Store a ciphertext encrypted on the client under ``key_id``."""
        text = await asyncio.to_thread(lambda: serialize.b64encode(serialize.dumps(ct)))
        return self._ref(await self._post("/ciphertexts", {"key_id": key_id, "ciphertext_b64": text},
                                          progress=progress))

    async def encrypt(self, key_id: str, values: Sequence[float] | np.ndarray) -> CiphertextRef:
        """Server-side encryption (server-managed keys only; blind keys → BlindModeError)."""
        vals = [float(v) for v in np.asarray(values, dtype=float).reshape(-1)]
        return self._ref(await self._post("/ciphertexts/encrypt", {"key_id": key_id, "values": vals}))

    async def decrypt(self, ciphertext_id: str) -> np.ndarray:
        """Server-side decryption of a server-produced ciphertext (server-managed keys only):
        noise-flooded values rounded to the precision they hold (float64 array)."""
        data = await self._post(f"/ciphertexts/{ciphertext_id}/decrypt")
        return np.asarray(data["values"], dtype=float)

    def _parse(self, key_id: str, text: str, params: CkksParameters | None) -> Ciphertext | None:
        params = params or self._params.get(key_id)
        if params is None:
            return None
        return serialize.loads(serialize.b64decode(text), expected_type=Ciphertext, params=params)

    async def get_ciphertext(self, ciphertext_id: str, params: CkksParameters | None = None) -> Ciphertext | None:
        """Download a ciphertext (None when the client does not know its key's parameters)."""
        data = await self._get(f"/ciphertexts/{ciphertext_id}")
        return await asyncio.to_thread(self._parse, data["key_id"], data["ciphertext_b64"], params)

    async def get_ciphertext_meta(self, ciphertext_id: str) -> dict[str, Any]:
        return await self._get(f"/ciphertexts/{ciphertext_id}")

    async def delete_ciphertext(self, ciphertext_id: str) -> None:
        await self._delete(f"/ciphertexts/{ciphertext_id}")

    # -- compute (CKKS) ----------------------------------------------------------------------
    async def compute(self, operation: str, key_id: str,
                      ciphertext_ids: Sequence[str | CiphertextRef | ComputeResult], *,
                      params: CkksParameters | None = None, wait: bool = True, **fields: Any) -> ComputeResult:
        """``POST /compute/{operation}``. ``fields``: the operation's own (``steps``,
        ``plain_operand``, ``matrix``, ``polynomial_coeffs``, ``basis``, ``interval``, ``slots``,
        ``input_range``, ``iterations``). Operands: ids, :class:`CiphertextRef` or :class:`ComputeResult`.
        ``wait=False`` queues it (``async: true``, 202) and polls the job to its end."""
        if operation not in COMPUTE_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r} (one of {', '.join(COMPUTE_OPERATIONS)})")
        ids = [c if isinstance(c, str) else c.ciphertext_id for c in ciphertext_ids]
        body = {"key_id": key_id, "ciphertext_ids": ids, **{k: v for k, v in fields.items() if v is not None}}
        if not wait:
            body["async"] = True
        status, data, _ = await self.request("POST", f"/compute/{operation}", body)
        if status == 202:
            data = (await self.wait_job(data["job_id"])).meta
        if data.get("result_ciphertext"):
            ct = await asyncio.to_thread(self._parse, key_id, data["result_ciphertext"], params)
        elif params is not None or key_id in self._params:  # a job's answer holds only the id
            ct = await self.get_ciphertext(data["result_ciphertext_id"], params)
        else:
            ct = None
        return ComputeResult(data["result_ciphertext_id"], ct, data["level"], data)

    async def add(self, key_id: str, a, b, **kw) -> ComputeResult:
        return await self.compute("add", key_id, [a, b], **kw)

    async def subtract(self, key_id: str, a, b, **kw) -> ComputeResult:
        return await self.compute("subtract", key_id, [a, b], **kw)

    async def multiply(self, key_id: str, a, b, **kw) -> ComputeResult:
        """a·b, relinearized and rescaled (one level)."""
        return await self.compute("multiply", key_id, [a, b], **kw)

    async def add_plain(self, key_id: str, a, values: Sequence[float], **kw) -> ComputeResult:
        return await self.compute("add-plain", key_id, [a], plain_operand=[float(v) for v in values], **kw)

    async def multiply_plain(self, key_id: str, a, values: Sequence[float], **kw) -> ComputeResult:
        return await self.compute("multiply-plain", key_id, [a], plain_operand=[float(v) for v in values], **kw)

    async def negate(self, key_id: str, a, **kw) -> ComputeResult:
        return await self.compute("negate", key_id, [a], **kw)

    async def rescale(self, key_id: str, a, **kw) -> ComputeResult:
        return await self.compute("rescale", key_id, [a], **kw)

    async def rotate(self, key_id: str, a, steps: int, **kw) -> ComputeResult:
        """Rotate left by ``steps`` (needs that Galois key, or power-of-two keys to compose it)."""
        return await self.compute("rotate", key_id, [a], steps=int(steps), **kw)

    async def conjugate(self, key_id: str, a, **kw) -> ComputeResult:
        return await self.compute("conjugate", key_id, [a], **kw)

    async def sum(self, key_id: str, a, **kw) -> ComputeResult:
        """Sum of all slots into every slot (needs the power-of-two Galois keys: ``sums=True``)."""
        return await self.compute("sum", key_id, [a], **kw)

    async def inner_product(self, key_id: str, a, b, **kw) -> ComputeResult:
        return await self.compute("inner-product", key_id, [a, b], **kw)

    async def matmul(self, key_id: str, a, matrix, **kw) -> ComputeResult:
        """M·x for a plaintext matrix M (rows × cols ≤ slots) and encrypted x (its first cols
        slots); result in the first rows slots. Needs the Galois keys of that shape: generate
        them with ``KeyPair.generate(..., matmul_shapes=[(rows, cols)])``."""
        m = np.asarray(matrix, dtype=float)
        return await self.compute("matmul", key_id, [a], matrix=m.tolist(), **kw)

    async def poly_eval(self, key_id: str, a, coeffs: Sequence[float], basis: str = "power",
                        interval: tuple[float, float] | None = None, **kw) -> ComputeResult:
        """p(x) slot-wise; ``coeffs`` lowest degree first (≤ 65), power or Chebyshev basis."""
        return await self.compute("poly-eval", key_id, [a], polynomial_coeffs=[float(c) for c in coeffs],
                                  basis=basis, interval=list(interval) if interval else None, **kw)

    async def bootstrap(self, key_id: str, a, slots: int | None = None, input_range: float | None = None,
                        iterations: int | None = None, **kw) -> ComputeResult:
        """Refresh the levels of ``a`` (keys made with ``bootstrappable=True`` and a
        ``bootstrap_preset``); ``input_range`` declares a bound on |slot| (default 1);
        ``iterations=2`` runs META-BTS (two bootstraps, a more precise result; docs/bootstrapping.md)."""
        return await self.compute("bootstrap", key_id, [a], slots=slots, input_range=input_range,
                                  iterations=iterations, **kw)

    # -- jobs --------------------------------------------------------------------------------
    async def get_job(self, job_id: str) -> Job:
        data = await self._get(f"/jobs/{job_id}")
        return Job(data["job_id"], data["status"], data)

    async def list_jobs(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        return await self._get("/jobs", limit=limit, cursor=cursor)

    async def cancel_job(self, job_id: str) -> None:
        """Cancel a job still QUEUED (ConflictError otherwise)."""
        await self._delete(f"/jobs/{job_id}")

    async def wait_job(self, job_id: str, *, poll_s: float = 0.1, timeout_s: float = 600.0) -> Job:
        """Poll until the job ends; raises JobFailedError for FAILED, TimeoutError past ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + timeout_s, poll_s
        while True:
            job = await self.get_job(job_id)
            if job.status == "COMPLETED":
                return job
            if job.status == "FAILED":
                err = job.meta.get("error") or {}
                raise JobFailedError(200, err.get("code", "JOB_FAILED"), err.get("message", "the job failed"),
                                     self.last_request_id, {"job_id": job_id, **err})
            if loop.time() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 1.5)

    # -- TFHE --------------------------------------------------------------------------------
    @staticmethod
    def _tfhe_session_of(data: dict[str, Any], keys: TfheKeys | None = None) -> TfheSession:
        return TfheSession(data["session_id"], data["preset"], data["n"], data["big_n"], data["is_blind"], data, keys)

    async def tfhe_session(self, preset: str = "fast_128") -> TfheSession:
        """A server-managed session: the server holds the secret key (sealed at rest)."""
        return self._tfhe_session_of(await self._post("/tfhe/session", {"preset": preset}))

    async def tfhe_blind_session(self, keys: TfheKeys, *, progress: Progress | None = None) -> TfheSession:
        """A blind session: uploads only ``keys.server_key`` (11–21 MB; ``progress`` reports the
        upload); the server can compute but never decrypt."""
        text = await asyncio.to_thread(keys.server_key_b64)
        data = await self._post("/tfhe/eval-session", {"eval_key_b64": text}, progress=progress)
        return self._tfhe_session_of(data, keys)

    async def delete_tfhe_session(self, session: TfheSession | str) -> None:
        sid = session.session_id if isinstance(session, TfheSession) else session
        await self._delete(f"/tfhe/session/{sid}")

    async def tfhe_encrypt(self, session: TfheSession | str, bits: Sequence[bool]) -> list[str]:
        """Server-side encryption (server-managed sessions): base64 ciphertexts, one per bit."""
        sid = session.session_id if isinstance(session, TfheSession) else session
        data = await self._post(f"/tfhe/session/{sid}/encrypt", {"bits": [bool(b) for b in bits]})
        return data["ciphertexts_b64"]

    async def tfhe_decrypt(self, session: TfheSession | str, ciphertexts: Sequence[str]) -> list[bool]:
        """Server-side decryption (server-managed sessions, server-produced ciphertexts only)."""
        sid = session.session_id if isinstance(session, TfheSession) else session
        return (await self._post(f"/tfhe/session/{sid}/decrypt", {"ciphertexts_b64": list(ciphertexts)}))["bits"]

    @staticmethod
    def _operand(x: Wire | str) -> str:
        return x if isinstance(x, str) else ct_to_b64(x)

    def _result(self, session: TfheSession | str, text: str):
        keys = session.keys if isinstance(session, TfheSession) else None
        return ct_from_b64(text, keys.client_key) if keys is not None else text

    async def tfhe_gate(self, session: TfheSession | str, op: str, a, b=None, sel=None):
        """One gate (NAND, AND, OR, XOR, NOR, XNOR, NOT, MUX; MUX gives ``a`` where ``sel``).
        Operands: ciphertexts or base64 strings. Returns the result ciphertext (a base64 string
        for a server-managed session)."""
        sid = session.session_id if isinstance(session, TfheSession) else session
        body = {"session_id": sid, "op": op.upper(), "a": self._operand(a)}
        if b is not None:
            body["b"] = self._operand(b)
        if sel is not None:
            body["sel"] = self._operand(sel)
        return self._result(session, (await self._post("/tfhe/gate", body))["result_b64"])

    async def tfhe_batch(self, session: TfheSession | str, gates: Sequence[dict]) -> dict[str, Any]:
        """``POST /tfhe/batch`` with gate objects as is (1–1024; ``"$k"`` references allowed)."""
        sid = session.session_id if isinstance(session, TfheSession) else session
        return await self._post("/tfhe/batch", {"session_id": sid, "gates": list(gates)})

    async def tfhe_run(self, session: TfheSession | str, circuit: Circuit) -> list:
        """Evaluate a :class:`~wavis.client.tfhe.Circuit` on the server in one request (level by
        level, batched); returns one result per gate (pick outputs with ``circuit.pick``)."""
        if not 1 <= len(circuit) <= MAX_CIRCUIT_GATES:
            from wavis.errors import ParameterError  # noqa: PLC0415

            raise ParameterError(f"a circuit of {len(circuit)} gates: one request takes 1..{MAX_CIRCUIT_GATES} "
                                 "(split it where no gate refers to an earlier part)", gates=len(circuit))
        body = await asyncio.to_thread(circuit.wire_body)
        data = await self.tfhe_batch(session, body)
        return [self._result(session, t) for t in data["results_b64"]]

    # -- models (encrypted inference) --------------------------------------------------------
    async def list_models(self) -> dict[str, Any]:
        """``GET /models`` (public): the catalogue of models that run under encryption."""
        return (await self.request("GET", "/models", auth=False))[1]

    async def infer(self, model_id: str, x, **kw: Any):
        """Encrypted inference (keys made and uploaded once per model): see
        :func:`wavis.client.models.infer_async`."""
        from .models import infer_async  # noqa: PLC0415

        return await infer_async(self, model_id, x, **kw)

    # -- webhooks ----------------------------------------------------------------------------
    async def create_webhook(self, url: str, events: Sequence[str] = (), secret: str | None = None) -> dict[str, Any]:
        """Register an https endpoint (``secret`` in the answer only when generated)."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if secret:
            body["secret"] = secret
        return await self._post("/webhooks", body)

    async def list_webhooks(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        return await self._get("/webhooks", limit=limit, cursor=cursor)

    async def get_webhook(self, webhook_id: str) -> dict[str, Any]:
        return await self._get(f"/webhooks/{webhook_id}")

    async def update_webhook(self, webhook_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH: only the fields given change (``url``, ``events``, ``enabled``, …)."""
        return (await self.request("PATCH", f"/webhooks/{webhook_id}", fields))[1]

    async def regenerate_webhook_secret(self, webhook_id: str) -> dict[str, Any]:
        return (await self.request("PATCH", f"/webhooks/{webhook_id}/regenerate-secret", {}))[1]

    async def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        return await self._delete(f"/webhooks/{webhook_id}")

    async def test_webhooks(self) -> dict[str, Any]:
        """Send a ``test`` event to every endpoint of the account."""
        return await self._post("/webhooks/test")

    async def webhook_events(self, limit: int = 20, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        return await self._get("/webhooks/events", limit=limit, cursor=cursor, **filters)

    async def redeliver_event(self, event_id: str) -> dict[str, Any]:
        return await self._post(f"/webhooks/events/{event_id}/redeliver")

    # -- billing (docs/billing.md) -------------------------------------------------------------
    async def billing_plans(self) -> dict[str, Any]:
        """``GET /billing/plans`` (public): every plan with its price, monthly FCU and overage,
        FCU per operation, the TFHE price in JPY and the one JPY→USD rate."""
        return (await self.request("GET", "/billing/plans", auth=False))[1]

    async def billing_usage(self, period: str | None = None) -> dict[str, Any]:
        """``GET /billing/usage``: the period's FCU by operation and by day, the quota
        (used, reserved, remaining) and the budget state; ``period`` ``"YYYY-MM"`` (default: now)."""
        return await self._get("/billing/usage", period=period)

    async def set_budget(self, monthly_limit_usd: float, mode: str = "hard",
                         alert_threshold_pct: int = 80) -> dict[str, Any]:
        """``POST /billing/budget``: a monthly cap in USD on the billed usage; ``mode`` ``"hard"``
        (402 BUDGET_EXCEEDED before the work is done) or ``"soft"`` (a budget_alert event only)."""
        return await self._post("/billing/budget", {"monthly_limit_usd": monthly_limit_usd, "mode": mode,
                                                    "alert_threshold_pct": alert_threshold_pct})

    async def get_budget(self) -> dict[str, Any]:
        """``GET /billing/budget`` (NotFoundError when none is set)."""
        return await self._get("/billing/budget")

    async def delete_budget(self) -> dict[str, Any]:
        """``DELETE /billing/budget``."""
        return await self._delete("/billing/budget")

    async def list_invoices(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """``GET /billing/invoices`` (paginated): mirrored from Stripe, or computed here at period end."""
        return await self._get("/billing/invoices", limit=limit, cursor=cursor)

    async def subscription(self) -> dict[str, Any]:
        """``GET /billing/subscription``: plan and status (active, trial, cancelled, past_due, unpaid)."""
        return await self._get("/billing/subscription")

    async def subscribe(self, plan: str, email: str, billing_cycle: str = "monthly") -> dict[str, Any]:
        """``POST /billing/subscribe``: create or change the Stripe subscription, or get a Checkout
        URL when there is no payment method. Raises ApiError 502 STRIPE_NOT_CONFIGURED on a server
        without Stripe, 403 TEST_KEY_NOT_BILLABLE with a test key."""
        return await self._post("/billing/subscribe", {"plan": plan, "email": email,
                                                       "billing_cycle": billing_cycle})

    async def cancel_subscription(self) -> dict[str, Any]:
        """``DELETE /billing/subscription``: cancel at the end of the period."""
        return await self._delete("/billing/subscription")


def _sync_method(name: str, fn):
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        def gen(self, *a, **kw):
            agen = getattr(self._async, name)(*a, **kw)
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        return gen

    @functools.wraps(fn)
    def method(self, *a, **kw):
        return self._run(getattr(self._async, name)(*a, **kw))
    return method


class Client:
    """Synchronous client: every :class:`AsyncClient` method without ``await`` (it runs an
    event loop in a background thread). Use as a context manager, or call :meth:`close`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 300.0,
                 retry: RetryPolicy | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wavis-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(base_url, api_key, timeout=timeout, retry=retry)

    @property
    def api_key(self) -> str | None:
        return self._async.api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._async.api_key = value

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def last_request_id(self) -> str | None:
        return self._async.last_request_id

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


for _name, _fn in list(vars(AsyncClient).items()):
    if _name.startswith("_") or _name in ("close",) or not (inspect.iscoroutinefunction(_fn)
                                                          or inspect.isasyncgenfunction(_fn)):
        continue
    setattr(Client, _name, _sync_method(_name, _fn))
del _name, _fn
