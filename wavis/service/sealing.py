"""Secrets at rest: AES-256-GCM under the server's master key (``WAVIS_MASTER_KEY``).

Server-managed TFHE sessions keep their client (secret) key in PostgreSQL only sealed by this
module; the plaintext key exists only in process memory. The master key comes from
``WAVIS_MASTER_KEY`` (64 hex characters, or base64 of 32 bytes); when unset, one is generated
once into ``<data dir>/master_key`` (mode 0600) with a warning, like the API-key pepper.
Every API process must use the same master key; losing it makes sealed keys unreadable.

Sealed blob: ``b"WVSL"`` | version u8 (1) | key id (8 bytes: SHA-256 of the master key) |
nonce (12 random bytes) | AES-GCM ciphertext and tag. The associated data binds a blob to its
row (e.g. ``tfhe-client-key:<session id>:<account id>``), so a blob copied to another row does
not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("wavis.service")

MASTER_KEY_FILE = "master_key"
MAGIC = b"WVSL"
VERSION = 1
NONCE_BYTES = 12


class SealError(Exception):
    """A sealed blob that does not open (another master key, corrupted, or moved to another row)."""


def parse_master_key(text: str) -> bytes:
    """32 bytes from 64 hex characters or from base64 (standard or URL-safe) of 32 bytes."""
    raw = text.strip()
    if len(raw) == 64:
        try:
            return bytes.fromhex(raw)
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise ValueError("WAVIS_MASTER_KEY must be 32 bytes: 64 hex characters or base64")


def load_or_create_master_key(data_dir: Path, env_value: str | None = None) -> bytes:
    """The master key from ``env_value`` (``WAVIS_MASTER_KEY``) or ``<data_dir>/master_key``,
    creating that file (0600) with a warning when neither exists."""
    if env_value is None:
        env_value = os.environ.get("WAVIS_MASTER_KEY") or None
    if env_value:
        return parse_master_key(env_value)
    data_dir = Path(data_dir)
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
        "WAVIS_MASTER_KEY is not set: generated a new master key for secrets at rest in %s (mode 0600). "
        "Server-managed secret keys sealed under it are lost if the file is lost; set WAVIS_MASTER_KEY "
        "(the same for every API process) in production.", path,
    )
    return key


class Sealer:
    def __init__(self, master_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self.key_id = hashlib.sha256(b"wavis-master-key\0" + master_key).digest()[:8]

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        head = MAGIC + bytes([VERSION]) + self.key_id
        return head + nonce + self._aead.encrypt(nonce, plaintext, head + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        blob = bytes(blob)
        head_len = len(MAGIC) + 1 + len(self.key_id)
        if len(blob) < head_len + NONCE_BYTES + 16 or blob[:4] != MAGIC or blob[4] != VERSION:
            raise SealError("not a sealed blob")
        if blob[5:head_len] != self.key_id:
            raise SealError("sealed under another master key")
        nonce = blob[head_len:head_len + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[head_len + NONCE_BYTES:], blob[:head_len] + aad)
        except InvalidTag:
            raise SealError("sealed blob does not open (corrupted or moved)") from None
