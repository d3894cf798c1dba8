"""The one wire frame of every WAVIS object, CKKS and TFHE alike: one header, one digest, a
keyed-tag slot; the payload is each scheme's own codec (``wavis.serialize`` for CKKS,
``wavis.tfhe.serialize`` for TFHE). This module imports nothing from either scheme.

Layout, version 2 (little-endian)::

    magic     4  b"WAVS"
    version   2  u16 = 2
    scheme    1  u8: 1 = CKKS, 2 = TFHE
    kind      1  u8, the scheme's object kind
    params   16  parameter fingerprint (CkksParameters.fingerprint / TfheParameters.fingerprint)
    key_id   16  the key the object belongs to (CKKS key tag, TFHE server-key id); zeros if none
    length    8  u64 payload length
    tag_alg   1  u8: 0 = no tag, 1 = HMAC-SHA256
    reserved  3  zero
    tag      32  keyed integrity tag (zeros when tag_alg = 0)
    payload
    digest   16  BLAKE2b-128 of everything before it

The digest is unkeyed: it detects accidental damage (a flipped bit, a truncated upload) and
anyone can recompute it. The tag is keyed: HMAC-SHA256 (RFC 2104, FIPS 198-1) under a key only
the issuer holds (the service derives it from its master key) over the domain string, the
caller's associated data (e.g. account, key id and provenance) and the frame with the tag slot
zeroed, so only the issuer can make a frame that verifies (:func:`sign`, :func:`verify`).

Version 1 frames (CKKS ``b"WAVS"`` v1 with a BLAKE2b digest, TFHE ``b"WVTF"`` v1 with a CRC32)
are still read by each scheme's codec; they never carry a tag.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from .errors import CiphertextFormatError

MAGIC = b"WAVS"
VERSION = 2
SCHEME_CKKS, SCHEME_TFHE = 1, 2
SCHEME_NAMES = {SCHEME_CKKS: "CKKS", SCHEME_TFHE: "TFHE"}
TAG_NONE, TAG_HMAC_SHA256 = 0, 1
TAG_BYTES = 32
DIGEST_BYTES = 16
_HEAD = struct.Struct("<4sHBB16s16sQB3x32s")
HEAD_BYTES = _HEAD.size  # 84
_TAG_ALG_AT = 4 + 2 + 1 + 1 + 16 + 16 + 8
_TAG_AT = _TAG_ALG_AT + 4
_TAG_DOMAIN = b"wavis-frame-tag-v2\0"


@dataclass(frozen=True)
class Frame:
    """A parsed, digest-checked frame. ``payload`` is a read-only view into the blob."""

    scheme: int
    kind: int
    params_id: bytes
    key_id: bytes
    tag_alg: int
    tag: bytes
    payload: memoryview

    @property
    def tagged(self) -> bool:
        return self.tag_alg != TAG_NONE


def frame_size(payload_bytes: int) -> int:
    """Bytes of a frame around a payload of this size."""
    return HEAD_BYTES + payload_bytes + DIGEST_BYTES


def pack(scheme: int, kind: int, params_id: bytes, key_id: bytes | None, payload: bytes) -> bytes:
    """An untagged frame. ``params_id`` and ``key_id``: 16 bytes each (``key_id`` None → zeros).

    Raises: ValueError for a field of the wrong size (a programming error, not bad input)."""
    key_id = bytes(key_id) if key_id else bytes(16)
    if len(params_id) != 16 or len(key_id) != 16:
        raise ValueError("params_id and key_id must be 16 bytes")
    head = _HEAD.pack(MAGIC, VERSION, scheme, kind, bytes(params_id), key_id, len(payload), TAG_NONE,
                      bytes(TAG_BYTES))
    body = head + bytes(payload)
    return body + hashlib.blake2b(body, digest_size=DIGEST_BYTES).digest()


def is_v2(blob: bytes) -> bool:
    """Whether the blob starts like a version-2 frame (magic and version only)."""
    return len(blob) >= 6 and bytes(blob[:4]) == MAGIC and struct.unpack_from("<H", blob, 4)[0] == VERSION


def unpack(blob: bytes, scheme: int) -> Frame:
    """Parse and check a version-2 frame of ``scheme``.

    Raises:
        CiphertextFormatError: not bytes, bad magic, another version, another scheme, an unknown
            tag algorithm, a length that disagrees with the header (truncated or padded), or a
            digest mismatch (corrupted).
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CiphertextFormatError("blob must be bytes")
    mv = memoryview(blob).cast("B")
    if len(mv) < HEAD_BYTES + DIGEST_BYTES:
        raise CiphertextFormatError("blob is truncated (shorter than the frame header)", length=len(mv))
    magic, version, sch, kind, params_id, key_id, length, tag_alg, tag = _HEAD.unpack_from(mv, 0)
    if magic != MAGIC:
        raise CiphertextFormatError("not a WAVIS object (bad magic)")
    if version != VERSION:
        raise CiphertextFormatError(f"unsupported wire-format version {version} (this library reads 1 and {VERSION})",
                                    version=version)
    if sch != scheme:
        raise CiphertextFormatError(f"expected a {SCHEME_NAMES.get(scheme, scheme)} object, got a "
                                    f"{SCHEME_NAMES.get(sch, f'scheme-{sch}')} object")
    if tag_alg not in (TAG_NONE, TAG_HMAC_SHA256):
        raise CiphertextFormatError(f"unknown tag algorithm {tag_alg}")
    if len(mv) != HEAD_BYTES + length + DIGEST_BYTES:
        raise CiphertextFormatError("blob length does not match its header (truncated or padded)",
                                    length=len(mv), expected=HEAD_BYTES + length + DIGEST_BYTES)
    end = HEAD_BYTES + length
    if not hmac.compare_digest(hashlib.blake2b(mv[:end], digest_size=DIGEST_BYTES).digest(), bytes(mv[end:])):
        raise CiphertextFormatError("blob is corrupted (digest mismatch)")
    return Frame(sch, kind, bytes(params_id), bytes(key_id), tag_alg, bytes(tag), mv[HEAD_BYTES:end])


