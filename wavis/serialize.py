"""CKKS payload codec of the WAVIS wire frame (``wavis.frame``): parameters, keys and
ciphertexts (no pickle).

Frame (``wavis.frame``, version 2): scheme 1 (CKKS); kind 1 ciphertext, 2 public key,
3 evaluation keys, 4 secret key, 5 parameters; ``params`` the parameter fingerprint and
``key_id`` the key tag (zeros for parameters); a keyed-tag slot (set by the service:
:func:`wavis.frame.sign`); a BLAKE2b-128 digest.

Payloads (compact, API.md "Sizes"): residues are bit-packed row by row
(``wavis.backend.cpu.pack_bits``, little-endian bit order); each packed block starts with one u8
bit width per row (the bit length of the row's largest residue, at most ⌈log2 q_i⌉, checked on
load), so writing needs no parameters and no process-wide registry. The uniform component of a
public or key-switching key is replaced by the 32-byte seed it was expanded from
(``wavis.ring.sampling.expand_uniform``), which halves keys.
ciphertext ``level u16, size u8, 0 u8, scale f64, N u32, rows u16`` then ``size·rows`` packed
rows; public key ``rows u16, N u32, seeded u8`` then the rows of b, then the seed (or the rows
of a); evaluation keys ``flags u8 (bit 0: relinearization key, bit 1: encapsulation keys),
n_galois u32, dnum u16, rows u16, N u32``, the relinearization key, then per Galois key
``elt u32`` and the key, then (bit 1) ``h u32``, the s→s' key (1 digit, rows q_0 and p_0)
and the s'→s key (dnum digits, every row); each key being
``seeded u8``, the dnum·rows packed rows of the b_j, then the seed (or the a_j rows);
secret key ``N u32`` then N int8 in {−1,0,1}; parameters: UTF-8 JSON of
``CkksParameters.to_dict()``.

Version 1 (``b"WAVS"`` v1: header ``magic, version, kind, flags, fingerprint, key_tag,
body_len``, the same payloads with every row packed at ⌈log2 q_i⌉ bits and no width bytes,
then the digest) is still read, so keys stored before version 2 keep loading.
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

from . import frame
from .ckks.params import CkksParameters
from .ckks.structures import (
    Ciphertext, EncapsulationKeys, EvaluationKeys, GaloisKey, KeySwitchingKey, PublicKey, RelinearizationKey,
    SecretKey,
)
from .errors import CiphertextFormatError, KeyMismatchError, ParameterError

MAGIC = frame.MAGIC
VERSION = frame.VERSION
_V1_HEAD = struct.Struct("<4sHBB16s16sQ")
_DIGEST = 16
KIND_CIPHERTEXT, KIND_PUBLIC_KEY, KIND_EVAL_KEYS, KIND_SECRET_KEY, KIND_PARAMS = 1, 2, 3, 4, 5
_KIND_OF = {Ciphertext: KIND_CIPHERTEXT, PublicKey: KIND_PUBLIC_KEY, EvaluationKeys: KIND_EVAL_KEYS,
            SecretKey: KIND_SECRET_KEY, CkksParameters: KIND_PARAMS}
_NAMES = {v: k.__name__ for k, v in _KIND_OF.items()}
_CT_HEAD = struct.Struct("<HBBdIH")


def _np(a) -> np.ndarray:
    if hasattr(a, "get"):  # CuPy
        a = a.get()
    return np.ascontiguousarray(a, dtype=np.uint64)


def _frame(kind: int, fingerprint: str | None, key_tag: bytes | None, body: bytes) -> bytes:
    fp = bytes.fromhex(fingerprint) if fingerprint else bytes(16)
    return frame.pack(frame.SCHEME_CKKS, kind, fp, key_tag, body)


def dumps(obj: Any, params: CkksParameters | None = None) -> bytes:
    """Serialize a Ciphertext, PublicKey, EvaluationKeys, SecretKey or CkksParameters into a
    version-2 frame (untagged).

    ``params`` is optional: when given, the object's fingerprint must match it.

    Raises: ParameterError for any other type, or ``params`` whose fingerprint differs from
    the object's.
    """
    fp = getattr(obj, "params_fingerprint", None)
    if params is not None and fp is not None and fp != params.fingerprint:
        raise ParameterError("the object belongs to other parameters than params")
    if isinstance(obj, CkksParameters):
        return _frame(KIND_PARAMS, None, None, json.dumps(obj.to_dict(), sort_keys=True).encode())
    if isinstance(obj, Ciphertext):
        d = _np(obj.data)
        body = _CT_HEAD.pack(obj.level, d.shape[0], 0, obj.scale, d.shape[2], d.shape[1])
        return _frame(KIND_CIPHERTEXT, obj.params_fingerprint, obj.key_tag, body + _pack_rows(d))
    if isinstance(obj, PublicKey):
        d = _np(obj.data)
        return _frame(KIND_PUBLIC_KEY, obj.params_fingerprint, obj.key_tag,
                      struct.pack("<HI", d.shape[1], d.shape[2]) + _pack_key(d, obj.a_seed, 0))
    if isinstance(obj, EvaluationKeys):
        if obj.relin_key is None and not obj.galois_keys and obj.encapsulation is None:
            raise ParameterError("EvaluationKeys with neither a relinearization, a Galois nor an encapsulation key")
        parts = []
        ref = (obj.relin_key.data if obj.relin_key is not None else
               next(iter(obj.galois_keys.values())).data if obj.galois_keys else obj.encapsulation.sparse_to_dense.data)
        shape = _np(ref).shape
        flags = (1 if obj.relin_key is not None else 0) | (2 if obj.encapsulation is not None else 0)
        parts.append(struct.pack("<BIHHI", flags, len(obj.galois_keys), shape[0], shape[2], shape[3]))
        if obj.relin_key is not None:
            parts.append(_pack_key(obj.relin_key.data, obj.relin_key.a_seed, 1))
        for elt in sorted(obj.galois_keys):
            parts.append(struct.pack("<I", elt))
            gk = obj.galois_keys[elt]
            parts.append(_pack_key(canonical_key_data(gk, b_only=gk.a_seed is not None), gk.a_seed, 1))
        if obj.encapsulation is not None:
            enc = obj.encapsulation
            parts.append(struct.pack("<I", enc.hamming_weight))
            parts.append(_pack_key(enc.dense_to_sparse.data, enc.dense_to_sparse.a_seed, 1))
            parts.append(_pack_key(enc.sparse_to_dense.data, enc.sparse_to_dense.a_seed, 1))
        return _frame(KIND_EVAL_KEYS, obj.params_fingerprint, obj.key_tag, b"".join(parts))
    if isinstance(obj, SecretKey):
        c = np.asarray(obj.coeffs, dtype=np.int8)
        return _frame(KIND_SECRET_KEY, obj.params_fingerprint, obj.key_tag, struct.pack("<I", c.size) + c.tobytes())
    raise ParameterError(f"cannot serialize {type(obj).__name__}")


def ciphertext_size(params: CkksParameters, level: int | None = None, size: int = 2) -> int:
    """Upper bound (reached by ciphertexts with uniform-looking residues, i.e. every real one) on
    the bytes of a serialized ciphertext with ``size`` components at ``level`` (default: top)."""
    level = params.max_level if level is None else level
    rows = level + 1
    packed = sum((params.poly_degree * q.bit_length() + 7) // 8 for q in params.moduli[:rows])
    return frame.frame_size(_CT_HEAD.size + size * (rows + packed))


def eval_keys_size(params: CkksParameters, galois_count: int, relin: bool = True,
                   encapsulation: bool = False) -> int:
    """Bytes of ``dumps(EvaluationKeys)`` with (``relin``) a relinearization key,
    ``galois_count`` Galois keys and (``encapsulation``) the two sparse-secret encapsulation keys,
    all seeded; exact for real keys (uniform residues fill every row to its modulus's width),
    an upper bound otherwise."""
    n = params.poly_degree

    def key_bytes(digits: int, moduli) -> int:  # seeded flag, one width byte per row, b rows, seed
        return 1 + digits * len(moduli) + digits * sum((n * int(q).bit_length() + 7) // 8 for q in moduli) + 32

    key = key_bytes(len(params.digits), params.all_moduli)
    body = struct.calcsize("<BIHHI") + (key if relin else 0) + galois_count * (4 + key)
    if encapsulation:
        body += 4 + key_bytes(1, _encaps_moduli(params)) + key
    return frame.frame_size(body)


def _encaps_moduli(params: CkksParameters) -> list[int]:
    """The primes of the s→s' encapsulation key: q_0 and the first special prime."""
    return [params.moduli[0], params.special_moduli[0]]


def _bits(moduli) -> list[int]:
    return [int(q).bit_length() for q in moduli]


def _pack_rows(a: np.ndarray) -> bytes:
    """a (..., rows, N): one u8 width per row (bit length of its largest value, ≥ 1), then the
    rows packed at those widths."""
    from .backend.cpu import pack_bits

    flat = a.reshape(-1, a.shape[-1])
    widths = [max(1, int(row.max()).bit_length()) if row.size else 1 for row in flat]
    return bytes(widths) + b"".join(pack_bits(np.ascontiguousarray(row), w) for row, w in zip(flat, widths))


_PERM_CONTEXTS: dict[int, Any] = {}


def canonical_key_data(key: KeySwitchingKey, b_only: bool = False) -> np.ndarray:
    """A key-switching key's data in the canonical form (what key generation makes, the wire
    format stores and the service's key digests hash), as a host uint64 array (dnum, 2, rows, N):
    ``data`` itself, or for a Galois key in the evaluation form (``GaloisKey.permuted``:
    aut_g^{-1} of the key) aut_g of it — with ``b_only`` only the b half, (dnum, 1, rows, N). The
    NTT-domain permutation (``RnsContext.ntt_perm``) depends on N only, so a one-prime context of
    that degree gives it."""
    d = _np(key.data)
    if not getattr(key, "permuted", False):
        return d[:, :1] if b_only else d
    gk = key
    from .backend.cpu import RnsContext, generate_ntt_primes

    n = int(d.shape[-1])
    ctx = _PERM_CONTEXTS.get(n)
    if ctx is None:
        ctx = _PERM_CONTEXTS.setdefault(n, RnsContext(n, generate_ntt_primes(40, 1, n)))
    perm = np.asarray(ctx.ntt_perm(int(gk.galois_elt)), dtype=np.intp)
    return np.take(d[:, :1] if b_only else d, perm, axis=-1)


def _pack_key(data: np.ndarray, a_seed: bytes | None, a_axis: int) -> bytes:
    """A key array whose uniform components lie at index 1 of ``a_axis``; stored as b rows
    then the seed (or the a rows when no seed is known)."""
    d = _np(data)
    b = np.ascontiguousarray(np.take(d, 0, axis=a_axis))
    if a_seed is not None:
        return b"\x01" + _pack_rows(b) + bytes(a_seed)
    return b"\x00" + _pack_rows(b) + _pack_rows(np.ascontiguousarray(np.take(d, 1, axis=a_axis)))


class _Reader:
    def __init__(self, body: bytes, version: int) -> None:
        self.body, self.pos, self.version = memoryview(body), 0, version

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
        """(count, len(moduli), n) residues packed row by row (v2: after one width byte per
        row, each at most the modulus's bit length; v1: every row at the modulus's width)."""
        from .backend.cpu import unpack_bits

        bits = _bits(moduli)
        rows = count * len(bits)
        if self.version >= 2:
            widths = list(self.raw(rows))
            limit = bits * count
            if any(not 1 <= w <= lim for w, lim in zip(widths, limit)):
                raise CiphertextFormatError("a packed row is wider than its modulus (corrupt or foreign data)")
        else:
            widths = bits * count
        out = np.empty((count, len(moduli), n), dtype=np.uint64)
        for i in range(count):
            for r in range(len(bits)):
                w = widths[i * len(bits) + r]
                nbytes = (n * w + 7) // 8
                if self.pos + nbytes > len(self.body):
                    raise CiphertextFormatError("blob is truncated")
                out[i, r] = unpack_bits(bytes(self.body[self.pos:self.pos + nbytes]), n, w)
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


def _open_v1(blob: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(kind, fingerprint, key_tag, body) of a version-1 CKKS frame (digest checked)."""
    if len(blob) < _V1_HEAD.size + _DIGEST:
        raise CiphertextFormatError("blob is truncated (shorter than the header)")
    _magic, _version, kind, _flags, fp, key_tag, body_len = _V1_HEAD.unpack_from(blob)
    end = _V1_HEAD.size + body_len
    if len(blob) < end + _DIGEST:
        raise CiphertextFormatError("blob is truncated")
    if len(blob) > end + _DIGEST:
        raise CiphertextFormatError("blob has trailing bytes")
    if hashlib.blake2b(blob[:end], digest_size=_DIGEST).digest() != blob[end:]:
        raise CiphertextFormatError("blob is corrupted (digest mismatch)")
    return kind, fp, key_tag, blob[_V1_HEAD.size:end]


def peek_version(blob: bytes) -> int:
    """The wire-format version of a CKKS blob (1 or 2). Raises CiphertextFormatError otherwise."""
    if len(blob) < 6 or bytes(blob[:4]) != MAGIC:
        raise CiphertextFormatError("not a WAVIS object (bad magic)")
    version = struct.unpack_from("<H", blob, 4)[0]
    if version not in (1, VERSION):
        raise CiphertextFormatError(f"unsupported wire-format version {version} (this library reads 1 and {VERSION})")
    return version


def loads(blob: bytes, expected_type: type | None = None, params: CkksParameters | None = None, backend=None) -> Any:
    """Parse a blob made by :func:`dumps` (version 2) or by the version-1 writer.

    Args:
        blob: the bytes.
        expected_type: e.g. ``Ciphertext``; another kind raises CiphertextFormatError.
        params: needed for everything but CkksParameters: the fingerprint must match.

    Raises:
        CiphertextFormatError: not a WAVIS CKKS blob, other version, truncated, trailing bytes,
            corrupted (digest), wrong kind, bad shapes or residues out of range.
        KeyMismatchError: the blob belongs to other parameters.
        ParameterError: ``params`` missing where needed; ``expected_type`` not one of the kinds
            (e.g. the parameters passed positionally in its place).
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextFormatError("blob must be bytes")
    if expected_type is not None and not (isinstance(expected_type, type) and expected_type in _KIND_OF):
        # e.g. loads(blob, params): the parameters given positionally where the type goes (an
        # AttributeError on `__name__` came out of the kind check below)
        raise ParameterError(f"expected_type must be one of {sorted(_NAMES.values())} or None, got "
                             f"{expected_type!r}; pass the parameters as params=", field="expected_type")
    blob = bytes(blob)
    version = peek_version(blob)
    if version == 1:
        kind, fp, key_tag, body = _open_v1(blob)
    else:
        f = frame.unpack(blob, frame.SCHEME_CKKS)
        kind, fp, key_tag, body = f.kind, f.params_id, f.key_id, bytes(f.payload)
    if kind not in _NAMES:
        raise CiphertextFormatError(f"unknown object kind {kind}")
    if expected_type is not None and _KIND_OF.get(expected_type) != kind:
        raise CiphertextFormatError(f"expected a {expected_type.__name__}, got a {_NAMES[kind]}")
    if kind == KIND_PARAMS:
        try:
            return CkksParameters.from_dict(json.loads(body.decode()))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CiphertextFormatError(f"parameters are not valid JSON: {exc}") from exc
    if params is None:
        raise ParameterError(f"loading a {_NAMES[kind]} needs the parameters")
    if fp.hex() != params.fingerprint:
        raise KeyMismatchError(f"{_NAMES[kind]} belongs to other parameters", expected=params.fingerprint, got=fp.hex())
    r = _Reader(body, version)
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
        flags, n_gal, dnum, rows, nn = r.unpack("BIHHI")
        has_relin = flags & 1
        if flags > 3 or nn != n or dnum != len(params.digits) or rows != len(params.all_moduli) or n_gal > 4 * n:
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
        encaps = None
        if flags & 2:
            (h,) = r.unpack("I")
            if not 1 <= h <= n:
                raise CiphertextFormatError(f"invalid encapsulation Hamming weight {h}")
            d_down, s_down = r.key(1, _encaps_moduli(params), n)
            d_up, s_up = r.key(dnum, allq, n)
            encaps = EncapsulationKeys(h, KeySwitchingKey(_to_backend(d_down, params, backend), a_seed=s_down),
                                       KeySwitchingKey(_to_backend(d_up, params, backend), a_seed=s_up))
        r.done()
        return EvaluationKeys(params.fingerprint, key_tag, relin, gks, encaps)
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
