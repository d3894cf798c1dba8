"""A job's completion and its charge in one statement (issues 13, 17) against real PostgreSQL:
``jobs.complete_jobs`` runs ``wavis_complete_job`` (migration 083) for a job whose hooks are
billing's charge or do not apply. It must write exactly what the Python path (the fenced
``UPDATE``, then ``metering.job_usage`` → ``billing.charge``, in one transaction) writes —
usage rows, the period's totals, the once-per-period alerts — leave every case it does not
decide (a charge partly within the allowance, an alert falling due) to that path, keep the
attempt fence, and charge a job exactly once when two completions race."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import asyncpg
import pytest

from wavis.service import billing, clock, jobs, ratelimit
from wavis.service.state import DB, SETTINGS

from conftest import TEST_PEPPER

pytestmark = pytest.mark.service

ALLOWANCE = 20


def plans() -> dict:
    p = dict(ratelimit.PLANS)
    p["free"] = replace(p["free"], monthly_fcu=ALLOWANCE)
    p["starter"] = replace(p["starter"], monthly_fcu=ALLOWANCE)
    return p


@pytest.fixture
async def api(make_client, service_settings):
    return await make_client(replace(service_settings, plans=plans(), job_queue_per_account=1000))


async def account(api, plan: str) -> str:
    from wavis.service import repo
    from wavis.service.access import Role

    async with api.app[DB].acquire() as conn:
        new = await repo.create_account(conn, TEST_PEPPER, email=None, plan=plan, role=Role.DEVELOPER,
                                        environment="test")
    return new.account_id


async def running_job(api, conn, account_id: str, fcu: int, *, is_async: bool = False, n: int = 0) -> jobs.Job:
    """A RUNNING job (claimed by "w1", token 1) metered as a request would meter it."""
    terms = billing.terms_of((await billing.account_row(conn, account_id))["plan"], api.app[SETTINGS].plans, None)
    payload = {"metering": {"route": "POST /api/v1/tfhe/gate", "operation": "tfhe:gate", "request_id": f"req_{n}"},
               "billing": terms.to_json()}
    spec = jobs.JobSpec(account_id=account_id, kind="tfhe", operation="gate", batch_key="tfhe:s", affinity="s",
                        payload=payload, cost_units=fcu, cost_jpy=0.0003 * fcu * (1 + n % 3), is_async=is_async)
    row = await jobs.insert(conn, spec, 3600, claimed_by="w1")
    return jobs.job_from_row(row, payload)


async def ledger(conn, account_id: str) -> tuple:
    """Everything a charge writes, without ids and times."""
    events = await conn.fetch(
        "SELECT route, operation, fcu, request_id, period_start, cost_usd, billed_usd FROM usage_events "
        "WHERE account_id = $1 ORDER BY id", account_id)
    period = await conn.fetchrow("SELECT fcu_used, cost_usd, billed_usd, events_sent FROM usage_periods "
                                 "WHERE account_id = $1", account_id)
    return [tuple(r) for r in events], tuple(period) if period else None


async def outcome_rows(conn, ids: list[str]) -> list[tuple]:
    rows = await conn.fetch("SELECT status, result, error, batch_size, queue_ms, compute_ms, payload IS NULL "
                            "FROM jobs WHERE id = ANY($1::text[]) ORDER BY created_at, id", ids)
    return [tuple(r) for r in rows]


@pytest.fixture
def emitted(monkeypatch):
    """The alerts billing emits, per account (``billing.emit_event``)."""
    seen: dict[str, list] = {}
    real = billing.emit_event

    async def spy(conn, account_id, event_type, payload):
        seen.setdefault(account_id, []).append((event_type, payload.get("threshold_pct")))
        return await real(conn, account_id, event_type, payload)

    monkeypatch.setattr(billing, "emit_event", spy)
    return seen


@pytest.mark.parametrize("plan,budget", [("starter", None), ("free", None), ("payg", "0.00"),
                                         ("starter", "0.01")])
async def test_one_statement_writes_what_the_python_path_writes(api, emitted, monkeypatch, plan, budget):
    """The same jobs completed on two accounts of one plan — one through ``complete_jobs`` (one
    statement where it decides), one through the Python path alone — leave identical usage
    rows, period totals, alerts and job rows: across 50/80/100 % of the allowance, the charge
    that straddles it (billed in part), and a soft budget's alert."""
    fcus = [3, 5, 1, 4, 2, 6, 1, 3, 2]
    used = {}
    async with api.app[DB].acquire() as conn:
        ids = {}
        for mode in ("statement", "python"):
            acct = await account(api, plan)
            if budget is not None:
                await billing.set_budget(conn, acct, Decimal(budget), "soft", 80)
            ids[mode] = acct
            verdicts = []
            job_ids = []
            for n, fcu in enumerate(fcus):
                job = await running_job(api, conn, acct, fcu, n=n)
                job_ids.append(job.id)
                out = jobs.Outcome(result={"levels": [1], "gates": 1}, batch_size=1, queue_ms=0.25 * n,
                                   compute_ms=9.5)
                if mode == "statement":
                    calls = []
                    real_python = jobs._complete_python

                    async def counting(c, pairs, _real=real_python, _calls=calls):
                        _calls.append(len(pairs))
                        return await _real(c, pairs)

                    monkeypatch.setattr(jobs, "_complete_python", counting)
                    assert await jobs.complete_jobs(conn, [(job, out)]) == [job.id]
                    monkeypatch.setattr(jobs, "_complete_python", real_python)
                    verdicts.append("python" if calls else "statement")
                else:
                    assert await jobs._complete_python(conn, [(job, out)]) == [job.id]
            used[mode] = (await ledger(conn, acct), await outcome_rows(conn, job_ids))
            if mode == "statement":
                # most jobs in one statement; the ones an alert or the allowance's edge falls on in Python
                assert verdicts.count("statement") >= 4, verdicts
                if plan != "payg":
                    assert "python" in verdicts, verdicts
    assert used["statement"] == used["python"]
    assert emitted.get(ids["statement"], []) == emitted.get(ids["python"], [])
    assert emitted.get(ids["statement"]) or plan == "payg" and budget is None
    (events, period), _ = used["statement"]
    assert period[0] == sum(fcus) and len(events) == len(fcus)


