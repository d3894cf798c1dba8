"""SQL of webhook endpoints (``webhooks``) and their events (``webhook_events``,
``webhook_attempts``). Tenant-scoped like ``repo.py``: another account's row is "not found".
Events are written only by ``webhooks.emit_event`` (the outbox); the worker's claim and
result SQL are here too, so every statement on these tables lives in one module."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import asyncpg

from .ids import new_id

WEBHOOK_COLUMNS = ("id, account_id, url, events, enabled, failing_since, disabled_at, disabled_reason, "
                   "old_secret_expires_at, created_at, updated_at")
EVENT_COLUMNS = ("id, account_id, webhook_id, type, status, attempts, last_status_code, last_error, "
                 "next_attempt_at, last_attempt_at, delivered_at, created_at")


def secret_aad(webhook_id: str, account_id: str) -> bytes:
    """Associated data of a sealed webhook secret: a blob moved to another row does not open."""
    return f"webhook-secret:{webhook_id}:{account_id}".encode()


# --- endpoints ------------------------------------------------------------------------------

async def create_webhook(conn: asyncpg.Connection, *, account_id: str, url: str, events: list[str],
                         seal: Callable[[str, str], bytes], max_endpoints: int) -> asyncpg.Record | None:
    """Insert an endpoint; ``seal(webhook_id, account_id)`` returns its sealed secret. None when
    the account already has ``max_endpoints`` (counted under a per-account advisory lock)."""
    webhook_id = new_id("wh")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhook-create:' || $1))", account_id)
        n = await conn.fetchval("SELECT count(*) FROM webhooks WHERE account_id = $1", account_id)
        if n >= max_endpoints:
            return None
        return await conn.fetchrow(
            f"""INSERT INTO webhooks (id, account_id, url, events, secret_sealed) VALUES ($1, $2, $3, $4, $5)
                RETURNING {WEBHOOK_COLUMNS}""",
            webhook_id, account_id, url, events, seal(webhook_id, account_id))


async def list_webhooks(conn: asyncpg.Connection, account_id: str, limit: int,
                        after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    if after is None:
        return await conn.fetch(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 ORDER BY created_at, id LIMIT $2",
            account_id, limit + 1)
    return await conn.fetch(
        f"""SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 AND (created_at, id) > ($2, $3)
            ORDER BY created_at, id LIMIT $4""", account_id, after[0], after[1], limit + 1)


async def get_webhook(conn: asyncpg.Connection, account_id: str, webhook_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2",
                               webhook_id, account_id)


async def update_webhook(conn: asyncpg.Connection, account_id: str, webhook_id: str, *,
                         url: str | None = None, events: list[str] | None = None,
                         enabled: bool | None = None) -> asyncpg.Record | None:
    """Change only what is given. ``enabled=True`` re-enables a disabled endpoint (and forgets
    its failure streak); ``enabled=False`` pauses it (its pending events wait, they are not
    failed: a paused endpoint gets them when enabled again)."""
    return await conn.fetchrow(
        f"""UPDATE webhooks SET
               url = COALESCE($3, url),
               events = COALESCE($4, events),
               enabled = COALESCE($5, enabled),
               failing_since = CASE WHEN $5 IS TRUE AND NOT enabled THEN NULL ELSE failing_since END,
               disabled_at = CASE WHEN $5 IS TRUE THEN NULL WHEN $5 IS FALSE AND enabled THEN now()
                                  ELSE disabled_at END,
               disabled_reason = CASE WHEN $5 IS TRUE THEN NULL WHEN $5 IS FALSE AND enabled THEN 'disabled by the user'
                                      ELSE disabled_reason END,
               updated_at = now()
            WHERE id = $1 AND account_id = $2 RETURNING {WEBHOOK_COLUMNS}""",
        webhook_id, account_id, url, events, enabled)


async def delete_webhook(conn: asyncpg.Connection, account_id: str, webhook_id: str) -> bool:
    """Delete the endpoint; its events (history included) go with it."""
    return await conn.fetchval("DELETE FROM webhooks WHERE id = $1 AND account_id = $2 RETURNING id",
                               webhook_id, account_id) is not None


async def regenerate_secret(conn: asyncpg.Connection, account_id: str, webhook_id: str, new_sealed: bytes,
                            overlap: timedelta) -> asyncpg.Record | None:
    """The current secret becomes the old one (valid for ``overlap``; a previous old one is
    dropped), ``new_sealed`` the current one."""
    return await conn.fetchrow(
        f"""UPDATE webhooks SET old_secret_sealed = secret_sealed, old_secret_expires_at = now() + $4::interval,
                                secret_sealed = $3, updated_at = now()
            WHERE id = $1 AND account_id = $2 RETURNING {WEBHOOK_COLUMNS}""",
        webhook_id, account_id, new_sealed, overlap)


async def enabled_webhook_ids(conn: asyncpg.Connection, account_id: str) -> list[str]:
    return [r["id"] for r in await conn.fetch(
        "SELECT id FROM webhooks WHERE account_id = $1 AND enabled ORDER BY created_at, id", account_id)]


# --- events (delivery history) ------------------------------------------------------------

async def list_events(conn: asyncpg.Connection, account_id: str, limit: int, after: tuple[datetime, str] | None,
                      *, webhook_id: str | None = None, status: str | None = None,
                      event_type: str | None = None) -> list[asyncpg.Record]:
    where = ["account_id = $1"]
    args: list[Any] = [account_id]
    for column, value in (("webhook_id", webhook_id), ("status", status), ("type", event_type)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if after is not None:
        args.extend(after)
        where.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    return await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE {' AND '.join(where)} "
        f"ORDER BY created_at, id LIMIT ${len(args)}", *args)


async def get_event(conn: asyncpg.Connection, account_id: str, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE id = $1 AND account_id = $2",
                               event_id, account_id)


async def list_attempts(conn: asyncpg.Connection, event_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT attempt, started_at, duration_ms, status_code, error FROM webhook_attempts
           WHERE event_id = $1 ORDER BY attempt""", event_id)


