"""TFHE sessions: the in-process LRU of expanded server keys, the idle-session sweeper, and
the synchronous TFHE work run on the compute engine's threads. Only this module calls
``wavis.tfhe`` (imported lazily, so the service starts without it).

A session is a row of ``tfhe_sessions`` (``repo_tfhe``) holding the public server key in the
wire format and, for server-managed sessions, the client key sealed with AES-GCM under the
master key (``sealing``). A server key expands to 81–158 MB in memory (Fourier domain), so
expanded keys live in an LRU of a few entries, loaded from PostgreSQL on a miss (single-flight).

The expanded keys live on the compute device: a session's server key is expanded onto the
:class:`wavis.tfhe.TfheContext` of its preset on the engine's device (``device_context``: the
``WAVIS_BACKEND`` of ``fhe.DeviceContexts``), on the compute threads, and the LRU is the eviction
policy over that context's key residency (:class:`SessionKeyResidency`): a session entering it puts
its key there (``put_key``), leaving it (eviction, DELETE, idle expiry) evicts it (``evict_key``).
The context holds the keys; this module holds the policy (the CKKS counterpart is
``fhe.EvaluatorResidency``).

Settings (environment, read at start-up): ``WAVIS_TFHE_SESSION_CACHE`` (expanded keys kept,
default 4), ``WAVIS_TFHE_SESSION_IDLE_S`` (idle expiry, default 3600),
``WAVIS_TFHE_MAX_SESSIONS`` (live sessions per account, default 16), ``WAVIS_MASTER_KEY``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from aiohttp import web

from . import provenance, repo_tfhe
from .engine import AsyncLRU
from .sealing import Sealer, load_or_create_master_key
from .state import DB, SETTINGS

log = logging.getLogger("wavis.service.tfhe")

SWEEP_INTERVAL_S = 60.0


@dataclass(frozen=True)
class TfheConfig:
    cache_entries: int = 4
    cache_bytes: int = 2 * 1024 ** 3  # expanded keys in memory, in bytes (each 56–160 MB)
    idle_s: float = 3600.0
    max_sessions_per_account: int = 16

    @classmethod
    def from_env(cls) -> "TfheConfig":
        env = os.environ
        return cls(
            cache_entries=int(env.get("WAVIS_TFHE_SESSION_CACHE") or cls.cache_entries),
            cache_bytes=int(env.get("WAVIS_TFHE_SESSION_CACHE_BYTES") or cls.cache_bytes),
            idle_s=float(env.get("WAVIS_TFHE_SESSION_IDLE_S") or cls.idle_s),
            max_sessions_per_account=int(env.get("WAVIS_TFHE_MAX_SESSIONS") or cls.max_sessions_per_account),
        )


@dataclass
class SessionKeys:
    """A session's keys in memory: the expanded server key, and the client key for
    server-managed sessions (None for blind ones)."""

    session_id: str
    server: Any  # wavis.tfhe.ServerKey, prepared
    client: Any | None  # wavis.tfhe.ClientKey


@dataclass(frozen=True)
class Tagging:
    """Keyed tags of one session's ciphertexts (``provenance``): the associated data binds a
    tag to the account, the session and the provenance (``server`` / ``client``)."""

    tags: provenance.BlobTags
    account_id: str
    session_id: str

    def is_server(self, blob: bytes) -> bool:
        return self.tags.verify(blob, provenance.tfhe_aad(self.account_id, self.session_id, provenance.SERVER))

    def sign(self, blob: bytes, origin: str) -> bytes:
        return self.tags.sign(blob, provenance.tfhe_aad(self.account_id, self.session_id, origin))


class TfheStore:
    def __init__(self, sealer: Sealer, config: TfheConfig, tags: provenance.BlobTags | None = None) -> None:
        self.sealer = sealer
        self.config = config
        self.tags = tags
        self.keys: AsyncLRU[str, SessionKeys] = AsyncLRU(config.cache_entries, config.cache_bytes,
                                                         residency=SessionKeyResidency())


class SessionKeyResidency:
    """The session-key LRU over the TFHE contexts' key residency (``engine.Residency``).

    ``admit``: a session entering the LRU makes its expanded server key (expanded on the compute
    threads when the session was loaded, :meth:`wavis.tfhe.ServerKey.expanded`) resident in the
    key's context under the key's id (``put_key``, unless that context already holds the key) and
    weighs the entry at the key's device bytes. ``release``: when the last session holding that key
    leaves the LRU, the key is evicted from the context (``evict_key``). Two blind sessions may
    upload the same server key (same id); the key stays resident while either is in the LRU.
    Called on the event loop only.
    """

    def __init__(self) -> None:
        self._holders: dict[tuple[Any, bytes], set[str]] = {}  # (context, key id) -> session ids

    def admit(self, session_id: str, keys: "SessionKeys") -> int:
        sk = keys.server
        handle = sk.expanded()
        nbytes = int(handle.memory_bytes)
        if sk.context.get_key(sk.key_id) is None:
            sk.context.put_key(sk.key_id, handle, nbytes)
        self._holders.setdefault((sk.context, sk.key_id), set()).add(session_id)
        return nbytes

    def release(self, session_id: str, keys: "SessionKeys") -> None:
        sk = keys.server
        slot = (sk.context, sk.key_id)
        holders = self._holders.get(slot)
        if holders is not None:
            holders.discard(session_id)
            if holders:
                return
            del self._holders[slot]
        sk.context.evict_key(sk.key_id)


async def session_keys(app: web.Application, session_id: str) -> "SessionKeys":
    """A session's keys from this process's LRU, loaded from PostgreSQL on a miss
    (single-flight): the server key parsed and checked, the client key unsealed.

    Raises: ApiError 404 (no such session), 500 SEALED_KEY_UNAVAILABLE."""
    from .errors import ApiError, not_found  # noqa: PLC0415
    from .sealing import SealError  # noqa: PLC0415
    from .state import ENGINE  # noqa: PLC0415

    store = app[TFHE_STORE]
    engine = app[ENGINE]
    contexts = engine.contexts

    async def load() -> SessionKeys:
        async with app[DB].acquire(timeout=app[SETTINGS].upstream_timeout_s) as conn:
            blobs = await repo_tfhe.get_session_blobs(conn, session_id)
        if blobs is None:
            raise not_found("TFHE session", session_id=session_id)
        try:
            return await engine.run(load_session, session_id, blobs["account_id"], blobs["server_key"],
                                    blobs["client_key_sealed"], store.sealer, contexts)
        except SealError as exc:
            raise ApiError(500, "SEALED_KEY_UNAVAILABLE",
                           "this session's secret key cannot be unsealed with the server's master key; "
                           "delete the session and open a new one", {"session_id": session_id}) from exc

    return await store.keys.get(session_id, load)


TFHE_STORE: web.AppKey[TfheStore] = web.AppKey("tfhe_store", TfheStore)


def client_key_aad(session_id: str, account_id: str) -> bytes:
    return f"tfhe-client-key:{session_id}:{account_id}".encode()


async def _sweep(app: web.Application, store: TfheStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            async with app[DB].acquire(timeout=app[SETTINGS].upstream_timeout_s) as conn:
                gone = await repo_tfhe.delete_idle_sessions(conn, store.config.idle_s)
            for sid in gone:
                store.keys.discard(sid)
            if gone:
                log.info("expired %d idle TFHE session(s)", len(gone))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a sweep that fails is retried next interval
            log.warning("TFHE session sweep failed: %r", exc)


async def tfhe_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the pool and the engine): master key, session cache, sweeper."""
    settings = app[SETTINGS]
    # Settings.master_key when the settings carry one (WAVIS_MASTER_KEY), else the same env /
    # <data dir>/master_key file that secrets for server-mode CKKS keys use
    master = getattr(settings, "master_key", None) or load_or_create_master_key(settings.data_dir)
    store = TfheStore(Sealer(master), TfheConfig.from_env(), provenance.tags_for(master))
    app[TFHE_STORE] = store
    task = asyncio.create_task(_sweep(app, store), name="wavis-tfhe-sweeper")
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass


