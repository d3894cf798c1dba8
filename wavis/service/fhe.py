"""CKKS work the service does, as plain synchronous functions run on the compute engine's
threads (never on the event loop). Only this module touches ``wavis.ckks`` / ``wavis.serialize``;
it imports them lazily so the service starts (health, auth, onboarding) without them."""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from .settings import Limits

JSON_SLACK = 1024  # bytes of JSON around the base64 in an upload body


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _ckks():
    from wavis import ckks, serialize  # noqa: PLC0415 - deliberate lazy import

    return ckks, serialize


class DeviceContexts:
    """The service's compute device: one :class:`wavis.ckks.CkksContext` per parameter set on
    one backend (named explicitly by the settings: ``WAVIS_BACKEND``, default ``cpu``). Evaluation
    keys are moved onto a context's device when their Evaluator is built and registered in the
    context's key residency by the engine's LRU (:class:`EvaluatorResidency`), which also evicts
    them from it. TFHE sessions' server keys do the same on a :class:`wavis.tfhe.TfheContext` per
    preset (``tfhe_store.device_context``; policy: the session-key LRU of ``tfhe_store``).
    Thread-safe; contexts are built on first use, on the compute threads (their ring tables cost
    milliseconds)."""

    def __init__(self, backend: Any = "cpu") -> None:
        import threading  # noqa: PLC0415

        self.backend_name = backend if isinstance(backend, str) else backend.name
        self._backend = None if isinstance(backend, str) else backend
        self._contexts: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def backend(self):
        if self._backend is None:
            from wavis.backend import get  # noqa: PLC0415

            self._backend = get(self.backend_name)
        return self._backend

    def info(self):
        """The device's :class:`wavis.backend.BackendInfo` (name, device, host SIMD path; what
        ``/health`` reports). Raises :class:`wavis.errors.BackendError` when the configured backend
        cannot be built (``WAVIS_BACKEND=cuda`` without a device)."""
        return self.backend.info()

    @property
    def built(self) -> bool:
        """Whether the backend is built (``info`` and ``get`` then cost microseconds; the first
        build imports CuPy and probes the device, so callers on the event loop run it in a thread)."""
        return self._backend is not None

    def get(self, params):
        """The CKKS context of ``params`` on this device."""
        ckks, _ = _ckks()
        return self.context(params, lambda: ckks.CkksContext(params, self.backend))

    def context(self, key, make):
        """The context cached under ``key`` on this device, built by ``make()`` on first use (the
        TFHE contexts, ``tfhe_store.device_context``, are cached here under ``("tfhe", params)``)."""
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is None:
            ctx = make()
            with self._lock:
                ctx = self._contexts.setdefault(key, ctx)
        return ctx


def _context(params, contexts: DeviceContexts | None):
    ckks, _ = _ckks()
    return contexts.get(params) if contexts is not None else ckks.CkksContext.default(params)


def build_params(params: dict[str, Any]):
    """The parameters of a *stored* key. Keys stored before the headroom rule (issue 15) have no
    ``magnitude_bits``: they keep loading with the bound their headroom actually gives
    (first_mod_bits − scale_bits − 1), which their metadata then reports."""
    ckks, _ = _ckks()
    if "magnitude_bits" not in params and params.get("first_mod_bits") is not None:
        params = {**params, "magnitude_bits": magnitude_bits_of(params)}
    return ckks.CkksParameters.from_dict(params)


def request_params(params: Any, bootstrap_preset: str | None = None) -> dict[str, Any]:
    """The parameter literal of a key request (``schemas.CkksParams``; ``bootstrap_preset``: the
    generate request's top-level field), resolved once so that every check of the request — the
    insecure-parameter refusal, admission, parsing — sees the same values: the fields the client
    set, and with a bootstrap preset every field it leaves out taken from the preset
    (``CkksParameters.resolve_literal``: a preset fixes the ring, so ``poly_degree`` may be left
    out). Then ``max_depth`` is checked against the API's range (API.md: 1–24; the library allows
    0..60).

    Raises: ParameterError (→ 400 INVALID_PARAMS) for a ``max_depth`` outside 1–24, a top-level
    ``bootstrap_preset`` that differs from ``params.bootstrap_preset``, no ``poly_degree`` without a
    preset, unknown fields."""
    ckks, _ = _ckks()
    from wavis.errors import ParameterError  # noqa: PLC0415

    from .schemas import API_MAX_DEPTH  # noqa: PLC0415

    literal = params.model_dump(exclude_unset=True) if hasattr(params, "model_dump") else dict(params)
    if bootstrap_preset is not None:
        if literal.get("bootstrap_preset") not in (None, bootstrap_preset):
            raise ParameterError(
                f"bootstrap_preset {bootstrap_preset!r} and params.bootstrap_preset "
                f"{literal['bootstrap_preset']!r} differ (give one)", field="bootstrap_preset",
                fields=["bootstrap_preset", "params.bootstrap_preset"])
        literal["bootstrap_preset"] = bootstrap_preset
    literal = ckks.CkksParameters.resolve_literal(literal)
    lo, hi = API_MAX_DEPTH
    depth = literal.get("max_depth", 5)
    if not isinstance(depth, int) or isinstance(depth, bool) or not lo <= depth <= hi:
        raise ParameterError(
            f"max_depth must be an integer in {lo}..{hi}, got {depth!r}"
            + (" (with bootstrap_preset it counts the levels left after each bootstrap)"
               if literal.get("bootstrap_preset") else ""),
            field="params.max_depth", min=lo, max=hi)
    return literal


