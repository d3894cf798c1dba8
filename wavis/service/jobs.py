"""Jobs: the PostgreSQL side of the compute engine (issue 13; DESIGN.md §5 "Compute engine").

Every compute and TFHE request (and later model inference) is a row of ``jobs``
(migration 060) — the source of truth — plus a message on a Redis stream that carries it to a
worker (``dispatch.py`` writes it, ``worker.py`` consumes it). Life of a job::

    QUEUED --claim (attempts += 1)--> RUNNING --complete_jobs--> COMPLETED | FAILED
    QUEUED --DELETE /jobs/{id}--> CANCELLED

* **Claim** (``claim``): one ``UPDATE … WHERE status IN ('QUEUED', 'RUNNING')`` bumps
  ``attempts`` and returns the new value: the worker's *fencing token*. A message reclaimed
  from a dead (or slow) worker through ``XAUTOCLAIM`` is claimed again, with a larger token.
* **Complete** (``complete_jobs`` / ``complete_job``): in ONE PostgreSQL transaction, one
  ``UPDATE … WHERE attempts = <token> AND status = 'RUNNING'`` row-locks and writes the jobs
  whose claim is still current; a row whose ``attempts`` moved on, or that is no longer RUNNING,
  is skipped (a newer claim owns it, or it already completed — under READ COMMITTED the
  condition is re-checked after the row lock), so a job completes exactly once; every
  registered completion hook runs in that same transaction.

Extension point — ``COMPLETION_HOOKS``: a list of ``async def hook(conn, job, result)``
called inside the completing transaction for every job that really completes (COMPLETED or
FAILED; never twice, never for a fenced-off late attempt). ``conn`` is an asyncpg connection
inside the transaction: write usage records (billing), outbox rows (webhooks:
``compute_complete``) there, and they commit or roll back together with the job row. A hook
that raises rolls the whole transaction back (the worker then retries that job alone; if it
still fails the message stays pending and is reclaimed later). Register with
``register_completion_hook(fn)`` at import time of the owning module; a hook that can say
for which jobs it writes nothing (``applies``), or that is billing's charge (``charge``), lets
``complete_jobs`` write such jobs in one statement (``wavis_complete_jobs``, migration 083).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Sequence

import asyncpg

from .ids import new_id, utcnow

log = logging.getLogger("wavis.service.jobs")

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"
ACTIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobSpec:
    """What a request asks the engine to do. ``payload`` is JSON-able (no pickle): the
    operation's inputs (ids, ciphertexts in base64, arguments) and what the worker needs to
    answer (plan, refunds). ``batch_key``: jobs with equal keys may share one backend call;
    ``affinity``: the evaluation key (CKKS key id / TFHE session id) the job needs, so every job
    of one key lands on the stream shard of the worker that holds it."""

    account_id: str
    kind: str  # ckks | tfhe | model
    operation: str
    batch_key: str
    affinity: str
    payload: dict[str, Any]
    cost_units: int = 0
    cost_jpy: float = 0.0
    is_async: bool = False
    api_key_id: str | None = None
    idem_key: str | None = None  # ``idempotency.job_key`` of the request: a retry replays this job, not a new one
    # a heavy operation (admission.admit_job): its estimated bytes go into the row, and ``admit``
    # (account's heavy jobs, all heavy bytes) raises when they do not fit — checked at insert
    heavy_bytes: int | None = None
    admit: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)
    # (TFHE session id, idle seconds): the session the job needs live, touched by the dispatcher
    # when it admits the job (in the admission statement itself: ``insert_admitted(session=…)``);
    # 404 NOT_FOUND when it is not live
    session: tuple[str, float] | None = None


@dataclass
class Job:
    """A claimed job on a worker: its id, the fencing token of this claim, and its request."""

    id: str
    account_id: str
    kind: str
    operation: str
    batch_key: str
    attempt: int
    is_async: bool
    payload: dict[str, Any]
    created_at: datetime
    cost_units: int = 0
    cost_jpy: float = 0.0
    api_key_id: str | None = None
    idem_key: str | None = None  # started under an Idempotency-Key: its full result is kept for a replay
    # set by the worker
    stream: str = ""
    entry_id: str = ""
    reply_to: str = ""
    claimed_at: float = 0.0  # time.monotonic() when claimed on this worker


@dataclass
class Outcome:
    """A job's end: ``result`` (JSON-able, stored in the row) or ``error`` ({status, code,
    message, details}); ``reply`` is what a synchronous waiter receives (may hold more than the
    row, e.g. TFHE outputs that are never persisted); timings in ms."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    batch_size: int = 1
    queue_ms: float = 0.0
    compute_ms: float = 0.0

    @property
    def status(self) -> str:
        return FAILED if self.error is not None else COMPLETED


