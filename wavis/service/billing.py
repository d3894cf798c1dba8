"""Billing ledger (issues 16, 17): quota and budget admission, charging usage, the
once-per-period events, usage reports and locally computed invoices. docs/billing.md has the
state tables; prices come only from ``pricing``; the period only from ``clock``.

Where each piece runs:

* **Admission** (``admit_job``; its one-statement form ``wavis_admit_job``, migration 082, via
  ``admission_args`` and ``jobs.insert_admitted``, admits the ordinary case in the INSERT
  itself and leaves every refusal to ``admit_job``): called by the engine's ``Dispatcher.submit`` inside the
  transaction that inserts the job row. It locks the account's ``usage_periods`` row of the
  current period (``SELECT … FOR UPDATE``), adds the FCU already used this period and the FCU
  of the account's QUEUED/RUNNING jobs (each active job row *is* its reservation), and refuses —
  before any work — with 402 ``QUOTA_EXHAUSTED`` (a plan without overage whose allowance the job
  would pass) or 402 ``BUDGET_EXCEEDED`` (a hard budget the billed amount would pass), emitting
  ``limit_reached`` once per period and reason. Because the job row is inserted while the lock
  is held, concurrent admissions see each other's reservations: zero overshoot. A job that
  fails or is cancelled stops being QUEUED/RUNNING, which releases its reservation.
* **Charging** (``charge``): in the transaction that completes a job (``metering.job_usage``,
  a ``jobs`` completion hook) or confirms a request's answer (``metering.record``): the
  ``usage_events`` row (once per job: unique ``job_id``), the period's totals, and the
  ``usage_alert`` (50/80/100 % of the allowance) and ``budget_alert`` (the budget's threshold)
  events, each once per period (``usage_periods.events_sent``, updated under the row lock).
* **Invoices** (``close_periods``): when Stripe does not bill the account, each ended period
  with usage gets one local invoice (plan price + billed usage, ``pricing.invoice_lines``),
  and ``invoice_created``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping

import asyncpg

from . import clock, pricing
from .errors import ApiError
from .ids import new_id
from .webhooks import emit_event

USAGE_ALERT_PCTS = (50, 80, 100)


@dataclass(frozen=True)
class Terms:
    """What admission and charging need to know of an account's plan this period."""

    plan: str
    allowance: int | None  # FCU included per period (None: none, e.g. PAYG)
    overage: bool  # False: the allowance is a hard cap

    def to_json(self) -> dict:
        return {"plan": self.plan, "allowance": self.allowance, "overage": self.overage}

    @staticmethod
    def from_json(d: Mapping[str, Any] | None, plan: str = "free") -> "Terms":
        if not d:
            return terms_of(plan, None, None)
        return Terms(str(d.get("plan") or plan), d.get("allowance"), bool(d.get("overage")))


def terms_of(plan: str, limits: Mapping[str, Any] | None, override: int | None) -> Terms:
    """An account's terms: ``pricing`` decides whether a plan has an allowance and overage;
    ``limits`` (``Settings.plans``, ratelimit.Plan by name; tests shrink it) gives the
    allowance's size; ``override`` (accounts.monthly_fcu_override) replaces it (Enterprise)."""
    price = pricing.plan(plan)
    allowance = price.monthly_fcu
    if allowance is not None and limits is not None and plan in limits:
        allowance = int(limits[plan].monthly_fcu)
    if override is not None:
        allowance = int(override)
    return Terms(plan, allowance, price.has_overage)


# --- the period row ------------------------------------------------------------------------------

async def lock_period(conn: asyncpg.Connection, account_id: str, period: date) -> asyncpg.Record:
    """The account's ``usage_periods`` row of ``period``, created if missing, locked FOR UPDATE
    until the caller's transaction ends (one round trip once the row exists)."""
    sql = ("SELECT fcu_used, cost_usd, billed_usd, events_sent FROM usage_periods "
           "WHERE account_id = $1 AND period_start = $2 FOR UPDATE")
    row = await conn.fetchrow(sql, account_id, period)
    if row is None:
        await conn.execute("INSERT INTO usage_periods (account_id, period_start) VALUES ($1, $2) "
                           "ON CONFLICT DO NOTHING", account_id, period)
        row = await conn.fetchrow(sql, account_id, period)
    return row