# --- synchronous work (engine threads) ------------------------------------------------------------

def _tfhe():
    from wavis import tfhe  # noqa: PLC0415 - deliberate lazy import

    return tfhe


def gate_bootstraps() -> dict[str, int]:
    """Bootstraps per gate, from the library (what evaluation does and pricing charges)."""
    return dict(_tfhe().GATE_BOOTSTRAPS)


def published_presets() -> list[dict]:
    """The public presets with security and failure figures (GET /tfhe/pricing), from the library."""
    return _tfhe().params.published_presets()



@dataclass
class NewSession:
    keys: SessionKeys
    preset: str
    n: int
    big_n: int
    key_id: bytes
    server_blob: bytes
    client_sealed: bytes | None


def device_context(contexts: Any, params: Any):
    """The :class:`wavis.tfhe.TfheContext` of ``params`` (TfheParameters or preset name) on the
    engine's compute device (``fhe.DeviceContexts``; one per preset, cached there)."""
    tfhe = _tfhe()
    params = tfhe.get_preset(params)
    return contexts.context(("tfhe", params), lambda: tfhe.TfheContext(params, contexts.backend))


def _on_device(sk: Any, contexts: Any):
    """``sk`` evaluating on the device's TFHE context, expanded there now (this runs on the
    compute threads; the LRU then makes it resident, :class:`SessionKeyResidency`). Without
    ``contexts``: the CPU context of its preset."""
    if contexts is not None:
        sk = sk.on(device_context(contexts, sk.params))
    return sk.prepare()


