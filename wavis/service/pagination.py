"""Cursor pagination for every list endpoint (API.md §1 "Pagination").

Keyset on ``(created_at, id)``: a page is ``WHERE (created_at, id) > (cursor) ORDER BY
created_at, id LIMIT limit + 1`` — stable under concurrent inserts, no OFFSET scans.
The cursor is opaque: base64url of ``<created_at µs>.<id>`` plus an HMAC (under a key derived
from the API-key pepper) over the list name, the account and that position, so a tampered
cursor, or one from another list or account, answers 400 ``INVALID_CURSOR``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from aiohttp import web

from .errors import ApiError
from .state import SETTINGS

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_SIG_LEN = 16

QUERY_DOC = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "cursor": {"type": "string"},
}


@dataclass(frozen=True)
class Page:
    limit: int
    after: tuple[datetime, str] | None  # (created_at, id) of the last item of the previous page


def _key(request: web.Request) -> bytes:
    return hmac.new(request.app[SETTINGS].api_key_pepper, b"wavis-cursor-v1", hashlib.sha256).digest()


def _sig(key: bytes, scope: str, payload: bytes) -> bytes:
    return hmac.new(key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:_SIG_LEN]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def invalid_cursor() -> ApiError:
    return ApiError(400, "INVALID_CURSOR", "the cursor is not valid for this list")


def encode_cursor(request: web.Request, scope: str, created_at: datetime, item_id: str) -> str:
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    delta = created_at - datetime(1970, 1, 1, tzinfo=timezone.utc)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    payload = f"{micros}.{item_id}".encode()
    return _b64(payload + _sig(_key(request), scope, payload))


def decode_cursor(request: web.Request, scope: str, cursor: str) -> tuple[datetime, str]:
    if not cursor or len(cursor) > 512:
        raise invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise invalid_cursor() from None
    if _b64(raw) != cursor:  # non-canonical encodings are tampering too
        raise invalid_cursor()
    payload, sig = raw[:-_SIG_LEN], raw[-_SIG_LEN:]
    if len(raw) <= _SIG_LEN or not hmac.compare_digest(sig, _sig(_key(request), scope, payload)):
        raise invalid_cursor()
    try:
        micros_s, item_id = payload.decode().split(".", 1)
        micros = int(micros_s)
        created = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    except (ValueError, OverflowError, UnicodeDecodeError):
        raise invalid_cursor() from None
    return created, item_id


def page_from(request: web.Request, scope: str) -> Page:
    """``limit`` (1–100, default 20; else 400 INVALID_PARAMS) and ``cursor`` from the query."""
    raw = request.query.get("limit")
    if raw is None:
        limit = DEFAULT_LIMIT
    else:
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT or not raw.strip().lstrip("+").isdigit():
            raise ApiError(400, "INVALID_PARAMS", f"limit must be an integer from 1 to {MAX_LIMIT}",
                           {"param": "limit"})
    cursor = request.query.get("cursor")
    after = decode_cursor(request, scope, cursor) if cursor is not None else None
    return Page(limit, after)


def page_body(request: web.Request, scope: str, page: Page, rows: Sequence[Any], to_item) -> dict[str, Any]:
    """``{"data": [...], "next_cursor", "has_more"}`` from ``limit + 1`` fetched rows."""
    has_more = len(rows) > page.limit
    rows = rows[:page.limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(request, scope, last["created_at"], last["id"])
    return {"data": [to_item(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


def scope_of(list_name: str, account_id: str) -> str:
    return f"{list_name}:{account_id}"


KEYSET_SQL = "(created_at, id) > ($2::timestamptz, $3::text)"
