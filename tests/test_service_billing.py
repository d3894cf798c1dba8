"""Billing against real PostgreSQL and Redis (issues 16 and 17): quota admission with zero
overshoot, usage_alert / limit_reached / budget_alert once per period through the webhook
outbox (delivered to a real receiver), budgets, usage reports, plans, a month rollover under a
frozen clock, and locally computed invoices."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from wavis import serialize
from wavis.service import clock, ratelimit
from wavis.service.state import DB, REDIS, SETTINGS

from conftest import add_account_helper, bearer, error_of
from test_service_webhooks import (  # noqa: F401 - fixtures
    Receiver, create, dns, events_of, receiver, webhook_client, wh_settings, worker_for,
)

pytestmark = pytest.mark.service

ALLOWANCE = 10  # the Free plan's FCU in these tests (Settings.plans shrinks it; pricing says Free has no overage)


def small_plans(free_fcu: int = ALLOWANCE) -> dict:
    plans = dict(ratelimit.PLANS)
    plans["free"] = replace(plans["free"], monthly_fcu=free_fcu, burst_per_ip=10_000, daily_requests=100_000)
    plans["payg"] = replace(plans["payg"], burst_per_ip=10_000)
    plans["starter"] = replace(plans["starter"], monthly_fcu=free_fcu, burst_per_ip=10_000)
    return plans


@pytest.fixture
async def bill(make_client, service_settings, dns):
    client = await webhook_client(make_client, wh_settings(service_settings, plans=small_plans(),
                                                           job_queue_per_account=1000), dns)
    yield client
    async with client.app[DB].acquire() as conn:
        await conn.execute("DELETE FROM webhooks")


class Ops:
    """An account with a CKKS key and two ciphertexts, ready to add (1 FCU) or multiply (5 FCU)."""

    def __init__(self, api, key: str):
        self.api, self.key, self.h = api, key, bearer(key)

    async def setup(self, pair) -> "Ops":
        resp = await self.api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=self.h)
        assert resp.status == 200, await resp.text()
        self.key_id = (await resp.json())["key_id"]
        self.ids = []
        for v in ([1.0, 2.0], [3.0, 4.0]):
            resp = await self.api.post("/api/v1/ciphertexts", json={
                "key_id": self.key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(pair.encrypt(v)))},
                headers=self.h)
            assert resp.status == 201, await resp.text()
            self.ids.append((await resp.json())["ciphertext_id"])
        return self

    async def add(self, **kw):
        return await self.api.post("/api/v1/compute/add", json={"key_id": self.key_id, "ciphertext_ids": self.ids,
                                                                **kw}, headers=self.h)

    async def account_id(self) -> str:
        async with self.api.app[DB].acquire() as conn:
            return await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", self.key[:16])


async def ops_for(api, pair, **account) -> Ops:
    return await Ops(api, await api.account(**account)).setup(pair)


async def event_datas(api, key, type_: str) -> list[dict]:
    out = []
    for e in await events_of(api, key, type=type_):
        resp = await api.get(f"/api/v1/webhooks/events/{e['event_id']}", headers=bearer(key))
        out.append((await resp.json())["data"])
    return out


async def set_period(api, account_id: str, **cols) -> None:
    """Put the current period's totals where a test needs them (the state a long month leaves)."""
    period = clock.period_start()
    async with api.app[DB].acquire() as conn:
        await conn.execute("INSERT INTO usage_periods (account_id, period_start) VALUES ($1, $2) "
                           "ON CONFLICT DO NOTHING", account_id, period)
        for col, val in cols.items():
            await conn.execute(f"UPDATE usage_periods SET {col} = $3 WHERE account_id = $1 AND period_start = $2",
                               account_id, period, val)


async def forget_redis_monthly(api, account_id: str) -> None:
    """Make the Redis monthly counter (a cache) useless as a decider: far below the truth, as
    after a Redis restart reseeded it before in-flight jobs completed. PostgreSQL must still hold."""
    key = f"{api.app[SETTINGS].redis_prefix}rl:fcu:{account_id}:{clock.now().strftime('%Y%m')}"
    await api.app[REDIS].set(key, -10**9, ex=3600)


# --- issue 16: usage_alert and limit_reached -------------------------------------------------------

