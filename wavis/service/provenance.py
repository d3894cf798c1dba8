"""Provenance and keyed integrity tags of server-emitted blobs (issue 15).

Decryption on the server is a key-recovery oracle unless it is limited to ciphertexts the
server itself produced: a crafted CKKS ciphertext (0, Δ) decrypts to the key's first
coefficient times Δ, a crafted TFHE ciphertext (a = e_i·2^30, b = 2^29) to the key bit s_i. So
every ciphertext the service stores or emits carries a *provenance*:

* ``server``: encrypted by the server under that key (``/ciphertexts/encrypt``,
  ``/tfhe/session/{id}/encrypt``), or computed only from ``server`` ciphertexts;
* ``client``: uploaded (``POST /ciphertexts``, inline TFHE operands without a valid tag), or
  computed from anything that is ``client``.

and a keyed tag (HMAC-SHA256 in the frame's tag slot, :mod:`wavis.frame`) over the blob, the
account, the key (CKKS key id / TFHE session id) and the provenance, under a key derived from
the master key (HKDF-SHA256, RFC 5869, info ``wavis blob tag v1``). Only the server can make a
tag, so a client cannot dress a crafted blob up as a server output, and a tag for ``client``
never verifies as ``server``. Decryption checks the tag first and answers 403
``NOT_SERVER_PRODUCED`` for anything that is not ``server``. The CKKS provenance is also kept in
the ciphertext's row (``ciphertexts.provenance``) and shown in its metadata.

Everything here is synchronous (HMAC over blobs of up to 64 MB): run it on the compute engine.
"""

from __future__ import annotations

from functools import lru_cache

from wavis import frame

from .errors import ApiError

SERVER = "server"
CLIENT = "client"


class BlobTags:
    """Signs and verifies the keyed tag of server-emitted blobs."""

    def __init__(self, master_key: bytes) -> None:
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"wavis blob tag v1").derive(master_key)

    def sign(self, blob: bytes, aad: bytes) -> bytes:
        return frame.sign(blob, self._key, aad)

    def verify(self, blob: bytes, aad: bytes) -> bool:
        return frame.verify(blob, self._key, aad)


@lru_cache(maxsize=4)
def tags_for(master_key: bytes) -> BlobTags:
    return BlobTags(master_key)


def ckks_aad(account_id: str, key_id: str, provenance: str) -> bytes:
    return f"ckks-ciphertext\0{account_id}\0{key_id}\0{provenance}".encode()


def tfhe_aad(account_id: str, session_id: str, provenance: str) -> bytes:
    return f"tfhe-ciphertext\0{account_id}\0{session_id}\0{provenance}".encode()


def ckks_is_server(tags: BlobTags, blob: bytes, account_id: str, key_id: str) -> bool:
    return tags.verify(blob, ckks_aad(account_id, key_id, SERVER))


def ckks_result_provenance(tags: BlobTags, rows_provenance: list[str], blobs: list[bytes], account_id: str,
                           key_id: str) -> str:
    """``server`` only when every operand's row says so and its blob carries the server tag."""
    ok = all(p == SERVER for p in rows_provenance) and all(
        ckks_is_server(tags, b, account_id, key_id) for b in blobs)
    return SERVER if ok else CLIENT


def sign_ckks(tags: BlobTags, blob: bytes, account_id: str, key_id: str, provenance: str) -> bytes:
    return tags.sign(blob, ckks_aad(account_id, key_id, provenance))


def not_server_produced(what: str, **details) -> ApiError:
    return ApiError(403, "NOT_SERVER_PRODUCED",
                    f"{what} was not produced by the server for this key (uploaded, altered, or computed from an "
                    "uploaded ciphertext): the server decrypts only its own ciphertexts, so that decryption never "
                    "reveals the key", details or None)
