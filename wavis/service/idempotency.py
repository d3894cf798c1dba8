"""``Idempotency-Key`` on every POST and PATCH (API.md §1 "Idempotency").

* Scope: (account, key) — for public routes without an API key, (client IP, key).
* Fingerprint: SHA-256 over method, path with query, and the body bytes.
* Records live in PostgreSQL (``idempotency_records``), so a retry after a crash of Redis,
  PostgreSQL or the server replays the confirmed answer (issue 14). The first request claims
  the slot atomically (``INSERT … ON CONFLICT … WHERE expired``), so of many concurrent
  duplicates exactly one runs; the others get 409 ``IDEMPOTENCY_IN_PROGRESS`` while it runs and
  the stored answer afterwards (``Idempotent-Replayed: true``).
* Answers < 500 are stored for 24 h, in the same PostgreSQL as the resource they confirm and
  before the answer leaves; a 5xx (or a crash/timeout) frees the slot so the client may retry.
  A claim whose process died frees itself after ``idempotency_lease_s``.
* A different fingerprint under a used key → 422 ``IDEMPOTENCY_KEY_REUSED``.
* Stored answers may hold secrets shown once (a new API key), so they are sealed with
  AES-GCM under a key derived from the pepper *and* the client's Idempotency-Key, which is
  never stored: a database dump alone opens nothing.
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

from . import repo
from .errors import ApiError
from .sealing import SealError, Sealer

log = logging.getLogger("wavis.service")

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
METHODS = frozenset({"POST", "PATCH"})
_SKIP_HEADERS = frozenset({"content-length", "date", "server", "x-request-id", "transfer-encoding", "connection"})

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
    """One claimed or found idempotency record (PostgreSQL, ``repo``)."""

    def __init__(self, pool, pepper: bytes, scope: str, idem_key: str, fp: str, timeout: float) -> None:
        material = scope.encode() + b"\0" + idem_key.encode("utf-8", "replace")
        self.pool = pool
        self.timeout = timeout
        self.key = hashlib.sha256(material).hexdigest()
        self.seal_key = hmac.new(pepper, b"wavis-idempotency-v1\0" + material, hashlib.sha256).digest()
        self.fp = fp
        self.claim = secrets.token_hex(12)

    async def begin(self, lease_s: int):
        """None when this request now owns the key; else the existing record."""
        async with self.pool.acquire(timeout=self.timeout) as conn:
            return await repo.claim_idempotency_slot(conn, self.key, self.fp, self.claim, lease_s)

    def existing(self, record, request_id: str | None = None) -> web.Response:
        """The stored answer for a replay; an error body's ``request_id`` becomes this
        request's (API.md §1: every error body repeats the request's id)."""
        if record["fingerprint"] != self.fp:
            raise reused()
        if record["status"] == 0:
            raise ApiError(409, "IDEMPOTENCY_IN_PROGRESS",
                           "a request with this Idempotency-Key is still being processed; retry shortly",
                           headers={"Retry-After": "1"})
        try:
            stored = json.loads(Sealer(self.seal_key).open(bytes(record["sealed"]), self.key.encode()))
        except (SealError, ValueError, TypeError):
            raise reused() from None
        body = base64.b64decode(stored["body"])
        if request_id and stored["status"] >= 400:
            try:
                doc = json.loads(body)
                if isinstance(doc, dict) and isinstance(doc.get("error"), dict) and "request_id" in doc["error"]:
                    doc["error"]["request_id"] = request_id
                    body = json.dumps(doc).encode()
            except ValueError:
                pass
        resp = web.Response(status=stored["status"], body=body)
        for k, v in stored["headers"]:
            resp.headers.add(k, v)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp

    async def store(self, resp: web.Response, ttl_s: int, also=None) -> None:
        """Store the answer; ``also(conn)`` runs in the same transaction (usage metering)."""
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _SKIP_HEADERS]
        body = resp.body if isinstance(resp.body, (bytes, bytearray)) else b""
        record = json.dumps({"status": resp.status, "headers": headers,
                             "body": base64.b64encode(bytes(body)).decode()}).encode()
        sealed = Sealer(self.seal_key).seal(record, self.key.encode())
        async with self.pool.acquire(timeout=self.timeout) as conn:
            async with conn.transaction():
                await repo.finish_idempotency_slot(conn, self.key, self.claim, resp.status, sealed, ttl_s)
                if also is not None:
                    await also(conn)

    async def release(self) -> None:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            await repo.release_idempotency_slot(conn, self.key, self.claim)

    def release_soon(self, timeout: float) -> None:
        """Free the claim from a cancelled request (cannot await there)."""

        async def go():
            try:
                async with asyncio.timeout(timeout):
                    await self.release()
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.warning("could not release an idempotency claim; it expires with its lease")

        asyncio.ensure_future(go())


def job_key(slot: Slot) -> str:
    """What a job started under ``slot`` records (``jobs.idem_key``): the slot (a hash of the
    scope and the client's key, never the key itself) bound to the request's fingerprint, so a
    different request under a freed key never matches the old job."""
    return hashlib.sha256(slot.key.encode() + b"\0" + slot.fp.encode()).hexdigest()


def reused() -> ApiError:
    return ApiError(422, "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was used with a different request (method, path or body)")
