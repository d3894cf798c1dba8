"""Secrets at rest: AES-256-GCM under the server master key (``WAVIS_MASTER_KEY``).

Used for server-mode CKKS secret keys (``POST /keys/generate``) and for anything else the
server must keep but never store in the clear (TFHE server-managed session keys may reuse it:
``seal(master, plaintext, aad)`` / ``open_sealed(master, blob, aad)``).

* The master key is 32 bytes: ``WAVIS_MASTER_KEY`` as 64 hex characters or base64; unset →
  generated once into ``<data dir>/master_key`` (0600) with a warning, like the API-key pepper.
* Blob layout: ``b"W1" || 12-byte random nonce || ciphertext+tag``. The associated data binds
  a blob to its owner (e.g. ``b"fhe_key:<key_id>:<account_id>"``), so a blob copied into
  another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("wavis.service")

MASTER_KEY_FILE = "master_key"
VERSION = b"W1"
NONCE_LEN = 12


class SealedSecretError(Exception):
    """A sealed blob that does not open (wrong master key, wrong owner, or tampered)."""


def parse_master_key(text: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None,
                                   validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise ValueError("WAVIS_MASTER_KEY must be 32 bytes, as 64 hex characters or base64")
    return raw


def load_or_create_master_key(data_dir: Path) -> bytes:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / MASTER_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_master_key(path.read_text())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    log.warning(
        "WAVIS_MASTER_KEY is not set: generated a master key into %s (mode 0600). Server-mode secret keys "
        "sealed under it cannot be opened if the file is lost; set WAVIS_MASTER_KEY in production.", path,
    )
    return key


def seal(master_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_LEN)
    return VERSION + nonce + AESGCM(master_key).encrypt(nonce, plaintext, aad)


def open_sealed(master_key: bytes, blob: bytes, aad: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    if blob[:2] != VERSION or len(blob) < 2 + NONCE_LEN + 16:
        raise SealedSecretError("not a sealed secret")
    nonce = blob[2:2 + NONCE_LEN]
    try:
        return AESGCM(master_key).decrypt(nonce, bytes(blob[2 + NONCE_LEN:]), aad)
    except InvalidTag:
        raise SealedSecretError("sealed secret does not open under this master key / owner") from None