async def reserved(conn: asyncpg.Connection, account_id: str, at: datetime) -> tuple[int, Decimal]:
    """FCU and list price (USD) reserved by the account's QUEUED/RUNNING jobs (not expired)."""
    row = await conn.fetchrow(
        "SELECT COALESCE(sum(cost_units), 0) AS fcu, COALESCE(sum(cost_jpy), 0) AS jpy FROM jobs "
        "WHERE account_id = $1 AND status IN ('QUEUED', 'RUNNING') AND expires_at > $2", account_id, at)
    return int(row["fcu"]), pricing.jpy_to_usd(row["jpy"])


async def get_budget(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT monthly_limit_usd, mode, alert_threshold_pct, created_at, updated_at FROM billing_budgets "
        "WHERE account_id = $1", account_id)


async def _once(conn: asyncpg.Connection, account_id: str, period: date, sent: list[str], key: str,
                event_type: str, payload: dict) -> bool:
    """Emit ``event_type`` unless ``key`` was already sent this period (row locked by caller)."""
    if key in sent:
        return False
    await conn.execute(
        "UPDATE usage_periods SET events_sent = array_append(events_sent, $3) "
        "WHERE account_id = $1 AND period_start = $2", account_id, period, key)
    sent.append(key)
    await emit_event(conn, account_id, event_type, payload)
    return True


def _billable(terms: Terms, list_usd: Decimal, fcu: int, used_before: int) -> Decimal:
    left = None if terms.allowance is None else terms.allowance - used_before
    return pricing.billable_usd(terms.overage, list_usd, fcu, left)


# --- admission -----------------------------------------------------------------------------------

async def account_row(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT a.plan, a.monthly_fcu_override, s.status AS sub_status FROM accounts a "
        "LEFT JOIN subscriptions s ON s.account_id = a.id WHERE a.id = $1", account_id)


async def admit_job(conn: asyncpg.Connection, account_id: str, cost_units: int, cost_jpy: float,
                    limits: Mapping[str, Any] | None, payload: dict | None = None,
                    operation: str | None = None) -> ApiError | None:
    """Admission by quota and budget; call INSIDE the transaction that inserts the job row.

    Returns None when admitted (``payload["billing"]`` then carries the account's terms for the
    charge), or the ApiError to raise *after* the transaction commits (so the ``limit_reached``
    event written here is kept): 402 QUOTA_EXHAUSTED, 402 BUDGET_EXCEEDED, or 402
    SUBSCRIPTION_UNPAID (a Stripe subscription in status ``unpaid``)."""
    if not conn.is_in_transaction():
        raise RuntimeError("admit_job must run inside the transaction that inserts the job")
    acct = await account_row(conn, account_id)
    if acct is None:
        return ApiError(404, "NOT_FOUND", "account not found")
    if acct["sub_status"] == "unpaid":
        return ApiError(402, "SUBSCRIPTION_UNPAID", "the subscription's invoice is unpaid; pay it to compute again",
                        {"subscription_status": "unpaid"})
    terms = terms_of(acct["plan"], limits, acct["monthly_fcu_override"])
    if payload is not None:
        payload["billing"] = terms.to_json()
    if cost_units <= 0:
        return None
    now = clock.now()
    period = clock.period_start(now)
    row = await lock_period(conn, account_id, period)
    # read after the lock: every admission that held it before us has committed its job row
    state = await conn.fetchrow(
        """SELECT (SELECT COALESCE(sum(cost_units), 0) FROM jobs WHERE account_id = $1
                   AND status IN ('QUEUED', 'RUNNING') AND expires_at > $2) AS res_fcu,
                  (SELECT COALESCE(sum(cost_jpy), 0) FROM jobs WHERE account_id = $1
                   AND status IN ('QUEUED', 'RUNNING') AND expires_at > $2) AS res_jpy,
                  b.monthly_limit_usd, b.mode
           FROM (SELECT 1) one LEFT JOIN billing_budgets b ON b.account_id = $1""", account_id, now)
    sent = list(row["events_sent"])
    res_fcu, res_usd = int(state["res_fcu"]), pricing.jpy_to_usd(state["res_jpy"])
    used = int(row["fcu_used"])
    common = {"period_start": period.isoformat(), "period_end": clock.period_end(period).isoformat(),
              "plan": terms.plan, "fcu_used": used, "fcu_reserved": res_fcu, "requested_fcu": cost_units,
              "operation": operation}
    if terms.allowance is not None and not terms.overage and used + res_fcu + cost_units > terms.allowance:
        details = {**common, "monthly_fcu_limit": terms.allowance}
        await _once(conn, account_id, period, sent, "limit_reached:quota", "limit_reached",
                    {"limit": "quota", **details})
        return ApiError(402, "QUOTA_EXHAUSTED", "the monthly FCU quota of this plan is used up", details,
                        headers={"Retry-After": str(_seconds_to_period_end(now, period))})
    if state["mode"] == "hard":
        cost_usd = pricing.jpy_to_usd(cost_jpy)
        projected = (Decimal(row["billed_usd"]) + _billable(terms, res_usd, res_fcu, used)
                     + _billable(terms, cost_usd, cost_units, used + res_fcu))
        limit = Decimal(state["monthly_limit_usd"])
        if projected > limit:
            details = {**common, "monthly_limit_usd": float(limit),
                       "spent_usd": pricing.usd_float(Decimal(row["billed_usd"])),
                       "projected_usd": pricing.usd_float(projected)}
            await _once(conn, account_id, period, sent, "limit_reached:budget", "limit_reached",
                        {"limit": "budget", **details})
            return ApiError(402, "BUDGET_EXCEEDED", "this operation would pass the account's hard monthly budget",
                            details)
    return None


