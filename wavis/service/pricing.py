"""THE pricing table (issue 17; API.md "Billing"): every price the service charges or reports.

Nothing else in the code holds a price. Units:

* **FCU** (compute units): what each CKKS operation costs (``FCU_PER_OPERATION``, API.md's
  table; a bootstrap's price is per iteration, ``PRICED_PER_ITERATION``: META-BTS with
  ``iterations: 2`` is 100 FCU), and 1 per TFHE bootstrap [ours]. Quotas and each plan's included allowance count FCU.
* **USD**: plan prices, the overage rate, budgets and invoices.
* **JPY**: the TFHE list price per bootstrap (``GET /tfhe/pricing``), with 30 % off a request of
  ≥ 32 gates.
* One fixed conversion ``JPY_PER_USD`` (documented in docs/billing.md) turns one into the other.

List price of an operation (``Price``; every compute/TFHE response reports ``cost_units``,
``cost_usd`` and ``cost_jpy`` from it):

* CKKS: ``cost_units`` FCU × ``FCU_LIST_USD`` ($2 per 1 M FCU, the PAYG/overage rate) → USD,
  converted to JPY;
* TFHE: bootstraps × ``TFHE_JPY_PER_BOOTSTRAP`` less the batch discount → JPY, converted to USD.

What is billed (``billable_usd``): on a plan with overage, the part of an operation's FCU
beyond what the plan still includes this period is billed at the operation's list price (pro
rata); PAYG includes nothing. Free has no overage: its cap is hard (402 QUOTA_EXHAUSTED) and
nothing is billed. An invoice is the plan's price (17 % off when billed annually, per month)
plus the period's billed usage (``invoice_lines``).

Money is ``Decimal`` here (no float rounding in sums); responses round to 10 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# --- conversion ------------------------------------------------------------------------------
JPY_PER_USD = Decimal("150")  # [ours] one fixed, documented rate (docs/billing.md); never fetched

# --- FCU -------------------------------------------------------------------------------------
FCU_PER_OPERATION: dict[str, int] = {  # API.md "Billing": FCU per CKKS operation
    "add": 1, "subtract": 1, "negate": 1, "rescale": 1, "add-plain": 1, "conjugate": 1,
    "multiply-plain": 2, "multiply": 5, "rotate": 5, "key_switch": 5, "sum": 10, "inner-product": 10,
    "poly-eval": 10, "matmul": 20, "bootstrap": 50,
}
FCU_PER_TFHE_BOOTSTRAP = 1  # [ours]
USD_PER_MILLION_FCU = Decimal("2")  # PAYG and every paid plan's overage
FCU_LIST_USD = USD_PER_MILLION_FCU / Decimal(1_000_000)

# --- TFHE ------------------------------------------------------------------------------------
TFHE_JPY_PER_BOOTSTRAP = Decimal("0.10")
BATCH_DISCOUNT_MIN_OPS = 32
BATCH_DISCOUNT_PCT = 30

# --- plans -----------------------------------------------------------------------------------
ANNUAL_DISCOUNT_PCT = 17
UNLIMITED = None


@dataclass(frozen=True)
class PlanPrice:
    """One plan: ``monthly_usd`` (None = set per account: Enterprise), ``monthly_fcu`` included
    per calendar month (None = no allowance and no cap: PAYG), ``overage_usd_per_million``
    (None = no overage: the cap is hard)."""

    name: str
    title: str
    monthly_usd: Decimal | None
    monthly_fcu: int | None
    overage_usd_per_million: Decimal | None
    subscribable: bool  # POST /billing/subscribe may choose it (Stripe-backed paid plans)

    @property
    def has_overage(self) -> bool:
        return self.overage_usd_per_million is not None

    def annual_monthly_usd(self) -> Decimal | None:
        if self.monthly_usd is None:
            return None
        return money(self.monthly_usd * (100 - ANNUAL_DISCOUNT_PCT) / 100)


PLANS: dict[str, PlanPrice] = {
    "free": PlanPrice("free", "Free", Decimal("0"), 10_000, None, False),
    "payg": PlanPrice("payg", "Pay as you go", Decimal("0"), UNLIMITED, USD_PER_MILLION_FCU, False),
    "starter": PlanPrice("starter", "Starter", Decimal("9"), 1_000_000, USD_PER_MILLION_FCU, True),
    "pro": PlanPrice("pro", "Pro", Decimal("49"), 20_000_000, USD_PER_MILLION_FCU, True),
    "scale": PlanPrice("scale", "Scale", Decimal("199"), 100_000_000, USD_PER_MILLION_FCU, True),
    # Enterprise: price and allowance per account (accounts.monthly_usd_override /
    # monthly_fcu_override); the defaults below apply until an operator sets them
    "enterprise": PlanPrice("enterprise", "Enterprise", None, 1_000_000_000, USD_PER_MILLION_FCU, True),
}
# not sold: trial keys (onboarding) get a small hard cap
TRIAL = PlanPrice("trial", "Trial", Decimal("0"), 1_000, None, False)


def plan(name: str | None) -> PlanPrice:
    if name == "trial":
        return TRIAL
    return PLANS.get(name or "free") or PLANS["free"]


# --- prices of operations --------------------------------------------------------------------

@dataclass(frozen=True)
class Price:
    """The list price of one request: FCU, USD, JPY, and the batch discount applied (%)."""

    cost_units: int
    cost_usd: Decimal
    cost_jpy: Decimal
    discount_pct: int = 0

    def fields(self) -> dict:
        """The response fields (floats, rounded)."""
        return {"cost_units": self.cost_units, "cost_usd": usd_float(self.cost_usd), "cost_jpy": jpy_float(self.cost_jpy)}


def ckks_price(operation: str, iterations: int = 1) -> Price:
    """List price of one CKKS operation (KeyError for an unknown one); ``iterations``: see
    :func:`ckks_fcu`."""
    if operation not in FCU_PER_OPERATION:
        raise KeyError(operation)
    return fcu_price(ckks_fcu(operation, iterations))


# Operations whose request runs the table's operation several times over: their FCU are the
# table's price per run times the runs. A bootstrap with ``iterations: 2`` (META-BTS, Bae et al.
# CCS 2022 §3) runs two full bootstraps (measured CPU 2.1× one: docs/bootstrapping.md), so it is
# charged 2 × 50 FCU.
PRICED_PER_ITERATION = frozenset({"bootstrap"})


def ckks_fcu(operation: str, iterations: int = 1) -> int:
    """FCU of a CKKS operation (0 for a name not in the table). For the operations of
    ``PRICED_PER_ITERATION`` the table's price is per iteration and ``iterations`` (1 or 2;
    any other value is priced as 1: the request is refused with 400 before anything runs or
    is metered) multiplies it."""
    fcu = FCU_PER_OPERATION.get(operation, 0)
    if operation in PRICED_PER_ITERATION and iterations in (1, 2) and not isinstance(iterations, bool):
        fcu *= int(iterations)
    return fcu


def ops_fcu(operation_counts: dict[str, int]) -> int:
    """FCU of a composite computation (an encrypted model's inference: its catalogue entry's
    ``operation_counts``), each operation priced by ``FCU_PER_OPERATION``."""
    return sum(FCU_PER_OPERATION[op] * int(n) for op, n in operation_counts.items())


def fcu_price(units: int) -> Price:
    """List price of ``units`` FCU of CKKS work ($2 per 1 M FCU, converted to JPY)."""
    usd = FCU_LIST_USD * units
    return Price(units, usd, usd * JPY_PER_USD)


def tfhe_price(bootstraps: int, gates: int) -> Price:
    """List price of a TFHE request evaluating ``gates`` gates with ``bootstraps`` bootstraps:
    ``TFHE_JPY_PER_BOOTSTRAP`` each, ``BATCH_DISCOUNT_PCT`` off at ≥ ``BATCH_DISCOUNT_MIN_OPS``
    gates."""
    pct = BATCH_DISCOUNT_PCT if gates >= BATCH_DISCOUNT_MIN_OPS else 0
    jpy = TFHE_JPY_PER_BOOTSTRAP * bootstraps * (100 - pct) / 100
    return Price(bootstraps * FCU_PER_TFHE_BOOTSTRAP, jpy / JPY_PER_USD, jpy, pct)


def jpy_to_usd(jpy: Decimal | float) -> Decimal:
    return Decimal(str(jpy)) / JPY_PER_USD


def usd_to_jpy(usd: Decimal | float) -> Decimal:
    return Decimal(str(usd)) * JPY_PER_USD


def usd_float(x: Decimal) -> float:
    return float(x.quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP))


def jpy_float(x: Decimal) -> float:
    return float(x.quantize(Decimal("1e-8"), rounding=ROUND_HALF_UP))


def money(x: Decimal) -> Decimal:
    """Round to cents (invoices, budgets)."""
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --- what is billed --------------------------------------------------------------------------

def billable_usd(overage: bool, list_usd: Decimal, fcu: int, included_left: int | None) -> Decimal:
    """The billed part of an operation of ``fcu`` FCU at ``list_usd`` on a plan with
    ``overage`` that still includes ``included_left`` FCU this period (None: includes nothing).
    A plan without overage bills nothing (its cap is hard)."""
    if not overage or fcu <= 0:
        return Decimal(0)
    left = max(0, included_left or 0)
    over = fcu - min(fcu, left)
    return list_usd * over / fcu


def monthly_price(p: PlanPrice, cycle: str = "monthly", override: Decimal | None = None) -> Decimal:
    """What the plan costs per month (annual: 17 % off, per month)."""
    base = override if override is not None else (p.monthly_usd or Decimal(0))
    if cycle == "annual":
        base = base * (100 - ANNUAL_DISCOUNT_PCT) / 100
    return money(base)


def invoice_lines(p: PlanPrice, cycle: str, fcu_used: int, billed_usd: Decimal,
                  override: Decimal | None = None) -> tuple[list[dict], Decimal]:
    """An invoice's lines and total (USD, cents): the plan and the billed usage."""
    base = monthly_price(p, cycle, override)
    usage = money(billed_usd)
    lines = [{"description": f"{p.title} plan ({cycle})", "amount_usd": str(base)},
             {"description": f"usage: {fcu_used} FCU beyond the plan's allowance at list price",
              "amount_usd": str(usage), "fcu": fcu_used}]
    return lines, money(base + usage)


