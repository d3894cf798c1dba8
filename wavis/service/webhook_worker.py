"""The webhook delivery worker: takes due events from the outbox (``webhook_events``), POSTs
them through the SSRF guard (``ssrf.safe_post``), and records every attempt.

Runs inside ``wavis serve`` (a background task, ``WAVIS_WEBHOOK_WORKER=1``, the default) and/or
as its own process, ``wavis webhooks``; any number of workers may run against one database.

* Request: ``POST <url>`` with the event body (``webhooks.event_body``: byte-identical on every
  attempt) and ``Content-Type: application/json``, ``X-WAVIS-Event-Id``, ``X-WAVIS-Event-Type``,
  ``X-WAVIS-Timestamp`` (unix seconds of this attempt) and ``X-WAVIS-Signature:
  sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` — two signatures, space-separated,
  while a regenerated secret's old one is still valid (24 h).
* Success: a 2xx within ``webhook_timeout_s`` (10 s, resolution included). Anything else — 3xx
  (redirects are not followed), 4xx, 5xx, timeout, refused connection, TLS error, an address the
  SSRF guard refuses — is a failed attempt, retried after ``webhook_retry_schedule_s`` (30 s,
  2 min, 10 min, 1 h, 6 h, 24 h: about 31 h in all) each scaled by a random factor in
  [0.8, 1.2] (jitter, so retries of many events spread out), then ``failed``.
* At-least-once with a stable event id: a claim (``repo_webhooks.claim_due``: ``FOR UPDATE SKIP
  LOCKED``) counts the attempt and leases the row for ``webhook_lease_s``; two workers never
  make the same attempt, and if a worker dies mid-delivery the lease ends and another worker
  makes the next attempt of the same event. A result is stored only while the claim is still
  that attempt's.
* An endpoint whose deliveries have all failed for ``webhook_disable_after_s`` (3 days) is
  disabled (its object says when and why, and a warning is logged); its pending events fail.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg

import wavis
from wavis.client.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

from . import repo_webhooks as rw, ssrf
from .ids import utcnow
from .sealing import Sealer, SealError
from .settings import Settings
from .webhooks import event_body

log = logging.getLogger("wavis.service.webhooks")

JITTER = (0.8, 1.2)
RETENTION = timedelta(days=30)  # finished events (history) are kept this long
PURGE_EVERY_S = 600.0
ERROR_SNIPPET = 200


def retry_delay(schedule: tuple[float, ...], cycle_attempt: int, rng: random.Random) -> timedelta | None:
    """Delay before the next attempt after failed attempt number ``cycle_attempt`` (1-based) of
    the current cycle; None when the schedule is used up."""
    if cycle_attempt > len(schedule):
        return None
    return timedelta(seconds=schedule[cycle_attempt - 1] * rng.uniform(*JITTER))


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, ssrf.UnsafeTarget):
        return f"refused by the SSRF guard: {exc.message}"
    if isinstance(exc, ssrf.TargetError):
        return exc.message
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"no complete answer within {timeout_s:g} s"
    return f"{type(exc).__name__}: {exc}"[:300]


def _snippet(body: bytes) -> str:
    text = body[:ERROR_SNIPPET].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


class DeliveryWorker:
    """Delivers due webhook events from ``pool``'s database. ``resolver`` is the aiohttp
    resolver hosts are looked up with (default ``getaddrinfo``; tests inject theirs);
    ``ssl_context`` is the trust store for receivers' certificates (default: the system's)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, resolver=None,
                 rng: random.Random | None = None, ssl_context=None) -> None:
        if not settings.master_key:
            raise ValueError("the webhook worker needs the master key (Settings.with_master_key())")
        self.pool = pool
        self.settings = settings
        self.resolver = resolver
        self.ssl_context = ssl_context  # None: the default trust store
        self.rng = rng or random.SystemRandom()
        self.sealer = Sealer(settings.master_key)
        self.stop = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0
        self._last_purge = 0.0

    def _resolver(self):
        if self.resolver is None:
            from aiohttp.resolver import ThreadedResolver  # noqa: PLC0415

            self.resolver = ThreadedResolver()
        return self.resolver

    def _secrets(self, row: asyncpg.Record) -> list[bytes]:
        aad = rw.secret_aad(row["webhook_id"], row["account_id"])
        out = [self.sealer.open(row["secret_sealed"], aad)]
        if row["old_secret_live"] and row["old_secret_sealed"] is not None:
            out.append(self.sealer.open(row["old_secret_sealed"], aad))
        return out

    async def run_once(self) -> int:
        """Claim the due events (up to ``webhook_concurrency``) and deliver them concurrently.
        Returns how many were attempted."""
        s = self.settings
        async with self.pool.acquire() as conn:
            rows = await rw.claim_due(conn, s.webhook_concurrency, timedelta(seconds=s.webhook_lease_s))
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        s = self.settings
        try:
            secrets_ = self._secrets(row)
        except SealError as exc:  # master key changed: nothing can be signed
            log.error("webhook %s: its secret does not open (%s); event %s failed", row["webhook_id"], exc, row["id"])
            async with self.pool.acquire() as conn:
                await rw.fail_event(conn, row["id"], row["attempts"], "the webhook secret is unreadable")
            return
        body = event_body(row["id"], row["type"], row["created_at"], row["account_id"], row["payload"])
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"WAVIS-Webhooks/{wavis.__version__}",
            EVENT_ID_HEADER: row["id"],
            "X-WAVIS-Event-Type": row["type"],
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: " ".join(signature(k, ts, body) for k in secrets_),
        }
        started, t0 = utcnow(), time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            result = await ssrf.safe_post(row["url"], body, headers, resolver=self._resolver(),
                                          allow_loopback=s.webhooks_allow_loopback, timeout_s=s.webhook_timeout_s,
                                          ssl_context=self.ssl_context)
            status_code = result.status
            if not 200 <= status_code < 300:
                snippet = _snippet(result.body)
                error = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
        except asyncio.CancelledError:
            raise
        except (ssrf.TargetError, TimeoutError, asyncio.TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = _describe(exc, s.webhook_timeout_s)
        duration_ms = (time.perf_counter() - t0) * 1e3
        success = error is None
        retry_in = None if success else retry_delay(s.webhook_retry_schedule_s, row["cycle_attempts"], self.rng)
        async with self.pool.acquire() as conn:
            disabled = await rw.record_attempt(
                conn, event_id=row["id"], webhook_id=row["webhook_id"], attempt=row["attempts"], started_at=started,
                duration_ms=duration_ms, status_code=status_code, error=error, success=success, retry_in=retry_in,
                disable_after=timedelta(seconds=s.webhook_disable_after_s))
        if success:
            self.delivered += 1
            log.info("webhook event %s (%s) delivered to %s in %.0f ms", row["id"], row["type"], row["webhook_id"],
                     duration_ms)
        else:
            self.failed_attempts += 1
            log.info("webhook event %s attempt %d to %s failed: %s%s", row["id"], row["attempts"], row["webhook_id"],
                     error, "" if retry_in is not None else " (no retries left)")
        if disabled:
            log.warning("webhook %s of %s disabled: %s", row["webhook_id"], row["account_id"], disabled)

    async def _purge(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = time.monotonic()
        async with self.pool.acquire() as conn:
            n = await rw.purge_old(conn, RETENTION)
        if n:
            log.info("purged %d finished webhook events older than %s", n, RETENTION)

    async def run(self) -> None:
        """Deliver until ``stop`` is set; a batch in flight finishes first. Database errors
        are logged and retried after a pause (never fatal)."""
        pause = self.settings.webhook_poll_s
        while not self.stop.is_set():
            try:
                n = await self.run_once()
                await self._purge()
                pause = self.settings.webhook_poll_s
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, asyncio.TimeoutError) as exc:
                log.warning("webhook worker: database unavailable (%s); retrying", type(exc).__name__)
                n, pause = 0, min(30.0, max(pause * 2, 1.0))
            if n == 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), pause)
                except (TimeoutError, asyncio.TimeoutError):
                    pass