def plan_terms(limits: Mapping[str, Any] | None) -> tuple[list[str], list[int | None], list[bool]]:
    """Every plan's terms before an account's override, as the arrays ``wavis_admit_job``
    (migration 082) takes: (plan names, allowances (None: none), overage flags)."""
    names = [*pricing.PLANS, "trial"]
    terms = [terms_of(n, limits, None) for n in names]
    return names, [t.allowance for t in terms], [t.overage for t in terms]


def admission_args(account_id: str, cost_units: int, limits: Mapping[str, Any] | None) -> tuple:
    """The arguments of ``wavis_admit_job`` (migration 082) for one job, in its order: the
    one-statement form of ``admit_job`` that ``jobs.insert_admitted`` runs. It admits only what
    ``admit_job`` would admit and leaves every refusal (and its ``limit_reached`` event) to it."""
    now = clock.now()
    return (account_id, cost_units, now, clock.period_start(now), *plan_terms(limits))


def _seconds_to_period_end(now: datetime, period: date) -> int:
    return max(1, int((clock.as_datetime(clock.period_end(period)) - now).total_seconds()))


# --- charging ------------------------------------------------------------------------------------

async def charge(conn: asyncpg.Connection, *, account_id: str, api_key_id: str | None, route: str,
                 operation: str | None, fcu: int, list_usd: Decimal, request_id: str | None,
                 terms: Terms, job_id: str | None = None) -> bool:
    """Record one confirmed charge (INSIDE the transaction that confirms it): its
    ``usage_events`` row, the period's totals, and the once-per-period alerts. Returns False
    when ``job_id`` was already charged (nothing written)."""
    if not conn.is_in_transaction():
        raise RuntimeError("charge must run inside the transaction that confirms the work")
    now = clock.now()
    period = clock.period_start(now)
    row = await lock_period(conn, account_id, period)
    used_before = int(row["fcu_used"])
    billed = _billable(terms, list_usd, fcu, used_before)
    # the usage row and the period's totals in one statement (nothing when the job was charged)
    totals = await conn.fetchrow(
        """WITH ins AS (
               INSERT INTO usage_events (account_id, api_key_id, route, operation, fcu, request_id, created_at,
                                         period_start, cost_usd, billed_usd, job_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING RETURNING fcu, cost_usd, billed_usd)
           UPDATE usage_periods p SET fcu_used = p.fcu_used + ins.fcu, cost_usd = p.cost_usd + ins.cost_usd,
                  billed_usd = p.billed_usd + ins.billed_usd
           FROM ins WHERE p.account_id = $1 AND p.period_start = $8
           RETURNING p.fcu_used, p.billed_usd,
                     (SELECT row(b.monthly_limit_usd, b.mode, b.alert_threshold_pct)::text
                      FROM billing_budgets b WHERE b.account_id = $1) AS has_budget""",
        account_id, api_key_id, route, operation, fcu, request_id, now, period, list_usd, billed, job_id)
    if totals is None:
        return False
    sent = list(row["events_sent"])
    used = int(totals["fcu_used"])
    if terms.allowance:
        for pct in USAGE_ALERT_PCTS:
            if used * 100 >= pct * terms.allowance:
                await _once(conn, account_id, period, sent, f"usage_alert:{pct}", "usage_alert",
                            {"threshold_pct": pct, "used_fcu": used, "quota_fcu": terms.allowance,
                             "period_start": period.isoformat(), "period_end": clock.period_end(period).isoformat(),
                             "plan": terms.plan, "overage": terms.overage})
    budget = await get_budget(conn, account_id) if totals["has_budget"] is not None else None
    if budget is not None:
        spent = Decimal(totals["billed_usd"])
        limit = Decimal(budget["monthly_limit_usd"])
        if spent * 100 >= limit * budget["alert_threshold_pct"]:
            await _once(conn, account_id, period, sent, "budget_alert", "budget_alert",
                        {"threshold_pct": budget["alert_threshold_pct"], "spent_usd": pricing.usd_float(spent),
                         "monthly_limit_usd": float(limit), "mode": budget["mode"],
                         "period_start": period.isoformat(), "period_end": clock.period_end(period).isoformat()})
    return True


