"""CKKS work the service does, as plain synchronous functions run on the compute engine's
threads (never on the event loop). Only this module touches ``wavis.ckks`` / ``wavis.serialize``;
it imports them lazily so the service starts (health, auth, onboarding) without them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .settings import Limits

JSON_SLACK = 1024  # bytes of JSON around the base64 in an upload body


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _ckks():
    from wavis import ckks, serialize  # noqa: PLC0415 - deliberate lazy import

    return ckks, serialize


def build_params(params: dict[str, Any]):
    ckks, _ = _ckks()
    return ckks.CkksParameters.from_dict(params)


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


def fresh_ciphertext_bytes(params: Any, key_tag: bytes) -> int:
    """Serialized size of a fresh (top-level, 2-component) ciphertext under these parameters,
    measured with the wire format itself (a public-key encryption has no seeded component)."""
    import numpy as np  # noqa: PLC0415

    ckks, serialize = _ckks()
    rows = int(params.max_level) + 1
    zero = ckks.Ciphertext(np.zeros((2, rows, int(params.poly_degree)), dtype=np.uint64), int(params.max_level),
                           float(params.scale), params.fingerprint, key_tag)
    return len(serialize.dumps(zero))


def parse_key_upload(params_in: dict[str, Any], public_key_b64: str, eval_key_b64: str, limits: Limits) -> ParsedKeys:
    """Rebuild the parameters, parse and validate both blobs against them, and measure a fresh
    ciphertext (its size sets the upload limit for this key: API.md "Sizes")."""
    ckks, serialize = _ckks()
    params = ckks.CkksParameters.from_dict(params_in)
    pk_bytes = serialize.b64decode(public_key_b64)
    evk_bytes = serialize.b64decode(eval_key_b64)
    pk = serialize.loads(pk_bytes, expected_type=ckks.PublicKey, params=params)
    evk = serialize.loads(evk_bytes, expected_type=ckks.EvaluationKeys, params=params)
    from wavis.ckks.keys import key_tag_of  # noqa: PLC0415
    from wavis.errors import KeyMismatchError  # noqa: PLC0415

    if key_tag_of(pk.data) != pk.key_tag:
        raise KeyMismatchError("the public key's key tag does not match its contents")
    if evk.key_tag != pk.key_tag:
        raise KeyMismatchError("the evaluation keys belong to another key pair than the public key")
    if evk.relin_key is None:
        from wavis.errors import MissingKeyError  # noqa: PLC0415

        raise MissingKeyError("the evaluation keys lack the relinearization key")
    steps, conj = rotation_steps(params, evk.galois_keys)
    fresh_len = fresh_ciphertext_bytes(params, pk.key_tag)
    body_limit = max(limits.ciphertext_body, math.ceil(b64_len(fresh_len) * 1.1) + JSON_SLACK)
    body_limit = min(body_limit, limits.ciphertext_body_ceiling)
    pk_limit = max(limits.public_key, math.ceil(fresh_len * 1.1))
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
        evaluator=ckks.Evaluator(params, evk),
        ciphertext_body_limit=body_limit,
        is_secure=bool(getattr(params, "is_secure", True)),
    )


def load_evaluator(params: Any, eval_key: bytes):
    ckks, serialize = _ckks()
    evk = serialize.loads(eval_key, expected_type=ckks.EvaluationKeys, params=params)
    return ckks.Evaluator(params, evk)


@dataclass
class CiphertextInfo:
    blob: bytes
    level: int
    scale: float
    slots: int


def _info(ct: Any, blob: bytes, params: Any) -> CiphertextInfo:
    slots = getattr(ct, "slots", None) or int(params.slot_count)
    return CiphertextInfo(blob, int(ct.level), float(ct.scale), int(slots))


def parse_ciphertext(params: Any, key_tag: bytes, ciphertext_b64: str) -> CiphertextInfo:
    """Decode and fully validate an uploaded ciphertext (format, fingerprint, residues, and
    that it was encrypted under this key); it is stored as sent."""
    ckks, serialize = _ckks()
    from wavis.errors import KeyMismatchError  # noqa: PLC0415

    blob = serialize.b64decode(ciphertext_b64)
    ct = serialize.loads(blob, expected_type=ckks.Ciphertext, params=params)
    if bytes(ct.key_tag) != bytes(key_tag):
        raise KeyMismatchError("the ciphertext was encrypted under another key than key_id")
    if ct.size != 2:
        from wavis.errors import CiphertextFormatError  # noqa: PLC0415

        raise CiphertextFormatError("upload relinearized ciphertexts (2 components)")
    return _info(ct, blob, params)


def b64encode(blob: bytes) -> str:
    _, serialize = _ckks()
    return serialize.b64encode(blob)


# Operations built so far. The router knows every operation of API.md; the rest answer 501.
BINARY_OPS = {"add", "multiply"}
UNARY_OPS: set[str] = set()
ALL_OPERATIONS = {
    "add", "subtract", "multiply", "add-plain", "multiply-plain", "negate", "rescale", "rotate",
    "conjugate", "matmul", "poly-eval", "bootstrap", "sum", "inner-product",
}
COST_UNITS = {
    "add": 1, "subtract": 1, "negate": 1, "rescale": 1, "add-plain": 1, "conjugate": 1,
    "multiply-plain": 2, "multiply": 5, "rotate": 5, "sum": 10, "inner-product": 10, "poly-eval": 10,
    "matmul": 20, "bootstrap": 50,
}
JPY_PER_UNIT = 0.10


def compute(operation: str, params: Any, evaluator: Any, blobs: list[bytes]) -> CiphertextInfo:
    ckks, serialize = _ckks()
    cts = [serialize.loads(b, expected_type=ckks.Ciphertext, params=params) for b in blobs]
    if operation == "add":
        out = evaluator.add(cts[0], cts[1])
    elif operation == "multiply":
        out = evaluator.multiply(cts[0], cts[1])
    else:  # pragma: no cover - the route only calls built operations
        raise NotImplementedError(operation)
    blob = serialize.dumps(out)
    return _info(out, blob, params)
