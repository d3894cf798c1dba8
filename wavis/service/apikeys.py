"""API keys: ``wvs_<env>_<32 lowercase hex>``, stored only as HMAC-SHA256 under a pepper."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

ENVIRONMENTS = ("live", "test", "dev", "trial")
KEY_RE = re.compile(r"^wvs_(live|test|dev|trial)_[0-9a-f]{32}$")
PREFIX_LEN = 16
_MAX_PRESENTED = 128  # longer strings are hashed truncated: same work, never a match


def generate(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown API key environment {environment!r}")
    return f"wvs_{environment}_{secrets.token_hex(16)}"


def key_hash(pepper: bytes, key: str) -> bytes:
    return hmac.new(pepper, key[:_MAX_PRESENTED].encode("utf-8", "replace"), hashlib.sha256).digest()


def prefix(key: str) -> str:
    return key[:PREFIX_LEN]


def from_authorization(header: str | None) -> str | None:
    """``Bearer <key>`` or the bare key; None when absent/empty."""
    if not header:
        return None
    value = header.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None