def new_server_managed(preset: str, session_id: str, account_id: str, sealer: Sealer,
                       contexts: Any = None) -> NewSession:
    """Key generation on the server; the client key leaves this function only sealed. The server
    key is expanded on ``contexts``' device (``fhe.DeviceContexts``; None: the CPU)."""
    tfhe = _tfhe()
    ck, sk = tfhe.keygen(preset)
    sealed = sealer.seal(tfhe.serialize.dump_client_key(ck), client_key_aad(session_id, account_id))
    blob = tfhe.serialize.dump_server_key(sk)
    sk = _on_device(sk, contexts)
    p = sk.params
    return NewSession(SessionKeys(session_id, sk, ck), p.name, p.n, p.big_n, sk.key_id, blob, sealed)


def new_blind(eval_key_b64: str, session_id: str, contexts: Any = None) -> NewSession:
    """Parse and validate an uploaded server key (wire format, fingerprint, preset), expanded on
    ``contexts``' device (None: the CPU). Raises KeyFormatError (400 INVALID_KEY: bad base64, a
    blob that does not parse or fails its fingerprint, a client key), ParameterError (a preset
    this service does not offer)."""
    tfhe = _tfhe()
    from wavis.errors import KeyFormatError, ParameterError, key_blob  # noqa: PLC0415

    with key_blob("eval_key_b64"):  # a malformed key → 400 INVALID_KEY
        blob = _b64(eval_key_b64, "eval_key_b64")
        head = tfhe.serialize.peek(blob)
    if head.kind == "client_key":
        raise KeyFormatError("this is a client (secret) key: upload only the server key (evaluation key); "
                             "nothing was stored", field="eval_key_b64")
    if head.params.name not in tfhe.PUBLIC_PRESETS:
        raise ParameterError(f"TFHE preset {head.params.name!r} is not offered by this service",
                             allowed=list(tfhe.PUBLIC_PRESETS))
    with key_blob("eval_key_b64"):
        sk = _on_device(tfhe.serialize.load_server_key(blob), contexts)
    p = sk.params
    return NewSession(SessionKeys(session_id, sk, None), p.name, p.n, p.big_n, sk.key_id, blob, None)


def load_session(session_id: str, account_id: str, server_blob: bytes, client_sealed: bytes | None,
                 sealer: Sealer, contexts: Any = None) -> SessionKeys:
    """A stored session's keys: the server key expanded on ``contexts``' device (None: the CPU),
    the client key unsealed."""
    tfhe = _tfhe()
    sk = tfhe.serialize.load_server_key(bytes(server_blob))
    ck = None
    if client_sealed is not None:
        ck = tfhe.serialize.load_client_key(sealer.open(client_sealed, client_key_aad(session_id, account_id)))
    return SessionKeys(session_id, _on_device(sk, contexts), ck)