async def test_usage_alerts_once_each_and_limit_reached_delivered(bill, dns, receiver, ckks_pair_factory):
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="free")
    made = await create(bill, ops.key, receiver.url, events=["usage_alert", "limit_reached"])
    for i in range(ALLOWANCE):
        resp = await ops.add()
        assert resp.status == 200, await resp.text()
    alerts = await event_datas(bill, ops.key, "usage_alert")
    assert sorted(a["threshold_pct"] for a in alerts) == [50, 80, 100]
    by = {a["threshold_pct"]: a for a in alerts}
    assert by[50]["used_fcu"] == 5 and by[80]["used_fcu"] == 8 and by[100]["used_fcu"] == 10
    assert all(a["quota_fcu"] == ALLOWANCE and a["plan"] == "free" for a in alerts)
    assert by[50]["period_start"] == clock.period_start().isoformat() and by[50]["period_end"] > by[50]["period_start"]
    # the cap refuses before any work, and says so once per period
    for _ in range(3):
        err = await error_of(await ops.add(), 402, "QUOTA_EXHAUSTED")
        assert err["details"]["monthly_fcu_limit"] == ALLOWANCE and err["details"]["fcu_used"] == ALLOWANCE
    limits = await event_datas(bill, ops.key, "limit_reached")
    assert len(limits) == 1 and limits[0]["limit"] == "quota" and limits[0]["requested_fcu"] == 1
    assert len(await event_datas(bill, ops.key, "usage_alert")) == 3  # still once each
    # delivered, signed, to a real receiver
    worker = worker_for(bill, dns)
    while await worker.run_once():
        pass
    types = sorted(json.loads(r["body"])["type"] for r in receiver.requests)
    assert types == ["limit_reached", "usage_alert", "usage_alert", "usage_alert"]
    from wavis.client import verify_signature

    assert all(verify_signature(made["secret"], r["headers"], r["body"]) for r in receiver.requests)


async def test_quota_zero_overshoot_under_concurrency(bill, ckks_pair_factory):
    """40 concurrent adds (1 FCU each) with 7 FCU left: exactly 7 run, 33 get 402 before any
    work, and the period's usage ends exactly at the allowance — even with the Redis cache
    out of the way (PostgreSQL's row lock decides)."""
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="free")
    acct = await ops.account_id()
    await set_period(bill, acct, fcu_used=ALLOWANCE - 7)
    await forget_redis_monthly(bill, acct)
    resps = await asyncio.gather(*(ops.add() for _ in range(40)))
    statuses = sorted(r.status for r in resps)
    assert statuses.count(200) == 7 and statuses.count(402) == 33, statuses
    for r in resps:
        if r.status == 402:
            body = await r.json()
            assert body["error"]["code"] == "QUOTA_EXHAUSTED" and "fcu_reserved" in body["error"]["details"]
    async with bill.app[DB].acquire() as conn:
        used = await conn.fetchval("SELECT fcu_used FROM usage_periods WHERE account_id = $1 AND period_start = $2",
                                   acct, clock.period_start())
        events = await conn.fetchval("SELECT count(*) FROM usage_events WHERE account_id = $1", acct)
        jobs_ok = await conn.fetchval("SELECT count(*) FROM jobs WHERE account_id = $1 AND status = 'COMPLETED'", acct)
    assert used == ALLOWANCE and events == 7 and jobs_ok == 7


async def test_async_jobs_reserve_at_admission_and_release_on_cancel(bill, ckks_pair_factory):
    """An async job's FCU are reserved while it is queued (the next request sees them), and a
    cancelled job gives them back."""
    from test_service_jobs import wait_job

    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="free")
    acct = await ops.account_id()
    await set_period(bill, acct, fcu_used=ALLOWANCE - 1)
    await forget_redis_monthly(bill, acct)
    resp = await ops.add(**{"async": True})
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    # while it is queued or running its FCU are reserved; once it completes they are used
    second = await ops.add(**{"async": True})
    assert second.status == 402
    done = await wait_job(bill, ops.h, job_id)
    assert done["status"] == "COMPLETED"
    usage = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
    assert usage["quota"]["fcu_used"] == ALLOWANCE and usage["quota"]["fcu_reserved"] == 0
    assert usage["quota"]["exhausted"] is True
    # a job that is cancelled releases its reservation: fake one QUEUED row, cancel it, admit again
    await set_period(bill, acct, fcu_used=ALLOWANCE - 1)
    async with bill.app[DB].acquire() as conn:
        await conn.execute(
            "INSERT INTO jobs (id, account_id, kind, operation, is_async, batch_key, cost_units, cost_jpy, expires_at) "
            "VALUES ('op_00000000000000000000beef', $1, 'ckks', 'add', true, 'x', 1, 0.0003, now() + interval '1 h')",
            acct)
    assert (await ops.add()).status == 402
    resp = await bill.delete("/api/v1/jobs/op_00000000000000000000beef", headers=ops.h)
    assert resp.status == 200, await resp.text()
    assert (await ops.add()).status == 200