CompletionHook = Callable[[asyncpg.Connection, Job, Outcome], Awaitable[None]]
COMPLETION_HOOKS: list[CompletionHook] = []


@dataclass(frozen=True)
class HookForm:
    """What the one-statement completion (``wavis_complete_job``, migration 083) may do in a
    hook's place. ``applies(job, outcome)``: False when the hook writes nothing for that job.
    ``charge(job, outcome)``: the hook IS billing's charge of the job (``billing.charge``);
    returns the charge's arguments of ``wavis_complete_job`` (``billing.charge_args``), or None
    when there is nothing to charge."""

    applies: Callable[[Job, Outcome], bool] | None = None
    charge: Callable[[Job, Outcome], tuple | None] | None = None


_HOOK_FORMS: dict[CompletionHook, HookForm] = {}
NO_CHARGE: tuple = (None,) * 12  # wavis_complete_job's charge arguments when nothing is charged


def register_completion_hook(hook: CompletionHook, *, applies: Callable[[Job, Outcome], bool] | None = None,
                             charge: Callable[[Job, Outcome], tuple | None] | None = None) -> CompletionHook:
    """Add ``hook(conn, job, outcome)`` to the completing transaction (see the module doc).
    ``applies`` / ``charge`` (``HookForm``) let ``complete_jobs`` complete a job in one
    statement: a job for which every hook either does not apply or is the charge, which the
    statement writes itself. A hook registered without them always runs in Python."""
    if hook not in COMPLETION_HOOKS:
        COMPLETION_HOOKS.append(hook)
    if applies is not None or charge is not None:
        _HOOK_FORMS[hook] = HookForm(applies, charge)
    return hook


def _one_statement_args(job: Job, outcome: Outcome) -> tuple | None:
    """The charge arguments of ``wavis_complete_job`` for this job (``NO_CHARGE``: none), or
    None when some hook must run in Python for it."""
    args = NO_CHARGE
    for hook in COMPLETION_HOOKS:
        form = _HOOK_FORMS.get(hook)
        if form is None:
            return None
        if form.charge is not None:
            if args is not NO_CHARGE:
                return None  # two charging hooks: the statement writes one charge
            got = form.charge(job, outcome)
            if got is not None:
                args = got
        elif form.applies is None or form.applies(job, outcome):
            return None
    return args