def magnitude_bits_of(params: dict[str, Any]) -> int:
    """The declared magnitude bound (log2) of a stored key's parameter literal; for keys stored
    before it existed, what their headroom gives (at most the default 19)."""
    if params.get("magnitude_bits") is not None:
        return int(params["magnitude_bits"])
    from wavis.ckks.params import DEFAULT_MAGNITUDE_BITS  # noqa: PLC0415

    scale = int(params.get("scale_bits", 40))
    first = params.get("first_mod_bits")
    first = int(first) if first is not None else min(60, scale + 20)
    return max(0, min(DEFAULT_MAGNITUDE_BITS, first - scale - 1))


def rotation_steps(params: Any, galois_elements) -> tuple[list[int], bool]:
    """Rotation steps (0 < k < slots, left rotations) realised by Galois elements, and whether
    the conjugation key (element 2N−1) is present."""
    n2 = 2 * int(params.poly_degree)
    slots = int(params.slot_count)
    wanted = {int(g) for g in galois_elements}
    conj = (n2 - 1) in wanted
    wanted.discard(n2 - 1)
    steps, g = [], 1
    for k in range(slots):
        if g in wanted:
            steps.append(k)
        g = g * 5 % n2
    return sorted(steps), conj


@dataclass
class ParsedKeys:
    params: Any
    params_dict: dict[str, Any]
    fingerprint: str
    key_tag: bytes
    slot_count: int
    max_level: int
    galois_steps: list[int]
    conjugation: bool
    public_key: bytes
    eval_key: bytes
    evaluator: Any
    ciphertext_body_limit: int
    is_secure: bool
    key_digests: dict[str, str] | None = None  # key_digests() of the evaluation keys in this request


def key_digests(evk: Any) -> dict[str, str]:
    """A digest (BLAKE2b-128, hex) of each key-switching key in an ``EvaluationKeys``, by name:
    ``relin``, ``encapsulation``, ``galois:<element>``. The service stores them with the key
    (``fhe_keys.key_digests``) so that a key chunk re-sent with the same keys is recognised (no new
    storage) and one with other bytes for a key already held is refused (``repo.add_eval_key_part``).
    A key is hashed over its b components and its a-seed (or its a components when it has no seed):
    what the wire format carries of it (the canonical form: a Galois key an Evaluator has loaded,
    held pre-permuted, hashes as it was uploaded)."""
    import hashlib  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from wavis.serialize import canonical_key_data  # noqa: PLC0415

    def digest(*ksks: Any, extra: bytes = b"") -> str:
        h = hashlib.blake2b(extra, digest_size=16)
        for k in ksks:
            data = canonical_key_data(k)
            h.update(repr(data.shape).encode())
            seed = getattr(k, "a_seed", None)
            for j in range(data.shape[0]):
                h.update(np.ascontiguousarray(data[j, 0]).data)
                h.update(seed if seed else np.ascontiguousarray(data[j, 1]).data)
        return h.hexdigest()

    out: dict[str, str] = {}
    if evk.relin_key is not None:
        out["relin"] = digest(evk.relin_key)
    if evk.encapsulation is not None:
        enc = evk.encapsulation
        out["encapsulation"] = digest(enc.dense_to_sparse, enc.sparse_to_dense,
                                      extra=int(enc.hamming_weight).to_bytes(4, "little"))
    for elt, gk in evk.galois_keys.items():
        out[f"galois:{int(elt)}"] = digest(gk)
    return out


def fresh_ciphertext_bytes(params: Any, key_tag: bytes = b"") -> int:
    """Serialized size of a fresh (top-level, 2-component) ciphertext under these parameters
    (the wire format's bound: every residue at its modulus's width)."""
    _, serialize = _ckks()
    return serialize.ciphertext_size(params)