# --- budgets ---------------------------------------------------------------------------------------

async def test_budget_routes_validation_and_rbac(bill):
    admin = await bill.account(role="account_admin", plan="payg")
    h = bearer(admin)
    await error_of(await bill.get("/api/v1/billing/budget", headers=h), 404, "NOT_FOUND")
    resp = await bill.post("/api/v1/billing/budget", json={"monthly_limit_usd": 25.5, "mode": "hard"}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["monthly_limit_usd"] == 25.5 and body["mode"] == "hard" and body["alert_threshold_pct"] == 80
    assert body["spent_usd"] == 0.0
    got = await (await bill.get("/api/v1/billing/budget", headers=h)).json()
    assert got["monthly_limit_usd"] == 25.5
    for bad in ({"monthly_limit_usd": -1, "mode": "hard"}, {"monthly_limit_usd": 5, "mode": "maybe"},
                {"monthly_limit_usd": 5, "mode": "soft", "alert_threshold_pct": 0},
                {"monthly_limit_usd": 5, "mode": "soft", "alert_threshold_pct": 101}, {"mode": "soft"}):
        await error_of(await bill.post("/api/v1/billing/budget", json=bad, headers=h), 422, "SCHEMA_MISMATCH")
    dev = await bill.key_for(admin, role="developer")
    await error_of(await bill.post("/api/v1/billing/budget", json={"monthly_limit_usd": 1, "mode": "soft"},
                                   headers=bearer(dev)), 403, "FORBIDDEN")
    assert (await bill.delete("/api/v1/billing/budget", headers=h)).status == 200
    await error_of(await bill.delete("/api/v1/billing/budget", headers=h), 404, "NOT_FOUND")


async def test_hard_budget_402_at_the_edge_and_limit_reached(bill, receiver, ckks_pair_factory):
    """PAYG bills every FCU at $2 per 1 M; an add is $0.000002. With $0.999997 spent under a
    $1.00 hard cap one more add fits and the next does not — refused before any work."""
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), role="account_admin", plan="payg")
    await create(bill, ops.key, receiver.url, events=["limit_reached", "budget_alert"])
    acct = await ops.account_id()
    resp = await bill.post("/api/v1/billing/budget", json={"monthly_limit_usd": 1, "mode": "hard",
                                                           "alert_threshold_pct": 100}, headers=ops.h)
    assert resp.status == 200
    await set_period(bill, acct, billed_usd=Decimal("0.999997"))
    ok = await ops.add()
    assert ok.status == 200 and (await ok.json())["cost_usd"] == 2e-6
    err = await error_of(await ops.add(), 402, "BUDGET_EXCEEDED")
    assert err["details"]["monthly_limit_usd"] == 1.0 and err["details"]["spent_usd"] == pytest.approx(0.999999)
    await error_of(await ops.add(), 402, "BUDGET_EXCEEDED")
    limits = await event_datas(bill, ops.key, "limit_reached")
    assert len(limits) == 1 and limits[0]["limit"] == "budget"
    async with bill.app[DB].acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM usage_events WHERE account_id = $1", acct)
    assert n == 1
    # raising the cap lets work through again
    await bill.post("/api/v1/billing/budget", json={"monthly_limit_usd": 2, "mode": "hard"}, headers=ops.h)
    assert (await ops.add()).status == 200


async def test_soft_budget_alerts_once_and_never_refuses(bill, receiver, ckks_pair_factory):
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), role="account_admin", plan="payg")
    await create(bill, ops.key, receiver.url, events=["budget_alert"])
    acct = await ops.account_id()
    await bill.post("/api/v1/billing/budget", json={"monthly_limit_usd": 1, "mode": "soft",
                                                    "alert_threshold_pct": 80}, headers=ops.h)
    await set_period(bill, acct, billed_usd=Decimal("0.799999"))
    assert (await ops.add()).status == 200  # 0.800001 ≥ 80 % of $1
    await set_period(bill, acct, billed_usd=Decimal("1.5"))  # past the cap: soft never refuses
    for _ in range(2):
        assert (await ops.add()).status == 200
    alerts = await event_datas(bill, ops.key, "budget_alert")
    assert len(alerts) == 1 and alerts[0]["threshold_pct"] == 80 and alerts[0]["mode"] == "soft"
    assert alerts[0]["monthly_limit_usd"] == 1.0 and alerts[0]["spent_usd"] == pytest.approx(0.800001)
    usage = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
    assert usage["budget"]["alert_sent"] is True and usage["budget"]["exceeded"] is True


