"""Stripe (issue 17), with no network: inbound webhooks signed here with the documented scheme
(``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``) and a test secret;
outbound calls go through the real ``stripe`` library to a small local HTTP server that speaks
the few Stripe endpoints used (customers, Checkout sessions, subscriptions) — the HTTP boundary,
not a mock of our code."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import replace

import pytest
from aiohttp import web

from wavis.service.state import DB

from conftest import add_account_helper, bearer, error_of
from test_service_webhooks import create, dns, events_of, receiver, webhook_client, wh_settings  # noqa: F401

pytestmark = pytest.mark.service

WHSEC = "whsec_test_" + "ab" * 16
PRICES = {f"{p}:{c}": f"price_{p}_{c}" for p in ("starter", "pro", "scale", "enterprise") for c in ("monthly", "annual")}


# --- a local server speaking the Stripe endpoints we use -------------------------------------------

def _unflatten(form) -> dict:
    """Stripe's form encoding (a[b][0][c]=v) back into nested dicts/lists."""
    out: dict = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        cur = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = None if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(cur, list):
                idx = int(part)
                while len(cur) <= idx:
                    cur.append(nxt if nxt is not None else None)
                if last:
                    cur[idx] = value
                else:
                    cur = cur[idx] if cur[idx] is not None else cur.__setitem__(idx, nxt) or cur[idx]
            else:
                if last:
                    cur[part] = value
                else:
                    cur = cur.setdefault(part, nxt)
    return out


class FakeStripe:
    def __init__(self) -> None:
        self.customers: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.idempotency_keys: list[str | None] = []
        self.hang = False

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(8)}"

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(60)
        assert request.headers["Authorization"] == "Bearer sk_test_fake"
        body = _unflatten(await request.post()) if request.method == "POST" else {}
        self.requests.append((request.method, request.path, body))
        path = request.path
        if path == "/v1/customers" and request.method == "POST":
            c = {"id": self._id("cus"), "object": "customer", "email": body.get("email"),
                 "metadata": body.get("metadata", {}), "invoice_settings": {"default_payment_method": None}}
            self.customers[c["id"]] = c
            return web.json_response(c)
        if m := re.fullmatch(r"/v1/customers/(\w+)", path):
            return web.json_response(self.customers[m.group(1)])
        if path == "/v1/checkout/sessions":
            return web.json_response({"id": self._id("cs"), "object": "checkout.session", "mode": body["mode"],
                                      "customer": body["customer"], "url": "https://checkout.stripe.test/pay/x",
                                      "metadata": body.get("metadata", {})})
        if path == "/v1/subscriptions" and request.method == "POST":
            sid = self._id("sub")
            s = {"id": sid, "object": "subscription", "status": "active", "customer": body["customer"],
                 "metadata": body.get("metadata", {}), "cancel_at_period_end": False,
                 "current_period_end": int(time.time()) + 30 * 86400,
                 "items": {"object": "list", "data": [{"id": self._id("si"), "object": "subscription_item",
                                                       "price": {"id": body["items"][0]["price"]}}]}}
            self.subscriptions[sid] = s
            return web.json_response(s)
        if path == "/v1/invoiceitems":
            self.idempotency_keys.append(request.headers.get("Idempotency-Key"))
            return web.json_response({"id": self._id("ii"), "object": "invoiceitem", "customer": body["customer"],
                                      "amount": int(body["amount"]), "currency": body["currency"]})
        if m := re.fullmatch(r"/v1/subscriptions/(\w+)", path):
            s = self.subscriptions[m.group(1)]
            if request.method == "POST":
                if "cancel_at_period_end" in body:
                    s["cancel_at_period_end"] = body["cancel_at_period_end"] == "true"
                if "metadata" in body:
                    s["metadata"].update(body["metadata"])
                if "items" in body:
                    s["items"]["data"][0]["price"] = {"id": body["items"][0]["price"]}
            return web.json_response(s)
        return web.json_response({"error": {"type": "invalid_request_error", "message": "no such route"}},
                                 status=404)


@pytest.fixture
async def fake_stripe(aiohttp_server):
    fake = FakeStripe()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    fake.base = f"http://127.0.0.1:{server.port}"
    return fake


async def stripe_client(make_client, service_settings, dns, **kw):  # noqa: F811
    return await webhook_client(make_client, wh_settings(service_settings, **kw), dns)