def parse_key_upload(params_in: dict[str, Any], public_key_b64: str, eval_key_b64: str | None, limits: Limits,
                     contexts: DeviceContexts | None = None) -> ParsedKeys:
    """Rebuild the parameters, parse and validate both blobs against them, and measure a fresh
    ciphertext (its size sets the upload limit for this key: API.md "Sizes"). The Evaluator is
    built on the service's device (``contexts``; default: the CPU context)."""
    ckks, serialize = _ckks()
    params = ckks.CkksParameters.from_dict(params_in)
    from wavis.ckks.keys import key_tag_of  # noqa: PLC0415
    from wavis.errors import KeyMismatchError, key_blob  # noqa: PLC0415

    with key_blob("public_key"):  # a malformed key → 400 INVALID_KEY
        pk_bytes = serialize.b64decode(public_key_b64)
    with key_blob("eval_key"):
        evk_bytes = serialize.b64decode(eval_key_b64) if eval_key_b64 else b""
    try:
        with key_blob("public_key"):
            pk = serialize.loads(pk_bytes, expected_type=ckks.PublicKey, params=params)
        if evk_bytes:
            with key_blob("eval_key"):
                evk = serialize.loads(evk_bytes, expected_type=ckks.EvaluationKeys, params=params)
        else:  # every key comes in chunks (POST /keys/{id}/galois-keys): the first request holds the public key
            evk = ckks.EvaluationKeys(params.fingerprint, pk.key_tag)
    except KeyMismatchError as exc:
        # the blobs carry only a fingerprint of their parameters: say which fields make it up
        raise KeyMismatchError(
            f"{exc.message}: the keys were made with other parameters than `params` (poly_degree, scale_bits, "
            "max_depth, security_level, first_mod_bits, special_mod_bits, dnum, bootstrap_preset all count); send "
            "the key pair's own parameters unchanged (KeyPair.params.to_dict())",
            fields=["params"], **exc.details) from None

    if key_tag_of(pk.data) != pk.key_tag:
        raise KeyMismatchError("the public key's key tag does not match its contents")
    if evk.key_tag != pk.key_tag:
        raise KeyMismatchError("the evaluation keys belong to another key pair than the public key")
    # the relinearization key may come in a chunk of its own (POST /keys/{id}/galois-keys): with
    # the public key it can pass the 40 MiB upload body (N = 2^15 at depth 16: ~41.6 MB of base64
    # for it alone; bootstrap presets); until it arrives a multiply answers MISSING_KEY
    steps, conj = rotation_steps(params, evk.galois_keys)
    digests = key_digests(evk)  # (before the Evaluator moves the keys onto its device)
    fresh_len = fresh_ciphertext_bytes(params, pk.key_tag)
    body_limit = max(limits.ciphertext_body, math.ceil(b64_len(fresh_len) * 1.1) + JSON_SLACK)
    body_limit = min(body_limit, limits.ciphertext_body_ceiling)
    # a public key spans every ciphertext prime (a bootstrap preset's too, above the user levels a
    # fresh ciphertext has): one polynomial over the whole chain, plus the seed of the other
    pk_bound = serialize.ciphertext_size(params, level=len(params.moduli) - 1, size=1) + 1024
    pk_limit = max(limits.public_key, math.ceil(fresh_len * 1.1), math.ceil(pk_bound * 1.1))
    if len(pk_bytes) > pk_limit:
        from .errors import ApiError

        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"public key exceeds {pk_limit} bytes", {"limit_bytes": pk_limit})
    return ParsedKeys(
        params=params,
        params_dict=params.to_dict(),
        fingerprint=params.fingerprint,
        key_tag=bytes(pk.key_tag),
        slot_count=int(params.slot_count),
        max_level=int(params.max_level),
        galois_steps=steps,
        conjugation=conj,
        public_key=pk_bytes,
        eval_key=evk_bytes,
        evaluator=ckks.Evaluator(_context(params, contexts), evk),
        ciphertext_body_limit=body_limit,
        key_digests=digests,
        is_secure=bool(getattr(params, "is_secure", True)),
    )


