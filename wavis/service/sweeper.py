"""The store sweeper: a background task of every API process (one sweep at a time across
processes, under a PostgreSQL advisory lock).

Each round (``Settings.sweep_interval_s``):

* ciphertexts past their TTL: rows deleted (logged as ``ttl`` in ``ciphertext_deletions``),
  then their blobs and cache entries;
* orphan blobs — files without a row, left by a crash between the blob write and the row's
  commit, or between an eviction's commit and the file deletion — older than
  ``ORPHAN_MIN_AGE_S`` (so an upload in progress is never touched);
* expired idempotency records, and deletion-log entries older than 30 days (the totals stay);
* jobs past their expiry (they expire with the ciphertext TTL, ``jobs.delete_expired``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from . import billing, jobs, repo, stripe_gateway
from .ctstore import CiphertextStore
from .state import CTSTORE, DB, SETTINGS

log = logging.getLogger("wavis.service.sweeper")

SWEEP_LOCK_ID = 0x57415653  # "WAVS"
ORPHAN_MIN_AGE_S = 3600.0
BATCH = 500


async def expire_once(pool, store: CiphertextStore) -> int:
    """Delete every ciphertext past its TTL (rows, then blobs); returns how many."""
    n = 0
    while True:
        async with pool.acquire() as conn:
            rows = await repo.expire_ciphertexts(conn, BATCH)
        by_account: dict[str, list[str]] = {}
        for r in rows:
            by_account.setdefault(r["account_id"], []).append(r["id"])
        for account_id, ids in by_account.items():
            await store.drop(account_id, ids)
        n += len(rows)
        if len(rows) < BATCH:
            return n


async def orphans_once(pool, store: CiphertextStore, min_age_s: float = ORPHAN_MIN_AGE_S) -> int:
    """Delete blobs older than ``min_age_s`` that have no ciphertext row; returns how many."""
    cutoff = time.time() - min_age_s
    batch: list[tuple[str, str]] = []  # (name, ciphertext id)
    removed = 0

    async def flush() -> int:
        if not batch:
            return 0
        async with pool.acquire() as conn:
            alive = await repo.existing_ciphertext_ids(conn, [ct for _, ct in batch])
        dead = [name for name, ct in batch if ct not in alive]
        batch.clear()
        return await store.blobs.delete(dead) if dead else 0

    async for name, mtime in store.blobs.names("ct"):
        if mtime > cutoff:
            continue
        leaf = name.rsplit("/", 1)[-1]
        if leaf.endswith(".tmp"):  # an interrupted write
            removed += await store.blobs.delete([name])
            continue
        batch.append((name, leaf))
        if len(batch) >= BATCH:
            removed += await flush()
    removed += await flush()
    return removed


async def sweep_once(app: web.Application, orphan_min_age_s: float = ORPHAN_MIN_AGE_S) -> dict[str, int]:
    pool, store = app[DB], app[CTSTORE]
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK_ID):
            return {}
        try:
            expired = await expire_once(pool, store)
            orphans = await orphans_once(pool, store, orphan_min_age_s)
            idem = await repo.purge_idempotency_records(conn)
            pruned = await repo.prune_deletion_log(conn)
            jobs_gone = await jobs.delete_expired(conn)
            invoices = len(await billing.close_periods(conn))  # ended periods → local invoices
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK_ID)
    out = {"expired": expired, "orphans": orphans, "idempotency": idem, "deletion_log": pruned, "jobs": jobs_gone,
           "invoices": invoices}
    if any(out.values()):
        log.info("sweep: %s", out)
    return out


async def sweeper_ctx(app: web.Application):
    interval = app[SETTINGS].sweep_interval_s

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await sweep_once(app)
                # ended periods' billed usage of Stripe-billed accounts → Stripe (idempotent)
                await stripe_gateway.report_usage(app)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an outage: try again next round
                log.warning("sweep failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, interval)

    task = asyncio.create_task(loop()) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
