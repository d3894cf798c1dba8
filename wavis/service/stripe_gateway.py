"""Stripe (issue 17) through the ``stripe`` library: outbound calls for subscriptions and
Checkout, and the inbound webhook (verified from the raw body, each event id applied once).

* Not configured (no ``WAVIS_STRIPE_SECRET_KEY``): billing runs locally (``billing.py``
  computes invoices from usage); Stripe-only actions answer 502 ``STRIPE_NOT_CONFIGURED``.
* Every outbound call is bounded by ``Settings.stripe_timeout_s`` end to end and is not
  retried by the library; a connection failure or timeout answers 502 ``UPSTREAM_UNAVAILABLE``.
  Calls that create something carry an idempotency key, so a retry by the client is safe.
* ``wvs_test_`` (and ``wvs_dev_``) keys are never billed through Stripe: they cannot subscribe
  (403 ``TEST_KEY_NOT_BILLABLE``); their usage is counted, shown and enforced like any other.
* Webhook (``apply_event``): one PostgreSQL transaction per event; ``stripe_events`` (primary
  key = Stripe's event id) is inserted first, so a duplicate delivered concurrently waits on
  the first's row lock and then finds it applied. Out-of-order arrival: a subscription update
  older (Stripe ``created``) than the last one applied is ignored; an invoice's status only
  moves forward (draft → open → paid | void | uncollectible), so ``invoice.payment_failed``
  arriving after ``invoice.paid`` changes nothing.

Status mapping (docs/billing.md): Stripe ``active`` → active, ``trialing`` → trial,
``past_due`` → past_due, ``unpaid`` → unpaid (402 on compute), ``canceled`` /
``incomplete_expired`` → cancelled (the account falls back to Free), ``incomplete`` →
incomplete, ``paused`` → past_due.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

import asyncpg
import stripe
from aiohttp import web

from . import billing, clock, pricing
from .access import Principal
from .billing import terms_of
from .errors import ApiError
from .schemas_billing import CheckoutResponse, SubscribeRequest, SubscriptionResponse
from .state import DB, SETTINGS
from .webhooks import emit_event

log = logging.getLogger("wavis.service.stripe")

STATUS_MAP = {"active": "active", "trialing": "trial", "past_due": "past_due", "unpaid": "unpaid",
              "canceled": "cancelled", "incomplete_expired": "cancelled", "incomplete": "incomplete",
              "paused": "past_due"}
PLAN_ALLOWED = ("active", "trial", "past_due")  # statuses that keep the paid plan (unpaid: 402 on compute)
INVOICE_RANK = {"draft": 0, "open": 1, "paid": 2, "void": 2, "uncollectible": 2}
INVOICE_EVENTS = {"invoice.created": "invoice_created", "invoice.paid": "invoice_paid",
                  "invoice.payment_failed": "invoice_failed"}
GATEWAY: web.AppKey["StripeGateway"] = web.AppKey("stripe_gateway")


def not_configured() -> ApiError:
    return ApiError(502, "STRIPE_NOT_CONFIGURED", "Stripe is not configured on this server; billing runs locally")


def unavailable(exc: BaseException | None = None) -> ApiError:
    return ApiError(502, "UPSTREAM_UNAVAILABLE", "Stripe did not answer in time; try again later",
                    {"upstream": "stripe"})


# --- inbound: the webhook ------------------------------------------------------------------------

def verify(raw: bytes, header: str | None, secret: str, tolerance: int = 300) -> dict[str, Any]:
    """The event of a Stripe webhook body, its ``Stripe-Signature`` checked by the library
    (HMAC-SHA256 over ``t.payload``, timestamp within ``tolerance`` s); 400 otherwise."""
    if not header:
        raise ApiError(400, "INVALID_SIGNATURE", "Stripe-Signature header missing")
    try:
        stripe.WebhookSignature.verify_header(raw.decode("utf-8"), header, secret, tolerance)
    except stripe.SignatureVerificationError:
        raise ApiError(400, "INVALID_SIGNATURE", "the Stripe signature does not verify (or is too old)") from None
    except UnicodeDecodeError:
        raise ApiError(400, "INVALID_PAYLOAD", "the body is not UTF-8") from None
    try:
        event = json.loads(raw)
    except ValueError:
        raise ApiError(400, "INVALID_PAYLOAD", "the body is not a JSON Stripe event") from None
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance((event.get("data") or {}).get("object"), dict)):
        raise ApiError(400, "INVALID_PAYLOAD", "not a Stripe event (id, type, data.object)")
    return event


async def apply_event(conn: asyncpg.Connection, event: Mapping[str, Any]) -> bool:
    """Apply one verified Stripe event, once per event id (False: already applied)."""
    obj = event["data"]["object"]
    created = int(event.get("created") or 0)
    async with conn.transaction():
        first = await conn.fetchval(
            "INSERT INTO stripe_events (id, type, created, received_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO NOTHING RETURNING true", event["id"], event["type"], created, clock.now())
        if not first:
            return False
        kind = event["type"]
        if kind in INVOICE_EVENTS:
            await _apply_invoice(conn, kind, obj)
        elif kind in ("customer.subscription.updated", "customer.subscription.deleted",
                      "customer.subscription.created"):
            await _apply_subscription(conn, obj, created, deleted=kind.endswith(".deleted"))
        elif kind == "checkout.session.completed":
            await _apply_checkout(conn, obj, created)
        else:
            log.info("Stripe event %s of type %s ignored", event["id"], kind)
    return True


async def _account_of(conn: asyncpg.Connection, obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    acct = meta.get("wavis_account_id") or ((obj.get("subscription_details") or {}).get("metadata") or {}).get(
        "wavis_account_id")
    if acct and await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", acct):
        return acct
    customer = obj.get("customer")
    if isinstance(customer, str):
        return await conn.fetchval("SELECT account_id FROM subscriptions WHERE stripe_customer_id = $1", customer)
    return None


def _ts(v: Any) -> datetime | None:
    return datetime.fromtimestamp(int(v), timezone.utc) if isinstance(v, (int, float)) and v else None


async def _apply_invoice(conn: asyncpg.Connection, kind: str, inv: Mapping[str, Any]) -> None:
    account_id = await _account_of(conn, inv)
    if account_id is None or not isinstance(inv.get("id"), str):
        log.warning("Stripe invoice %s: no WAVIS account for it; ignored", inv.get("id"))
        return
    status = {"invoice.paid": "paid"}.get(kind) or inv.get("status") or "open"
    if status not in INVOICE_RANK:
        status = "open"
    now = clock.now()
    start = _ts(inv.get("period_start")) or now
    end = _ts(inv.get("period_end")) or now
    amount = pricing.money(Decimal(int(inv.get("amount_due") or inv.get("total") or 0)) / 100)
    row = await conn.fetchrow(
        "SELECT id, status FROM invoices WHERE stripe_invoice_id = $1 FOR UPDATE", inv["id"])
    if row is None:
        from .ids import new_id  # noqa: PLC0415

        inv_id = new_id("inv")
        await conn.execute(
            """INSERT INTO invoices (id, account_id, period_start, period_end, plan, amount_usd, fcu_used, status,
                                     source, stripe_invoice_id, hosted_invoice_url, lines, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'stripe', $8, $9, '[]', $10, $10)""",
            inv_id, account_id, start.date(), end.date(),
            await conn.fetchval("SELECT plan FROM accounts WHERE id = $1", account_id), amount, status, inv["id"],
            inv.get("hosted_invoice_url"), now)
        changed = True
    else:
        inv_id = row["id"]
        changed = INVOICE_RANK[status] > INVOICE_RANK.get(row["status"], 0)
        if changed:
            await conn.execute("UPDATE invoices SET status = $2, amount_usd = $3, hosted_invoice_url = "
                               "COALESCE($4, hosted_invoice_url), updated_at = $5 WHERE id = $1",
                               inv_id, status, amount, inv.get("hosted_invoice_url"), now)
    emit = INVOICE_EVENTS[kind]
    if emit == "invoice_failed" and row is not None and row["status"] == "paid":
        return  # arrived after invoice.paid: stale
    if emit == "invoice_created" and row is not None:
        return  # the invoice was already mirrored by a later event that arrived first
    await emit_event(conn, account_id, emit, {
        "invoice_id": inv_id, "amount_usd": float(amount),
        "status": status if changed or row is None else row["status"],
        "period_start": start.date().isoformat(), "period_end": end.date().isoformat(),
        "hosted_invoice_url": inv.get("hosted_invoice_url"), "stripe_invoice_id": inv["id"], "source": "stripe"})


async def _apply_subscription(conn: asyncpg.Connection, sub: Mapping[str, Any], created: int, deleted: bool) -> None:
    account_id = await _account_of(conn, sub)
    if account_id is None:
        log.warning("Stripe subscription %s: no WAVIS account for it; ignored", sub.get("id"))
        return
    row = await conn.fetchrow("SELECT plan, stripe_event_created FROM subscriptions WHERE account_id = $1 FOR UPDATE",
                              account_id)
    if row is not None and created < row["stripe_event_created"]:
        return  # older than what is applied: out of order
    status = "cancelled" if deleted else STATUS_MAP.get(str(sub.get("status")), "incomplete")
    meta = sub.get("metadata") or {}
    plan = meta.get("wavis_plan") if meta.get("wavis_plan") in pricing.PLANS else (row["plan"] if row else "free")
    cycle = meta.get("wavis_billing_cycle") if meta.get("wavis_billing_cycle") in ("monthly", "annual") else "monthly"
    period_end = _ts(sub.get("current_period_end")) or _ts(((sub.get("items") or {}).get("data") or [{}])[0].get(
        "current_period_end"))
    await _upsert_subscription(conn, account_id, plan=plan, status=status, cycle=cycle,
                               cancel_at_period_end=bool(sub.get("cancel_at_period_end")), period_end=period_end,
                               customer=sub.get("customer") if isinstance(sub.get("customer"), str) else None,
                               subscription=sub.get("id"), created=created)


async def _apply_checkout(conn: asyncpg.Connection, session: Mapping[str, Any], created: int) -> None:
    account_id = await _account_of(conn, session)
    if account_id is None or session.get("mode") not in (None, "subscription"):
        return
    meta = session.get("metadata") or {}
    plan = meta.get("wavis_plan") if meta.get("wavis_plan") in pricing.PLANS else None
    if plan is None:
        return
    row = await conn.fetchrow("SELECT stripe_event_created FROM subscriptions WHERE account_id = $1 FOR UPDATE",
                              account_id)
    if row is not None and created < row["stripe_event_created"]:
        return
    cycle = meta.get("wavis_billing_cycle") if meta.get("wavis_billing_cycle") in ("monthly", "annual") else "monthly"
    await _upsert_subscription(conn, account_id, plan=plan, status="active", cycle=cycle, cancel_at_period_end=False,
                               period_end=None, customer=session.get("customer"),
                               subscription=session.get("subscription"), created=created)


async def _upsert_subscription(conn: asyncpg.Connection, account_id: str, *, plan: str, status: str, cycle: str,
                               cancel_at_period_end: bool, period_end: datetime | None, customer: str | None,
                               subscription: str | None, created: int) -> None:
    """Write the subscription row and the account's plan: a paid plan while the status allows
    it (active, trial, past_due; unpaid keeps the plan but compute answers 402), Free once
    cancelled."""
    await conn.execute(
        """INSERT INTO subscriptions (account_id, plan, status, billing_cycle, cancel_at_period_end, current_period_end,
                                      stripe_customer_id, stripe_subscription_id, stripe_event_created, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (account_id) DO UPDATE SET plan = EXCLUDED.plan, status = EXCLUDED.status,
               billing_cycle = EXCLUDED.billing_cycle, cancel_at_period_end = EXCLUDED.cancel_at_period_end,
               current_period_end = COALESCE(EXCLUDED.current_period_end, subscriptions.current_period_end),
               stripe_customer_id = COALESCE(EXCLUDED.stripe_customer_id, subscriptions.stripe_customer_id),
               stripe_subscription_id = COALESCE(EXCLUDED.stripe_subscription_id, subscriptions.stripe_subscription_id),
               stripe_event_created = GREATEST(EXCLUDED.stripe_event_created, subscriptions.stripe_event_created),
               updated_at = EXCLUDED.updated_at""",
        account_id, plan, status, cycle, cancel_at_period_end, period_end, customer, subscription, created, clock.now())
    if status in PLAN_ALLOWED or status == "unpaid":
        await conn.execute("UPDATE accounts SET plan = $2 WHERE id = $1", account_id, plan)
    elif status == "cancelled":
        await conn.execute("UPDATE accounts SET plan = 'free' WHERE id = $1", account_id)


# --- the subscription as the API shows it ----------------------------------------------------------

async def subscription_view(conn: asyncpg.Connection, account_id: str, limits: Mapping[str, Any] | None
                            ) -> SubscriptionResponse:
    acct = await conn.fetchrow("SELECT plan, monthly_fcu_override, monthly_usd_override FROM accounts WHERE id = $1",
                               account_id)
    sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE account_id = $1", account_id)
    plan = acct["plan"]
    cycle = sub["billing_cycle"] if sub else "monthly"
    price = pricing.plan(plan)
    monthly = None if price.monthly_usd is None and acct["monthly_usd_override"] is None else float(
        pricing.monthly_price(price, cycle, acct["monthly_usd_override"]))
    terms = terms_of(plan, limits, acct["monthly_fcu_override"])
    return SubscriptionResponse(
        plan=plan, status=sub["status"] if sub else "active",
        current_period_end=(sub["current_period_end"] if sub and sub["current_period_end"]
                            else clock.as_datetime(clock.period_end(clock.period_start()))),
        monthly_price_usd=monthly, monthly_fcu_limit=terms.allowance, billing_cycle=cycle,
        annual_discount_pct=pricing.ANNUAL_DISCOUNT_PCT,
        cancel_at_period_end=bool(sub["cancel_at_period_end"]) if sub else False,
        billed_through="stripe" if sub and sub["stripe_subscription_id"] else "local")


# --- outbound --------------------------------------------------------------------------------------

class StripeGateway:
    """The outbound Stripe client of one app (one aiohttp session, closed with the app)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings = app[SETTINGS]
        self._client: stripe.StripeClient | None = None
        self._http: stripe.AIOHTTPClient | None = None

    def client(self) -> stripe.StripeClient:
        if not self.settings.stripe_configured:
            raise not_configured()
        if self._client is None:
            self._http = stripe.AIOHTTPClient(timeout=self.settings.stripe_timeout_s)
            base = {"api": self.settings.stripe_api_base} if self.settings.stripe_api_base else None
            self._client = stripe.StripeClient(self.settings.stripe_secret_key, base_addresses=base,
                                               max_network_retries=0, http_client=self._http)
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            try:
                await self._http.close_async()
            except Exception:  # noqa: BLE001 - closing on shutdown
                pass

    async def call(self, make):
        """``await make(client)`` within ``stripe_timeout_s``; connection failures and timeouts
        → 502 UPSTREAM_UNAVAILABLE, Stripe's own refusals → 502 STRIPE_ERROR with its code."""
        client = self.client()
        try:
            async with asyncio.timeout(self.settings.stripe_timeout_s):
                return await make(client)
        except (TimeoutError, stripe.APIConnectionError) as exc:
            raise unavailable(exc) from None
        except stripe.StripeError as exc:
            if isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500:
                raise unavailable(exc) from None
            raise ApiError(502, "STRIPE_ERROR", "Stripe refused the request",
                           {"stripe_code": exc.code, "stripe_status": exc.http_status}) from None

    def price_id(self, plan: str, cycle: str) -> str:
        pid = self.settings.stripe_prices.get(f"{plan}:{cycle}")
        if not pid:
            raise ApiError(502, "STRIPE_NOT_CONFIGURED", f"no Stripe price is configured for {plan} ({cycle})",
                           {"missing": f"{plan}:{cycle}", "setting": "WAVIS_STRIPE_PRICES"})
        return pid

    async def subscribe(self, request: web.Request, p: Principal, req: SubscribeRequest
                        ) -> SubscriptionResponse | CheckoutResponse:
        if p.environment != "live":
            raise ApiError(403, "TEST_KEY_NOT_BILLABLE", f"a wvs_{p.environment}_ key is never billed through Stripe; "
                           "subscribe with a live key", {"environment": p.environment})
        if not self.settings.stripe_configured:
            raise not_configured()
        price = self.price_id(req.plan, req.billing_cycle)
        meta = {"wavis_account_id": p.account_id, "wavis_plan": req.plan, "wavis_billing_cycle": req.billing_cycle}
        async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE account_id = $1", p.account_id)
        customer_id = sub["stripe_customer_id"] if sub else None
        if customer_id is None:
            customer = await self.call(lambda c: c.v1.customers.create_async(
                params={"email": req.email, "metadata": {"wavis_account_id": p.account_id}},
                options={"idempotency_key": f"wavis-customer-{p.account_id}"}))
            customer_id = customer.id
            async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
                await conn.execute(
                    """INSERT INTO subscriptions (account_id, plan, status, billing_cycle, stripe_customer_id, updated_at)
                       VALUES ($1, $2, 'incomplete', $3, $4, $5)
                       ON CONFLICT (account_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id""",
                    p.account_id, req.plan, req.billing_cycle, customer_id, clock.now())
            customer_obj = customer
        else:
            customer_obj = await self.call(lambda c: c.v1.customers.retrieve_async(customer_id))
        cus = customer_obj.to_dict() if hasattr(customer_obj, "to_dict") else dict(customer_obj)
        has_pm = bool((cus.get("invoice_settings") or {}).get("default_payment_method"))
        if not has_pm:
            base = (self.settings.public_url or "http://localhost:8000").rstrip("/")
            session = await self.call(lambda c: c.v1.checkout.sessions.create_async(params={
                "mode": "subscription", "customer": customer_id, "line_items": [{"price": price, "quantity": 1}],
                "success_url": f"{base}/billing/checkout/success", "cancel_url": f"{base}/billing/checkout/cancel",
                "metadata": meta, "subscription_data": {"metadata": meta}}))
            return CheckoutResponse(checkout_url=session.url)
        if sub is not None and sub["stripe_subscription_id"]:
            current = await self.call(lambda c: c.v1.subscriptions.retrieve_async(sub["stripe_subscription_id"]))
            item_id = current.to_dict()["items"]["data"][0]["id"]
            obj = await self.call(lambda c: c.v1.subscriptions.update_async(sub["stripe_subscription_id"], params={
                "items": [{"id": item_id, "price": price}], "metadata": meta, "cancel_at_period_end": False,
                "proration_behavior": "create_prorations"}))
        else:
            obj = await self.call(lambda c: c.v1.subscriptions.create_async(
                params={"customer": customer_id, "items": [{"price": price}], "metadata": meta},
                options={"idempotency_key": f"wavis-sub-{p.account_id}-{req.plan}-{req.billing_cycle}"}))
        await self._store(request, p.account_id, obj.to_dict() if hasattr(obj, "to_dict") else dict(obj))
        async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            return await subscription_view(conn, p.account_id, self.settings.plans)

    async def cancel(self, request: web.Request, p: Principal) -> SubscriptionResponse:
        async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE account_id = $1", p.account_id)
        if sub is None or not sub["stripe_subscription_id"]:
            raise ApiError(404, "NOT_FOUND", "this account has no subscription to cancel")
        obj = await self.call(lambda c: c.v1.subscriptions.update_async(
            sub["stripe_subscription_id"], params={"cancel_at_period_end": True}))
        await self._store(request, p.account_id, obj.to_dict() if hasattr(obj, "to_dict") else dict(obj))
        async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            return await subscription_view(conn, p.account_id, self.settings.plans)

    async def _store(self, request: web.Request, account_id: str, sub: dict) -> None:
        """Apply a subscription object Stripe returned as if it were an event of this moment
        (a webhook event created later still wins; an older one is ignored)."""
        sub.setdefault("metadata", {})["wavis_account_id"] = account_id
        async with request.app[DB].acquire(timeout=self.settings.upstream_timeout_s) as conn:
            async with conn.transaction():
                await _apply_subscription(conn, sub, int(clock.now().timestamp()) - 1, deleted=False)


async def report_usage(app: web.Application) -> int:
    """Send each ended period's billed usage of Stripe-billed accounts (live keys only) to
    Stripe as one invoice item, added to the customer's next invoice; once per (account,
    period): the row in ``stripe_usage_reports`` and the call's idempotency key. Returns the
    periods reported. Run by the sweeper; a Stripe failure leaves the period for the next run."""
    gw = app.get(GATEWAY)
    if gw is None or not gw.settings.stripe_configured:
        return 0
    timeout = gw.settings.upstream_timeout_s
    async with app[DB].acquire(timeout=timeout) as conn:
        rows = await billing.unreported_stripe_periods(conn)
    done = 0
    for r in rows:
        amount = pricing.money(Decimal(r["billed_live"]))
        period = r["period_start"]
        item_id = None
        if amount > 0:
            item = await gw.call(lambda c: c.v1.invoice_items.create_async(params={
                "customer": r["stripe_customer_id"], "amount": int(amount * 100), "currency": "usd",
                "description": f"WAVIS usage beyond the plan's allowance, {period:%Y-%m}: {int(r['fcu_live'])} FCU",
                "metadata": {"wavis_account_id": r["account_id"], "wavis_period": period.isoformat()}},
                options={"idempotency_key": f"wavis-usage-{r['account_id']}-{period.isoformat()}"}))
            item_id = item.id
        async with app[DB].acquire(timeout=timeout) as conn:
            await billing.mark_reported(conn, r["account_id"], period, int(r["fcu_live"]), amount, item_id)
        done += 1
    return done


def gateway(app: web.Application) -> StripeGateway:
    gw = app.get(GATEWAY)
    if gw is None:
        raise RuntimeError("the Stripe gateway is set up by stripe_ctx")
    return gw


async def stripe_ctx(app: web.Application):
    app[GATEWAY] = StripeGateway(app)
    try:
        yield
    finally:
        await app[GATEWAY].close()
