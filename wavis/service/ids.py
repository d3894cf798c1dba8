"""Prefixed random identifiers (API.md: ``acct_``, ``apikey_``, ``key_``, ``ct_``, ``op_``, ``req_`` …)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
