"""pydantic models of the Billing group (API.md "Billing"); the OpenAPI document is generated
from them. Money is USD unless a field says JPY; FCU are integers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from .schemas import Request, Response

PlanName = Literal["free", "payg", "starter", "pro", "scale", "enterprise"]
PaidPlan = Literal["starter", "pro", "scale", "enterprise"]
SubscriptionStatus = Literal["active", "trial", "cancelled", "past_due", "unpaid", "incomplete"]


class PlanItem(Response):
    plan: PlanName
    name: str
    monthly_price_usd: float | None = Field(description="null: set per account (Enterprise)")
    annual_monthly_price_usd: float | None = Field(description="per month when billed annually (17 % off)")
    monthly_fcu: int | None = Field(description="FCU included per calendar month; null: none (PAYG pays all)")
    overage: bool = Field(description="false: the allowance is a hard cap (402 QUOTA_EXHAUSTED)")
    overage_usd_per_million_fcu: float | None
    custom: bool


class TfhePriceInfo(Response):
    currency: Literal["JPY"]
    per_bootstrap: float
    batch_discount: dict[str, int]


class PlansResponse(Response):
    currency: Literal["USD"]
    annual_discount_pct: int
    plans: list[PlanItem]
    fcu_per_operation: dict[str, int]
    fcu_per_iteration: list[str] = Field(
        description="operations whose fcu_per_operation price is per iteration: a bootstrap with "
                    "iterations: 2 (META-BTS, two bootstraps) costs twice its price")
    fcu_per_tfhe_bootstrap: int
    fcu_list_price_usd_per_million: float
    tfhe: TfhePriceInfo
    jpy_per_usd: float = Field(description="the one fixed JPY→USD rate every price is converted with")


class OperationUsage(Response):
    operation: str | None
    fcu: int
    count: int
    cost_usd: float = Field(description="list price of these operations")
    billed_usd: float = Field(description="the part beyond the plan's included FCU")


class DailyUsage(Response):
    date: date
    fcu: int
    count: int


class QuotaState(Response):
    plan: str
    monthly_fcu_limit: int | None
    overage: bool
    fcu_used: int
    fcu_reserved: int = Field(description="FCU of jobs queued or running now (reserved at admission)")
    fcu_remaining: int | None
    pct_used: float | None
    exhausted: bool
    alerts_sent: list[int] = Field(description="usage_alert thresholds (%) already sent this period")


class BudgetState(Response):
    monthly_limit_usd: float
    mode: Literal["hard", "soft"]
    alert_threshold_pct: int
    spent_usd: float
    remaining_usd: float
    alert_sent: bool
    exceeded: bool


class UsageResponse(Response):
    period_start: date
    period_end: date = Field(description="exclusive")
    fcu_used: int
    cost_usd: float
    billed_usd: float
    by_operation: list[OperationUsage]
    daily: list[DailyUsage]
    quota: QuotaState
    budget: BudgetState | None


class BudgetRequest(Request):
    monthly_limit_usd: float = Field(ge=0, le=1e9, allow_inf_nan=False)
    mode: Literal["hard", "soft"]
    alert_threshold_pct: int = Field(80, ge=1, le=100)


class BudgetResponse(Response):
    monthly_limit_usd: float
    mode: Literal["hard", "soft"]
    alert_threshold_pct: int
    spent_usd: float = Field(description="billed this period so far")
    period_start: date
    created_at: datetime
    updated_at: datetime


class Deleted(Response):
    deleted: bool


class InvoiceItem(Response):
    invoice_id: str
    period_start: date
    period_end: date = Field(description="exclusive")
    plan: str
    amount_usd: float
    fcu_used: int
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    source: Literal["local", "stripe"]
    hosted_invoice_url: str | None
    lines: list[dict]
    created_at: datetime


class InvoiceList(Response):
    data: list[InvoiceItem]
    next_cursor: str | None
    has_more: bool


class SubscribeRequest(Request):
    plan: PaidPlan
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    billing_cycle: Literal["monthly", "annual"] = "monthly"


class SubscriptionResponse(Response):
    plan: str
    status: SubscriptionStatus
    current_period_end: datetime | None
    monthly_price_usd: float | None
    monthly_fcu_limit: int | None
    billing_cycle: Literal["monthly", "annual"]
    annual_discount_pct: int
    cancel_at_period_end: bool
    billed_through: Literal["stripe", "local"] = Field(
        description="local: no Stripe (not configured, or a wvs_test_ key): nothing is charged by Stripe")


class CheckoutResponse(Response):
    checkout_url: str


class StripeWebhookAck(Response):
    received: bool
    duplicate: bool = Field(description="true when this Stripe event id was already applied")