@pytest.fixture
async def st(make_client, service_settings, dns, fake_stripe):  # noqa: F811
    client = await stripe_client(make_client, service_settings, dns, stripe_secret_key="sk_test_fake",
                                 stripe_api_base=fake_stripe.base, stripe_prices=PRICES, stripe_timeout_s=3.0,
                                 stripe_webhook_secret=WHSEC)
    yield client
    async with client.app[DB].acquire() as conn:
        await conn.execute("DELETE FROM webhooks")


# --- outbound ---------------------------------------------------------------------------------------

async def test_not_configured_and_test_keys(make_client, service_settings, dns):  # noqa: F811
    api = await stripe_client(make_client, service_settings, dns)
    live = await api.account(role="account_admin", environment="live", plan="free")
    test = await api.account(role="account_admin", environment="test", plan="free")
    body = {"plan": "pro", "email": "a@example.com"}
    await error_of(await api.post("/api/v1/billing/subscribe", json=body, headers=bearer(live)), 502,
                   "STRIPE_NOT_CONFIGURED")
    await error_of(await api.post("/api/v1/billing/subscribe", json=body, headers=bearer(test)), 403,
                   "TEST_KEY_NOT_BILLABLE")
    await error_of(await api.post("/api/v1/billing/stripe_webhook", data=b"{}",
                                  headers={"Stripe-Signature": "t=1,v1=00"}), 502, "STRIPE_NOT_CONFIGURED")
    sub = await (await api.get("/api/v1/billing/subscription", headers=bearer(live))).json()
    assert sub["plan"] == "free" and sub["status"] == "active" and sub["billed_through"] == "local"
    assert sub["monthly_fcu_limit"] == 10_000 and sub["annual_discount_pct"] == 17
    await error_of(await api.delete("/api/v1/billing/subscription", headers=bearer(live)), 404, "NOT_FOUND")


