"""TFHE payload codec of the WAVIS wire frame (``wavis.frame``; no pickle).

Frame (``wavis.frame``, version 2): scheme 2 (TFHE); kind 1 = LWE ciphertext(s), 2 = server
key, 3 = client key; ``params`` = :attr:`TfheParameters.fingerprint` of the preset; ``key_id``
= the server key's id (SHA-256 over the preset and every public word); a keyed-tag slot (set
by the service with :func:`wavis.frame.sign`); a BLAKE2b-128 digest.

Payloads:
* ciphertext: ``flags u8`` (bit 0: batch) | ``count u32`` | count·(n+1) u32 words.
* server key: ``mask_seed`` (32 bytes) | bootstrapping-key bodies n·(k+1)·l·N u32 | key-switching
  key bodies kN·t u32. The uniform masks are regenerated from the seed (ChaCha20) on load and
  the bootstrapping key is converted to the Fourier domain then, so the upload is half the
  size of the expanded key and under the 40 MB upload limit even in base64 (fast_128 17.3 MB,
  standard_128 23.1 MB (30.8 MB base64), conservative_128 20.6 MB).
* client key: LWE key bits then GLWE key bits, packed (np.packbits). Secret: never upload it.

Version 1 (``b"WVTF"`` v1: ``magic, version u16, kind u8, preset id u8, key_id 16, length u64``,
the same payloads, a CRC32) is still read, so server keys stored before version 2 keep loading —
except those of the retired preset ids 1 and 2 (the pre-2026-12 fast_128 / standard_128, below
the current 128-bit security curve), which are refused with a message saying so; current ids:
3 conservative_128, 4 fast_128, 5 standard_128, 255 testing.

Truncated, corrupted (digest/CRC), foreign (magic), newer (version) or inconsistent blobs raise
:class:`wavis.errors.CiphertextFormatError`; a ciphertext of another key or preset, when a key
is given to check against, raises :class:`wavis.errors.KeyMismatchError`.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .. import frame
from ..errors import CiphertextFormatError, KeyMismatchError
from .ciphertext import LweCiphertext
from .keys import ClientKey, ServerKey, server_key_id
from .params import RETIRED_PRESET_IDS, TfheParameters, preset_by_fingerprint, preset_by_id

V1_MAGIC = b"WVTF"
VERSION = frame.VERSION
KIND_CIPHERTEXT, KIND_SERVER_KEY, KIND_CLIENT_KEY = 1, 2, 3
_HEADER = struct.Struct("<4sHBB16sQ")
_KIND_NAMES = {KIND_CIPHERTEXT: "ciphertext", KIND_SERVER_KEY: "server_key", KIND_CLIENT_KEY: "client_key"}


@dataclass(frozen=True)
class Header:
    kind: str
    params: TfheParameters
    key_id: bytes
    payload_length: int


def _pack(kind: int, params: TfheParameters, key_id: bytes, payload: bytes) -> bytes:
    return frame.pack(frame.SCHEME_TFHE, kind, params.fingerprint, key_id, payload)


def _unpack_v1(mv: memoryview) -> tuple[int, TfheParameters, bytes, memoryview]:
    if len(mv) < _HEADER.size + 4:
        raise CiphertextFormatError("TFHE blob is truncated", length=len(mv))
    _magic, _version, kind, preset_id, key_id, length = _HEADER.unpack_from(mv, 0)
    if kind not in _KIND_NAMES:
        raise CiphertextFormatError(f"unknown TFHE object kind {kind}")
    if len(mv) != _HEADER.size + length + 4:
        raise CiphertextFormatError("TFHE blob length does not match its header (truncated or padded)",
                                    length=len(mv), expected=_HEADER.size + length + 4)
    (crc,) = struct.unpack_from("<I", mv, len(mv) - 4)
    if zlib.crc32(mv[:-4]) & 0xFFFFFFFF != crc:
        raise CiphertextFormatError("TFHE blob is corrupted (checksum mismatch)")
    try:
        params = preset_by_id(preset_id)
    except KeyError:
        if preset_id in RETIRED_PRESET_IDS:
            raise CiphertextFormatError(f"retired TFHE preset id {preset_id}: {RETIRED_PRESET_IDS[preset_id]}",
                                        preset_id=preset_id) from None
        raise CiphertextFormatError(f"unknown TFHE preset id {preset_id}") from None
    return kind, params, bytes(key_id), mv[_HEADER.size:_HEADER.size + length]


def _unpack(blob: bytes) -> tuple[int, TfheParameters, bytes, memoryview]:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextFormatError("TFHE blob must be bytes")
    mv = memoryview(blob).cast("B")
    if len(mv) >= 6 and bytes(mv[:4]) == V1_MAGIC:
        version = struct.unpack_from("<H", mv, 4)[0]
        if version != 1:
            raise CiphertextFormatError(f"unsupported TFHE wire-format version {version}", version=version)
        return _unpack_v1(mv)
    f = frame.unpack(mv, frame.SCHEME_TFHE)
    if f.kind not in _KIND_NAMES:
        raise CiphertextFormatError(f"unknown TFHE object kind {f.kind}")
    try:
        params = preset_by_fingerprint(f.params_id)
    except KeyError:
        raise CiphertextFormatError("unknown TFHE parameter set (fingerprint of no preset)") from None
    return f.kind, params, f.key_id, f.payload


def peek(blob: bytes) -> Header:
    """Kind, preset and key id of a blob (validated: magic, version, length, checksum)."""
    kind, params, key_id, payload = _unpack(blob)
    return Header(_KIND_NAMES[kind], params, key_id, len(payload))


def _words(payload: memoryview, offset: int, count: int) -> np.ndarray:
    return np.frombuffer(payload, dtype="<u4", count=count, offset=offset).astype(np.uint32)


# -- ciphertexts --------------------------------------------------------------------------------
def dump_ciphertext(ct: LweCiphertext) -> bytes:
    rows = ct.rows()
    payload = struct.pack("<BI", 1 if ct.is_batch else 0, rows.shape[0]) + rows.astype("<u4").tobytes()
    return _pack(KIND_CIPHERTEXT, ct.params, ct.key_id, payload)


def load_ciphertext(blob: bytes, key: "ServerKey | ClientKey | None" = None) -> LweCiphertext:
    """Parse a ciphertext; with ``key``, also check it belongs to that key (KeyMismatchError)."""
    kind, params, key_id, payload = _unpack(blob)
    if kind != KIND_CIPHERTEXT:
        raise CiphertextFormatError(f"expected a TFHE ciphertext, got a {_KIND_NAMES[kind]}")
    if len(payload) < 5:
        raise CiphertextFormatError("TFHE ciphertext payload is truncated")
    flags, count = struct.unpack_from("<BI", payload, 0)
    width = params.n + 1
    if flags & ~1 or len(payload) != 5 + 4 * count * width or (not flags & 1 and count != 1):
        raise CiphertextFormatError("TFHE ciphertext has the wrong length for its preset",
                                    preset=params.name, count=count)
    data = _words(payload, 5, count * width).reshape(count, width)
    ct = LweCiphertext(params, key_id, data if flags & 1 else data[0])
    if key is not None:
        if key.params != params:
            raise KeyMismatchError("ciphertext belongs to another TFHE preset", expected=key.params.name,
                                   got=params.name)
        if key.key_id != key_id:
            raise KeyMismatchError("ciphertext belongs to another TFHE key", expected=key.key_id.hex(),
                                   got=key_id.hex())
    return ct


# -- keys ------------------------------------------------------------------------------------------
def dump_server_key(sk: ServerKey) -> bytes:
    payload = b"".join([sk.mask_seed, sk.bsk_bodies.astype("<u4").tobytes(), sk.ksk_bodies.astype("<u4").tobytes()])
    return _pack(KIND_SERVER_KEY, sk.params, sk.key_id, payload)


def server_key_size(params: TfheParameters) -> int:
    """Bytes of a serialized server key of this preset."""
    words = params.n * (params.k + 1) * params.pbs_level * params.big_n + params.k * params.big_n * params.ks_level
    return frame.frame_size(32 + 4 * words)


def load_server_key(blob: bytes) -> ServerKey:
    kind, params, key_id, payload = _unpack(blob)
    if kind != KIND_SERVER_KEY:
        raise CiphertextFormatError(f"expected a TFHE server key, got a {_KIND_NAMES[kind]}")
    nb = params.n * (params.k + 1) * params.pbs_level * params.big_n
    nk = params.k * params.big_n * params.ks_level
    if len(payload) != 32 + 4 * (nb + nk):
        raise CiphertextFormatError("TFHE server key has the wrong length for its preset", preset=params.name)
    mask_seed = bytes(payload[:32])
    bsk = _words(payload, 32, nb)
    ksk = _words(payload, 32 + 4 * nb, nk)
    if server_key_id(params, mask_seed, bsk, ksk) != key_id:
        raise CiphertextFormatError("TFHE server key does not match its fingerprint")
    return ServerKey(params, mask_seed, bsk, ksk, key_id=key_id)


def dump_client_key(ck: ClientKey) -> bytes:
    payload = np.packbits(ck.lwe_key).tobytes() + np.packbits(ck.glwe_key).tobytes()
    return _pack(KIND_CLIENT_KEY, ck.params, ck.key_id, payload)


def load_client_key(blob: bytes) -> ClientKey:
    kind, params, key_id, payload = _unpack(blob)
    if kind != KIND_CLIENT_KEY:
        raise CiphertextFormatError(f"expected a TFHE client key, got a {_KIND_NAMES[kind]}")
    nl, ng = params.n, params.k * params.big_n
    bl, bg = (nl + 7) // 8, (ng + 7) // 8
    if len(payload) != bl + bg:
        raise CiphertextFormatError("TFHE client key has the wrong length for its preset", preset=params.name)
    raw = np.frombuffer(payload, dtype=np.uint8)
    lwe = np.unpackbits(raw[:bl])[:nl]
    glwe = np.unpackbits(raw[bl:])[:ng]
    return ClientKey(params, lwe, glwe, key_id)


# -- generic ---------------------------------------------------------------------------------------
def dumps(obj: "LweCiphertext | ServerKey | ClientKey") -> bytes:
    if isinstance(obj, LweCiphertext):
        return dump_ciphertext(obj)
    if isinstance(obj, ServerKey):
        return dump_server_key(obj)
    if isinstance(obj, ClientKey):
        return dump_client_key(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def loads(blob: bytes, key: "ServerKey | ClientKey | None" = None):
    kind = peek(blob).kind
    if kind == "ciphertext":
        return load_ciphertext(blob, key)
    if kind == "server_key":
        return load_server_key(blob)
    return load_client_key(blob)


def to_b64(obj) -> str:
    return base64.b64encode(dumps(obj)).decode("ascii")


def from_b64(text: str, key: "ServerKey | ClientKey | None" = None):
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise CiphertextFormatError("TFHE blob is not valid base64") from None
    return loads(blob, key)