def public_table() -> dict:
    """GET /billing/plans: every plan and price, the FCU table, TFHE prices and the rate."""
    return {
        "currency": "USD",
        "annual_discount_pct": ANNUAL_DISCOUNT_PCT,
        "plans": [{
            "plan": p.name, "name": p.title,
            "monthly_price_usd": None if p.monthly_usd is None else float(p.monthly_usd),
            "annual_monthly_price_usd": None if p.monthly_usd is None else float(p.annual_monthly_usd()),
            "monthly_fcu": p.monthly_fcu,
            "overage": p.has_overage,
            "overage_usd_per_million_fcu": None if p.overage_usd_per_million is None
            else float(p.overage_usd_per_million),
            "custom": p.monthly_usd is None,
        } for p in PLANS.values()],
        "fcu_per_operation": dict(FCU_PER_OPERATION),
        "fcu_per_iteration": sorted(PRICED_PER_ITERATION),
        "fcu_per_tfhe_bootstrap": FCU_PER_TFHE_BOOTSTRAP,
        "fcu_list_price_usd_per_million": float(USD_PER_MILLION_FCU),
        "tfhe": {"currency": "JPY", "per_bootstrap": float(TFHE_JPY_PER_BOOTSTRAP),
                 "batch_discount": {"min_ops": BATCH_DISCOUNT_MIN_OPS, "pct": BATCH_DISCOUNT_PCT}},
        "jpy_per_usd": float(JPY_PER_USD),
    }