def _b64(text: str, name: str) -> bytes:
    from wavis.errors import CiphertextFormatError  # noqa: PLC0415

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CiphertextFormatError(f"{name} is not valid base64", field=name) from None


# Decryption only of ciphertexts whose phase is this close to ±1/8 (after the tag check): the
# outputs of every gate have a noise std of about 0.006–0.008 (docs/tfhe.md), fresh encryptions
# far less, so 1/16 is more than 7 standard deviations away; a tag-valid ciphertext outside it
# would mean a bug, and is refused like a forged one.
PHASE_TOLERANCE = 1.0 / 16


def parse_ciphertext(keys: SessionKeys, text: str, where: str, tagging: Tagging | None = None):
    """One single LWE ciphertext of this session (INVALID_CIPHERTEXT / KEY_MISMATCH otherwise).
    With ``tagging``, returns (ciphertext, provenance of the blob: ``server`` only if it carries
    the server's tag for this account and session)."""
    tfhe = _tfhe()
    from wavis.errors import CiphertextFormatError, WavisError  # noqa: PLC0415

    blob = _b64(text, where)
    try:
        ct = tfhe.serialize.load_ciphertext(blob, key=keys.server)
        if ct.is_batch:
            raise CiphertextFormatError("expected a single ciphertext, got a batch")
    except WavisError as exc:
        raise type(exc)(f"{where}: {exc.message}", **{**exc.details, "operand": where}) from None
    if tagging is None:
        return ct
    return ct, (provenance.SERVER if tagging.is_server(blob) else provenance.CLIENT)


def _dump_b64(ct, tagging: Tagging, origin: str) -> str:
    """The wire format of a result, carrying the server's keyed tag for its provenance."""
    return base64.b64encode(tagging.sign(_tfhe().serialize.dump_ciphertext(ct), origin)).decode("ascii")


def _join(origins: Sequence[str]) -> str:
    return provenance.SERVER if all(o == provenance.SERVER for o in origins) else provenance.CLIENT


def gate(keys: SessionKeys, tagging: Tagging, op: str, a: str, b: str | None, sel: str | None) -> str:
    """One gate; the result is ``server`` only if every operand carried the server's tag."""
    ca, oa = parse_ciphertext(keys, a, "a", tagging)
    cb, ob = parse_ciphertext(keys, b, "b", tagging) if b is not None else (None, provenance.SERVER)
    cs, os_ = parse_ciphertext(keys, sel, "sel", tagging) if sel is not None else (None, provenance.SERVER)
    return _dump_b64(keys.server.gate(op, ca, cb, cs), tagging, _join([oa, ob, os_]))


