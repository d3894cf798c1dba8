"""The pricing module (issue 17): one table of every price, checked against API.md's numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wavis.service import pricing, ratelimit


def test_fcu_per_operation_is_api_md_table():
    assert pricing.FCU_PER_OPERATION == {
        "add": 1, "subtract": 1, "negate": 1, "rescale": 1, "add-plain": 1, "conjugate": 1,
        "multiply-plain": 2, "multiply": 5, "rotate": 5, "key_switch": 5, "sum": 10, "inner-product": 10,
        "poly-eval": 10, "matmul": 20, "bootstrap": 50}
    assert pricing.FCU_PER_TFHE_BOOTSTRAP == 1


def test_every_compute_operation_has_a_price():
    from wavis.service import fhe

    for op in fhe.ALL_OPERATIONS:
        price = pricing.ckks_price(op)
        assert price.cost_units == pricing.FCU_PER_OPERATION[op]
        assert price.cost_usd == Decimal(2) * price.cost_units / 1_000_000
        assert price.cost_jpy == price.cost_usd * pricing.JPY_PER_USD


def test_tfhe_price_in_jpy_with_batch_discount_at_32_ops():
    one = pricing.tfhe_price(1, 1)
    assert one.cost_jpy == Decimal("0.10") and one.discount_pct == 0 and one.cost_units == 1
    assert one.cost_usd == Decimal("0.10") / pricing.JPY_PER_USD
    assert pricing.tfhe_price(31, 31).cost_jpy == Decimal("3.10")  # 31 ops: no discount
    d = pricing.tfhe_price(32, 32)
    assert d.discount_pct == 30 and d.cost_jpy == Decimal("2.24")  # 32 × 0.10 × 0.7
    mux = pricing.tfhe_price(64, 32)  # bootstraps, not gates, are priced; the discount counts gates
    assert mux.cost_jpy == Decimal("4.48") and mux.cost_units == 64


def test_plans_table():
    p = pricing.PLANS
    assert [n for n in p] == ["free", "payg", "starter", "pro", "scale", "enterprise"]
    assert (p["free"].monthly_usd, p["free"].monthly_fcu, p["free"].has_overage) == (0, 10_000, False)
    assert (p["payg"].monthly_usd, p["payg"].monthly_fcu, p["payg"].overage_usd_per_million) == (0, None, 2)
    assert (p["starter"].monthly_usd, p["starter"].monthly_fcu) == (9, 1_000_000)
    assert (p["pro"].monthly_usd, p["pro"].monthly_fcu) == (49, 20_000_000)
    assert (p["scale"].monthly_usd, p["scale"].monthly_fcu) == (199, 100_000_000)
    assert all(p[n].overage_usd_per_million == 2 for n in ("starter", "pro", "scale", "enterprise"))
    assert p["enterprise"].monthly_usd is None  # set per account
    assert pricing.ANNUAL_DISCOUNT_PCT == 17
    assert p["pro"].annual_monthly_usd() == Decimal("40.67")  # 49 × 0.83
    # the rate limiter's monthly windows take their allowance from here (one owner)
    assert ratelimit.PLANS["free"].monthly_fcu == 10_000 and not ratelimit.PLANS["free"].overage
    assert ratelimit.PLANS["pro"].monthly_fcu == 20_000_000 and ratelimit.PLANS["pro"].overage


@pytest.mark.parametrize("overage,left,expect", [
    (True, None, Decimal("10")),      # PAYG: nothing included, all billed
    (True, 0, Decimal("10")),
    (True, 4, Decimal("6")),          # 4 of 10 FCU still included: 6/10 billed
    (True, 10, Decimal("0")),
    (True, -5, Decimal("10")),
    (False, 0, Decimal("0")),         # no overage (Free): never billed, the cap refuses instead
])
def test_billable_part_beyond_allowance(overage, left, expect):
    assert pricing.billable_usd(overage, Decimal("10"), 10, left) == expect


def test_invoice_lines_plan_plus_usage_and_annual_discount():
    lines, total = pricing.invoice_lines(pricing.PLANS["pro"], "monthly", 21_000_000, Decimal("2.000004"))
    assert total == Decimal("51.00") and lines[0]["amount_usd"] == "49.00" and lines[1]["amount_usd"] == "2.00"
    _, annual = pricing.invoice_lines(pricing.PLANS["pro"], "annual", 0, Decimal(0))
    assert annual == Decimal("40.67")
    _, ent = pricing.invoice_lines(pricing.PLANS["enterprise"], "monthly", 0, Decimal(0), Decimal("1500"))
    assert ent == Decimal("1500.00")


def test_public_table_lists_everything():
    t = pricing.public_table()
    assert {p["plan"] for p in t["plans"]} == set(pricing.PLANS)
    assert t["jpy_per_usd"] == 150.0 and t["tfhe"]["per_bootstrap"] == 0.1
    assert t["tfhe"]["batch_discount"] == {"min_ops": 32, "pct": 30}
    assert t["fcu_per_operation"]["bootstrap"] == 50