async def test_fence_and_once_per_job(api):
    """A late attempt writes nothing; a job completes (and is charged) once; a failed job is
    never charged; an async job (a webhook event to emit) takes the Python path."""
    async with api.app[DB].acquire() as conn:
        acct = await account(api, "payg")
        job = await running_job(api, conn, acct, 2)
        (await jobs.claim(conn, [job.id], "w2"))  # reclaimed: token 2
        late = job
        assert await jobs.complete_jobs(conn, [(late, jobs.Outcome(result={"who": "late"}))]) == []
        assert (await ledger(conn, acct))[0] == []
        current = replace(job, attempt=2)
        assert await jobs.complete_jobs(conn, [(current, jobs.Outcome(result={"who": "now"}))]) == [job.id]
        assert await jobs.complete_jobs(conn, [(current, jobs.Outcome(result={"who": "again"}))]) == []
        row = await conn.fetchrow("SELECT status, result, payload FROM jobs WHERE id = $1", job.id)
        assert (row["status"], row["result"], row["payload"]) == ("COMPLETED", {"who": "now"}, None)
        failed = await running_job(api, conn, acct, 3, n=1)
        err = {"status": 422, "code": "INVALID_CIPHERTEXT", "message": "bad"}
        assert await jobs.complete_jobs(conn, [(failed, jobs.Outcome(error=err))]) == [failed.id]
        assert await conn.fetchval("SELECT error FROM jobs WHERE id = $1", failed.id) == err
        events, period = await ledger(conn, acct)
        assert [e[2] for e in events] == [2] and period[0] == 2
        # a charge already written (the Python path after a lost answer …) is not written twice
        again = await running_job(api, conn, acct, 4, n=2)
        await conn.execute(
            "INSERT INTO usage_events (account_id, route, fcu, period_start, job_id) VALUES ($1, 'x', 4, $2, $3)",
            acct, clock.period_start(), again.id)
        assert await jobs.complete_jobs(conn, [(again, jobs.Outcome(result={}))]) == [again.id]
        assert await conn.fetchval("SELECT count(*) FROM usage_events WHERE job_id = $1", again.id) == 1
        assert (await ledger(conn, acct))[1][0] == 2  # the period's totals unchanged too