def jsonb_safe(obj: Any) -> Any:
    """JSON for a jsonb column: PostgreSQL refuses NaN/Infinity, so non-finite floats become
    strings ("nan", "inf", "-inf")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonb_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonb_safe(v) for v in obj]
    return obj


def encode_payload(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_payload(raw: bytes | str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    return json.loads(raw)


# --- API side ------------------------------------------------------------------------------------

async def count_active(conn: asyncpg.Connection, account_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE account_id = $1 AND status IN ('QUEUED', 'RUNNING')", account_id)


async def insert(conn: asyncpg.Connection, spec: JobSpec, ttl_s: int, quota: int | None = None,
                 job_id: str | None = None, reply_to: str | None = None,
                 claimed_by: str | None = None, queue: str | None = None) -> asyncpg.Record | None:
    """The QUEUED row, or None when the account already has ``quota`` jobs QUEUED or RUNNING
    (checked in the same statement; concurrent inserts may pass it by their number). An async
    job's payload is stored with it (it must survive a restart of every process); a synchronous
    one travels only on the stream (or, ``claimed_by``, straight to the worker in this process).

    ``reply_to``: the API process waiting for a synchronous job's reply. ``claimed_by``: the
    row is written already claimed (RUNNING, ``attempts`` = 1) by that worker — the in-process
    fast path, where the job never goes through Redis; its fencing token is 1. ``queue``: the
    Redis key prefix of the streams that carry it (the reconciler of that deployment looks
    after it; None: nobody recovers it)."""
    job_id = job_id or new_id("op")
    return await conn.fetchrow(
        """INSERT INTO jobs (id, account_id, api_key_id, kind, operation, is_async, batch_key, payload,
                             cost_units, cost_jpy, expires_at, affinity, reply_to, idem_key, heavy_bytes, queue,
                             status, attempts, worker, started_at)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $17, $18,
                  CASE WHEN $16::text IS NULL THEN 'QUEUED' ELSE 'RUNNING' END,
                  CASE WHEN $16::text IS NULL THEN 0 ELSE 1 END, $16::text,
                  CASE WHEN $16::text IS NULL THEN NULL ELSE now() END
           WHERE $12::int IS NULL OR (SELECT count(*) FROM jobs
                                      WHERE account_id = $2 AND status IN ('QUEUED', 'RUNNING')) < $12::int
           RETURNING id, account_id, api_key_id, kind, operation, batch_key, attempts, is_async, status,
                     created_at, expires_at, cost_units, cost_jpy, idem_key""",
        job_id, spec.account_id, spec.api_key_id, spec.kind, spec.operation, spec.is_async, spec.batch_key,
        encode_payload(spec.payload) if spec.is_async else None, spec.cost_units, spec.cost_jpy,
        utcnow() + timedelta(seconds=ttl_s), quota, spec.affinity, reply_to, spec.idem_key, claimed_by,
        spec.heavy_bytes, queue,
    )


_INSERT_COLUMNS = ("id, account_id, api_key_id, kind, operation, is_async, batch_key, payload, cost_units, cost_jpy, "
                   "expires_at, affinity, reply_to, idem_key, heavy_bytes, queue, status, attempts, worker, started_at")
_RETURNING = ("id, account_id, api_key_id, kind, operation, batch_key, attempts, is_async, status, created_at, "
              "expires_at, cost_units, cost_jpy, idem_key")


async def insert_admitted(conn: asyncpg.Connection, spec: JobSpec, ttl_s: int, admission: Sequence[Any],
                          quota: int | None = None, reply_to: str | None = None, claimed_by: str | None = None,
                          queue: str | None = None,
                          session: tuple[str, float] | None = None) -> tuple[str, asyncpg.Record | None,
                                                                              dict[str, Any] | None]:
    """Quota admission and the job's row in ONE statement, its own transaction (one round trip
    instead of ``billing.admit_job``'s five in a transaction): ``wavis_admit_job`` (migration
    082; ``admission`` = ``billing.admission_args(…)``) locks the account's period row and
    checks the quota with the exactness of ``billing.admit_job``, then the row is inserted
    under that lock (arguments otherwise as ``insert``). Synchronous, not heavy jobs only
    (``spec.is_async`` or ``spec.admit`` raise ValueError): an async job's payload carries the
    terms into its row, and a heavy one is admitted under its own lock (``Dispatcher._insert``).

    The statement commits without waiting for the WAL flush (``db.relaxed_commit``), so the
    account's period lock is not held through an fdatasync either (admissions of one account
    queue on that lock). A synchronous job is answered only after a later synchronous commit
    flushes this row too: its completion (``complete_jobs``) — and, through the stream, already
    ``set_entry`` right after the ``XADD``. A PostgreSQL crash before that loses an unanswered
    request (the fast path answers it 503 ``JOB_LOST``; through the stream ``set_entry`` fails
    and the request gets 502), never a confirmed one.

    Returns ``(verdict, row, terms)``, ``terms`` the account's terms as ``billing.Terms.to_json``
    gives them (for ``payload["billing"]``): ``("admitted", row, terms)``; ``("queue_full",
    None, terms)`` when the account already has ``quota`` jobs QUEUED or RUNNING;
    ``("undecided", None, None)`` when billing must decide (a refusal, a hard budget, an unpaid
    subscription …): nothing was written but maybe the period row; call ``billing.admit_job``.

    ``session``: ``(TFHE session id, idle seconds)`` the job needs live: the same statement
    touches it first (``repo_tfhe.touch_session``'s UPDATE: this account's session, idle less
    than the idle time, ``last_used_at`` = now) and admits only if it did — one round trip less
    per gate than touching it apart. ``("no_session", None, None)`` when the session is
    unknown, another account's or idle: nothing was written (admission never ran). With
    "undecided" the session was touched.

    Raises: ValueError for an async or heavy ``spec``."""
    if spec.is_async or spec.admit is not None:
        raise ValueError("insert_admitted: synchronous jobs without heavy admission only")
    from .db import relaxed_commit  # noqa: PLC0415

    relaxed = ", " + relaxed_commit(conn)
    job_id = new_id("op")
    row = await conn.fetchrow(
        f"""WITH sess AS (
                UPDATE tfhe_sessions SET last_used_at = now()
                WHERE $26::text IS NOT NULL AND id = $26::text AND account_id = $2
                      AND last_used_at > now() - make_interval(secs => $27::float8)
                RETURNING account_id),
            live AS (SELECT $19::text AS account_id WHERE $26::text IS NULL
                     UNION ALL SELECT account_id FROM sess),
            adm AS MATERIALIZED (
                -- LATERAL on ``live``: the admission runs only when the session is live (or none is asked for)
                SELECT a.* FROM live CROSS JOIN LATERAL wavis_admit_job(
                    live.account_id, $20::bigint, $21, $22, $23::text[], $24::bigint[], $25::boolean[]) AS a),
            ins AS (
                INSERT INTO jobs ({_INSERT_COLUMNS})
                SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $17, $18,
                       CASE WHEN $16::text IS NULL THEN 'QUEUED' ELSE 'RUNNING' END,
                       CASE WHEN $16::text IS NULL THEN 0 ELSE 1 END, $16::text,
                       CASE WHEN $16::text IS NULL THEN NULL ELSE now() END
                FROM adm{relaxed}
                WHERE adm.admitted AND ($12::int IS NULL OR (SELECT count(*) FROM jobs
                                        WHERE account_id = $2 AND status IN ('QUEUED', 'RUNNING')) < $12::int)
                RETURNING {_RETURNING})
            SELECT EXISTS (SELECT 1 FROM live) AS sess_live, adm.admitted AS adm_admitted,
                   adm.terms_plan AS adm_plan, adm.terms_allowance AS adm_allowance,
                   adm.terms_overage AS adm_overage, ins.*
            FROM (SELECT 1) AS one LEFT JOIN adm ON true LEFT JOIN ins ON true""",
        job_id, spec.account_id, spec.api_key_id, spec.kind, spec.operation, spec.is_async, spec.batch_key,
        None, spec.cost_units, spec.cost_jpy, utcnow() + timedelta(seconds=ttl_s), quota, spec.affinity, reply_to,
        spec.idem_key, claimed_by, spec.heavy_bytes, queue, *admission,
        None if session is None else session[0], 0.0 if session is None else float(session[1]),
    )
    if not row["sess_live"]:
        return "no_session", None, None
    if not row["adm_admitted"]:
        return "undecided", None, None
    terms = {"plan": row["adm_plan"], "allowance": row["adm_allowance"], "overage": bool(row["adm_overage"])}
    if row["id"] is None:
        return "queue_full", None, terms
    return "admitted", row, terms


HEAVY_LOCK_ID = 0x57414844  # "WAHD": admission of heavy jobs, one at a time across processes


async def active_heavy(conn: asyncpg.Connection, account_id: str) -> tuple[int, int]:
    """(the account's heavy jobs QUEUED or RUNNING, the bytes of every such job of any account).
    Call under ``pg_advisory_xact_lock(HEAVY_LOCK_ID)`` in the transaction that inserts the next
    one, so concurrent admissions in any process see each other."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE account_id = $1) AS n, COALESCE(sum(heavy_bytes), 0) AS b
           FROM jobs WHERE heavy_bytes IS NOT NULL AND status IN ('QUEUED', 'RUNNING') AND expires_at > now()""",
        account_id)
    return int(row["n"]), int(row["b"])


async def set_entry(conn: asyncpg.Connection, job_id: str, stream: str, entry_id: str) -> None:
    """Record the stream message that carries the job now (``reconcile.py`` checks it exists)."""
    await conn.execute("UPDATE jobs SET stream_entry = $2 WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')",
                       job_id, f"{stream} {entry_id}")


def parse_entry(value: str | None) -> tuple[str, str] | None:
    """``(stream, entry id)`` of a ``jobs.stream_entry`` value; None when the job has none."""
    if not value or " " not in value:
        return None
    stream, eid = value.rsplit(" ", 1)
    return stream, eid


async def find_by_idempotency(conn: asyncpg.Connection, account_id: str,
                              idem_key: str) -> asyncpg.Record | None:
    """The newest job a request with this idempotency slot started that may still answer it:
    QUEUED, RUNNING or COMPLETED (a FAILED or CANCELLED one was never charged: a retry runs
    anew). Used to replay a completed job whose HTTP answer was lost instead of running and
    charging it twice."""
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND idem_key = $2 "
        "AND status IN ('QUEUED', 'RUNNING', 'COMPLETED') AND expires_at > now() "
        "ORDER BY created_at DESC LIMIT 1", account_id, idem_key)


async def delete_unsent(conn: asyncpg.Connection, job_id: str) -> None:
    """A job refused after its row was written (the global queue bound): it never existed."""
    await conn.execute("DELETE FROM jobs WHERE id = $1 AND status = 'QUEUED'", job_id)


async def fail_unsent(conn: asyncpg.Connection, job_id: str, error: dict[str, Any]) -> None:
    """A job whose message could not be written to the stream: FAILED, never left QUEUED."""
    await conn.execute(
        "UPDATE jobs SET status = 'FAILED', error = $2, payload = NULL, finished_at = now() "
        "WHERE id = $1 AND status = 'QUEUED'", job_id, jsonb_safe(error))


JOB_COLUMNS = ("id, account_id, kind, operation, status, is_async, attempts, result, error, batch_size, cost_units, "
               "cost_jpy, queue_ms, compute_ms, created_at, started_at, finished_at, expires_at")


async def get(conn: asyncpg.Connection, account_id: str, job_id: str) -> asyncpg.Record | None:
    """The caller's job (another account's or an expired one is None: 404)."""
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND account_id = $2 AND expires_at > now()",
        job_id, account_id)


async def list_page(conn: asyncpg.Connection, account_id: str, limit: int,
                    before: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    """Newest first, keyset on (created_at, id) descending; ``limit + 1`` rows."""
    if before is None:
        return await conn.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND expires_at > now() "
            "ORDER BY created_at DESC, id DESC LIMIT $2", account_id, limit + 1)
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND expires_at > now() "
        "AND (created_at, id) < ($3::timestamptz, $4::text) ORDER BY created_at DESC, id DESC LIMIT $2",
        account_id, limit + 1, before[0], before[1])


async def cancel(conn: asyncpg.Connection, account_id: str,
                 job_id: str) -> tuple[bool, str | None, dict[str, Any]]:
    """(cancelled, status, payload): only a QUEUED job is cancelled (its payload is returned
    for refunds); status None = no such job here."""
    row = await conn.fetchrow(
        """WITH old AS (SELECT id, payload FROM jobs
                        WHERE id = $1 AND account_id = $2 AND status = 'QUEUED' AND expires_at > now() FOR UPDATE)
           UPDATE jobs AS j SET status = 'CANCELLED', payload = NULL, finished_at = now()
           FROM old WHERE j.id = old.id RETURNING old.payload""",
        job_id, account_id)
    if row is not None:
        return True, CANCELLED, decode_payload(row["payload"])
    status = await conn.fetchval(
        "SELECT status FROM jobs WHERE id = $1 AND account_id = $2 AND expires_at > now()", job_id, account_id)
    return False, status, {}


async def delete_expired(conn: asyncpg.Connection, limit: int = 1000) -> int:
    """Expired jobs go with the ciphertext TTL (API.md)."""
    return int((await conn.execute(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expires_at <= now() LIMIT $1)", limit)).split()[-1])


# --- worker side ---------------------------------------------------------------------------------

async def claim(conn: asyncpg.Connection, job_ids: Sequence[str], worker: str) -> dict[str, asyncpg.Record]:
    """Claim jobs still QUEUED or RUNNING (a reclaimed message) and not expired: ``attempts``
    goes up by one and is returned as this claim's fencing token. Jobs not returned are done,
    cancelled or expired: their messages are acknowledged without work."""
    rows = await conn.fetch(
        """UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, worker = $2,
                           started_at = COALESCE(started_at, now())
           WHERE id = ANY($1::text[]) AND status IN ('QUEUED', 'RUNNING') AND expires_at > now()
           RETURNING id, account_id, api_key_id, kind, operation, batch_key, attempts, is_async, payload,
                     created_at, cost_units, cost_jpy, idem_key""",
        list(job_ids), worker)
    return {r["id"]: r for r in rows}


async def status_of(conn: asyncpg.Connection, job_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT id, status FROM jobs WHERE id = ANY($1::text[])", list(job_ids))
    return {r["id"]: r["status"] for r in rows}


async def complete_jobs(conn: asyncpg.Connection, done: Sequence[tuple[Job, Outcome]]) -> list[str]:
    """Write the end of several jobs: one ``UPDATE`` that locks each row and writes it only
    while ``attempts`` is still this claim's token and the job is RUNNING (a row that moved on —
    a newer claim, or already final — is skipped), then ``COMPLETION_HOOKS`` for each job
    written, all in ONE transaction (the caller's, or one opened here when hooks are
    registered; without hooks the single statement is its own transaction). Returns the ids
    really completed by this call (the caller acknowledges only those messages: a skipped job
    belongs to a newer claim or is already final).

    One statement when it can: a job for which every hook is billing's charge or does not
    apply (``register_completion_hook(applies=, charge=)``; e.g. a synchronous job, metered
    and without webhook event) is completed and charged by ``wavis_complete_jobs`` (migration
    083) — the same fenced write and the same ``usage_events`` row in the same transaction, one
    round trip instead of five. Whatever it leaves 'undecided' (a charge that is partly
    included in the allowance, or after which an alert is due) takes the Python path; with
    several jobs all of it runs in one transaction."""
    if not done:
        return []
    pairs = list({job.id: (job, out) for job, out in done}.values())
    if COMPLETION_HOOKS:
        fused = []
        for job, out in pairs:  # a prefix: charges are written in the batch's order
            args = _one_statement_args(job, out)
            if args is None:
                break
            fused.append((job, out, args))
        if fused:
            if len(pairs) > 1 and not conn.is_in_transaction():
                # several jobs: one transaction, so a job left to the Python path (or an error)
                # never leaves the batch half written
                async with conn.transaction():
                    return await _complete_fused(conn, pairs, fused)
            return await _complete_fused(conn, pairs, fused)
    return await _complete_python(conn, pairs)


_COMPLETE_SQL = ("SELECT id, verdict FROM wavis_complete_jobs($1::text[], $2::int[], $3::text[], $4::text[], "
                 "$5::text[], $6::int[], $7::float8[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], "
                 "$13::bigint[], $14::numeric[], $15::numeric[], $16::text[], $17::timestamptz[], $18::date[], "
                 "$19::bigint[], $20::boolean[])")


async def _complete_fused(conn: asyncpg.Connection, pairs: list[tuple[Job, Outcome]],
                          fused: list[tuple[Job, Outcome, tuple]]) -> list[str]:
    """``fused`` (the jobs of ``pairs`` up to the first one a hook must run for in Python) in
    one statement (``wavis_complete_jobs``: the fenced rows and the charges, in order, up to the
    first job it leaves 'undecided'); every later job through ``_complete_python`` after it, so
    charges are written in the batch's order either way. With more than one job the caller
    holds a transaction."""
    cols: list[list[Any]] = [[] for _ in range(20)]
    for job, out, charge in fused:
        for col, v in zip(cols, (job.id, job.attempt, out.status,
                                 None if out.result is None else json.dumps(jsonb_safe(out.result)),
                                 None if out.error is None else json.dumps(jsonb_safe(out.error)),
                                 out.batch_size, out.queue_ms, out.compute_ms, *charge)):
            col.append(v)
    rows = await conn.fetch(_COMPLETE_SQL, *cols)
    verdict = {r["id"]: r["verdict"] for r in rows}
    written = {i for i, v in verdict.items() if v == "completed"}
    rest = [(j, o) for j, o in pairs if verdict.get(j.id) in (None, "undecided")]
    if rest:
        written.update(await _complete_python(conn, rest))
    return [j.id for j, _ in pairs if j.id in written]


async def _complete_python(conn: asyncpg.Connection, pairs: list[tuple[Job, Outcome]]) -> list[str]:
    """The fenced ``UPDATE`` and every hook in Python, in one transaction."""
    if COMPLETION_HOOKS and not conn.is_in_transaction():
        async with conn.transaction():
            return await _write_python(conn, pairs)
    return await _write_python(conn, pairs)


async def _write_python(conn: asyncpg.Connection, pairs: list[tuple[Job, Outcome]]) -> list[str]:
    rows = await conn.fetch(
        """UPDATE jobs AS j SET status = u.status, result = u.result::jsonb, error = u.error::jsonb,
                                batch_size = u.batch_size, queue_ms = u.queue_ms, compute_ms = u.compute_ms,
                                payload = NULL, finished_at = now()
           FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[],
                       $8::float8[]) AS u(id, attempt, status, result, error, batch_size, queue_ms, compute_ms)
           WHERE j.id = u.id AND j.attempts = u.attempt AND j.status = 'RUNNING'
           RETURNING j.id""",
        [j.id for j, _ in pairs], [j.attempt for j, _ in pairs], [o.status for _, o in pairs],
        [None if o.result is None else json.dumps(jsonb_safe(o.result)) for _, o in pairs],
        [None if o.error is None else json.dumps(jsonb_safe(o.error)) for _, o in pairs],
        [o.batch_size for _, o in pairs], [o.queue_ms for _, o in pairs], [o.compute_ms for _, o in pairs],
    )
    written = {r["id"] for r in rows}
    for job, out in pairs:
        if job.id in written:
            for hook in COMPLETION_HOOKS:
                await hook(conn, job, out)
    return [j.id for j, _ in pairs if j.id in written]


async def fail_lost(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record],
                    error: dict[str, Any]) -> list[str]:
    """Fail jobs still QUEUED or RUNNING whose request is gone (a synchronous job whose stream
    message Redis lost: its payload travelled only there), with ``COMPLETION_HOOKS`` in the same
    transaction, like any job's end. ``rows`` carry at least id, account_id, api_key_id, kind,
    operation, batch_key, attempts, is_async, created_at, cost_units, cost_jpy. Returns the ids
    failed by this call (a row that moved on meanwhile is left alone)."""
    if not rows:
        return []
    async with conn.transaction():
        done = await conn.fetch(
            """UPDATE jobs SET status = 'FAILED', error = $2, payload = NULL, finished_at = now()
               WHERE id = ANY($1::text[]) AND status IN ('QUEUED', 'RUNNING') RETURNING id""",
            [r["id"] for r in rows], jsonb_safe(error))
        failed = {r["id"] for r in done}
        for r in rows:
            if r["id"] in failed:
                for hook in COMPLETION_HOOKS:
                    await hook(conn, job_from_row(r, {}), Outcome(error=error))
    return [r["id"] for r in rows if r["id"] in failed]


async def complete_job(conn: asyncpg.Connection, job: Job, outcome: Outcome) -> bool:
    """``complete_jobs`` for one job: True when this call completed it."""
    return bool(await complete_jobs(conn, [(job, outcome)]))


def job_from_row(row: asyncpg.Record, payload: dict[str, Any] | None = None) -> Job:
    return Job(
        id=row["id"], account_id=row["account_id"], kind=row["kind"], operation=row["operation"],
        batch_key=row["batch_key"], attempt=row["attempts"], is_async=row["is_async"],
        payload=payload if payload is not None else decode_payload(row["payload"]),
        created_at=row["created_at"], cost_units=row["cost_units"], cost_jpy=row["cost_jpy"],
        api_key_id=row.get("api_key_id") if hasattr(row, "get") else None,
        idem_key=row.get("idem_key") if hasattr(row, "get") else None,
    )


@dataclass
class ErrorInfo:
    status: int
    code: str
    message: str
    details: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            d["details"] = self.details
        return d


def error_dict(exc: BaseException) -> dict[str, Any]:
    """An exception as the job's stored error (the same status/code the API would answer)."""
    from wavis.errors import WavisError  # noqa: PLC0415

    from .errors import ApiError, from_library_error  # noqa: PLC0415

    if isinstance(exc, WavisError):
        exc = from_library_error(exc)
    if isinstance(exc, ApiError):
        return ErrorInfo(exc.status, exc.code, exc.message, exc.details).as_dict()
    log.error("job failed with an unexpected error", exc_info=exc)
    return ErrorInfo(500, "INTERNAL_ERROR", "the job failed with an internal error").as_dict()