def charge_args(*, account_id: str, api_key_id: str | None, route: str, operation: str | None, fcu: int,
                list_usd: Decimal, request_id: str | None, terms: Terms, job_id: str | None = None) -> tuple:
    """``charge``'s arguments as the charge part of ``wavis_complete_job`` (migration 083), in
    its order: the statement that completes a job and charges it at once
    (``jobs.complete_jobs``). It writes exactly what ``charge`` writes (once per ``job_id``)
    when none or all of the charge is beyond the allowance and no alert falls due; any other
    case it leaves to ``charge`` ('undecided'). ``billed_all`` is the billed part of a charge
    entirely beyond the allowance, computed here by ``pricing.billable_usd``."""
    del job_id  # the completing job's own id: wavis_complete_job takes it from the job
    now = clock.now()
    return (account_id, api_key_id, route, operation, fcu, list_usd,
            pricing.billable_usd(terms.overage, list_usd, fcu, 0), request_id, now, clock.period_start(now),
            terms.allowance, terms.overage)


# --- budgets -------------------------------------------------------------------------------------

async def set_budget(conn: asyncpg.Connection, account_id: str, limit_usd: Decimal, mode: str,
                     alert_threshold_pct: int) -> asyncpg.Record:
    """Create or replace the account's budget. Lowering it below an alert already sent this
    period does not re-send; raising it re-arms ``budget_alert`` for this period."""
    now = clock.now()
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO billing_budgets (account_id, monthly_limit_usd, mode, alert_threshold_pct, created_at,
                                            updated_at) VALUES ($1, $2, $3, $4, $5, $5)
               ON CONFLICT (account_id) DO UPDATE SET monthly_limit_usd = EXCLUDED.monthly_limit_usd,
                   mode = EXCLUDED.mode, alert_threshold_pct = EXCLUDED.alert_threshold_pct,
                   updated_at = EXCLUDED.updated_at
               RETURNING monthly_limit_usd, mode, alert_threshold_pct, created_at, updated_at""",
            account_id, limit_usd, mode, alert_threshold_pct, now)
        await conn.execute(
            "UPDATE usage_periods SET events_sent = array_remove(array_remove(events_sent, 'budget_alert'), "
            "'limit_reached:budget') WHERE account_id = $1 AND period_start = $2", account_id, clock.period_start(now))
    return row


async def delete_budget(conn: asyncpg.Connection, account_id: str) -> bool:
    return await conn.fetchval("DELETE FROM billing_budgets WHERE account_id = $1 RETURNING true", account_id) or False


# --- reports -------------------------------------------------------------------------------------

async def usage_report(conn: asyncpg.Connection, account_id: str, limits: Mapping[str, Any] | None,
                       period: date | None = None) -> dict:
    """GET /billing/usage: the period's FCU by operation and by day, quota and budget state."""
    now = clock.now()
    current = clock.period_start(now)
    period = period or current
    acct = await account_row(conn, account_id)
    terms = terms_of(acct["plan"], limits, acct["monthly_fcu_override"])
    prow = await conn.fetchrow(
        "SELECT fcu_used, cost_usd, billed_usd, events_sent FROM usage_periods WHERE account_id = $1 "
        "AND period_start = $2", account_id, period)
    used = int(prow["fcu_used"]) if prow else 0
    billed = Decimal(prow["billed_usd"]) if prow else Decimal(0)
    sent = list(prow["events_sent"]) if prow else []
    by_op = await conn.fetch(
        "SELECT COALESCE(operation, '') AS operation, sum(fcu) AS fcu, count(*) AS n, sum(cost_usd) AS cost, "
        "sum(billed_usd) AS billed FROM usage_events WHERE account_id = $1 AND period_start = $2 "
        "GROUP BY 1 ORDER BY 2 DESC, 1", account_id, period)
    by_day = await conn.fetch(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(fcu) AS fcu, count(*) AS n FROM usage_events "
        "WHERE account_id = $1 AND period_start = $2 GROUP BY 1 ORDER BY 1", account_id, period)
    res_fcu = (await reserved(conn, account_id, now))[0] if period == current else 0
    budget = await get_budget(conn, account_id)
    quota = {"plan": terms.plan, "monthly_fcu_limit": terms.allowance, "overage": terms.overage,
             "fcu_used": used, "fcu_reserved": res_fcu,
             "fcu_remaining": None if terms.allowance is None else max(0, terms.allowance - used - res_fcu),
             "pct_used": None if not terms.allowance else round(100.0 * used / terms.allowance, 3),
             "exhausted": bool(terms.allowance is not None and not terms.overage and used >= terms.allowance),
             "alerts_sent": sorted(int(k.split(":")[1]) for k in sent if k.startswith("usage_alert:"))}
    budget_state = None
    if budget is not None:
        limit = Decimal(budget["monthly_limit_usd"])
        budget_state = {"monthly_limit_usd": float(limit), "mode": budget["mode"],
                        "alert_threshold_pct": budget["alert_threshold_pct"], "spent_usd": pricing.usd_float(billed),
                        "remaining_usd": pricing.usd_float(max(Decimal(0), limit - billed)),
                        "alert_sent": "budget_alert" in sent, "exceeded": billed >= limit}
    return {
        "period_start": period, "period_end": clock.period_end(period),
        "fcu_used": used, "cost_usd": pricing.usd_float(Decimal(prow["cost_usd"])) if prow else 0.0,
        "billed_usd": pricing.usd_float(billed),
        "by_operation": [{"operation": r["operation"] or None, "fcu": int(r["fcu"]), "count": int(r["n"]),
                          "cost_usd": pricing.usd_float(Decimal(r["cost"])),
                          "billed_usd": pricing.usd_float(Decimal(r["billed"]))} for r in by_op],
        "daily": [{"date": r["day"], "fcu": int(r["fcu"]), "count": int(r["n"])} for r in by_day],
        "quota": quota, "budget": budget_state,
    }


