"""``Idempotency-Key`` on every POST and PATCH (API.md §1 "Idempotency").

* Scope: (account, key) — for public routes without an API key, (client IP, key).
* Fingerprint: SHA-256 over method, path with query, and the body bytes.
* The first request claims the key atomically in Redis (Lua: GET-or-SET), so of many
  concurrent duplicates exactly one runs; the others get 409 ``IDEMPOTENCY_IN_PROGRESS`` while
  it runs and the stored answer afterwards (``Idempotent-Replayed: true``).
* Answers < 500 are stored for 24 h; a 5xx (or a crash/timeout) frees the key so the client
  may retry. A claim whose process died frees itself after ``idempotency_lease_s``.
* A different fingerprint under a used key → 422 ``IDEMPOTENCY_KEY_REUSED``.
* Stored answers may hold secrets shown once (a new API key), so they are sealed with
  AES-GCM under a key derived from the pepper *and* the client's Idempotency-Key, which is
  never stored: a Redis dump alone opens nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets

from aiohttp import web

from .errors import ApiError
from .sealing import SealError, Sealer

log = logging.getLogger("wavis.service")

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
METHODS = frozenset({"POST", "PATCH"})
_SKIP_HEADERS = frozenset({"content-length", "date", "server", "x-request-id", "transfer-encoding", "connection"})

# ARGV: claim value, lease seconds. Returns the existing value, or nil after claiming.
_CLAIM_LUA = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
# Replace our own claim (ARGV[1]) with the final record (ARGV[2], ttl ARGV[3]); '' → delete.
_FINISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


def validate_key(raw: str) -> str:
    if not KEY_RE.match(raw):
        raise ApiError(400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-255 printable ASCII characters")
    return raw


def fingerprint(method: str, path_qs: str, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(method.encode() + b"\0" + path_qs.encode() + b"\0")
    h.update(body)
    return h.hexdigest()


class Slot:
    """One claimed or found idempotency record."""

    def __init__(self, redis, prefix: str, pepper: bytes, scope: str, idem_key: str, fp: str) -> None:
        material = scope.encode() + b"\0" + idem_key.encode("utf-8", "replace")
        self.redis = redis
        self.key = f"{prefix}idem:{hashlib.sha256(material).hexdigest()}"
        self.seal_key = hmac.new(pepper, b"wavis-idempotency-v1\0" + material, hashlib.sha256).digest()
        self.fp = fp
        self.claim = f"R:{fp}:{secrets.token_hex(8)}"

    async def begin(self, lease_s: int) -> bytes | None:
        """None when this request now owns the key; else the existing value."""
        return await self.redis.eval(_CLAIM_LUA, 1, self.key, self.claim, lease_s)

    def existing(self, value: bytes, request_id: str | None = None) -> web.Response:
        """The stored answer for a replay; an error body's ``request_id`` becomes this
        request's (API.md §1: every error body repeats the request's id)."""
        text = value.decode("latin-1")
        if text.startswith("R:"):
            if text.split(":", 2)[1] != self.fp:
                raise reused()
            raise ApiError(409, "IDEMPOTENCY_IN_PROGRESS",
                           "a request with this Idempotency-Key is still being processed; retry shortly",
                           headers={"Retry-After": "1"})
        if not text.startswith("D:"):
            raise reused()
        stored_fp, _, sealed_b64 = text[2:].partition(":")
        if stored_fp != self.fp:
            raise reused()
        try:
            record = json.loads(Sealer(self.seal_key).open(base64.b64decode(sealed_b64), self.key.encode()))
        except (SealError, ValueError):
            raise reused() from None
        body = base64.b64decode(record["body"])
        if request_id and record["status"] >= 400:
            try:
                doc = json.loads(body)
                if isinstance(doc, dict) and isinstance(doc.get("error"), dict) and "request_id" in doc["error"]:
                    doc["error"]["request_id"] = request_id
                    body = json.dumps(doc).encode()
            except ValueError:
                pass
        resp = web.Response(status=record["status"], body=body)
        for k, v in record["headers"]:
            resp.headers.add(k, v)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp

    async def store(self, resp: web.Response, ttl_s: int) -> None:
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _SKIP_HEADERS]
        body = resp.body if isinstance(resp.body, (bytes, bytearray)) else b""
        record = json.dumps({"status": resp.status, "headers": headers,
                             "body": base64.b64encode(bytes(body)).decode()}).encode()
        sealed = base64.b64encode(Sealer(self.seal_key).seal(record, self.key.encode())).decode()
        await self.redis.eval(_FINISH_LUA, 1, self.key, self.claim, f"D:{self.fp}:{sealed}", ttl_s)

    async def release(self) -> None:
        await self.redis.eval(_FINISH_LUA, 1, self.key, self.claim, "", 0)

    def release_soon(self, timeout: float) -> None:
        """Free the claim from a cancelled request (cannot await there)."""

        async def go():
            try:
                async with asyncio.timeout(timeout):
                    await self.release()
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.warning("could not release an idempotency claim; it expires with its lease")

        asyncio.ensure_future(go())


def reused() -> ApiError:
    return ApiError(422, "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was used with a different request (method, path or body)")
