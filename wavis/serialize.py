"""Versioned binary wire format for CKKS parameters, keys and ciphertexts (no pickle).

Layout (little endian)::

    magic  b"WAVS"      4 bytes
    version u16         = 1
    kind    u8          1 ciphertext, 2 public key, 3 evaluation keys, 4 secret key, 5 parameters
    flags   u8          0
    fingerprint 16 B    parameter fingerprint (zeros for kind 5)
    key_tag     16 B    key-pair identifier (zeros for kind 5)
    body_len u64        length of the body in bytes
    body                kind-specific (below)
    digest  16 B        BLAKE2b-128 of everything before it (detects corruption)

Bodies (compact, API.md "Sizes"): every residue mod q is stored in ⌈log2 q⌉ bits
(``wavis.backend.cpu.pack_bits``, little-endian bit order), row by row; the uniform component of a
public or key-switching key is replaced by the 32-byte seed it was expanded from
(``wavis.ring.sampling.expand_uniform``), which halves keys.
ciphertext ``level u16, size u8, 0 u8, scale f64, N u32, rows u16`` then ``size·rows`` packed
rows; public key ``rows u16, N u32, seeded u8`` then the rows of b, then the seed (or the rows
of a); evaluation keys ``has_relin u8, n_galois u32, dnum u16, rows u16, N u32``, the
relinearization key, then per Galois key ``elt u32`` and the key, each key being
``seeded u8``, the dnum·rows packed rows of the b_j, then the seed (or the a_j rows);
secret key ``N u32`` then N int8 in {−1,0,1}; parameters: UTF-8 JSON of
``CkksParameters.to_dict()``.
Loading checks the magic, version, kind, lengths, digest, the fingerprint against the
expected parameters, every shape, and that every residue is below its modulus.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from typing import Any

import numpy as np

from .ckks.params import CkksParameters, params_for
from .ckks.structures import Ciphertext, EvaluationKeys, GaloisKey, PublicKey, RelinearizationKey, SecretKey
from .errors import CiphertextFormatError, KeyMismatchError, ParameterError

MAGIC = b"WAVS"
VERSION = 1
_HEAD = struct.Struct("<4sHBB16s16sQ")
_DIGEST = 16
KIND_CIPHERTEXT, KIND_PUBLIC_KEY, KIND_EVAL_KEYS, KIND_SECRET_KEY, KIND_PARAMS = 1, 2, 3, 4, 5
_KIND_OF = {Ciphertext: KIND_CIPHERTEXT, PublicKey: KIND_PUBLIC_KEY, EvaluationKeys: KIND_EVAL_KEYS,
            SecretKey: KIND_SECRET_KEY, CkksParameters: KIND_PARAMS}
_NAMES = {v: k.__name__ for k, v in _KIND_OF.items()}


def _np(a) -> np.ndarray:
    if hasattr(a, "get"):  # CuPy
        a = a.get()
    return np.ascontiguousarray(a, dtype=np.uint64)


def _frame(kind: int, fingerprint: str | None, key_tag: bytes | None, body: bytes) -> bytes:
    fp = bytes.fromhex(fingerprint) if fingerprint else bytes(16)
    head = _HEAD.pack(MAGIC, VERSION, kind, 0, fp, key_tag or bytes(16), len(body))
    digest = hashlib.blake2b(head + body, digest_size=_DIGEST).digest()
    return head + body + digest


def dumps(obj: Any, params: CkksParameters | None = None) -> bytes:
    """Serialize a Ciphertext, PublicKey, EvaluationKeys, SecretKey or CkksParameters.

    ``params``: the object's parameters (the compact format packs each residue in ⌈log2 q_i⌉
    bits); by default the parameters this process made with the object's fingerprint.

    Raises: ParameterError for any other type, a missing ``params``, or ``params`` whose
    fingerprint differs from the object's.
    """
    fp = getattr(obj, "params_fingerprint", None)
    if params is not None and fp is not None and fp != params.fingerprint:
        raise ParameterError("the object belongs to other parameters than params")
    if isinstance(obj, CkksParameters):
        return _frame(KIND_PARAMS, None, None, json.dumps(obj.to_dict(), sort_keys=True).encode())
    if isinstance(obj, (Ciphertext, PublicKey, EvaluationKeys)) and params is None:
        params = params_for(fp)
        if params is None:
            raise ParameterError(f"serializing a {type(obj).__name__} needs its parameters (params=…)")
    if isinstance(obj, Ciphertext):
        d = _np(obj.data)
        body = struct.pack("<HBBdIH", obj.level, d.shape[0], 0, obj.scale, d.shape[2], d.shape[1])
        return _frame(KIND_CIPHERTEXT, obj.params_fingerprint, obj.key_tag,
                      body + _pack_rows(d, params.moduli[: d.shape[1]]))
    if isinstance(obj, PublicKey):
        d = _np(obj.data)
        return _frame(KIND_PUBLIC_KEY, obj.params_fingerprint, obj.key_tag,
                      struct.pack("<HI", d.shape[1], d.shape[2]) + _pack_key(d, obj.a_seed, params.moduli, 0))
    if isinstance(obj, EvaluationKeys):
        if obj.relin_key is None and not obj.galois_keys:
            raise ParameterError("EvaluationKeys with neither a relinearization nor a Galois key")
        parts = []
        ref = obj.relin_key.data if obj.relin_key is not None else next(iter(obj.galois_keys.values())).data
        shape = _np(ref).shape
        parts.append(struct.pack("<BIHHI", obj.relin_key is not None, len(obj.galois_keys), shape[0], shape[2], shape[3]))
        if obj.relin_key is not None:
            parts.append(_pack_key(obj.relin_key.data, obj.relin_key.a_seed, params.all_moduli, 1))
        for elt in sorted(obj.galois_keys):
            parts.append(struct.pack("<I", elt))
            gk = obj.galois_keys[elt]
            parts.append(_pack_key(gk.data, gk.a_seed, params.all_moduli, 1))
        return _frame(KIND_EVAL_KEYS, obj.params_fingerprint, obj.key_tag, b"".join(parts))
    if isinstance(obj, SecretKey):
        c = np.asarray(obj.coeffs, dtype=np.int8)
        return _frame(KIND_SECRET_KEY, obj.params_fingerprint, obj.key_tag, struct.pack("<I", c.size) + c.tobytes())
    raise ParameterError(f"cannot serialize {type(obj).__name__}")


def _bits(moduli) -> list[int]:
    return [int(q).bit_length() for q in moduli]


def _pack_rows(a: np.ndarray, moduli) -> bytes:
    """a (..., rows, N): every row r packed in bit_length(moduli[r]) bits."""
    from .backend.cpu import pack_bits

    rows = a.shape[-2]
    flat = a.reshape(-1, rows, a.shape[-1])
    bits = _bits(moduli)
    return b"".join(pack_bits(np.ascontiguousarray(flat[i, r]), bits[r])
                    for i in range(flat.shape[0]) for r in range(rows))


def _pack_key(data: np.ndarray, a_seed: bytes | None, moduli, a_axis: int) -> bytes:
    """A key array whose uniform components lie at index 1 of ``a_axis``; stored as b rows
    then the seed (or the a rows when no seed is known)."""
    d = _np(data)
    b = np.take(d, 0, axis=a_axis)
    if a_seed is not None:
        return b"\x01" + _pack_rows(b, moduli) + bytes(a_seed)
    return b"\x00" + _pack_rows(b, moduli) + _pack_rows(np.take(d, 1, axis=a_axis), moduli)


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.pos = memoryview(body), 0

    def unpack(self, fmt: str) -> tuple:
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > len(self.body):
            raise CiphertextFormatError("blob is truncated")
        out = s.unpack_from(self.body, self.pos)
        self.pos += s.size
        return out

    def array(self, shape: tuple[int, ...], dtype=np.uint64) -> np.ndarray:
        count = int(np.prod(shape))
        nbytes = count * np.dtype(dtype).itemsize
        if self.pos + nbytes > len(self.body):
            raise CiphertextFormatError("blob is truncated")
        a = np.frombuffer(self.body, dtype=dtype, count=count, offset=self.pos).reshape(shape).copy()
        self.pos += nbytes
        return a

    def packed(self, count: int, moduli, n: int) -> np.ndarray:
        """(count, len(moduli), n) residues packed row by row."""
        from .backend.cpu import unpack_bits

        bits = _bits(moduli)
        out = np.empty((count, len(moduli), n), dtype=np.uint64)
        for i in range(count):
            for r, b in enumerate(bits):
                nbytes = (n * b + 7) // 8
                if self.pos + nbytes > len(self.body):
                    raise CiphertextFormatError("blob is truncated")
                out[i, r] = unpack_bits(bytes(self.body[self.pos:self.pos + nbytes]), n, b)
                self.pos += nbytes
        _check_residues(out, list(moduli))
        return out

    def raw(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.body):
            raise CiphertextFormatError("blob is truncated")
        out = bytes(self.body[self.pos:self.pos + nbytes])
        self.pos += nbytes
        return out

    def key(self, count: int, moduli, n: int) -> tuple[np.ndarray, bytes | None]:
        """A packed key: (count, 2, rows, n) with the a part expanded from its seed if seeded."""
        from .ring.sampling import expand_uniform

        (seeded,) = self.unpack("B")
        if seeded not in (0, 1):
            raise CiphertextFormatError("invalid key encoding flag")
        b = self.packed(count, moduli, n)
        if seeded:
            seed = self.raw(32)
            a = expand_uniform(seed, moduli, n, count)
        else:
            seed, a = None, self.packed(count, moduli, n)
        return np.stack([b, a], axis=1), seed

    def done(self) -> None:
        if self.pos != len(self.body):
            raise CiphertextFormatError("blob has trailing bytes")


def _check_residues(a: np.ndarray, moduli: list[int]) -> None:
    q = np.asarray(moduli, dtype=np.uint64).reshape((1,) * (a.ndim - 2) + (-1, 1))
    if np.any(a >= q):
        raise CiphertextFormatError("a residue is not below its modulus (corrupt or foreign data)")


def loads(blob: bytes, expected_type: type | None = None, params: CkksParameters | None = None, backend=None) -> Any:
    """Parse a blob made by :func:`dumps`.

    Args:
        blob: the bytes.
        expected_type: e.g. ``Ciphertext``; another kind raises CiphertextFormatError.
        params: needed for everything but CkksParameters: the fingerprint must match.

    Raises:
        CiphertextFormatError: not a WAVIS blob, other version, truncated, trailing bytes,
            corrupted (digest), wrong kind, bad shapes or residues out of range.
        KeyMismatchError: the blob belongs to other parameters.
        ParameterError: ``params`` missing where needed.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextFormatError("blob must be bytes")
    blob = bytes(blob)
    if len(blob) < _HEAD.size + _DIGEST:
        raise CiphertextFormatError("blob is truncated (shorter than the header)")
    magic, version, kind, _flags, fp, key_tag, body_len = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise CiphertextFormatError("not a WAVIS object (bad magic)")
    if version != VERSION:
        raise CiphertextFormatError(f"unsupported wire-format version {version} (this library reads {VERSION})")
    if kind not in _NAMES:
        raise CiphertextFormatError(f"unknown object kind {kind}")
    if expected_type is not None and _KIND_OF.get(expected_type) != kind:
        raise CiphertextFormatError(f"expected a {expected_type.__name__}, got a {_NAMES[kind]}")
    end = _HEAD.size + body_len
    if len(blob) < end + _DIGEST:
        raise CiphertextFormatError("blob is truncated")
    if len(blob) > end + _DIGEST:
        raise CiphertextFormatError("blob has trailing bytes")
    if hashlib.blake2b(blob[:end], digest_size=_DIGEST).digest() != blob[end:]:
        raise CiphertextFormatError("blob is corrupted (digest mismatch)")
    body = blob[_HEAD.size:end]
    if kind == KIND_PARAMS:
        try:
            return CkksParameters.from_dict(json.loads(body.decode()))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CiphertextFormatError(f"parameters are not valid JSON: {exc}") from exc
    if params is None:
        raise ParameterError(f"loading a {_NAMES[kind]} needs the parameters")
    if fp.hex() != params.fingerprint:
        raise KeyMismatchError(f"{_NAMES[kind]} belongs to other parameters", expected=params.fingerprint, got=fp.hex())
    r = _Reader(body)
    n = params.poly_degree
    if kind == KIND_CIPHERTEXT:
        level, size, _, scale, nn, rows = r.unpack("HBBdIH")
        if nn != n or rows != level + 1 or not 0 <= level <= params.top_level or size not in (2, 3):
            raise CiphertextFormatError(f"ciphertext header does not fit the parameters (N={nn}, level={level}, size={size})")
        if not (np.isfinite(scale) and 1.0 <= scale < 2.0**1000):  # the Evaluator's structural bound
            raise CiphertextFormatError(f"ciphertext scale {scale} is invalid (must be in [1, 2^1000))")
        data = r.packed(size, params.moduli[:rows], n)
        r.done()
        return Ciphertext(_to_backend(data, params, backend), level, float(scale), params.fingerprint, key_tag)
    if kind == KIND_PUBLIC_KEY:
        rows, nn = r.unpack("HI")
        if nn != n or rows != params.top_level + 1:
            raise CiphertextFormatError("public key shape does not fit the parameters")
        data, seed = r.key(1, params.moduli, n)
        r.done()
        return PublicKey(_to_backend(np.ascontiguousarray(data[0]), params, backend), params.fingerprint, key_tag,
                         a_seed=seed)
    if kind == KIND_EVAL_KEYS:
        has_relin, n_gal, dnum, rows, nn = r.unpack("BIHHI")
        if nn != n or dnum != len(params.digits) or rows != len(params.all_moduli) or n_gal > 4 * n:
            raise CiphertextFormatError("evaluation key shape does not fit the parameters")
        allq = list(params.all_moduli)
        relin = None
        if has_relin:
            d, seed = r.key(dnum, allq, n)
            relin = RelinearizationKey(_to_backend(d, params, backend), a_seed=seed)
        gks: dict[int, GaloisKey] = {}
        for _ in range(n_gal):
            (elt,) = r.unpack("I")
            if elt % 2 == 0 or not 0 < elt < 2 * n or elt in gks:
                raise CiphertextFormatError(f"invalid Galois element {elt}")
            d, seed = r.key(dnum, allq, n)
            gks[elt] = GaloisKey(_to_backend(d, params, backend), a_seed=seed, galois_elt=elt)
        r.done()
        return EvaluationKeys(params.fingerprint, key_tag, relin, gks)
    # secret key
    (nn,) = r.unpack("I")
    if nn != n:
        raise CiphertextFormatError("secret key size does not fit the parameters")
    coeffs = r.array((n,), dtype=np.int8).astype(np.int64)
    r.done()
    if np.any(np.abs(coeffs) > 1):
        raise CiphertextFormatError("secret key is not ternary")
    from .backend import host as get_backend

    ctx = (backend or get_backend()).ring_context(n, params.all_moduli)
    idx = list(range(len(params.all_moduli)))
    data = ctx.from_signed(coeffs, idx)
    ctx.ntt(data, idx)
    return SecretKey(coeffs, data, params.fingerprint, key_tag)


def _to_backend(a: np.ndarray, params: CkksParameters, backend) -> Any:
    if backend is None or backend.name == "cpu":
        return a
    return backend.ring_context(params.poly_degree, params.all_moduli).asarray(a)


def b64encode(blob: bytes) -> str:
    """Standard base64 (RFC 4648 §4) text of a blob, for JSON."""
    return base64.b64encode(blob).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64 decoding. Raises CiphertextFormatError on bad characters or padding."""
    if not isinstance(text, str):
        raise CiphertextFormatError("base64 text must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CiphertextFormatError(f"invalid base64: {exc}") from exc
