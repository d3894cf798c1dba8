"""Billing (API.md "Billing"): plans, usage, budget caps, invoices, subscriptions and the Stripe
webhook. The ledger is ``billing.py``; prices ``pricing.py``; Stripe ``stripe_gateway.py``;
the state tables docs/billing.md."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from aiohttp import web

from .. import billing, clock, pagination, pricing, stripe_gateway
from ..access import Access, access, body_limit, doc, principal
from ..bodies import parse, read_body
from ..errors import ApiError, not_found
from ..schemas import ErrorResponse
from ..schemas_billing import (BudgetRequest, BudgetResponse, CheckoutResponse, Deleted, InvoiceItem, InvoiceList,
                               PlansResponse, StripeWebhookAck, SubscribeRequest, SubscriptionResponse,
                               UsageResponse)
from ..state import SETTINGS
from .util import db, json_response

routes = web.RouteTableDef()

INVOICE_SCOPE = "invoices"
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
STRIPE_WEBHOOK_BODY_LIMIT = 512 * 1024  # Stripe events are a few KB


@routes.get("/billing/plans")
@access(Access.PUBLIC)
@doc("Plans, prices, monthly FCU, overage rates, FCU per operation, the TFHE per-bootstrap price (JPY) and the "
     "fixed JPY→USD rate", responses={200: PlansResponse})
async def plans(request: web.Request) -> web.Response:
    return json_response(PlansResponse(**pricing.public_table()))


def _period_param(request: web.Request) -> date | None:
    raw = request.query.get("period")
    if raw is None:
        return None
    m = PERIOD_RE.match(raw)
    if not m:
        raise ApiError(400, "INVALID_PARAMS", "period must look like YYYY-MM", {"param": "period"})
    return date(int(m.group(1)), int(m.group(2)), 1)


@routes.get("/billing/usage")
@access(Access.READ_PLUS)
@doc("This period's FCU by operation and by day, the quota and the budget state (period=YYYY-MM for another)",
     query={"period": {"type": "string", "pattern": PERIOD_RE.pattern}},
     responses={200: UsageResponse, 400: ErrorResponse})
async def usage(request: web.Request) -> web.Response:
    p = principal(request)
    period = _period_param(request)
    async with db(request) as conn:
        report = await billing.usage_report(conn, p.account_id, request.app[SETTINGS].plans, period)
    return json_response(UsageResponse(**report))


# --- budget ----------------------------------------------------------------------------------------

async def _budget_response(conn, account_id: str, row) -> BudgetResponse:
    period = clock.period_start()
    spent = await conn.fetchval("SELECT billed_usd FROM usage_periods WHERE account_id = $1 AND period_start = $2",
                                account_id, period)
    return BudgetResponse(monthly_limit_usd=float(row["monthly_limit_usd"]), mode=row["mode"],
                          alert_threshold_pct=row["alert_threshold_pct"],
                          spent_usd=pricing.usd_float(Decimal(spent or 0)), period_start=period,
                          created_at=row["created_at"], updated_at=row["updated_at"])


@routes.post("/billing/budget")
@access(Access.BILLING_PLUS)
@doc("Set the monthly budget cap: hard → 402 BUDGET_EXCEEDED before an operation that would pass it; soft → "
     "budget_alert only. Counts the billed amount (usage beyond the plan's included FCU), in USD",
     request=BudgetRequest, responses={200: BudgetResponse, 400: ErrorResponse, 422: ErrorResponse})
async def set_budget(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, BudgetRequest)
    limit = pricing.money(Decimal(str(req.monthly_limit_usd)))
    async with db(request) as conn:
        row = await billing.set_budget(conn, p.account_id, limit, req.mode, req.alert_threshold_pct)
        body = await _budget_response(conn, p.account_id, row)
    return json_response(body)


@routes.get("/billing/budget")
@access(Access.BILLING_PLUS)
@doc("The monthly budget cap (404 when none is set)", responses={200: BudgetResponse, 404: ErrorResponse})
async def get_budget(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        row = await billing.get_budget(conn, p.account_id)
        if row is None:
            raise not_found("budget")
        body = await _budget_response(conn, p.account_id, row)
    return json_response(body)


@routes.delete("/billing/budget")
@access(Access.BILLING_PLUS)
@doc("Remove the budget cap", responses={200: Deleted, 404: ErrorResponse})
async def delete_budget(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        if not await billing.delete_budget(conn, p.account_id):
            raise not_found("budget")
    return json_response(Deleted(deleted=True))


# --- invoices --------------------------------------------------------------------------------------

def _invoice_item(r) -> InvoiceItem:
    return InvoiceItem(invoice_id=r["id"], period_start=r["period_start"], period_end=r["period_end"], plan=r["plan"],
                       amount_usd=float(r["amount_usd"]), fcu_used=r["fcu_used"], status=r["status"],
                       source=r["source"], hosted_invoice_url=r["hosted_invoice_url"], lines=list(r["lines"] or []),
                       created_at=r["created_at"])


@routes.get("/billing/invoices")
@access(Access.BILLING_PLUS)
@doc("Invoices, newest first (cursor pagination): mirrored from Stripe for Stripe-billed accounts, otherwise "
     "computed here from usage when a period ends", query=pagination.QUERY_DOC,
     responses={200: InvoiceList, 400: ErrorResponse})
async def invoices(request: web.Request) -> web.Response:
    p = principal(request)
    scope = pagination.scope_of(INVOICE_SCOPE, p.account_id)
    page = pagination.page_from(request, scope)
    async with db(request) as conn:
        await billing.close_periods(conn, p.account_id)  # the sweeper does it too; here it is never late
        rows = await billing.list_invoices(conn, p.account_id, page.limit, page.after)
    return json_response(InvoiceList(**pagination.page_body(request, scope, page, rows, _invoice_item)))


# --- subscriptions ---------------------------------------------------------------------------------

@routes.get("/billing/subscription")
@access(Access.BILLING_PLUS)
@doc("The account's plan and subscription status", responses={200: SubscriptionResponse})
async def get_subscription(request: web.Request) -> web.Response:
    p = principal(request)
    async with db(request) as conn:
        body = await stripe_gateway.subscription_view(conn, p.account_id, request.app[SETTINGS].plans)
    return json_response(body)


@routes.post("/billing/subscribe")
@access(Access.BILLING_PLUS)
@doc("Create or change the Stripe subscription (live keys; Stripe required): the subscription, or "
     "{checkout_url} when no payment method is on file. 502 STRIPE_NOT_CONFIGURED without Stripe, 502 "
     "UPSTREAM_UNAVAILABLE when Stripe does not answer in time; a wvs_test_ key is never billed through Stripe "
     "(403 TEST_KEY_NOT_BILLABLE)",
     request=SubscribeRequest,
     responses={200: SubscriptionResponse, 201: CheckoutResponse, 403: ErrorResponse, 422: ErrorResponse,
                502: ErrorResponse})
async def subscribe(request: web.Request) -> web.Response:
    p = principal(request)
    req = await parse(request, SubscribeRequest)
    gw = stripe_gateway.gateway(request.app)
    out = await gw.subscribe(request, p, req)
    if isinstance(out, CheckoutResponse):
        return json_response(out, status=201)
    return json_response(out)


@routes.delete("/billing/subscription")
@access(Access.BILLING_PLUS)
@doc("Cancel the subscription at the end of its period", responses={200: SubscriptionResponse, 404: ErrorResponse,
                                                                    502: ErrorResponse})
async def cancel_subscription(request: web.Request) -> web.Response:
    p = principal(request)
    gw = stripe_gateway.gateway(request.app)
    return json_response(await gw.cancel(request, p))


# --- Stripe webhook --------------------------------------------------------------------------------

@routes.post("/billing/stripe_webhook")
@access(Access.PUBLIC)
@body_limit(STRIPE_WEBHOOK_BODY_LIMIT)
@doc("Stripe events (Stripe-Signature verified from the raw body with WAVIS_STRIPE_WEBHOOK_SECRET; bad or stale "
     "→ 400); each event id is applied once",
     responses={200: StripeWebhookAck, 400: ErrorResponse, 502: ErrorResponse})
async def stripe_webhook(request: web.Request) -> web.Response:
    raw = await read_body(request)
    secret = request.app[SETTINGS].stripe_webhook_secret
    if not secret:
        raise ApiError(502, "STRIPE_NOT_CONFIGURED", "Stripe webhooks are not configured on this server "
                       "(WAVIS_STRIPE_WEBHOOK_SECRET)")
    event = stripe_gateway.verify(raw, request.headers.get("Stripe-Signature"), secret)
    async with db(request) as conn:
        applied = await stripe_gateway.apply_event(conn, event)
    return json_response(StripeWebhookAck(received=True, duplicate=not applied))