# --- plans, usage, rollover, invoices --------------------------------------------------------------

async def test_plans_are_public(bill):
    resp = await bill.get("/api/v1/billing/plans")
    assert resp.status == 200
    body = await resp.json()
    assert [p["plan"] for p in body["plans"]] == ["free", "payg", "starter", "pro", "scale", "enterprise"]
    pro = next(p for p in body["plans"] if p["plan"] == "pro")
    assert pro["monthly_price_usd"] == 49 and pro["monthly_fcu"] == 20_000_000 and pro["overage"] is True
    assert body["tfhe"]["per_bootstrap"] == 0.1 and body["jpy_per_usd"] == 150


async def test_usage_report_by_operation_and_day(bill, ckks_pair_factory):
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="payg")
    for _ in range(3):
        assert (await ops.add()).status == 200
    resp = await bill.post("/api/v1/compute/multiply", json={"key_id": ops.key_id, "ciphertext_ids": ops.ids},
                           headers=ops.h)
    assert resp.status == 200 and (await resp.json())["cost_units"] == 5
    usage = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
    assert usage["fcu_used"] == 8 and usage["quota"]["monthly_fcu_limit"] is None
    ops_by = {o["operation"]: o for o in usage["by_operation"]}
    assert ops_by["add"]["fcu"] == 3 and ops_by["add"]["count"] == 3 and ops_by["multiply"]["fcu"] == 5
    assert usage["billed_usd"] == pytest.approx(8 * 2e-6)  # PAYG: everything billed at list price
    assert usage["daily"] == [{"date": clock.now().date().isoformat(), "fcu": 8, "count": 4}]
    await error_of(await bill.get("/api/v1/billing/usage?period=2026-13", headers=ops.h), 400, "INVALID_PARAMS")


async def test_month_rollover_with_a_frozen_clock(bill, receiver, ckks_pair_factory):
    """The quota, the Redis window, the once-per-period events and the usage report all follow
    the one clock: at 23:59:50 on the last day the Free cap refuses; ten seconds later — a new
    month — the same account computes again, alerts re-arm, and the ended month gets an invoice."""
    with clock.frozen(datetime(2026, 10, 31, 23, 59, 50, tzinfo=timezone.utc)) as c:
        ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), role="account_admin", plan="starter")
        await create(bill, ops.key, receiver.url, events=["usage_alert", "invoice_created"])
        # starter in these tests includes ALLOWANCE FCU and bills the overage
        for _ in range(ALLOWANCE + 2):
            assert (await ops.add()).status == 200
        october = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
        assert october["period_start"] == "2026-10-01" and october["fcu_used"] == ALLOWANCE + 2
        assert october["billed_usd"] == pytest.approx(2 * 2e-6) and october["quota"]["alerts_sent"] == [50, 80, 100]
        assert (await (await bill.get("/api/v1/billing/invoices", headers=ops.h)).json())["data"] == []
        c.set(datetime(2026, 11, 1, 0, 0, 0, tzinfo=timezone.utc))
        assert (await ops.add()).status == 200
        november = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
        assert november["period_start"] == "2026-11-01" and november["fcu_used"] == 1
        assert november["quota"]["alerts_sent"] == [] and november["billed_usd"] == 0.0
        again = await (await bill.get("/api/v1/billing/usage?period=2026-10", headers=ops.h)).json()
        assert again["fcu_used"] == ALLOWANCE + 2
        inv = (await (await bill.get("/api/v1/billing/invoices", headers=ops.h)).json())["data"]
        assert len(inv) == 1 and inv[0]["period_start"] == "2026-10-01" and inv[0]["period_end"] == "2026-11-01"
        assert inv[0]["amount_usd"] == 9.0 and inv[0]["status"] == "open" and inv[0]["source"] == "local"
        assert inv[0]["fcu_used"] == ALLOWANCE + 2 and inv[0]["invoice_id"].startswith("inv_")
        # listing again makes no second invoice; the event was written once
        assert len((await (await bill.get("/api/v1/billing/invoices", headers=ops.h)).json())["data"]) == 1
        created = await event_datas(bill, ops.key, "invoice_created")
        assert len(created) == 1 and created[0]["invoice_id"] == inv[0]["invoice_id"]
        assert created[0]["amount_usd"] == 9.0
        rl = (await ops.add()).headers["X-RateLimit-Monthly-Remaining"]
        assert int(rl) == ALLOWANCE - 2  # Redis's key follows the clock too


