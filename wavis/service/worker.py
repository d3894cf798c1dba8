"""The compute worker (issue 13): consumes the job streams through the Redis consumer group,
claims jobs in PostgreSQL, batches them (``batcher.py``) onto the compute pool, and completes
them exactly once (``jobs.complete_jobs``).

It runs inside ``wavis serve`` (the embedded default) and alone as ``wavis worker`` (then API
processes run with ``--engine remote``). Both use this class over the same app state (DB
pool, Redis, compute pool, key LRUs), so one code path serves both.

Per message: ``XREADGROUP`` (only shards this worker owns, ``streams.py``) → claim in
PostgreSQL (``attempts`` + 1 = this claim's fencing token; done/cancelled/expired jobs are
acknowledged without work) → batcher → one backend call per batch on the compute pool →
``complete_jobs`` (row + hooks, one transaction, fenced) → ``XACK`` + ``XDEL`` → reply to a
synchronous waiter. A worker that dies leaves its messages pending in the group; any worker
takes them over with ``XAUTOCLAIM`` once idle for ``job_reclaim_idle_s``. A live worker keeps
the messages it holds fresh (``XCLAIM … JUSTID`` to itself) so a long batch is not reclaimed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from aiohttp import web

from . import jobs, provenance, repo, streams, tfhe_store
from .batcher import Batcher
from .errors import ApiError, not_found
from .ids import new_id
from .state import DB, ENGINE, REDIS, SETTINGS

log = logging.getLogger("wavis.service.worker")

FAST_JOB_LOST = {"status": 503, "code": "JOB_LOST",
                 "message": "the job's row was lost by PostgreSQL before the job completed; nothing was charged, "
                            "retry the request", "details": {"retryable": True}}


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


async def _cancel_and_wait(tasks, bound_s: float) -> None:
    """Cancel ``tasks`` and wait for them, at most ``bound_s`` seconds in all. A task that lost
    its cancellation (Python 3.11's ``asyncio.wait_for`` can swallow one that races its timeout)
    is cancelled again every 0.5 s; whatever still runs after the bound is left to the loop's
    shutdown with a warning, so an app's teardown never hangs on it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning("worker: %d task(s) did not stop within %.1f s: %s", len(pending), bound_s,
                        sorted(t.get_name() for t in pending))
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))