def load_evaluator(params: Any, eval_key: bytes, parts: list[bytes] = (), contexts: DeviceContexts | None = None):
    """The Evaluator of a stored key: its evaluation-key blob plus every key chunk (Galois,
    relinearization and encapsulation keys), loaded onto the service's device (``contexts``;
    default: the CPU context)."""
    ckks, serialize = _ckks()
    evk = serialize.loads(eval_key, expected_type=ckks.EvaluationKeys, params=params) if eval_key else None
    for blob in parts:
        part = serialize.loads(blob, expected_type=ckks.EvaluationKeys, params=params)
        if evk is None:  # a bootstrap preset's upload without keys: the chunks hold them all
            evk = ckks.EvaluationKeys(part.params_fingerprint, part.key_tag)
        evk.galois_keys.update(part.galois_keys)
        if part.relin_key is not None:
            evk.relin_key = part.relin_key
        if part.encapsulation is not None:
            evk.encapsulation = part.encapsulation
    if evk is None:  # no key has arrived yet
        evk = ckks.EvaluationKeys(params.fingerprint, b"")
    return ckks.Evaluator(_context(params, contexts), evk)


class EvaluatorResidency:
    """The engine's evaluator LRU over the contexts' key residency (``engine.Residency``): an
    Evaluator entering the LRU under ``key_id`` puts its evaluation keys (already on the
    context's device) into its context (``CkksContext.put_key``, accounted at
    :func:`evaluator_bytes`); leaving it evicts them from the context (``evict_key``) unless the
    context already holds a newer copy under that id. Called on the event loop."""

    def admit(self, key_id: str, evaluator: Any) -> int:
        if evaluator.eval_keys is None:
            return 0
        nbytes = evaluator_bytes(evaluator)
        evaluator.context.put_key(key_id, evaluator.eval_keys, nbytes)
        return nbytes

    def release(self, key_id: str, evaluator: Any) -> None:
        if evaluator.eval_keys is not None:
            evaluator.context.keys.evict(key_id, expected=evaluator.eval_keys)


def evaluator_bytes(evaluator: Any) -> int:
    """Bytes of the key-switching keys an ``Evaluator`` holds (relinearization + Galois keys),
    the weight of an entry in the evaluation-key LRU."""
    evk = getattr(evaluator, "eval_keys", None)
    if evk is None:
        return 0
    keys = ([evk.relin_key] if evk.relin_key is not None else []) + list(evk.galois_keys.values())
    if evk.encapsulation is not None:  # bootstrap presets' sparse-secret encapsulation keys
        keys += [evk.encapsulation.dense_to_sparse, evk.encapsulation.sparse_to_dense]
    return sum(int(getattr(getattr(k, "data", None), "nbytes", 0)) for k in keys)


KEY_CHUNK_CEILING = 96 * 1024 * 1024  # [ours]: one n32768 key-switching key is ~56 MB (~82 MB in base64 + 10 %)