async def worker_ctx_start(pool: asyncpg.Pool, settings: Settings, resolver=None) -> tuple[DeliveryWorker, asyncio.Task]:
    worker = DeliveryWorker(pool, settings, resolver=resolver)
    task = asyncio.create_task(worker.run(), name="wavis-webhook-worker")
    return worker, task


async def stop_worker(worker: DeliveryWorker, task: asyncio.Task, grace_s: float) -> None:
    """Stop claiming, let the batch in flight finish (up to ``grace_s``), then cancel: a
    cancelled attempt is retried by whichever worker runs next, after its lease."""
    worker.stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), grace_s)
    except (TimeoutError, asyncio.TimeoutError):
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


# --- `wavis webhooks` ------------------------------------------------------------------------

async def _serve(settings: Settings) -> None:
    import signal  # noqa: PLC0415

    from . import db  # noqa: PLC0415

    pool = await db.create_pool(settings.database_url, min_size=1, max_size=max(2, settings.webhook_concurrency // 4 + 2))
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        worker, task = await worker_ctx_start(pool, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop.set)
        log.info("webhook worker running (poll %.2f s, lease %.0f s)", settings.webhook_poll_s,
                 settings.webhook_lease_s)
        await worker.stop.wait()
        await stop_worker(worker, task, settings.webhook_timeout_s + 5)
        log.info("webhook worker stopped (%d delivered, %d failed attempts)", worker.delivered,
                 worker.failed_attempts)
    finally:
        await pool.close()


def run(settings: Settings) -> None:
    """``wavis webhooks``: the delivery worker alone (WAVIS_DATABASE_URL, or the embedded
    PostgreSQL of the data directory; WAVIS_MASTER_KEY, or the data directory's master key)."""
    from . import embedded  # noqa: PLC0415

    settings = settings.with_master_key()
    emb = embedded.attach(settings.data_dir, database_url=settings.database_url, redis_url=None, need_redis=False)
    try:
        asyncio.run(_serve(replace(settings, database_url=emb.database_url)))
    finally:
        emb.close()


__all__: list[Any] = ["DeliveryWorker", "retry_delay", "run", "stop_worker"]
