"""The API side of the compute engine (issue 13): a request becomes a job row (``jobs.py``)
and a message on its shard's Redis stream (``streams.py``); a synchronous request then waits
for the job's reply, an asynchronous one answers 202 with the job id.

Admission, in this order: the account's queue quota (jobs QUEUED or RUNNING, counted in
PostgreSQL) → 429 ``QUEUE_QUOTA_EXCEEDED``; the global bound (the job streams' total length:
every job is an entry until its worker acknowledges and deletes it) → 503 ``OVERLOADED``; both
with ``Retry-After``. Nothing waits in an unbounded queue: the backlog lives in Redis, bounded
by ``job_queue_max``, and a worker reads only what its prefetch allows.

Replies: the message names this API process (``api_id``); a worker in this process (the
embedded engine) hands the reply over directly, a remote worker writes it to this process's
reply stream, which one reader task dispatches to the waiting requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from . import billing, jobs, repo_tfhe, streams
from .errors import ApiError
from .ids import new_id
from .state import DB, REDIS, SETTINGS, WORKER

log = logging.getLogger("wavis.service.dispatch")

RETRY_AFTER_S = 1


def params_digest(args: dict[str, Any]) -> str:
    """Digest of an operation's own parameters (part of a CKKS batch key)."""
    return hashlib.blake2b(json.dumps(args, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()


def ckks_batch_key(key_id: str, operation: str, level: int, args: dict[str, Any]) -> str:
    return f"ckks:{key_id}:{operation}:{level}:{params_digest(args)}"


def tfhe_batch_key(session_id: str) -> str:
    return f"tfhe:{session_id}"


class Dispatcher:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings = app[SETTINGS]
        self.api_id = new_id("api", 6)
        self.waiters: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        await streams.ensure_groups(self.app[REDIS], self.settings.redis_prefix, self.settings.job_shards)
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(), name="wavis-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            from .worker import _cancel_and_wait  # noqa: PLC0415 - one bounded-stop helper (worker.py)

            # bounded like Worker.stop: a read that lost its cancellation must not hang shutdown
            await _cancel_and_wait([self._reader], 5.0)
        for fut in self.waiters.values():
            if not fut.done():
                fut.cancel()
        try:
            await self.app[REDIS].delete(streams.reply_stream(self.settings.redis_prefix, self.api_id))
        except Exception:  # noqa: BLE001 - it expires anyway
            pass

    # -- submitting -----------------------------------------------------------------------------------
    async def submit(self, spec: jobs.JobSpec) -> tuple[Any, asyncio.Future | None]:
        """Admit and enqueue a job: ``(row, future)``; the future (synchronous jobs only)
        resolves to the worker's reply dict.

        The in-process fast path: a synchronous job, when this process runs a worker (the
        embedded engine) with room in its prefetch, is written to PostgreSQL already claimed by
        that worker (one statement) and handed to its batcher directly — no Redis round trip,
        no stream message; the reply comes back through an asyncio future. Its row is the
        source of truth as always: if this process dies, nobody waits for the job, and the
        reconciler (``reconcile.py``) of a surviving or restarted worker fails it
        (``JOB_LOST``). Asynchronous jobs always go through the stream (their 202 promises
        they survive this process).

        Raises: ApiError 404 NOT_FOUND when ``spec.session`` is not live (nothing admitted),
        402 QUOTA_EXHAUSTED / BUDGET_EXCEEDED / SUBSCRIPTION_UNPAID
        (``billing.admit_job``, in the transaction that writes the job row), 429
        QUEUE_QUOTA_EXCEEDED, 503 OVERLOADED (both with Retry-After), 502 UPSTREAM_UNAVAILABLE
        when the stream cannot be written."""
        s = self.settings
        redis = self.app[REDIS]
        timeout = s.upstream_timeout_s
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        worker = self.app.get(WORKER)
        local = worker if (not spec.is_async and s.engine_fast_path and worker is not None
                           and worker.accepts_local()) else None
        async with self.app[DB].acquire(timeout=timeout) as conn:
            row = await self._insert(conn, spec, local)
            if row is None:
                active = await jobs.count_active(conn, spec.account_id)
                raise ApiError(429, "QUEUE_QUOTA_EXCEEDED",
                               f"this account has {active} jobs queued or running (at most {s.job_queue_per_account})",
                               {"active_jobs": active, "queue_quota": s.job_queue_per_account}, headers=retry)
            job_id = row["id"]
            fut = None
            if not spec.is_async:
                fut = asyncio.get_running_loop().create_future()
                self.waiters[job_id] = fut
            if local is not None:
                local.run_local(row, spec.payload, self.api_id)
                return row, fut
            fields: dict[str, Any] = {"max": s.job_queue_max, "job": job_id,
                                      "reply": "" if spec.is_async else self.api_id}
            if not spec.is_async:
                fields["payload"] = jobs.encode_payload(spec.payload)
            shard = streams.shard_of(spec.affinity, s.job_shards)
            try:
                async with asyncio.timeout(timeout):
                    added, entry = await streams.admit_and_add(redis, s.redis_prefix, s.job_shards, shard, fields)
            except BaseException as exc:
                self.waiters.pop(job_id, None)
                await jobs.fail_unsent(conn, job_id, {"status": 502, "code": "UPSTREAM_UNAVAILABLE",
                                                      "message": "the job could not be queued"})
                if isinstance(exc, Exception):
                    raise ApiError(502, "UPSTREAM_UNAVAILABLE", "redis is unavailable, try again later",
                                   {"upstream": "redis"}) from exc
                raise
            if not added:
                self.waiters.pop(job_id, None)
                await jobs.delete_unsent(conn, job_id)
                raise ApiError(503, "OVERLOADED", "the compute queue is full, retry shortly",
                               {"queue_depth": entry, "queue_max": s.job_queue_max}, headers=retry)
            # the message that carries the job: if Redis loses it, the reconciler sees it gone
            await jobs.set_entry(conn, job_id, streams.shard_stream(s.redis_prefix, shard), str(entry))
        return row, fut

    async def _insert(self, conn, spec: jobs.JobSpec, local) -> Any:
        """The job row. Its FCU and price are admitted by ``billing.admit_job`` (402
        QUOTA_EXHAUSTED / BUDGET_EXCEEDED / SUBSCRIPTION_UNPAID); a synchronous job that is not
        heavy first tries ``jobs.insert_admitted`` (the same admission and the row in one
        statement), which admits the ordinary case and leaves every refusal to it. A heavy job (``spec.admit``)
        is admitted against the heavy jobs QUEUED or RUNNING in PostgreSQL — all processes —
        under an advisory lock held until its row is committed (``admission.admit_job``);
        raises 429 TOO_MANY_HEAVY_JOBS / 503 OVERLOADED.

        ``spec.session`` (a TFHE session the job needs live) is touched first — in the
        admission statement itself on the ordinary path — and 404 NOT_FOUND raised when it is
        not live, before anything is admitted."""
        s = self.settings
        kwargs = dict(quota=s.job_queue_per_account, reply_to=None if spec.is_async else self.api_id,
                      claimed_by=local.name if local is not None else None, queue=s.redis_prefix)
        touched = spec.session is None
        if not spec.is_async and spec.admit is None:
            # the ordinary synchronous job: the session touch, admission and row in one statement
            # (one round trip, and on the fast path no WAL flush to wait for: jobs.insert_admitted);
            # whatever billing must refuse or weigh (a hard budget …) takes the full path below
            verdict, row, terms = await jobs.insert_admitted(
                conn, spec, s.ciphertext_ttl_s, billing.admission_args(spec.account_id, spec.cost_units, s.plans),
                session=spec.session, **kwargs)
            if verdict == "no_session":
                raise repo_tfhe.session_gone(spec.session[0])  # type: ignore[index]
            touched = True
            if verdict != "undecided":
                spec.payload["billing"] = terms
                return row
        if not touched:
            session_id, idle_s = spec.session  # type: ignore[misc]
            if await repo_tfhe.touch_session(conn, spec.account_id, session_id, idle_s) is None:
                raise repo_tfhe.session_gone(session_id)
        async with conn.transaction():
            # quota and budget (billing.py): the job row, written under the account's period
            # lock, is the reservation; a refusal commits its limit_reached event, then raises
            refused = await billing.admit_job(conn, spec.account_id, spec.cost_units, spec.cost_jpy, s.plans,
                                              spec.payload, spec.operation)
            if refused is None:
                if spec.admit is not None:
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", jobs.HEAVY_LOCK_ID)
                    spec.admit(*await jobs.active_heavy(conn, spec.account_id))
                row = await jobs.insert(conn, spec, s.ciphertext_ttl_s, **kwargs)
        if refused is not None:
            raise refused
        return row

    async def wait(self, job_id: str, fut: asyncio.Future) -> dict[str, Any]:
        """The reply of a synchronous job, bounded by the request timeout: past it, 504
        JOB_TIMEOUT names the job (it still completes; GET /jobs/{id} shows its end)."""
        budget = max(1.0, self.settings.request_timeout_s - 2.0)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), budget)
        except asyncio.TimeoutError:
            raise ApiError(504, "JOB_TIMEOUT", "the job did not finish within the request timeout; "
                           "poll GET /api/v1/jobs/{job_id}", {"job_id": job_id}) from None
        finally:
            self.waiters.pop(job_id, None)

    async def run(self, spec: jobs.JobSpec) -> tuple[Any, dict[str, Any] | None]:
        """Submit; for a synchronous job wait for its reply and raise its error as the API
        error it maps to. Returns ``(row, reply)`` (reply None for async jobs)."""
        row, fut = await self.submit(spec)
        if fut is None:
            return row, None
        reply = await self.wait(row["id"], fut)
        raise_for_reply(reply)
        return row, reply

    async def replay(self, account_id: str, idem_key: str | None,
                     is_async: bool = False) -> tuple[Any, dict[str, Any] | None] | None:
        """A job an earlier request with the same Idempotency-Key and body started, whose
        answer was never stored (lost to a crash, an outage or a client timeout), so the retry
        answers from it instead of running — and charging — the operation twice. None when
        there is none (or it FAILED / was CANCELLED, never charged: run a new job).

        * synchronous: ``(row, reply)`` of a COMPLETED job (the caller answers 200 from it and
          charges nothing: the job was metered when it completed); one still QUEUED or RUNNING
          answers 409 ``IDEMPOTENCY_IN_PROGRESS`` (retry shortly: it completes and then
          replays, or it is lost/fails and a retry runs anew);
        * asynchronous: ``(row, None)``: the caller repeats the 202 with the same job id.

        Raises: ApiError 409 IDEMPOTENCY_IN_PROGRESS."""
        if not idem_key:
            return None
        async with self.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            row = await jobs.find_by_idempotency(conn, account_id, idem_key)
        if row is None:
            return None
        if is_async:
            return row, None
        if row["status"] != jobs.COMPLETED:
            raise ApiError(409, "IDEMPOTENCY_IN_PROGRESS",
                           "a request with this Idempotency-Key is still being processed; retry shortly",
                           {"job_id": row["id"]}, headers={"Retry-After": str(RETRY_AFTER_S)})
        return row, {"status": row["status"], "result": row["result"], "error": None,
                     "batch_size": row["batch_size"], "attempts": row["attempts"], "queue_ms": row["queue_ms"],
                     "compute_ms": row["compute_ms"], "replayed": True}

    # -- replies ----------------------------------------------------------------------------------------
    def deliver(self, api_id: str, job_id: str, reply: dict[str, Any]) -> bool:
        """Hand a reply to a waiter of this process; False when ``api_id`` is another process."""
        if api_id != self.api_id:
            return False
        fut = self.waiters.get(job_id)
        if fut is not None and not fut.done():
            fut.set_result(reply)
        return True

    async def _read_replies(self) -> None:
        redis = self.app[REDIS]
        stream = streams.reply_stream(self.settings.redis_prefix, self.api_id)
        last = "0-0"
        while True:
            try:
                resp = await redis.xread({stream: last}, count=256, block=500)
                ids = []
                for _, msgs in resp or []:
                    for eid, fields in msgs:
                        last = eid.decode() if isinstance(eid, bytes) else eid
                        ids.append(last)
                        job_id = fields[b"job"].decode()
                        self.deliver(self.api_id, job_id, json.loads(fields[b"reply"]))
                if ids:
                    await redis.xdel(stream, *ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("reading replies failed: %r", exc)
                await asyncio.sleep(0.5)


def raise_for_reply(reply: dict[str, Any]) -> None:
    """A job's error reply as the API error it maps to (a 503 is retryable: Retry-After)."""
    err = reply.get("error")
    if err:
        status = int(err.get("status", 500))
        raise ApiError(status, err.get("code", "INTERNAL_ERROR"), err.get("message", "the job failed"),
                       err.get("details"), headers={"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)


async def refund(app: web.Application, payload: dict[str, Any]) -> None:
    """Give back what an asynchronous job's request charged (FCU in the monthly window, a
    trial key's operation) when the job fails or is cancelled; a synchronous job's handler
    sees the error and refunds through the usual paths."""
    from . import ratelimit, repo  # noqa: PLC0415

    spec = payload.get("refund") or {}
    try:
        if spec.get("fcu_key") and spec.get("fcu"):
            await ratelimit.refund(app[REDIS], ratelimit.Window("monthly", spec["fcu_key"], 0, int(spec["fcu"]), 0,
                                                                False))
        if spec.get("ops_key_id"):
            async with app[DB].acquire(timeout=app[SETTINGS].upstream_timeout_s) as conn:
                await repo.release_operation(conn, spec["ops_key_id"])
    except Exception as exc:  # noqa: BLE001 - never fail the caller over a refund
        log.warning("could not refund a job's charge: %r", exc)


def timings(reply: dict[str, Any]) -> tuple[float, float]:
    return round(float(reply.get("queue_ms") or 0.0), 3), round(float(reply.get("compute_ms") or 0.0), 3)