def key_switching_key_bytes(params: Any) -> int:
    """Serialized size in bytes of one key-switching key (a Galois, relinearization or
    encapsulation key) of ``params``: ``len(digits)`` rows over every modulus (special primes
    included), each residue in ⌈log2 q⌉ bits (the compact wire format, API.md §1), plus the frame."""
    n = int(params.poly_degree)
    rows = sum((n * int(q).bit_length() + 7) // 8 for q in params.all_moduli)
    return 64 + 1 + len(params.digits) * rows + 32 + 4


def key_chunk_limit(params: Any, default: int) -> int:
    """Body limit of one key-chunk request: ``default`` (40 MiB), or one key-switching key of
    these parameters in base64 plus 10 % when that is larger (a single Galois key at N = 2^16
    is ~43 MB, at the ``n32768`` preset ~56 MB), never above ``KEY_CHUNK_CEILING`` (96 MiB) [ours]."""
    one_key = key_switching_key_bytes(params)
    return min(max(default, math.ceil(b64_len(one_key) * 1.1) + JSON_SLACK), KEY_CHUNK_CEILING)


@dataclass
class GaloisChunk:
    blob: bytes
    galois_steps: list[int]
    conjugation: bool
    other_keys: bool = False  # a relinearization key, or a bootstrap preset's encapsulation keys
    digests: dict[str, str] | None = None  # key_digests() of the chunk's keys


def parse_galois_chunk(params: Any, key_tag: bytes, eval_key_b64: str) -> GaloisChunk:
    """Validate a chunk of evaluation keys for an existing key (same parameters and key pair):
    Galois keys, the relinearization key (any parameters: beside the public key it can pass the
    40 MiB upload body, e.g. N = 2^15 at depth 16), and for bootstrappable parameters the
    sparse-secret encapsulation keys; the steps it realises. The key's step list is merged under
    the row lock in ``repo.add_eval_key_part``.

    Raises: KeyMismatchError (another key pair), ParameterError (encapsulation keys without a
    bootstrap preset; no key at all), KeyFormatError (400 INVALID_KEY: a malformed blob)."""
    ckks, serialize = _ckks()
    from wavis.errors import KeyMismatchError, ParameterError, key_blob  # noqa: PLC0415

    with key_blob("eval_key"):  # a malformed key → 400 INVALID_KEY
        blob = serialize.b64decode(eval_key_b64)
        evk = serialize.loads(blob, expected_type=ckks.EvaluationKeys, params=params)
    if bytes(evk.key_tag) != bytes(key_tag):
        raise KeyMismatchError("these Galois keys belong to another key pair")
    if evk.encapsulation is not None and params.bootstrap_preset is None:
        raise ParameterError("a key chunk holds Galois keys or the relinearization key; encapsulation keys "
                             "come only for bootstrap presets (params.bootstrap_preset)", field="eval_key")
    if not (evk.galois_keys or evk.relin_key is not None or evk.encapsulation is not None):
        raise ParameterError("the key chunk holds no key", field="eval_key")
    steps, conj = rotation_steps(params, evk.galois_keys)  # this chunk's own steps
    return GaloisChunk(blob, steps, conj, evk.relin_key is not None or evk.encapsulation is not None,
                       key_digests(evk))


@dataclass
class CiphertextInfo:
    blob: bytes
    level: int
    scale: float
    slots: int
    bootstrap: dict[str, Any] | None = None  # the bootstrap's response fields, for operation "bootstrap"


def _info(ct: Any, blob: bytes, params: Any) -> CiphertextInfo:
    slots = getattr(ct, "slots", None) or int(params.slot_count)
    return CiphertextInfo(blob, int(ct.level), float(ct.scale), int(slots))


def parse_ciphertext(params: Any, key_tag: bytes, ciphertext_b64: str) -> CiphertextInfo:
    """Decode and fully validate an uploaded ciphertext (format, fingerprint, residues, its
    level, and that it was encrypted under this key); it is stored as sent (a version-1 blob
    rewritten in the current frame), then tagged by the route.

    Raises: KeyMismatchError (another key), CiphertextFormatError (malformed, not 2 components),
    ParameterError (400 INVALID_PARAMS) for a level above ``params.max_level`` — a bootstrap
    preset's chain has levels above the user's (``top_level``), which only the bootstrap itself
    uses; ``details.allowed_levels`` = [0, max_level] (as ``POST /compute/bootstrap`` refuses it)."""
    ckks, serialize = _ckks()
    from wavis.errors import KeyMismatchError, ParameterError  # noqa: PLC0415

    blob = serialize.b64decode(ciphertext_b64)
    ct = serialize.loads(blob, expected_type=ckks.Ciphertext, params=params)
    if bytes(ct.key_tag) != bytes(key_tag):
        raise KeyMismatchError("the ciphertext was encrypted under another key than key_id")
    if ct.size != 2:
        from wavis.errors import CiphertextFormatError  # noqa: PLC0415

        raise CiphertextFormatError("upload relinearized ciphertexts (2 components)")
    if int(ct.level) > int(params.max_level):
        raise ParameterError(f"the ciphertext is at level {ct.level}, above the key's top level {params.max_level}: "
                             f"levels 0..{params.max_level} are allowed (encrypt at the default level; the levels "
                             "above belong to the bootstrap)", field="ciphertext_b64", level=int(ct.level),
                             max_level=int(params.max_level), allowed_levels=[0, int(params.max_level)])
    if serialize.peek_version(blob) != serialize.VERSION:
        blob = serialize.dumps(ct)  # stored in the current frame (it carries the server's tag)
    return _info(ct, blob, params)


def b64encode(blob: bytes) -> str:
    _, serialize = _ckks()
    return serialize.b64encode(blob)


# Operations of API.md "Compute (CKKS)". The router knows every name; ``NOT_BUILT`` answer 501.
BINARY_OPS = {"add", "subtract", "multiply", "inner-product"}
UNARY_OPS = {"negate", "rescale", "conjugate", "sum", "add-plain", "multiply-plain", "rotate", "matmul", "poly-eval",
             "bootstrap"}
NOT_BUILT: set[str] = set()
ALL_OPERATIONS = BINARY_OPS | UNARY_OPS | NOT_BUILT
MAX_POLY_COEFFS = 65  # degree ≤ 64
MIN_RESCALED_SCALE_BITS = 10  # a rescale that would leave a smaller scale is refused (precision gone)


def _finite_vector(values: Any, name: str, slots: int):
    """float64 vector of at most ``slots`` finite values (EncodingError → 400 otherwise)."""
    import numpy as np  # noqa: PLC0415
    from wavis.errors import EncodingError  # noqa: PLC0415

    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size > slots:
        raise EncodingError(f"{name} has {arr.size} values; the key has {slots} slots",
                            field=name, count=int(arr.size), slots=slots)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise EncodingError(f"{name} must be finite (no NaN or infinity); first bad index {int(bad[0])}",
                            field=name, index=int(bad[0]))
    return arr


def _matrix(rows: Any, slots: int):
    import numpy as np  # noqa: PLC0415
    from wavis.errors import EncodingError, ShapeError  # noqa: PLC0415

    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ShapeError("matrix rows must all have the same length", row_lengths=sorted(widths)[:8])
    m = np.asarray(rows, dtype=np.float64)
    if m.shape[0] > slots or m.shape[1] > slots:
        raise ShapeError(f"matrix {m.shape[0]}×{m.shape[1]} is larger than the key's {slots} slots",
                         rows=int(m.shape[0]), cols=int(m.shape[1]), slots=slots)
    if not np.all(np.isfinite(m)):
        raise EncodingError("matrix entries must be finite (no NaN or infinity)", field="matrix")
    return m


def _unavailable_steps(evaluator: Any, steps: list[int]) -> list[int]:
    """The rotation steps neither a Galois key nor a composition of available keys realises."""
    from wavis.errors import MissingRotationKeyError  # noqa: PLC0415

    missing = []
    for st in steps:
        try:
            evaluator.rotation_plan(st)
        except MissingRotationKeyError:
            missing.append(st)
    return missing


def _require_steps(evaluator: Any, steps: list[int], what: str) -> None:
    from wavis.errors import MissingRotationKeyError  # noqa: PLC0415

    missing = _unavailable_steps(evaluator, steps)
    if missing:
        raise MissingRotationKeyError(
            f"{what} needs Galois keys for rotation steps {missing} (no key, and no composition from the "
            f"available keys); upload evaluation keys with those steps or with every power of two",
            steps=missing, required_steps=steps,
        )


def sum_steps(slots: int) -> list[int]:
    return [1 << i for i in range(max(0, slots.bit_length() - 1))]


def matmul_info(params: Any, evaluator: Any, rows: int, cols: int) -> dict[str, Any]:
    """Galois steps a rows × cols matmul needs under this key, which are missing, and
    whether the missing ones can be composed from the key's other Galois keys."""
    from wavis.ckks.keys import galois_element  # noqa: PLC0415
    from wavis.ckks.linalg import matmul_galois_steps  # noqa: PLC0415

    slots = int(params.slot_count)
    required = matmul_galois_steps(rows, cols, slots)
    keys = evaluator.eval_keys.galois_keys if evaluator.eval_keys is not None else {}
    missing = [s for s in required if galois_element(s, int(params.poly_degree)) not in keys]
    unavailable = _unavailable_steps(evaluator, missing)
    return dict(rows=rows, cols=cols, galois_steps_required=required, galois_steps_missing=missing,
                composable=not unavailable, ready=not unavailable)


MODEL_OPERATION = "model-infer"  # POST /models/{id}/infer (routes/models.py); not a /compute operation


def model_fcu(model: Any) -> int:
    """FCU of one inference: the model's operations priced by ``pricing.FCU_PER_OPERATION``."""
    from .pricing import ops_fcu  # noqa: PLC0415

    return ops_fcu(model.operation_counts())


def model_info(params: Any, evaluator: Any, model_id: str) -> dict[str, Any]:
    """What an inference of ``model_id`` needs under this key and what the key lacks:
    ``galois_steps_required`` (at the key's slot count), ``galois_steps_missing`` (neither a
    key nor a composition of the key's Galois keys realises them), ``relinearization``
    (present or not). Raises ShapeError when a block does not fit the key's slots."""
    from wavis import models  # noqa: PLC0415

    model = models.get(model_id)
    required = model.galois_steps(int(params.slot_count))
    relin = evaluator.eval_keys is not None and evaluator.eval_keys.relin_key is not None
    return dict(galois_steps_required=required, galois_steps_missing=_unavailable_steps(evaluator, required),
                relinearization=relin)


def _infer(params: Any, evaluator: Any, ct: Any, model_id: str) -> Any:
    from wavis import models  # noqa: PLC0415

    model = models.get(model_id)
    _require_steps(evaluator, model.galois_steps(int(params.slot_count)), f"model {model_id}")
    return model.infer(evaluator, ct, bootstrapper=lambda rng: bootstrapper(params, evaluator, None, rng))


def compute(operation: str, params: Any, evaluator: Any, blobs: list[bytes],
            args: dict[str, Any] | None = None) -> CiphertextInfo:
    """Run one CKKS operation on serialized operands; ``args`` holds the operation's own
    request fields (plain_operand, steps, matrix, polynomial_coeffs, basis, interval; for
    ``model-infer`` the model_id)."""
    import numpy as np  # noqa: PLC0415

    ckks, serialize = _ckks()
    args = args or {}
    cts = [serialize.loads(b, expected_type=ckks.Ciphertext, params=params) for b in blobs]
    # overflowing operands are detected and refused (EncodingError); NumPy need not warn on the way
    with np.errstate(over="ignore", invalid="ignore"):
        if operation == "bootstrap":
            bs = bootstrapper(params, evaluator, args.get("slots"), args.get("input_range"))
            iterations = 1 if args.get("iterations") is None else args["iterations"]
            out = bs.bootstrap(cts[0], iterations=iterations)
        elif operation == MODEL_OPERATION:
            out = _infer(params, evaluator, cts[0], args["model_id"])
        else:
            out = _dispatch(operation, params, evaluator, cts, args)
    blob = serialize.dumps(out)
    info = _info(out, blob, params)
    if operation == "bootstrap":
        info.bootstrap = bootstrap_fields(bs, iterations)
    return info


_BOOTSTRAPPERS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_BOOTSTRAPPERS_LOCK = threading.Lock()


def bootstrapper(params: Any, evaluator: Any, slots: int | None = None, input_range: float | None = None):
    """The key's Bootstrapper for (slots, input_range), cached with its Evaluator (its encoded
    DFT diagonals are reused). A key without a bootstrap preset → MissingKeyError naming
    ``bootstrap_preset``; keys lacking bootstrapping keys → MissingKeyError with
    ``details['missing']`` (400 MISSING_KEY)."""
    from wavis.ckks.bootstrap import Bootstrapper  # noqa: PLC0415
    from wavis.ckks.presets import BOOTSTRAP_PRESETS  # noqa: PLC0415
    from wavis.errors import MissingKeyError  # noqa: PLC0415

    if params.bootstrap_preset is None:
        raise MissingKeyError(
            "this key has no bootstrapping keys: its parameters name no bootstrap_preset; create a key with "
            f"params.bootstrap_preset (one of {sorted(BOOTSTRAP_PRESETS)}) and bootstrappable keys",
            missing=["bootstrap_preset"], presets=sorted(BOOTSTRAP_PRESETS))
    key = (slots, 1.0 if input_range is None else float(input_range))
    with _BOOTSTRAPPERS_LOCK:
        per_key = _BOOTSTRAPPERS.setdefault(evaluator, {})
        bs = per_key.get(key)
        if bs is None:
            bs = Bootstrapper(params, evaluator.eval_keys, slots=slots, input_range=key[1], evaluator=evaluator)
            per_key[key] = bs
    return bs


def bootstrap_fields(bs: Any, iterations: int = 1) -> dict[str, Any]:
    """The compute response's bootstrap fields (docs/service.md): ``precision_bits_expected`` is
    the preset's measured mean precision for that number of iterations (META-BTS: 2)."""
    pre = bs.preset
    return dict(bootstrap_applied=True, bootstrap_effective_degree=int(bs.effective_degree),
                bootstrap_degraded=False,
                precision_bits_expected=pre.precision_bits_meta if iterations == 2 else pre.precision_bits)


def compute_many(operation: str, params: Any, evaluator: Any,
                 jobs: list[tuple[list[bytes], dict[str, Any] | None]]) -> list[Any]:
    """One batch of jobs sharing key, operation, level and parameters: per job a
    ``CiphertextInfo`` or the exception it raised (a failing job fails alone).

    ``multiply`` and ``rotate`` (equal steps: the batch key's parameter digest) run as the
    evaluator's batched operations — each stage one batched backend call over the whole batch
    (``Evaluator.multiply_many``, ``rotate_batch``: ``key_switch_ext_batch``,
    ``automorphism_batch``, one ``mod_down_ntt``), bit for bit the one-by-one results. The
    operands of every job are parsed first (a malformed one fails its job alone); if the
    batched call raises, every job runs alone, so the error lands on the job at fault only.
    Other operations run one after another on this thread, sharing the parsed evaluator."""
    if operation in BATCHED and len(jobs) > 1:
        return _compute_batched(operation, params, evaluator, jobs)
    out: list[Any] = []
    for blobs, args in jobs:
        try:
            out.append(compute(operation, params, evaluator, blobs, args))
        except Exception as exc:  # noqa: BLE001 - reported per job
            out.append(exc)
    return out


BATCHED = ("multiply", "rotate")


def _compute_batched(operation: str, params: Any, evaluator: Any,
                     jobs: list[tuple[list[bytes], dict[str, Any] | None]]) -> list[Any]:
    import numpy as np  # noqa: PLC0415

    ckks, serialize = _ckks()
    out: list[Any] = [None] * len(jobs)
    ready: list[tuple[int, list[Any]]] = []
    for i, (blobs, _) in enumerate(jobs):
        try:
            ready.append((i, [serialize.loads(b, expected_type=ckks.Ciphertext, params=params) for b in blobs]))
        except Exception as exc:  # noqa: BLE001 - this job's operand: it fails alone
            out[i] = exc
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if operation == "multiply":
                results = evaluator.multiply_many([(cts[0], cts[1]) for _, cts in ready])
            else:
                results = evaluator.rotate_batch([cts[0] for _, cts in ready], int((jobs[0][1] or {})["steps"]))
    except Exception:  # noqa: BLE001 - one job at fault (or a shared cause): each runs alone
        for i, _ in ready:
            try:
                out[i] = compute(operation, params, evaluator, jobs[i][0], jobs[i][1])
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
        return out
    for (i, _), ct in zip(ready, results):
        blob = serialize.dumps(ct)
        out[i] = _info(ct, blob, params)
    return out


def _dispatch(operation: str, params: Any, evaluator: Any, cts: list[Any], args: dict[str, Any]) -> Any:
    from wavis.errors import ParameterError  # noqa: PLC0415

    ev = evaluator
    slots = int(params.slot_count)
    if operation == "add":
        out = ev.add(cts[0], cts[1])
    elif operation == "subtract":
        out = ev.subtract(cts[0], cts[1])
    elif operation == "multiply":
        out = ev.multiply(cts[0], cts[1])
    elif operation == "negate":
        out = ev.negate(cts[0])
    elif operation == "add-plain":
        out = ev.add_plain(cts[0], _finite_vector(args["plain_operand"], "plain_operand", slots))
    elif operation == "multiply-plain":
        out = ev.multiply_plain(cts[0], _finite_vector(args["plain_operand"], "plain_operand", slots))
    elif operation == "rescale":
        ct = cts[0]
        if ct.level == 0:
            from wavis.errors import DepthExhaustedError  # noqa: PLC0415

            raise DepthExhaustedError("cannot rescale a ciphertext at level 0", level=0)
        after = ct.scale / float(params.moduli[ct.level])
        if after < 2.0 ** MIN_RESCALED_SCALE_BITS:
            raise ParameterError(
                f"rescaling would leave scale 2^{math.log2(after):.1f}, below 2^{MIN_RESCALED_SCALE_BITS}; "
                "this ciphertext is already rescaled (multiply rescales by itself)",
                scale_bits=round(math.log2(ct.scale), 6), result_scale_bits=round(math.log2(after), 6),
                min_scale_bits=MIN_RESCALED_SCALE_BITS,
            )
        out = ev.rescale(ct)
    elif operation == "rotate":
        out = ev.rotate(cts[0], int(args["steps"]))
    elif operation == "conjugate":
        out = ev.conjugate(cts[0])
    elif operation == "sum":
        _require_steps(ev, sum_steps(slots), "sum")
        out = ev.sum_slots(cts[0])
    elif operation == "inner-product":
        _require_steps(ev, sum_steps(slots), "inner-product")
        out = ev.inner_product(cts[0], cts[1])
    elif operation == "matmul":
        from wavis.ckks.linalg import matmul  # noqa: PLC0415

        m = _matrix(args["matrix"], slots)  # ShapeError / EncodingError before any key check
        info = matmul_info(params, ev, int(m.shape[0]), int(m.shape[1]))
        if not info["ready"]:
            _require_steps(ev, info["galois_steps_missing"], f"a {m.shape[0]}×{m.shape[1]} matmul")
        out = matmul(ev, m, cts[0])
    elif operation == "poly-eval":
        from wavis.ckks.polynomial import check_interval, evaluate_polynomial  # noqa: PLC0415

        coeffs = args["polynomial_coeffs"]
        if len(coeffs) > MAX_POLY_COEFFS:
            raise ParameterError(f"at most {MAX_POLY_COEFFS} coefficients (degree 64), got {len(coeffs)}",
                                 field="polynomial_coeffs", count=len(coeffs))
        coeffs = _finite_vector(coeffs, "polynomial_coeffs", MAX_POLY_COEFFS)
        basis = args.get("basis") or "power"
        interval = args.get("interval")
        if interval is not None and basis != "chebyshev":
            raise ParameterError("interval applies to the chebyshev basis only", field="interval")
        if interval is not None:
            interval = check_interval(interval)  # the library's rule (finite, a < b, b − a finite)
        out = evaluate_polynomial(ev, cts[0], coeffs, basis=basis,
                                  interval=tuple(interval) if interval is not None else (-1.0, 1.0))
    else:  # pragma: no cover - the route only calls built operations
        raise NotImplementedError(operation)
    return out