# --- invoices computed locally -------------------------------------------------------------------

async def close_periods(conn: asyncpg.Connection, account_id: str | None = None, limit: int = 500) -> list[str]:
    """One local invoice per ended period with usage, for accounts Stripe does not bill (no
    Stripe subscription): plan price + billed usage; ``invoice_created`` emitted in the same
    transaction. Idempotent (one local invoice per account and period); returns the new ids."""
    current = clock.period_start()
    now = clock.now()
    rows = await conn.fetch(
        """SELECT p.account_id, p.period_start, p.fcu_used, p.billed_usd, a.plan, a.monthly_usd_override,
                  COALESCE(s.billing_cycle, 'monthly') AS cycle
           FROM usage_periods p JOIN accounts a ON a.id = p.account_id
           LEFT JOIN subscriptions s ON s.account_id = p.account_id
           WHERE p.period_start < $1 AND ($2::text IS NULL OR p.account_id = $2)
             AND (s.stripe_subscription_id IS NULL)
             AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.account_id = p.account_id
                             AND i.period_start = p.period_start)
           ORDER BY p.period_start LIMIT $3""", current, account_id, limit)
    made = []
    for r in rows:
        p = pricing.plan(r["plan"])
        lines, total = pricing.invoice_lines(p, r["cycle"], int(r["fcu_used"]), Decimal(r["billed_usd"]),
                                             r["monthly_usd_override"])
        inv_id = new_id("inv")
        status = "paid" if total == 0 else "open"
        async with conn.transaction():
            ok = await conn.fetchval(
                """INSERT INTO invoices (id, account_id, period_start, period_end, plan, amount_usd, fcu_used, status,
                                         source, lines, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'local', $9, $10, $10)
                   ON CONFLICT (account_id, period_start) WHERE source = 'local' DO NOTHING RETURNING true""",
                inv_id, r["account_id"], r["period_start"], clock.period_end(r["period_start"]), p.name, total,
                int(r["fcu_used"]), status, lines, now)
            if ok:
                await emit_event(conn, r["account_id"], "invoice_created",
                                 {"invoice_id": inv_id, "amount_usd": float(total), "status": status,
                                  "period_start": r["period_start"].isoformat(),
                                  "period_end": clock.period_end(r["period_start"]).isoformat(),
                                  "hosted_invoice_url": None, "fcu_used": int(r["fcu_used"]), "source": "local"})
                made.append(inv_id)
    return made