async def test_free_quota_rolls_over_with_the_clock(bill, ckks_pair_factory):
    with clock.frozen(datetime(2026, 9, 30, 23, 59, 59, tzinfo=timezone.utc)) as c:
        ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="free")
        for _ in range(ALLOWANCE):
            assert (await ops.add()).status == 200
        await error_of(await ops.add(), 402, "QUOTA_EXHAUSTED")
        c.advance(seconds=2)
        assert (await ops.add()).status == 200


async def test_unpaid_subscription_refuses_compute(bill, ckks_pair_factory):
    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="pro")
    acct = await ops.account_id()
    async with bill.app[DB].acquire() as conn:
        await conn.execute("INSERT INTO subscriptions (account_id, plan, status, updated_at) VALUES ($1, 'pro', "
                           "'unpaid', now())", acct)
    await error_of(await ops.add(), 402, "SUBSCRIPTION_UNPAID")
    async with bill.app[DB].acquire() as conn:
        await conn.execute("UPDATE subscriptions SET status = 'active' WHERE account_id = $1", acct)
    assert (await ops.add()).status == 200


async def test_openapi_documents_the_billing_routes(bill):
    doc = await (await bill.get("/api/v1/openapi.json")).json()
    paths = doc["paths"]
    for path, methods in {"/api/v1/billing/plans": {"get"}, "/api/v1/billing/usage": {"get"},
                          "/api/v1/billing/budget": {"get", "post", "delete"}, "/api/v1/billing/invoices": {"get"},
                          "/api/v1/billing/subscription": {"get", "delete"}, "/api/v1/billing/subscribe": {"post"},
                          "/api/v1/billing/stripe_webhook": {"post"}}.items():
        assert methods <= set(paths[path]), path
    schemas = json.dumps(doc["components"] if "components" in doc else doc)
    for name in ("UsageResponse", "BudgetRequest", "InvoiceList", "PlansResponse", "SubscriptionResponse"):
        assert name in schemas, name
    for op in ("add", "matmul", "bootstrap"):  # one documented path per compute operation (issue 18)
        assert "402" in paths[f"/api/v1/compute/{op}"]["post"]["responses"]


async def test_enterprise_terms_set_by_the_operator(bill, ckks_pair_factory):
    """``wavis admin set-plan`` (admin.apply_plan): an Enterprise account's own monthly FCU and
    price reach the quota the next job is admitted against; overrides are refused on other plans
    and dropped when the account leaves Enterprise (issue 17: "Enterprise: set per account")."""
    from wavis.service import admin

    ops = await ops_for(bill, ckks_pair_factory(max_depth=1, index=0), plan="enterprise")
    acct = await ops.account_id()
    async with bill.app[DB].acquire() as conn:
        out = await admin.apply_plan(conn, acct, monthly_fcu=123_456, monthly_usd=Decimal("999.50"))
        assert out["plan"] == "enterprise" and out["monthly_fcu_override"] == 123_456
        assert out["monthly_usd_override"] == "999.50"
        with pytest.raises(ValueError, match="enterprise plan only"):
            await admin.apply_plan(conn, acct, plan="pro", monthly_fcu=5)
        with pytest.raises(ValueError, match="unknown plan"):
            await admin.apply_plan(conn, acct, plan="gold")
        assert await admin.apply_plan(conn, "acct_nosuchaccount", plan="pro") is None
    assert (await ops.add()).status == 200
    usage = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
    assert usage["quota"]["plan"] == "enterprise" and usage["quota"]["monthly_fcu_limit"] == 123_456
    assert usage["quota"]["fcu_used"] == 1

    # leaving Enterprise drops the per-account terms; the Free cap (ALLOWANCE here) applies at once
    async with bill.app[DB].acquire() as conn:
        out = await admin.apply_plan(conn, acct, plan="free")
    assert out["plan"] == "free" and out["monthly_fcu_override"] is None and out["monthly_usd_override"] is None
    usage = await (await bill.get("/api/v1/billing/usage", headers=ops.h)).json()
    assert usage["quota"]["monthly_fcu_limit"] == ALLOWANCE