async def test_async_job_takes_the_python_path(api, monkeypatch):
    async with api.app[DB].acquire() as conn:
        acct = await account(api, "payg")
        job = await running_job(api, conn, acct, 1, is_async=True)
        calls = []
        real = jobs._complete_python

        async def counting(c, pairs):
            calls.append([j.id for j, _ in pairs])
            return await real(c, pairs)

        monkeypatch.setattr(jobs, "_complete_python", counting)
        assert await jobs.complete_jobs(conn, [(job, jobs.Outcome(result={}))]) == [job.id]
        assert calls == [[job.id]]
        assert (await ledger(conn, acct))[1][0] == 1


async def test_a_batch_is_one_transaction_and_mixes_both_paths(api, monkeypatch):
    """Several jobs: one transaction. Jobs the statement leaves undecided are completed by the
    Python path in it; an error there rolls back the whole batch (nothing half written)."""
    async with api.app[DB].acquire() as conn:
        acct = await account(api, "starter")
        batch = [await running_job(api, conn, acct, f, n=n) for n, f in enumerate([4, 4, 4, 9, 1])]
        pairs = [(j, jobs.Outcome(result={"n": i}, batch_size=5)) for i, j in enumerate(batch)]

        async def boom(c, pairs):
            raise RuntimeError("billing down")

        monkeypatch.setattr(jobs, "_complete_python", boom)
        with pytest.raises(RuntimeError):
            await jobs.complete_jobs(conn, pairs)  # jobs 3 and 4 bring alerts (and straddle the allowance)
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1 AND status = 'RUNNING'",
                                   acct) == 5
        assert (await ledger(conn, acct)) == ([], None)  # not even the period row
        monkeypatch.undo()
        assert await jobs.complete_jobs(conn, pairs) == [j.id for j in batch]
        events, period = await ledger(conn, acct)
        assert [e[2] for e in events] == [4, 4, 4, 9, 1] and period[0] == 22
        assert period[3] == ["usage_alert:50", "usage_alert:80", "usage_alert:100"]
        # the straddling charge: 8 of its 9 FCU included, 1 billed; the one after all billed
        assert events[3][6] > 0 and events[2][6] == 0 and events[4][6] == events[4][5]


async def test_racing_completions_charge_once(api):
    """Eight connections complete the same job (same claim) at once: one completes it, one
    usage row, the period counts it once."""
    url = api.app[SETTINGS].database_url
    async with api.app[DB].acquire() as conn:
        acct = await account(api, "payg")
        job = await running_job(api, conn, acct, 5)
    conns = [await asyncpg.connect(url) for _ in range(8)]
    try:
        for c in conns:
            await c.set_type_codec("jsonb", encoder=__import__("json").dumps, decoder=__import__("json").loads,
                                   schema="pg_catalog")
        got = await asyncio.gather(*(jobs.complete_jobs(c, [(job, jobs.Outcome(result={"k": i}))])
                                     for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(g) for g in got) == [0] * 7 + [1]
    async with api.app[DB].acquire() as conn:
        events, period = await ledger(conn, acct)
    assert [e[2] for e in events] == [5] and period[0] == 5