async def redeliver(conn: asyncpg.Connection, account_id: str, event_id: str) -> tuple[asyncpg.Record | None, bool]:
    """Queue the event again now, with a fresh retry schedule (same event id). Returns
    (the event row or None, whether its endpoint is enabled; a disabled endpoint's event is not
    queued)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT e.id, w.enabled FROM webhook_events e JOIN webhooks w ON w.id = e.webhook_id
               WHERE e.id = $1 AND e.account_id = $2 FOR UPDATE OF e""", event_id, account_id)
        if row is None:
            return None, False
        if not row["enabled"]:
            return await get_event(conn, account_id, event_id), False
        updated = await conn.fetchrow(
            f"""UPDATE webhook_events SET status = 'pending', cycle_attempts = 0, next_attempt_at = now(),
                       delivered_at = NULL
                WHERE id = $1 RETURNING {EVENT_COLUMNS}""", event_id)
        return updated, True


# --- the delivery worker ------------------------------------------------------------------

async def claim_due(conn: asyncpg.Connection, batch: int, lease: timedelta) -> list[asyncpg.Record]:
    """Claim up to ``batch`` due attempts. ``FOR UPDATE SKIP LOCKED`` keeps concurrent workers
    off each other's rows while claiming; the claim counts the attempt and pushes
    ``next_attempt_at`` out by ``lease``, so no other worker takes it while it is in flight, and
    a worker that dies mid-delivery leaves it to be retried once the lease ends. Events of a
    paused (disabled) endpoint wait."""
    return await conn.fetch(
        """WITH due AS (
               SELECT e.id FROM webhook_events e
               WHERE e.status = 'pending' AND e.next_attempt_at <= now()
                 AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = e.webhook_id AND w.enabled)
               ORDER BY e.next_attempt_at LIMIT $1
               FOR UPDATE OF e SKIP LOCKED)
           UPDATE webhook_events e
              SET attempts = e.attempts + 1, cycle_attempts = e.cycle_attempts + 1,
                  next_attempt_at = now() + $2::interval, last_attempt_at = now()
             FROM due, webhooks w
            WHERE e.id = due.id AND w.id = e.webhook_id
        RETURNING e.id, e.account_id, e.webhook_id, e.type, e.payload, e.created_at, e.attempts, e.cycle_attempts,
                  w.url, w.enabled, w.secret_sealed, w.old_secret_sealed, w.old_secret_expires_at,
                  (w.old_secret_expires_at IS NOT NULL AND w.old_secret_expires_at > now()) AS old_secret_live""",
        batch, lease)