def _parse_circuit(keys: SessionKeys, tagging: Tagging, gates: Sequence[dict[str, Any]],
                   single: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Gate dicts with base64 operands or ``"$k"`` references → the library's circuit form
    (operands parsed and checked against the session's key; errors name the operand as
    ``gates[i].b``, or ``b`` for a single-gate request), and each gate's provenance: ``server``
    only if everything it is computed from (through ``$k`` too) carried the server's tag."""
    from wavis.errors import ParameterError  # noqa: PLC0415
    from wavis.tfhe.keys import parse_reference  # noqa: PLC0415

    parsed: dict[str, Any] = {}  # the same ciphertext text is parsed once
    circuit, origins = [], []
    for i, g in enumerate(gates):
        out = {"op": g["op"]}
        mine = []
        for name in ("a", "b", "sel"):
            v = g.get(name)
            if v is None:
                continue
            if v.startswith("$"):
                try:
                    k = parse_reference(v, i)
                except ParameterError:
                    raise ParameterError(f"gate {i}: operand {name} = {v[:12]!r} must be '$k' with k < {i} "
                                         "(an earlier gate's result)", gate=i, operand=name) from None
                out[name] = v
                mine.append(origins[int(k)])
            else:
                if v not in parsed:
                    parsed[v] = parse_ciphertext(keys, v, name if single else f"gates[{i}].{name}", tagging)
                out[name] = parsed[v][0]
                mine.append(parsed[v][1])
        circuit.append(out)
        origins.append(_join(mine))
    return circuit, origins


def batch(keys: SessionKeys, tagging: Tagging, gates: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
    """Evaluate a gate list whose operands are ciphertexts or ``"$k"`` (k < index), level by
    level (independent gates are one batched bootstrap). Returns (results, levels)."""
    (out,) = evaluate_jobs(keys, tagging, [gates])
    if isinstance(out, BaseException):
        raise out
    return out


def _shift(x: Any, offset: int) -> Any:
    return f"${int(x[1:]) + offset}" if isinstance(x, str) else x


def evaluate_jobs(keys: SessionKeys, tagging: Tagging, jobs: Sequence[Sequence[dict[str, Any]]],
                  single: Sequence[bool] | None = None) -> list[Any]:
    """Several jobs of one session (single gates and circuits, any gate mix) in one circuit:
    their gates are concatenated (``"$k"`` references shifted to the merged indices), so gates
    of equal depth across all jobs form ONE batched bootstrap (``ServerKey.evaluate_circuit``
    → ``evaluate_batch`` per level). Gate bootstrapping is deterministic, so each output equals
    the job evaluated alone, bit for bit.

    Returns per job ``(results_b64, levels)`` or the exception that job raised: a job whose
    operands do not parse fails alone; if the merged call fails, every job is retried alone so
    a failing job never fails its batch-mates. Every output carries the server's keyed tag for
    its provenance (``tagging``; issue 15)."""
    tfhe = _tfhe()
    out: list[Any] = [None] * len(jobs)
    prepared: list[tuple[int, list[dict[str, Any]], int]] = []
    origins: dict[int, list[str]] = {}
    for i, gates in enumerate(jobs):
        try:
            circuit, origins[i] = _parse_circuit(keys, tagging, gates, bool(single[i]) if single is not None else False)
            levels = tfhe.circuit_levels(circuit)
            prepared.append((i, circuit, max(levels) + 1 if levels else 0))
        except Exception as exc:  # noqa: BLE001 - reported per job
            out[i] = exc
    if not prepared:
        return out
    merged: list[dict[str, Any]] = []
    spans = []
    for i, circuit, depth in prepared:
        off = len(merged)
        merged.extend({k: _shift(v, off) if k != "op" else v for k, v in g.items()} for g in circuit)
        spans.append((i, off, len(circuit), depth))
    try:
        results = keys.server.evaluate_circuit(merged, threads=0)
    except Exception:  # noqa: BLE001 - find the culprit: each job alone
        for i, circuit, depth in prepared:
            try:
                res = keys.server.evaluate_circuit(circuit, threads=0)
                out[i] = ([_dump_b64(r, tagging, o) for r, o in zip(res, origins[i])], depth)
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
        return out
    for i, off, n, depth in spans:
        out[i] = ([_dump_b64(r, tagging, o) for r, o in zip(results[off:off + n], origins[i])], depth)
    return out


def encrypt(keys: SessionKeys, tagging: Tagging, bits: list[bool]) -> list[str]:
    batch_ct = keys.client.encrypt(list(bits))
    return [_dump_b64(c, tagging, provenance.SERVER) for c in batch_ct]


def decrypt(keys: SessionKeys, tagging: Tagging, texts: list[str], many: bool = True) -> list[bool]:
    """Decrypt base64 ciphertexts this session produced. Each must carry the server's tag for
    ``server`` (checked first), then have a phase within 1/16 of ±1/8; anything else →
    403 NOT_SERVER_PRODUCED naming the operand (``ciphertexts_b64[i]`` / ``ciphertext_b64``).
    Malformed or foreign blobs keep their 400 (INVALID_CIPHERTEXT / KEY_MISMATCH)."""
    cts = []
    for i, t in enumerate(texts):
        where = f"ciphertexts_b64[{i}]" if many else "ciphertext_b64"
        ct, origin = parse_ciphertext(keys, t, where, tagging)
        if origin != provenance.SERVER:
            raise provenance.not_server_produced(where, operand=where)
        cts.append((where, ct))
    out = []
    for where, ct in cts:
        phase = float(keys.client.phase(ct)[0])
        if abs(abs(phase) - 0.125) > PHASE_TOLERANCE:
            raise provenance.not_server_produced(where, operand=where)
        out.append(phase > 0)
    return out