class Worker:
    def __init__(self, app: web.Application, *, name: str | None = None,
                 local_reply: Callable[[str, str, dict[str, Any]], bool] | None = None) -> None:
        s = app[SETTINGS]
        self.app = app
        self.settings = s
        self.name = name or new_id("wrk", 6)
        self.prefix = s.redis_prefix
        self.shards = max(1, s.job_shards)
        self.local_reply = local_reply  # embedded: (api_id, job_id, reply) → handled here?
        slots = s.batch_slots or s.compute_threads
        self.batcher: Batcher[jobs.Job] = Batcher(self._run_batch, max_size=max(1, s.batch_max_size),
                                                  max_delay_s=max(0.0, s.batch_max_delay_ms) / 1e3, slots=slots)
        # messages read and not yet settled, bounded: what may wait in this process's memory
        self.prefetch = max(16, s.batch_max_size * (slots + 1))
        self.held: dict[tuple[str, str], jobs.Job] = {}
        self.owned: list[int] = []
        self.live_workers: list[str] = []
        self._space = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self.completed = 0  # jobs this worker completed (tests, metrics)
        self.batches = 0
        self.replayed = 0  # redelivered synchronous TFHE jobs answered by recomputing (tests)
        from .reconcile import Reconciler  # noqa: PLC0415

        self.reconciler = Reconciler(self)
        self._reconcile_now = asyncio.Event()
        self._side: set[asyncio.Task] = set()  # replies computed again for redelivered jobs

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        redis = self.app[REDIS]
        await streams.ensure_groups(redis, self.prefix, self.shards)
        await self._heartbeat_once()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="wavis-worker-heartbeat"),
            loop.create_task(self._read_loop(), name="wavis-worker-read"),
            loop.create_task(self._reclaim_loop(), name="wavis-worker-reclaim"),
            loop.create_task(self.reconciler.loop(self._reconcile_now), name="wavis-worker-reconcile"),
        ]
        log.info("worker %s started (%d shards, batch ≤ %d / %.1f ms)", self.name, self.shards,
                 self.batcher.max_size, self.batcher.max_delay_s * 1e3)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, finish what is held (bounded), leave the worker set so others take
        over this worker's shards at once; anything unfinished stays pending and is reclaimed."""
        self._stopping = True
        await _cancel_and_wait([*self._tasks, *self._side], bound_s=5.0)
        try:
            await asyncio.wait_for(self.batcher.drain(), timeout)
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            self.batcher.cancel()
        except Exception:  # noqa: BLE001 - timed out: the rest stays pending and is reclaimed
            self.batcher.cancel()
        try:
            await self.app[REDIS].zrem(streams.workers_key(self.prefix), self.name)
        except asyncio.CancelledError:
            # a Redis connection cancelled under one of our loops may surface here; only a
            # cancellation of this very task is ours to pass on
            if _being_cancelled():
                raise
        except Exception:  # noqa: BLE001 - the heartbeat TTL removes it anyway
            pass

    # -- membership / affinity ------------------------------------------------------------------------
    async def _heartbeat_once(self) -> None:
        redis = self.app[REDIS]
        key = streams.workers_key(self.prefix)
        now = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.name: now})
            pipe.zremrangebyscore(key, "-inf", now - 3600)
            pipe.zrangebyscore(key, now - self.settings.worker_ttl_s, "+inf")
            _, _, live = await pipe.execute()
        self.live_workers = sorted(_s(w) for w in live)
        if self.name not in self.live_workers:
            self.live_workers.append(self.name)
        owned = [sh for sh in range(self.shards) if streams.owner_of(sh, self.live_workers) == self.name]
        if owned != self.owned:
            log.info("worker %s owns shards %s of %d (%d live workers)", self.name, owned, self.shards,
                     len(self.live_workers))
        self.owned = owned

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.worker_heartbeat_s)
            try:
                await self._heartbeat_once()
                await self._touch_held()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried next beat
                log.warning("worker heartbeat failed: %r", exc)

    async def _touch_held(self) -> None:
        """Reset the idle time of the messages this worker holds (XCLAIM to itself, JUSTID),
        so a batch that runs long is not taken over while this worker is alive. Messages idle
        for less than half a heartbeat were just (re)claimed and are left alone."""
        by_stream: dict[str, list[str]] = {}
        for (stream, eid) in list(self.held):
            if stream:  # "" = a job of the in-process fast path: no message
                by_stream.setdefault(stream, []).append(eid)
        redis = self.app[REDIS]
        min_idle = int(self.settings.worker_heartbeat_s * 500)
        for stream, ids in by_stream.items():
            await redis.xclaim(stream, streams.GROUP, self.name, min_idle, ids, justid=True)

    # -- reading ----------------------------------------------------------------------------------------
    def _free(self) -> int:
        return self.prefetch - len(self.held)

    def accepts_local(self) -> bool:
        """Room for a job of the in-process fast path (``Dispatcher.submit``): running, and
        what this worker holds stays within its prefetch bound."""
        return bool(self._tasks) and not self._stopping and self._free() > 0

    def run_local(self, row, payload: dict[str, Any], reply_to: str) -> None:
        """Take a job the dispatcher of this process wrote already claimed by this worker
        (``jobs.insert(claimed_by=…)``, fencing token 1): straight to the batcher, no message."""
        job = jobs.job_from_row(row, payload)
        job.stream, job.entry_id, job.reply_to, job.claimed_at = "", job.id, reply_to, time.monotonic()
        self.held[("", job.id)] = job
        self.batcher.add(job.batch_key, job)

    async def _read_loop(self) -> None:
        redis = self.app[REDIS]
        while True:
            try:
                free = self._free()
                if free <= 0 or not self.owned:
                    self._space.clear()
                    try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                        async with asyncio.timeout(0.2):
                            await self._space.wait()
                    except TimeoutError:
                        pass
                    continue
                resp = await redis.xreadgroup(
                    streams.GROUP, self.name, {streams.shard_stream(self.prefix, sh): ">" for sh in self.owned},
                    count=free, block=200)
                entries = [(_s(stream), _s(eid), fields) for stream, msgs in (resp or []) for eid, fields in msgs]
                if entries:
                    await self._accept(entries)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis/PostgreSQL hiccup: pause and go on
                if not await self._regroup(exc):
                    log.warning("worker read failed: %r", exc)
                    await asyncio.sleep(0.5)

    async def _reclaim_loop(self) -> None:
        """Take over messages pending on silent consumers (XAUTOCLAIM), from every shard."""
        redis = self.app[REDIS]
        idle_ms = int(self.settings.job_reclaim_idle_s * 1000)
        interval = max(0.2, self.settings.job_reclaim_idle_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                for sh in range(self.shards):
                    stream = streams.shard_stream(self.prefix, sh)
                    start = "0-0"
                    while self._free() > 0:
                        res = await redis.xautoclaim(stream, streams.GROUP, self.name, idle_ms, start_id=start,
                                                     count=self._free())
                        start, claimed = _s(res[0]), res[1]
                        deleted = res[2] if len(res) > 2 else []
                        if deleted:  # entries deleted from the stream but still pending: settled
                            await redis.xack(stream, streams.GROUP, *deleted)
                        entries = [(stream, _s(eid), fields) for eid, fields in claimed if fields is not None]
                        if entries:
                            log.info("worker %s reclaimed %d job message(s) from %s", self.name, len(entries), stream)
                            await self._accept(entries)
                        if start == "0-0":
                            break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                if not await self._regroup(exc):
                    log.warning("worker reclaim failed: %r", exc)

    async def _regroup(self, exc: BaseException) -> bool:
        """Redis lost the streams or groups (flushed, restarted without persistence): create
        them again (messages written meanwhile are read from the start). True if that was it."""
        if "NOGROUP" not in str(exc):
            return False
        try:
            await streams.ensure_groups(self.app[REDIS], self.prefix, self.shards)
            log.warning("job streams/groups were missing in Redis (flushed?); created them again")
            self._reconcile_now.set()  # messages may be lost: look for their jobs in PostgreSQL
        except Exception as exc2:  # noqa: BLE001
            log.warning("could not create the job streams again: %r", exc2)
            await asyncio.sleep(0.5)
        return True

    async def _accept(self, entries: list[tuple[str, str, dict]]) -> None:
        """Claim the jobs of freshly read (or reclaimed) messages and hand them to the batcher."""
        pool = self.app[DB]
        ids = {}
        for stream, eid, fields in entries:
            ids[(stream, eid)] = _s(fields.get(b"job", b""))
        async with pool.acquire(timeout=self.settings.upstream_timeout_s) as conn:
            claimed = await jobs.claim(conn, [j for j in ids.values() if j], self.name)
            unclaimed = [j for j in ids.values() if j and j not in claimed]
            final = await self._final_replies(conn, unclaimed) if unclaimed else {}
        settle = []
        now = time.monotonic()
        for stream, eid, fields in entries:
            job_id = ids[(stream, eid)]
            reply_to = _s(fields.get(b"reply", b""))
            row = claimed.get(job_id)
            if row is None:
                settle.append((stream, eid))
                if reply_to and job_id in final:
                    reply = final[job_id]
                    if _needs_outputs(reply) and fields.get(b"payload"):
                        # a synchronous TFHE job that completed but whose reply was lost with its
                        # worker: its outputs were never stored, its request is in this message,
                        # and gate evaluation is deterministic — compute them again (no new
                        # completion, no new charge) instead of answering 503
                        self._bg(self._reply_recomputed(reply_to, job_id, reply, fields[b"payload"]))
                    else:
                        await self._reply(reply_to, job_id, reply)
                continue
            raw = fields.get(b"payload")
            try:
                payload = jobs.decode_payload(raw) if raw else jobs.decode_payload(row["payload"])
            except ValueError:
                payload = {}
            job = jobs.job_from_row(row, payload)
            job.stream, job.entry_id, job.reply_to, job.claimed_at = stream, eid, reply_to, now
            self.held[(stream, eid)] = job
            self.batcher.add(job.batch_key, job)
        if settle:
            await self._settle(settle)

    async def _final_replies(self, conn, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Replies for jobs already final when their message came (again): what the row holds."""
        rows = await conn.fetch(
            "SELECT id, status, result, error, batch_size, attempts, queue_ms, compute_ms, kind, account_id FROM jobs "
            "WHERE id = ANY($1::text[])", job_ids)
        out = {}
        for r in rows:
            if r["status"] in jobs.FINAL:
                out[r["id"]] = {"status": r["status"], "result": r["result"], "error": r["error"] or (
                    {"status": 409, "code": "JOB_CANCELLED", "message": "the job was cancelled"}
                    if r["status"] == jobs.CANCELLED else None),
                    "batch_size": r["batch_size"], "attempts": r["attempts"], "queue_ms": r["queue_ms"],
                    "compute_ms": r["compute_ms"], "kind": r["kind"], "account_id": r["account_id"]}
        return out

    def _bg(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _reply_recomputed(self, reply_to: str, job_id: str, reply: dict[str, Any], raw: bytes) -> None:
        """Answer a redelivered synchronous TFHE job (completed, outputs not kept) with its
        outputs computed again from the request in its message; if that fails (the session
        is gone), the stored reply (→ 503 RESULT_UNAVAILABLE, retryable)."""
        try:
            payload = jobs.decode_payload(raw)
            session_id = payload["session_id"]
            keys = await tfhe_store.session_keys(self.app, session_id)
            tagging = tfhe_store.Tagging(self.app[tfhe_store.TFHE_STORE].tags, reply["account_id"], session_id)
            (res,), _ = await self._compute(tfhe_store.evaluate_jobs, keys, tagging, [payload["gates"]],
                                            [bool(payload.get("single"))])
            if isinstance(res, BaseException):
                raise res
            outputs, levels = res
            reply = dict(reply, result={"results_b64": outputs, "levels": levels, "gates": len(outputs)})
            self.replayed += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stored reply still answers (retryable 503)
            log.warning("could not recompute the outputs of job %s: %r", job_id, exc)
        await self._reply(reply_to, job_id, reply)

    async def _settle(self, entries: list[tuple[str, str]]) -> None:
        """Acknowledge and delete settled messages (the stream length is the queue depth)."""
        by_stream: dict[str, list[str]] = {}
        for stream, eid in entries:
            if stream:  # "" = the in-process fast path: no message to settle
                by_stream.setdefault(stream, []).append(eid)
        if not by_stream:
            return
        redis = self.app[REDIS]
        async with redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, streams.GROUP, *ids)
                pipe.xdel(stream, *ids)
            await pipe.execute()

    async def _reply(self, reply_to: str, job_id: str, reply: dict[str, Any]) -> None:
        if self.local_reply is not None and self.local_reply(reply_to, job_id, reply):
            return
        redis = self.app[REDIS]
        stream = streams.reply_stream(self.prefix, reply_to)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {"job": job_id, "reply": json.dumps(reply, separators=(",", ":"))},
                          maxlen=100_000, approximate=True)
                pipe.expire(stream, 3600)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - the job row has its end; the waiter times out
            log.warning("could not reply to %s for job %s: %r", reply_to, job_id, exc)

    # -- running a batch --------------------------------------------------------------------------------
    async def _run_batch(self, key, batch: list[jobs.Job]) -> None:
        self.batches += 1
        kind = batch[0].kind
        started = time.time()
        try:
            if kind == "tfhe":
                outcomes = await self._run_tfhe(batch)
            elif kind == "ckks":
                outcomes = await self._run_ckks(batch)
            else:
                raise ApiError(501, "NOT_IMPLEMENTED", f"job kind {kind!r} is not served by this worker")
        except Exception as exc:  # noqa: BLE001 - a cause all jobs of the batch share (key gone …)
            err = jobs.error_dict(exc)
            outcomes = [jobs.Outcome(error=err) for _ in batch]
        for job, out in zip(batch, outcomes):
            out.batch_size = len(batch)
            out.queue_ms = max(0.0, (started - job.created_at.timestamp()) * 1e3)
        try:
            await self._finish(batch, outcomes)
        finally:
            for job in batch:
                self.held.pop((job.stream, job.entry_id), None)
            self._space.set()

    async def _finish(self, batch: list[jobs.Job], outcomes: list[jobs.Outcome]) -> None:
        pool = self.app[DB]
        pairs = list(zip(batch, outcomes))
        done: set[str] = set()
        settled: set[str] = set()
        try:
            async with pool.acquire(timeout=self.settings.upstream_timeout_s) as conn:
                try:
                    done = set(await jobs.complete_jobs(conn, pairs))
                    settled = {j.id for j in batch}
                except Exception as exc:  # noqa: BLE001 - isolate a failing hook: one job at a time
                    log.warning("completing a batch of %d failed (%r); completing one by one", len(batch), exc)
                    for job, out in pairs:
                        try:
                            if await jobs.complete_job(conn, job, out):
                                done.add(job.id)
                            settled.add(job.id)
                        except Exception as exc2:  # noqa: BLE001
                            log.error("could not complete job %s: %r", job.id, exc2)
                            out.error, out.result, out.reply = jobs.error_dict(exc2), None, None
                            try:  # as failed instead; if even that fails it stays pending (reclaimed later)
                                if await jobs.complete_job(conn, job, out):
                                    done.add(job.id)
                                settled.add(job.id)
                            except Exception as exc3:  # noqa: BLE001
                                log.error("could not fail job %s either: %r", job.id, exc3)
        except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: messages stay pending
            log.error("could not complete %d job(s): %r", len(batch), exc)
            await self._unconfirmed([j for j in batch if j.id not in settled])
            return
        await self._unconfirmed([j for j in batch if j.id not in settled])
        # a job not completed here but settled belongs to a newer claim (or is final): its
        # message is that claim's to acknowledge
        await self._settle([(j.stream, j.entry_id) for j in batch if j.id in done])
        self.completed += len(done)
        # a fast-path job (no message: its claim, token 1, is the only one) that was settled but
        # not completed here: its row is gone — a PostgreSQL crash lost its admission, committed
        # without waiting for the flush (jobs.insert_admitted) — or the reconciler failed it and
        # answered already. Nobody else will answer its waiter: JOB_LOST now, not a 504 later.
        for job in batch:
            if not job.stream and job.reply_to and job.id in settled and job.id not in done:
                await self._reply(job.reply_to, job.id, {
                    "status": jobs.FAILED, "result": None, "error": FAST_JOB_LOST, "batch_size": None,
                    "attempts": job.attempt, "queue_ms": 0.0, "compute_ms": 0.0})
        for job, out in pairs:
            if job.id not in done:
                continue
            if out.error is not None:
                await self._refund(job)
            if job.reply_to:
                reply = {"status": out.status, "result": out.reply if out.reply is not None else out.result,
                         "error": out.error, "batch_size": out.batch_size, "attempts": job.attempt,
                         "queue_ms": out.queue_ms, "compute_ms": out.compute_ms}
                await self._reply(job.reply_to, job.id, reply)

    async def _unconfirmed(self, unsettled: list[jobs.Job]) -> None:
        """Fast-path jobs whose end could not be written (PostgreSQL unreachable): no message
        holds them, so nothing would retry them; their waiters get a retryable 502 now instead of
        waiting out the request timeout. The row, still RUNNING, is failed by the reconciler once
        PostgreSQL is back (never charged), and a retry under the same Idempotency-Key runs anew
        then (409 IDEMPOTENCY_IN_PROGRESS until it is). Stream jobs stay pending: reclaimed."""
        for job in unsettled:
            if not job.stream and job.reply_to:
                await self._reply(job.reply_to, job.id, {
                    "status": jobs.FAILED, "result": None, "batch_size": None, "attempts": job.attempt,
                    "queue_ms": 0.0, "compute_ms": 0.0,
                    "error": {"status": 502, "code": "UPSTREAM_UNAVAILABLE",
                              "message": "the job ran but its end could not be recorded (postgres unavailable); "
                                         "retry the request (with the same Idempotency-Key to be charged once)",
                              "details": {"upstream": "postgres", "retryable": True}}})

    async def _refund(self, job: jobs.Job) -> None:
        """A failed asynchronous job gives back what its request charged (a synchronous one is
        refunded by its handler, which sees the error)."""
        if job.is_async:
            from .dispatch import refund  # noqa: PLC0415

            await refund(self.app, job.payload)

    async def _compute(self, fn, *args):
        t0 = time.perf_counter()
        value = await self.app[ENGINE].run(fn, *args)
        return value, (time.perf_counter() - t0) * 1e3

    async def _run_tfhe(self, batch: list[jobs.Job]) -> list[jobs.Outcome]:
        session_id = batch[0].payload["session_id"]
        keys = await tfhe_store.session_keys(self.app, session_id)
        # every output carries the server's keyed tag for its provenance (issue 15); the jobs of
        # one batch share the session, hence the account
        tagging = tfhe_store.Tagging(self.app[tfhe_store.TFHE_STORE].tags, batch[0].account_id, session_id)
        results, compute_ms = await self._compute(tfhe_store.evaluate_jobs, keys, tagging,
                                                  [j.payload["gates"] for j in batch],
                                                  [bool(j.payload.get("single")) for j in batch])
        outcomes = []
        for job, res in zip(batch, results):
            if isinstance(res, BaseException):
                outcomes.append(jobs.Outcome(error=jobs.error_dict(res), compute_ms=compute_ms))
                continue
            outputs, levels = res
            full = {"results_b64": outputs, "levels": levels, "gates": len(outputs)}
            # synchronous TFHE results travel inline and are not persisted (issue 13), unless the
            # request carries an Idempotency-Key: then a retry whose answer was lost replays them
            stored = full if (job.is_async or job.idem_key) else {"levels": levels, "gates": len(outputs)}
            outcomes.append(jobs.Outcome(result=stored, reply=full, compute_ms=compute_ms))
        return outcomes

    async def _run_ckks(self, batch: list[jobs.Job]) -> list[jobs.Outcome]:
        from . import fhe  # noqa: PLC0415
        from .routes.ciphertexts import load_blobs_app, persist_ciphertext  # noqa: PLC0415
        from .routes.keys import evaluator_for_app  # noqa: PLC0415

        first = batch[0]
        key_id, account_id = first.payload["key_id"], first.account_id
        async with self.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            key = await repo.get_fhe_key(conn, account_id, key_id)
        if key is None:
            raise not_found("key", key_id=key_id)
        params, evaluator = await evaluator_for_app(self.app, key)
        outcomes: list[jobs.Outcome | None] = [None] * len(batch)
        todo, inputs = [], []
        origins: dict[int, str] = {}
        for i, job in enumerate(batch):
            ids = job.payload["ciphertext_ids"]
            async with self.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
                rows = await repo.get_ciphertexts(conn, account_id, ids)
            blobs = await load_blobs_app(self.app, account_id, ids) if len(rows) == len(set(ids)) else [None] * len(ids)
            missing = [c for c, b in zip(ids, blobs) if b is None]
            if missing:
                outcomes[i] = jobs.Outcome(error=jobs.error_dict(not_found(
                    "ciphertext", ciphertext_id=missing[0],
                    reason="deleted, expired or evicted before its job ran")))
                continue
            todo.append(i)
            inputs.append((blobs, job.payload.get("args") or {}))
            # server-produced only if every operand is (row and keyed tag): anything computed from
            # an upload stays a client ciphertext, so the server never decrypts it (issue 15)
            origins[i] = await self.app[ENGINE].run(
                provenance.ckks_result_provenance, provenance.tags_for(self.settings.master_key),
                [rows[c]["provenance"] for c in ids], blobs, account_id, key_id)
        results, compute_ms = await self._compute(fhe.compute_many, first.operation, params, evaluator, inputs)
        max_level = max(1, key["max_level"])
        for i, res in zip(todo, results):
            job = batch[i]
            if isinstance(res, BaseException):
                outcomes[i] = jobs.Outcome(error=jobs.error_dict(res), compute_ms=compute_ms)
                continue
            try:
                row, evicted = await persist_ciphertext(self.app, account_id=account_id, plan=job.payload["plan"],
                                                        key_id=key_id, info=res, source="compute", origin=origins[i])
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = jobs.Outcome(error=jobs.error_dict(exc), compute_ms=compute_ms)
                continue
            budget = round(100.0 * res.level / max_level, 2)
            result = {"result_ciphertext_id": row["id"], "level": res.level,
                      "scale": res.scale, "noise_budget_remaining": budget, "evicted_ciphertext_ids": evicted,
                      "expires_at": _iso(row["expires_at"]), "size_bytes": len(res.blob),
                      **(res.bootstrap or {})}
            reply = dict(result, result_ciphertext=base64.b64encode(res.blob).decode("ascii"))
            outcomes[i] = jobs.Outcome(result=result, reply=reply, compute_ms=compute_ms)
        return outcomes  # type: ignore[return-value]


def _needs_outputs(reply: dict[str, Any]) -> bool:
    """A final reply of a completed TFHE job whose outputs were not stored (synchronous)."""
    res = reply.get("result") or {}
    return reply.get("status") == jobs.COMPLETED and reply.get("kind") == "tfhe" and "results_b64" not in res


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