async def list_invoices(conn: asyncpg.Connection, account_id: str, limit: int,
                        after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    """Newest first (keyset on created_at, id descending); ``limit + 1`` rows."""
    cols = ("id, period_start, period_end, plan, amount_usd, fcu_used, status, source, hosted_invoice_url, lines, "
            "created_at")
    if after is None:
        return await conn.fetch(f"SELECT {cols} FROM invoices WHERE account_id = $1 "
                                "ORDER BY created_at DESC, id DESC LIMIT $2", account_id, limit + 1)
    return await conn.fetch(f"SELECT {cols} FROM invoices WHERE account_id = $1 AND (created_at, id) < ($3, $4) "
                            "ORDER BY created_at DESC, id DESC LIMIT $2", account_id, limit + 1, after[0], after[1])


# --- usage of Stripe-billed accounts, reported to Stripe -------------------------------------------

async def unreported_stripe_periods(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Ended periods of Stripe-billed accounts whose billed usage has not been sent to Stripe:
    ``billed_live`` / ``fcu_live`` count only usage by ``live`` API keys — test and dev keys'
    usage is never billed through Stripe."""
    return await conn.fetch(
        """SELECT p.account_id, p.period_start, s.stripe_customer_id,
                  COALESCE(u.billed, 0) AS billed_live, COALESCE(u.fcu, 0) AS fcu_live
           FROM usage_periods p JOIN subscriptions s ON s.account_id = p.account_id
           LEFT JOIN LATERAL (
               SELECT sum(e.billed_usd) AS billed, sum(e.fcu) AS fcu FROM usage_events e
               JOIN api_keys k ON k.id = e.api_key_id
               WHERE e.account_id = p.account_id AND e.period_start = p.period_start AND k.environment = 'live') u
             ON true
           WHERE p.period_start < $1 AND s.stripe_subscription_id IS NOT NULL AND s.stripe_customer_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM stripe_usage_reports r
                             WHERE r.account_id = p.account_id AND r.period_start = p.period_start)
           ORDER BY p.period_start LIMIT $2""", clock.period_start(), limit)


async def mark_reported(conn: asyncpg.Connection, account_id: str, period: date, fcu_live: int, amount: Decimal,
                        item_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO stripe_usage_reports (account_id, period_start, fcu_live, amount_usd, stripe_invoice_item_id, "
        "reported_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        account_id, period, fcu_live, amount, item_id, clock.now())
