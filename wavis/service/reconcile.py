"""Recovering jobs whose stream message is gone (issues 13/14): PostgreSQL is the source of
truth, Redis only carries jobs to workers.

Redis may lose a job's message — restarted without persistence, flushed, failed over, or
restored from an older snapshot — while the job's row is still QUEUED (nobody took it) or
RUNNING (the message was pending on a worker that then died, so ``XAUTOCLAIM`` has nothing to
reclaim). Each job row names the message that carries it (``jobs.stream_entry``, migration
061). Every worker runs ``Reconciler`` (every ``job_reconcile_interval_s``, and at once when it
finds the job streams missing: Redis came back empty); one pass, under a PostgreSQL advisory
lock so one process acts at a time:

1. active jobs of this deployment (``jobs.queue`` = this Redis key prefix) older than
   ``job_lost_grace_s`` (a job just written may not name its message yet);
2. whose message does not exist (``XRANGE id id`` on its stream), or that never had one, and
   are not RUNNING on a live worker (heartbeats, ``streams.workers_key``): the in-process fast
   path runs jobs without a message on their own worker — those count as lost only when that
   worker is gone, or, seen by that worker itself, when it no longer holds them;
3. seen so in two passes at least ``confirm_s`` apart (a Redis that just came back has no
   heartbeats until the workers' next beat; nothing is decided on one look);
4. then, row-locked (``FOR UPDATE SKIP LOCKED``) and only if the row still names the same
   message: an **asynchronous** job — its request is in the row — is sent again (a new
   ``XADD``, the row names the new message); a **synchronous** job — its request travelled
   only in the lost message — is FAILED with 503 ``JOB_LOST`` (retryable, never charged), and
   its waiter, if still there, gets that answer at once.

Exactly-once completion does not depend on any of this: a job sent twice is claimed twice,
and the attempt counter fences the older claim (``jobs.complete_jobs``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from . import jobs, streams
from .state import DB, REDIS, SETTINGS

if TYPE_CHECKING:  # pragma: no cover
    from .worker import Worker

log = logging.getLogger("wavis.service.reconcile")

RECONCILE_LOCK_ID = 0x57414A52  # "WAJR"
BATCH = 500

JOB_LOST = {"status": 503, "code": "JOB_LOST",
            "message": "the job's message was lost by the queue (Redis) before it ran; nothing was charged, "
                       "retry the request", "details": {"retryable": True}}


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


class Reconciler:
    """One worker's view of lost jobs (see the module docstring)."""

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.app = worker.app
        s = self.app[SETTINGS]
        self.grace_s = s.job_lost_grace_s
        # long enough for every live worker to beat again after Redis came back empty
        self.confirm_s = s.worker_ttl_s + 2 * s.worker_heartbeat_s
        self.seen: dict[str, tuple[str | None, float]] = {}  # job id → (stream_entry, first seen lost)
        self.requeued = 0
        self.failed = 0

    async def once(self) -> dict[str, int]:
        """One pass; returns how many jobs were sent again and failed."""
        pool, redis = self.app[DB], self.app[REDIS]
        timeout = self.app[SETTINGS].upstream_timeout_s
        async with pool.acquire(timeout=timeout) as conn:
            rows = await conn.fetch(
                """SELECT id, account_id, api_key_id, kind, operation, batch_key, attempts, is_async, status,
                          created_at, cost_units, cost_jpy, stream_entry, worker, reply_to, affinity, idem_key
                   FROM jobs WHERE queue = $3 AND status IN ('QUEUED', 'RUNNING') AND expires_at > now()
                     AND created_at < now() - make_interval(secs => $1::float8)
                   ORDER BY created_at LIMIT $2""", float(self.grace_s), BATCH, self.app[SETTINGS].redis_prefix)
        if not rows:
            self.seen.clear()
            return {"requeued": 0, "failed": 0}
        exists = await self._existing(redis, [jobs.parse_entry(r["stream_entry"]) for r in rows])
        live = set(self.worker.live_workers)
        held_ids = {j.id for j in self.worker.held.values()}
        now = time.monotonic()
        lost = []
        for r, ok in zip(rows, exists):
            if ok:
                continue
            if r["status"] == jobs.RUNNING and r["worker"] in live:
                # on a live worker: lost only if that worker is this one and no longer holds it
                if r["worker"] != self.worker.name or r["id"] in held_ids:
                    continue
            lost.append(r)
        ids = {r["id"] for r in lost}
        self.seen = {k: v for k, v in self.seen.items() if k in ids}
        ready = []
        for r in lost:
            entry, first = self.seen.get(r["id"], (None, None))
            if first is None or entry != r["stream_entry"]:
                self.seen[r["id"]] = (r["stream_entry"], now)
            elif now - first >= self.confirm_s:
                ready.append(r)
        if not ready:
            return {"requeued": 0, "failed": 0}
        return await self._act(ready)

    async def _existing(self, redis, entries: list[tuple[str, str] | None]) -> list[bool]:
        """For each (stream, id): whether that message is still in its stream."""
        out = [False] * len(entries)
        todo = [(i, e) for i, e in enumerate(entries) if e is not None]
        if not todo:
            return out
        async with redis.pipeline(transaction=False) as pipe:
            for _, (stream, eid) in todo:
                pipe.xrange(stream, min=eid, max=eid, count=1)
            got = await pipe.execute()
        for (i, _), res in zip(todo, got):
            out[i] = bool(res)
        return out

    async def _act(self, ready: list) -> dict[str, int]:
        pool, redis = self.app[DB], self.app[REDIS]
        s = self.app[SETTINGS]
        requeued, failed_rows = 0, []
        async with pool.acquire(timeout=s.upstream_timeout_s) as conn:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK_ID):
                    return {"requeued": 0, "failed": 0}  # another process is at it
                want = {r["id"]: r for r in ready}
                locked = await conn.fetch(
                    """SELECT id, stream_entry, status, payload IS NOT NULL AS has_payload, affinity
                       FROM jobs WHERE id = ANY($1::text[]) AND status IN ('QUEUED', 'RUNNING')
                       FOR UPDATE SKIP LOCKED""", list(want))
                for row in locked:
                    r = want[row["id"]]
                    if row["stream_entry"] != r["stream_entry"] or row["status"] != r["status"]:
                        continue  # it moved on since we looked
                    self.seen.pop(row["id"], None)
                    if r["is_async"] and row["has_payload"]:
                        affinity = row["affinity"] or r["batch_key"]
                        shard = streams.shard_of(affinity, s.job_shards)
                        stream = streams.shard_stream(s.redis_prefix, shard)
                        eid = _s(await redis.xadd(stream, {"job": row["id"], "reply": ""}))
                        await conn.execute("UPDATE jobs SET stream_entry = $2 WHERE id = $1",
                                           row["id"], f"{stream} {eid}")
                        requeued += 1
                    else:
                        failed_rows.append(r)
        failed = []
        if failed_rows:
            async with pool.acquire(timeout=s.upstream_timeout_s) as conn:
                failed = await jobs.fail_lost(conn, failed_rows, JOB_LOST)
            by_id = {r["id"]: r for r in failed_rows}
            for job_id in failed:
                reply_to = by_id[job_id]["reply_to"]
                if reply_to:
                    await self.worker._reply(reply_to, job_id, {  # noqa: SLF001 - the worker's reply path
                        "status": jobs.FAILED, "result": None, "error": JOB_LOST, "batch_size": None,
                        "attempts": by_id[job_id]["attempts"], "queue_ms": 0.0, "compute_ms": 0.0})
        self.requeued += requeued
        self.failed += len(failed)
        if requeued or failed:
            log.warning("reconciler: %d lost job message(s) sent again from PostgreSQL, %d synchronous job(s) "
                        "failed as JOB_LOST", requeued, len(failed))
        return {"requeued": requeued, "failed": len(failed)}

    async def loop(self, wake: asyncio.Event) -> None:
        interval = max(0.2, self.app[SETTINGS].job_reconcile_interval_s)
        while True:
            try:  # asyncio.timeout, not wait_for (3.11's wait_for can swallow a cancellation)
                async with asyncio.timeout(interval):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis/PostgreSQL away: next round
                log.warning("reconciler pass failed: %r", exc)