def _message(mv: memoryview, aad: bytes) -> bytes:
    """What the tag authenticates: domain, len(aad), aad, the header with tag_alg = HMAC and
    the tag slot zeroed, the payload (the digest is left out: it is a function of the rest)."""
    head = bytearray(mv[:HEAD_BYTES])
    head[_TAG_ALG_AT] = TAG_HMAC_SHA256
    head[_TAG_AT:_TAG_AT + TAG_BYTES] = bytes(TAG_BYTES)
    return b"".join([_TAG_DOMAIN, struct.pack("<I", len(aad)), aad, bytes(head), bytes(mv[HEAD_BYTES:-DIGEST_BYTES])])


def sign(blob: bytes, key: bytes, aad: bytes = b"") -> bytes:
    """The same frame with its tag set to HMAC-SHA256(key, …) over the frame and ``aad``
    (any previous tag is replaced) and its digest recomputed.

    Raises: CiphertextFormatError if ``blob`` is not a valid version-2 frame."""
    if len(key) < 32:
        raise ValueError("the tag key must be at least 32 bytes")
    mv = memoryview(bytes(blob))
    sch = mv[6] if len(mv) > 6 else 0
    unpack(mv, sch)  # validates
    tag = hmac.new(key, _message(mv, bytes(aad)), hashlib.sha256).digest()
    out = bytearray(mv[:-DIGEST_BYTES])
    out[_TAG_ALG_AT] = TAG_HMAC_SHA256
    out[_TAG_AT:_TAG_AT + TAG_BYTES] = tag
    return bytes(out) + hashlib.blake2b(out, digest_size=DIGEST_BYTES).digest()


def verify(blob: bytes, key: bytes, aad: bytes = b"") -> bool:
    """True only for a valid version-2 frame whose tag is HMAC-SHA256(key, …) over this frame
    and ``aad`` (constant-time comparison). Untagged, version-1, malformed, corrupted or
    altered frames, and frames tagged for other associated data, give False."""
    try:
        mv = memoryview(bytes(blob))
        if not is_v2(mv) or len(mv) < HEAD_BYTES + DIGEST_BYTES:
            return False
        f = unpack(mv, mv[6])
    except CiphertextFormatError:
        return False
    if f.tag_alg != TAG_HMAC_SHA256:
        return False
    want = hmac.new(key, _message(mv, bytes(aad)), hashlib.sha256).digest()
    return hmac.compare_digest(want, f.tag)


def strip_tag(blob: bytes) -> bytes:
    """The same frame untagged (tag slot zeroed, digest recomputed): what a holder without the
    key can still check. Raises CiphertextFormatError for anything but a valid v2 frame."""
    mv = memoryview(bytes(blob))
    unpack(mv, mv[6] if len(mv) > 6 else 0)
    out = bytearray(mv[:-DIGEST_BYTES])
    out[_TAG_ALG_AT] = TAG_NONE
    out[_TAG_AT:_TAG_AT + TAG_BYTES] = bytes(TAG_BYTES)
    return bytes(out) + hashlib.blake2b(out, digest_size=DIGEST_BYTES).digest()