async def record_attempt(conn: asyncpg.Connection, *, event_id: str, webhook_id: str, attempt: int,
                         started_at: datetime, duration_ms: float, status_code: int | None, error: str | None,
                         success: bool, retry_in: timedelta | None, disable_after: timedelta) -> str | None:
    """Store one attempt's outcome (only if the claim is still this attempt's: a worker whose
    lease ran out cannot overwrite a newer attempt) and the endpoint's health. ``retry_in`` None
    on a failure means the schedule is used up (→ failed). Returns the disabled reason when this
    failure disabled the endpoint (failing for ``disable_after``), else None."""
    async with conn.transaction():
        status = "delivered" if success else ("failed" if retry_in is None else "pending")
        current = await conn.fetchval(
            """UPDATE webhook_events SET status = $3, last_status_code = $4, last_error = $5,
                      delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END,
                      next_attempt_at = CASE WHEN $3 = 'pending' THEN now() + $6::interval ELSE next_attempt_at END
               WHERE id = $1 AND attempts = $2 AND status = 'pending' RETURNING id""",
            event_id, attempt, status, status_code, error, retry_in or timedelta(0))
        await conn.execute(
            """INSERT INTO webhook_attempts (event_id, attempt, started_at, duration_ms, status_code, error)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            event_id, attempt, started_at, duration_ms, status_code, error)
        if current is None:
            return None
        if success:
            await conn.execute("UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                               webhook_id)
            return None
        since = await conn.fetchval(
            """UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 AND enabled
               RETURNING failing_since""", webhook_id, started_at)
        if since is None or since > started_at - disable_after:
            return None
        days = disable_after.total_seconds() / 86400
        reason = f"every delivery failed for {days:g} days (last: {error or status_code})"[:500]
        await conn.execute(
            """UPDATE webhooks SET enabled = false, disabled_at = now(), disabled_reason = $2, updated_at = now()
               WHERE id = $1""", webhook_id, reason)
        await conn.execute(
            """UPDATE webhook_events SET status = 'failed', last_error = COALESCE(last_error, 'endpoint disabled')
               WHERE webhook_id = $1 AND status = 'pending'""", webhook_id)
        return reason


async def fail_event(conn: asyncpg.Connection, event_id: str, attempt: int, error: str) -> None:
    """A claimed attempt that cannot be made at all (endpoint disabled, secret unreadable)."""
    await conn.execute(
        """UPDATE webhook_events SET status = 'failed', last_error = $3
           WHERE id = $1 AND attempts = $2 AND status = 'pending'""", event_id, attempt, error)


async def backlog(conn: asyncpg.Connection) -> tuple[int, float]:
    """(pending events, seconds since the oldest pending one was created) — all accounts."""
    row = await conn.fetchrow(
        """SELECT count(*) AS n, COALESCE(extract(epoch FROM now() - min(created_at)), 0) AS age
           FROM webhook_events WHERE status = 'pending'""")
    return int(row["n"]), float(row["age"])


async def purge_old(conn: asyncpg.Connection, older_than: timedelta) -> int:
    """Drop finished events (and their attempts) older than ``older_than``."""
    n = await conn.fetchval(
        """WITH gone AS (DELETE FROM webhook_events WHERE status <> 'pending' AND created_at < now() - $1::interval
                         RETURNING 1) SELECT count(*) FROM gone""", older_than)
    return int(n)
