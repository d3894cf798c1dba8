"""Admission of a synchronous job in one statement (issues 13, 17) against real PostgreSQL:
``jobs.insert_admitted`` runs ``wavis_admit_job`` (migration 082) and the INSERT together. It
must be as exact as ``billing.admit_job`` under concurrency (separate connections racing for
the last FCU), must admit only what ``billing.admit_job`` admits (leaving each refusal to it),
and the writes that commit without waiting for the WAL flush (``db.relaxed_commit``) are
refused inside a transaction. A fast-path job whose row is gone before it completes (what a
PostgreSQL crash does to a relaxed admission) answers 503 ``JOB_LOST`` at once, uncharged."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import asyncpg
import pytest

from wavis.service import billing, clock, jobs, ratelimit
from wavis.service.state import DB, SETTINGS

from conftest import TEST_ENGINE, TEST_PEPPER, add_account_helper, error_of

pytestmark = pytest.mark.service

ALLOWANCE = 20


def plans() -> dict:
    p = dict(ratelimit.PLANS)
    p["free"] = replace(p["free"], monthly_fcu=ALLOWANCE, burst_per_ip=10_000, daily_requests=100_000)
    return p


@pytest.fixture
async def app_db(make_client, service_settings):
    client = await make_client(replace(service_settings, plans=plans(), job_queue_per_account=1000))
    add_account_helper(client)
    return client


async def account(api, plan: str = "free") -> str:
    from wavis.service import repo
    from wavis.service.access import Role

    async with api.app[DB].acquire() as conn:
        new = await repo.create_account(conn, TEST_PEPPER, email=None, plan=plan, role=Role.DEVELOPER,
                                        environment="test")
    return new.account_id


def spec(account_id: str, fcu: int = 1, **kw) -> jobs.JobSpec:
    return jobs.JobSpec(account_id=account_id, kind="ckks", operation="add", batch_key="k", affinity="k",
                        payload={}, cost_units=fcu, cost_jpy=0.0003 * fcu, **kw)


async def set_used(api, account_id: str, used: int) -> None:
    async with api.app[DB].acquire() as conn:
        await conn.execute(
            "INSERT INTO usage_periods (account_id, period_start, fcu_used) VALUES ($1, $2, $3) "
            "ON CONFLICT (account_id, period_start) DO UPDATE SET fcu_used = EXCLUDED.fcu_used",
            account_id, clock.period_start(), used)


async def admit(api, conn, account_id: str, fcu: int = 1, quota: int | None = 1000):
    s = api.app[SETTINGS]
    return await jobs.insert_admitted(conn, spec(account_id, fcu), 3600,
                                      billing.admission_args(account_id, fcu, s.plans), quota=quota)


async def test_one_statement_admission_is_exact_under_concurrency(app_db):
    """24 connections race for 7 FCU left, 1 FCU each: exactly 7 rows are admitted (each
    admission reads the reservations after the period lock, in a fresh snapshot), the other 17
    are left to billing.admit_job ("undecided"), and nothing else is written."""
    api = app_db
    acct = await account(api)
    await set_used(api, acct, ALLOWANCE - 7)
    url = api.app[SETTINGS].database_url
    conns = [await asyncpg.connect(url) for _ in range(24)]
    try:
        results = await asyncio.gather(*(admit(api, c, acct) for c in conns))
    finally:
        for c in conns:
            await c.close()
    verdicts = sorted(v for v, _, _ in results)
    assert verdicts.count("admitted") == 7 and verdicts.count("undecided") == 17, verdicts
    async with api.app[DB].acquire() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1", acct)
        reserved = await conn.fetchval(
            "SELECT sum(cost_units) FROM jobs WHERE account_id = $1 AND status IN ('QUEUED', 'RUNNING')", acct)
    assert rows == 7 and reserved == 7
    # and billing.admit_job, which decides the undecided ones, refuses the next: the quota is reserved
    async with api.app[DB].acquire() as conn:
        async with conn.transaction():
            refused = await billing.admit_job(conn, acct, 1, 0.0003, api.app[SETTINGS].plans)
    assert refused is not None and refused.code == "QUOTA_EXHAUSTED"


async def test_admits_only_what_billing_admits(app_db):
    """Each case billing.admit_job refuses or weighs is "undecided" with nothing inserted; the
    ordinary case is admitted with the account's terms (override included); a full queue is
    "queue_full"; a free operation is admitted without touching the period."""
    api = app_db
    s = api.app[SETTINGS]
    acct = await account(api)
    async with api.app[DB].acquire() as conn:
        verdict, row, terms = await admit(api, conn, acct, fcu=3)
        assert verdict == "admitted" and row["status"] == "QUEUED" and row["cost_units"] == 3
        assert terms == billing.terms_of("free", s.plans, None).to_json()
        # over the quota (3 reserved + 18 > 20): billing decides
        assert (await admit(api, conn, acct, fcu=18))[0] == "undecided"
        # the account's queue quota is reached: queue_full (the route answers 429)
        verdict, row, _ = await admit(api, conn, acct, fcu=1, quota=1)
        assert verdict == "queue_full" and row is None
        # a hard budget: billing's pricing decides
        await billing.set_budget(conn, acct, Decimal("5"), "hard", 80)
        assert (await admit(api, conn, acct, fcu=1))[0] == "undecided"
        await billing.delete_budget(conn, acct)
        assert (await admit(api, conn, acct, fcu=1))[0] == "admitted"
        # a subscription in status unpaid
        await conn.execute("INSERT INTO subscriptions (account_id, plan, status, updated_at) "
                           "VALUES ($1, 'starter', 'unpaid', now())", acct)
        assert (await admit(api, conn, acct, fcu=1))[0] == "undecided"
        await conn.execute("DELETE FROM subscriptions WHERE account_id = $1", acct)
        # the Enterprise override replaces the plan's allowance, as in billing.terms_of
        ent = await account(api, plan="enterprise")
        await conn.execute("UPDATE accounts SET monthly_fcu_override = 5 WHERE id = $1", ent)
        verdict, _, terms = await admit(api, conn, ent, fcu=5)
        assert verdict == "admitted" and terms == billing.terms_of("enterprise", s.plans, 5).to_json()
        assert terms["allowance"] == 5 and terms["overage"] is True  # past it: billed as overage, not refused
        assert (await admit(api, conn, ent, fcu=1))[0] == "admitted"
        # a free operation: admitted, no period row made
        other = await account(api)
        assert (await admit(api, conn, other, fcu=0))[0] == "admitted"
        assert await conn.fetchval("SELECT count(*) FROM usage_periods WHERE account_id = $1", other) == 0
        n = await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1", acct)
    assert n == 2  # the two admitted rows of this account only


async def test_admission_statement_touches_the_session_and_admits_only_a_live_one(app_db):
    """``insert_admitted(session=…)``: the TFHE session touch rides in the admission statement.
    A live session of the account is touched (``last_used_at`` moves) and the job admitted; an
    idle one, another account's and an unknown one answer "no_session" with nothing written —
    no job row, no touch, and the admission never ran (no period row created)."""
    from wavis.service import repo_tfhe

    api = app_db
    acct, other = await account(api), await account(api)
    s = api.app[SETTINGS]

    async def session(owner: str, idle_for_s: float) -> str:
        sid = f"sess_{owner[-8:]}_{int(idle_for_s)}"
        async with api.app[DB].acquire() as conn:
            await repo_tfhe.insert_session(conn, session_id=sid, account_id=owner, preset="fast_128", is_blind=True,
                                           key_id=b"k" * 32, server_key=b"sk", client_key_sealed=None)
            await conn.execute("UPDATE tfhe_sessions SET last_used_at = now() - make_interval(secs => $2) "
                               "WHERE id = $1", sid, idle_for_s)
        return sid

    live, idle, foreign = await session(acct, 60), await session(acct, 7200), await session(other, 60)

    async def run(conn, sid: str):
        return await jobs.insert_admitted(conn, spec(acct, 2), 3600, billing.admission_args(acct, 2, s.plans),
                                          session=(sid, 3600.0))

    async with api.app[DB].acquire() as conn:
        for sid in (idle, foreign, "sess_unknown"):
            before = await conn.fetchval("SELECT last_used_at FROM tfhe_sessions WHERE id = $1", sid)
            assert await run(conn, sid) == ("no_session", None, None)
            assert await conn.fetchval("SELECT last_used_at FROM tfhe_sessions WHERE id = $1", sid) == before
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1", acct) == 0
        assert await conn.fetchval("SELECT count(*) FROM usage_periods WHERE account_id = $1", acct) == 0
        before = await conn.fetchval("SELECT last_used_at FROM tfhe_sessions WHERE id = $1", live)
        verdict, row, terms = await run(conn, live)
        assert verdict == "admitted" and row["account_id"] == acct and row["cost_units"] == 2
        assert terms is not None and terms["plan"] == "free"
        after = await conn.fetchval("SELECT last_used_at FROM tfhe_sessions WHERE id = $1", live)
        assert after > before
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1", acct) == 1
        # the session's owner still decides by the quota: past it, the session is touched and
        # billing decides ("undecided"), as without a session
        await set_used(api, acct, ALLOWANCE)
        assert (await run(conn, live))[0] == "undecided"


async def test_relaxed_commit_and_insert_admitted_refuse_misuse(app_db):
    from wavis.service.db import relaxed_commit

    api = app_db
    acct = await account(api)
    async with api.app[DB].acquire() as conn:
        assert "synchronous_commit" in relaxed_commit(conn)
        async with conn.transaction():
            with pytest.raises(RuntimeError, match="its own transaction"):
                relaxed_commit(conn)
        s = api.app[SETTINGS]
        with pytest.raises(ValueError, match="synchronous"):
            await jobs.insert_admitted(conn, spec(acct, is_async=True), 3600,
                                       billing.admission_args(acct, 1, s.plans))
        with pytest.raises(ValueError, match="synchronous"):
            await jobs.insert_admitted(conn, spec(acct, admit=lambda n, b: None), 3600,
                                       billing.admission_args(acct, 1, s.plans))
        # it lasts for its statement's transaction only: the session's setting is unchanged after
        before = await conn.fetchval("SHOW synchronous_commit")
        await conn.execute(f"UPDATE accounts SET plan = plan FROM {relaxed_commit(conn)} WHERE id = $1", acct)
        assert await conn.fetchval("SHOW synchronous_commit") == before


@pytest.mark.skipif(TEST_ENGINE == "remote", reason="the in-process fast path needs the embedded engine")
async def test_fast_path_job_whose_row_is_lost_answers_job_lost_at_once(app_db, ckks_pair_factory):
    """The row of a fast-path job vanishes while it runs (what a PostgreSQL crash does to an
    admission committed without waiting for the flush): the request gets 503 JOB_LOST, retryable,
    long before the request timeout, and nothing is charged."""
    from test_service_billing import ops_for
    from wavis.service.state import WORKER

    api = app_db
    worker = api.app[WORKER]
    ops = await ops_for(api, ckks_pair_factory(max_depth=1, index=0), plan="free")
    acct = await ops.account_id()
    real = worker._run_ckks
    async with api.app[DB].acquire() as conn:
        charged = await conn.fetchval("SELECT count(*) FROM usage_events WHERE account_id = $1", acct)

    async def lose_rows(batch):
        out = await real(batch)
        async with api.app[DB].acquire() as conn:
            await conn.execute("DELETE FROM jobs WHERE id = ANY($1::text[])", [j.id for j in batch])
        return out

    worker._run_ckks = lose_rows
    try:
        t0 = asyncio.get_running_loop().time()
        resp = await ops.add()
        elapsed = asyncio.get_running_loop().time() - t0
    finally:
        worker._run_ckks = real
    err = await error_of(resp, 503, "JOB_LOST")
    assert err["details"]["retryable"] is True
    assert elapsed < api.app[SETTINGS].request_timeout_s / 2
    async with api.app[DB].acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM usage_events WHERE account_id = $1", acct) == charged
    # and the next request runs normally
    assert (await ops.add()).status == 200
