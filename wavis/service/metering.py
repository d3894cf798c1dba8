"""Usage metering: PostgreSQL (``usage_events``) is the only source of truth for FCU used.

A request's FCU are charged to Redis's monthly window before it runs (``ratelimit.take``: fast,
atomic, refunded on an error) and noted on the request (``note``); when the answer is a
success, they are written to ``usage_events`` before the answer leaves — in the same
transaction as the idempotency record when the request has an ``Idempotency-Key``
(``idempotency.Slot.store``), so a confirmed operation is metered exactly once, and a replay
is never metered again. Jobs (compute, TFHE) are metered instead in the transaction that
completes them (``job_usage``, a ``jobs`` completion hook). The Redis counter is a cache: when it is missing (a new month, or
Redis lost its data) ``seed_monthly`` rebuilds it from ``usage_events``.

Both paths write through ``billing.charge`` (the usage row with its period, list price and
billed part, the period's totals, and the once-per-period usage/budget alerts). The quota
itself is decided in PostgreSQL when a job is admitted (``billing.admit_job``); the Redis
window only answers early for routes that are not jobs and fills the rate-limit headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web

from . import billing, clock, jobs, pricing, repo
from .ratelimit import Seed, Window
from .state import DB, PRINCIPAL, REQUEST_ID, SETTINGS, USAGE


@dataclass(frozen=True)
class Charge:
    fcu: int
    operation: str | None


def note(request: web.Request, fcu: int, operation: str | None = None) -> None:
    """Remember ``fcu`` charged for this request (written by ``record`` on success)."""
    if fcu > 0:
        pending = request.get(USAGE)
        if pending is None:
            pending = request[USAGE] = []
        pending.append(Charge(int(fcu), operation))


def forget(request: web.Request, fcu: int) -> None:
    """Drop a charge that was refunded."""
    pending = request.get(USAGE) or []
    for i, c in enumerate(pending):
        if c.fcu == fcu:
            del pending[i]
            return


def pending(request: web.Request) -> list[Charge]:
    return list(request.get(USAGE) or [])


async def record(conn: asyncpg.Connection, request: web.Request) -> int:
    """Write the request's pending charges to ``usage_events`` (call inside the transaction that
    confirms the answer); returns the FCU written."""
    charges = request.get(USAGE) or []
    p = request.get(PRINCIPAL)
    if not charges or p is None:
        return 0
    route = f"{request.method} {_route(request)}"
    terms = billing.terms_of(p.plan, request.app[SETTINGS].plans, None)
    async with conn.transaction():  # a savepoint inside the idempotency record's transaction
        for c in charges:
            await billing.charge(conn, account_id=p.account_id, api_key_id=p.api_key_id, route=route,
                                 operation=c.operation or request.match_info.get("operation"), fcu=c.fcu,
                                 list_usd=pricing.FCU_LIST_USD * c.fcu, request_id=request.get(REQUEST_ID),
                                 terms=terms)
    total = sum(c.fcu for c in charges)
    charges.clear()
    return total


def _route(request: web.Request) -> str:
    resource = getattr(getattr(request.match_info, "route", None), "resource", None)
    return getattr(resource, "canonical", None) or request.path


def month_start(now: datetime | None = None) -> datetime:
    return clock.as_datetime(clock.period_start(now))


def seeder(request: web.Request, account_id: str) -> Seed:
    """``ratelimit.take``'s seed for the account's monthly window: FCU metered this month."""

    async def seed(window: Window) -> int:
        async with request.app[DB].acquire(timeout=request.app[SETTINGS].upstream_timeout_s) as conn:
            return await repo.fcu_in_period(conn, account_id, clock.period_start())

    return seed


# --- jobs: metered in the transaction that completes them ---------------------------------------

def defer_to_job(request: web.Request, fcu: int, operation: str) -> dict:
    """Take the request's pending charge of ``fcu`` off the request: its job meters it, in the
    transaction that marks it COMPLETED (``job_usage``), so usage is never lost or counted
    twice — and a job that fails or is cancelled is never metered. Returns what the job
    carries for that (its payload's ``metering``)."""
    forget(request, fcu)
    return {"route": f"{request.method} {_route(request)}", "operation": operation,
            "request_id": request.get(REQUEST_ID)}


def _job_charge(job: "jobs.Job", outcome: "jobs.Outcome") -> dict | None:
    """``billing.charge``'s keyword arguments for a job's end, None when nothing is charged."""
    m = job.payload.get("metering")
    if outcome.status != jobs.COMPLETED or job.cost_units <= 0 or not m:
        return None
    return dict(account_id=job.account_id, api_key_id=job.api_key_id, route=m.get("route") or "",
                operation=m.get("operation") or job.operation, fcu=job.cost_units,
                list_usd=pricing.jpy_to_usd(job.cost_jpy), request_id=m.get("request_id"),
                terms=billing.Terms.from_json(job.payload.get("billing"), job.payload.get("plan") or "free"),
                job_id=job.id)


async def job_usage(conn: asyncpg.Connection, job: "jobs.Job", outcome: "jobs.Outcome") -> None:
    """Completion hook (``jobs.COMPLETION_HOOKS``): a COMPLETED job's FCU into ``usage_events``
    (``billing.charge``: once per job id), at the list price it was admitted with. Its
    one-statement form (``job_usage_args``) lets ``jobs.complete_jobs`` write the job's end and
    this charge in one call."""
    kw = _job_charge(job, outcome)
    if kw is not None:
        await billing.charge(conn, **kw)


def job_usage_args(job: "jobs.Job", outcome: "jobs.Outcome") -> tuple | None:
    """``job_usage`` as ``wavis_complete_job``'s charge arguments (``billing.charge_args``)."""
    kw = _job_charge(job, outcome)
    return None if kw is None else billing.charge_args(**kw)


jobs.register_completion_hook(job_usage, charge=job_usage_args)