async def test_subscribe_checkout_then_subscription_then_cancel(st, fake_stripe):
    admin = await st.account(role="account_admin", environment="live", plan="free")
    h = bearer(admin)
    body = {"plan": "pro", "email": "ops@example.com", "billing_cycle": "annual"}
    resp = await st.post("/api/v1/billing/subscribe", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["checkout_url"].startswith("https://checkout.stripe.test/")
    method, path, sent = fake_stripe.requests[0]
    assert (method, path) == ("POST", "/v1/customers") and sent["email"] == "ops@example.com"
    session = next(b for m, p, b in fake_stripe.requests if p == "/v1/checkout/sessions")
    assert session["line_items"][0]["price"] == "price_pro_annual" and session["metadata"]["wavis_plan"] == "pro"
    # the customer adds a payment method; subscribing again creates the subscription directly
    cus = next(iter(fake_stripe.customers.values()))
    cus["invoice_settings"]["default_payment_method"] = "pm_card_visa"
    resp = await st.post("/api/v1/billing/subscribe", json=body, headers=h)
    assert resp.status == 200, await resp.text()
    sub = await resp.json()
    assert sub["plan"] == "pro" and sub["status"] == "active" and sub["billed_through"] == "stripe"
    assert sub["billing_cycle"] == "annual" and sub["monthly_price_usd"] == 40.67
    assert sub["monthly_fcu_limit"] == 20_000_000 and sub["cancel_at_period_end"] is False
    assert len(fake_stripe.customers) == 1  # the customer is reused
    usage = await (await st.get("/api/v1/billing/usage", headers=h)).json()
    assert usage["quota"]["plan"] == "pro"  # the plan now drives quotas
    resp = await st.delete("/api/v1/billing/subscription", headers=h)
    assert resp.status == 200, await resp.text()
    cancelled = await resp.json()
    assert cancelled["cancel_at_period_end"] is True and cancelled["plan"] == "pro"
    assert next(iter(fake_stripe.subscriptions.values()))["cancel_at_period_end"] is True


async def test_stripe_unreachable_answers_502_in_bounded_time(make_client, service_settings, dns, fake_stripe):  # noqa: F811
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    for base in (f"http://127.0.0.1:{closed_port}", fake_stripe.base):
        fake_stripe.hang = base == fake_stripe.base  # refused connection, then a server that never answers
        api = await stripe_client(make_client, service_settings, dns, stripe_secret_key="sk_test_fake",
                                  stripe_api_base=base, stripe_prices=PRICES, stripe_timeout_s=1.0)
        admin = await api.account(role="account_admin", environment="live")
        t0 = time.monotonic()
        resp = await api.post("/api/v1/billing/subscribe", json={"plan": "starter", "email": "x@example.com"},
                              headers=bearer(admin))
        elapsed = time.monotonic() - t0
        await error_of(resp, 502, "UPSTREAM_UNAVAILABLE")
        assert elapsed < 5.0, elapsed


# --- inbound: the webhook ---------------------------------------------------------------------------

def signed(event: dict, secret: str = WHSEC, at: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(event).encode()
    t = int(time.time()) if at is None else at
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def event(type_: str, obj: dict, created: int, eid: str | None = None) -> dict:
    return {"id": eid or f"evt_{secrets.token_hex(10)}", "object": "event", "type": type_, "created": created,
            "data": {"object": obj}}


async def post_event(api, ev: dict, **kw):
    body, headers = signed(ev, **kw)
    return await api.post("/api/v1/billing/stripe_webhook", data=body, headers=headers)


async def test_webhook_signature_checked_from_the_raw_body(st):
    ev = event("invoice.paid", {"id": "in_1", "object": "invoice"}, 1)
    await error_of(await post_event(st, ev, secret="whsec_wrong_" + "cd" * 16), 400, "INVALID_SIGNATURE")
    await error_of(await post_event(st, ev, at=int(time.time()) - 600), 400, "INVALID_SIGNATURE")  # stale
    body, headers = signed(ev)
    tampered = body.replace(b"in_1", b"in_2")
    await error_of(await st.post("/api/v1/billing/stripe_webhook", data=tampered, headers=headers), 400,
                   "INVALID_SIGNATURE")
    await error_of(await st.post("/api/v1/billing/stripe_webhook", data=body), 400, "INVALID_SIGNATURE")
    resp = await post_event(st, ev)
    assert resp.status == 200 and (await resp.json()) == {"received": True, "duplicate": False}


async def _linked_account(st, plan="starter") -> tuple[str, str, str]:
    """An account that completed Checkout: (api key, account id, Stripe customer id)."""
    key = await st.account(role="account_admin", environment="live")
    async with st.app[DB].acquire() as conn:
        acct = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1", key[:16])
    cus = f"cus_{secrets.token_hex(6)}"
    sess = {"id": "cs_1", "object": "checkout.session", "mode": "subscription", "customer": cus,
            "subscription": f"sub_{secrets.token_hex(6)}",
            "metadata": {"wavis_account_id": acct, "wavis_plan": plan, "wavis_billing_cycle": "monthly"}}
    assert (await post_event(st, event("checkout.session.completed", sess, int(time.time()) - 100))).status == 200
    return key, acct, cus


async def test_each_event_applied_once_under_concurrent_duplicates(st, receiver):
    key, acct, cus = await _linked_account(st)
    await create(st, key, receiver.url, events=["invoice_paid", "invoice_created"])
    sub = await (await st.get("/api/v1/billing/subscription", headers=bearer(key))).json()
    assert sub["plan"] == "starter" and sub["billed_through"] == "stripe"
    inv = {"id": "in_dup", "object": "invoice", "customer": cus, "status": "paid", "amount_due": 1234,
           "period_start": 1790000000, "period_end": 1792600000, "hosted_invoice_url": "https://pay.stripe.test/in"}
    ev = event("invoice.paid", inv, int(time.time()))
    resps = await asyncio.gather(*(post_event(st, ev) for _ in range(8)))
    acks = [await r.json() for r in resps]
    assert all(r.status == 200 for r in resps)
    assert sorted(a["duplicate"] for a in acks) == [False] + [True] * 7
    assert [e["type"] for e in await events_of(st, key)] == ["invoice_paid"]
    invoices = (await (await st.get("/api/v1/billing/invoices", headers=bearer(key))).json())["data"]
    assert len(invoices) == 1 and invoices[0]["status"] == "paid" and invoices[0]["amount_usd"] == 12.34
    assert invoices[0]["source"] == "stripe" and invoices[0]["hosted_invoice_url"] == "https://pay.stripe.test/in"


async def test_out_of_order_events_do_not_go_back(st, receiver):
    key, acct, cus = await _linked_account(st, plan="pro")
    await create(st, key, receiver.url, events=["invoice_created", "invoice_paid", "invoice_failed"])
    now = int(time.time())
    inv = {"id": "in_ooo", "object": "invoice", "customer": cus, "amount_due": 4900, "status": "open"}
    # paid arrives first; the older created and payment_failed arrive late and change nothing
    assert (await post_event(st, event("invoice.paid", {**inv, "status": "paid"}, now))).status == 200
    assert (await post_event(st, event("invoice.payment_failed", inv, now - 50))).status == 200
    assert (await post_event(st, event("invoice.created", {**inv, "status": "draft"}, now - 60))).status == 200
    invoices = (await (await st.get("/api/v1/billing/invoices", headers=bearer(key))).json())["data"]
    assert [i["status"] for i in invoices] == ["paid"]
    assert [e["type"] for e in await events_of(st, key)] == ["invoice_paid"]
    # subscriptions: a newer update wins over an older one delivered later
    sub = {"id": "sub_x", "object": "subscription", "customer": cus, "status": "active",
           "metadata": {"wavis_account_id": acct, "wavis_plan": "pro"}, "cancel_at_period_end": False,
           "current_period_end": now + 86400}
    assert (await post_event(st, event("customer.subscription.updated", {**sub, "status": "past_due"},
                                       now))).status == 200
    assert (await post_event(st, event("customer.subscription.updated", sub, now - 10))).status == 200
    got = await (await st.get("/api/v1/billing/subscription", headers=bearer(key))).json()
    assert got["status"] == "past_due" and got["plan"] == "pro"
    assert (await post_event(st, event("customer.subscription.updated", {**sub, "status": "unpaid"},
                                       now + 5))).status == 200
    got = await (await st.get("/api/v1/billing/subscription", headers=bearer(key))).json()
    assert got["status"] == "unpaid"
    assert (await post_event(st, event("customer.subscription.deleted", {**sub, "status": "canceled"},
                                       now + 10))).status == 200
    got = await (await st.get("/api/v1/billing/subscription", headers=bearer(key))).json()
    assert got["status"] == "cancelled" and got["plan"] == "free"
    # a payment failure of a new invoice is announced
    assert (await post_event(st, event("invoice.payment_failed", {**inv, "id": "in_new"}, now + 20))).status == 200
    assert [e["type"] for e in await events_of(st, key)].count("invoice_failed") == 1


async def test_unknown_event_types_are_acknowledged_and_ignored(st):
    resp = await post_event(st, event("customer.created", {"id": "cus_z", "object": "customer"}, 1))
    assert resp.status == 200 and (await resp.json())["duplicate"] is False
    await error_of(await post_event(st, {"id": "evt_1", "type": "x"}), 400, "INVALID_PAYLOAD")


async def test_usage_beyond_the_plan_goes_to_stripe_once_and_only_for_live_keys(st, fake_stripe):
    """At period end the billed usage of a Stripe-billed account becomes one Stripe invoice item
    (live keys only: a wvs_test_ key's usage is never billed through Stripe), once."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from wavis.service import billing, clock, stripe_gateway

    key, acct, cus = await _linked_account(st, plan="starter")
    test_key = await st.key_for(key, role="developer", environment="test")
    async with st.app[DB].acquire() as conn:
        ids = {k: await conn.fetchval("SELECT id FROM api_keys WHERE prefix = $1", k[:16]) for k in (key, test_key)}
    terms = billing.Terms("starter", 0, True)  # nothing included left: every FCU billed
    with clock.frozen(datetime(2026, 8, 20, tzinfo=timezone.utc)) as c:
        async with st.app[DB].acquire() as conn:
            for api_key_id, fcu, usd in ((ids[key], 600_000, "1.2"), (ids[key], 17_000, "0.034"),
                                         (ids[test_key], 2_500_000, "5")):
                async with conn.transaction():
                    await billing.charge(conn, account_id=acct, api_key_id=api_key_id, route="POST /compute/{operation}",
                                         operation="multiply", fcu=fcu, list_usd=Decimal(usd), request_id=None,
                                         terms=terms)
        assert await stripe_gateway.report_usage(st.app) == 0  # August has not ended
        c.set(datetime(2026, 9, 1, 0, 0, 1, tzinfo=timezone.utc))
        assert await stripe_gateway.report_usage(st.app) == 1
        assert await stripe_gateway.report_usage(st.app) == 0  # once
    items = [b for m, p, b in fake_stripe.requests if p == "/v1/invoiceitems"]
    assert len(items) == 1
    assert items[0]["customer"] == cus and items[0]["amount"] == "123" and items[0]["currency"] == "usd"
    assert "617000 FCU" in items[0]["description"] and items[0]["metadata"]["wavis_period"] == "2026-08-01"
    assert fake_stripe.idempotency_keys == [f"wavis-usage-{acct}-2026-08-01"]
    # the account's own invoice list is Stripe's (no local invoice for a Stripe-billed account)
    invoices = (await (await st.get("/api/v1/billing/invoices", headers=bearer(key))).json())["data"]
    assert [i for i in invoices if i["source"] == "local"] == []
