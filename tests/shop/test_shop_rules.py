"""Business rules: cancel/address before shipment, return/exchange windows, coupons, points."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from actions.shop import rules
from actions.shop.base import SHOP_TZ, AfterSaleView, CouponView, LineView, OrderView, PointsEntryView, RefundView

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHOP_TZ)


def order(status: str, *, delivered_days_ago: float | None = None, category: str = "running_shoes", **kw) -> OrderView:
    delivered = NOW - timedelta(days=delivered_days_ago) if delivered_days_ago is not None else None
    line = LineView("SKU-1", "跑鞋", "shoes", category, "42码", "黑色", 1, 59900)
    return OrderView(id="E20261101001", customer_id=1, status=status, created_at=NOW - timedelta(days=20),
                     ship_name="王伟", ship_phone="13812345678", ship_address="上海市浦东新区世纪大道88号",
                     total_cents=59900, delivered_at=delivered, lines=(line,), **kw)


@pytest.mark.parametrize("status,allowed,code", [
    ("pending_payment", True, "ok"), ("paid", True, "ok"), ("shipped", False, "already_shipped"),
    ("delivered", False, "already_delivered"), ("cancelled", False, "already_cancelled"),
])
def test_can_cancel_only_before_shipment(status, allowed, code) -> None:
    decision = rules.can_cancel(order(status))
    assert (decision.allowed, decision.code) == (allowed, code)
    assert rules.can_change_address(order(status)).allowed == allowed


def test_return_window_is_seven_days_and_exchange_fifteen() -> None:
    assert rules.can_request_after_sale(order("delivered", delivered_days_ago=3), "return", NOW).days_left == 4
    assert rules.can_request_after_sale(order("delivered", delivered_days_ago=8), "return", NOW).code == "window_passed"
    assert rules.can_request_after_sale(order("delivered", delivered_days_ago=8), "exchange", NOW).allowed
    assert rules.can_request_after_sale(order("delivered", delivered_days_ago=16), "exchange", NOW).code == "window_passed"


def test_after_sale_refused_before_delivery_for_excluded_categories_and_when_open() -> None:
    assert rules.can_request_after_sale(order("paid"), "return", NOW).code == "not_shipped"
    assert rules.can_request_after_sale(order("shipped"), "return", NOW).code == "not_delivered"
    socks = order("delivered", delivered_days_ago=1, category="socks")
    assert rules.can_request_after_sale(socks, "return", NOW).code == "category_excluded"
    assert rules.can_request_after_sale(socks, "exchange", NOW).allowed
    refunding = order("delivered", delivered_days_ago=1, refunds=(RefundView(100, "processing", NOW),))
    assert rules.can_request_after_sale(refunding, "return", NOW).code == "refund_in_progress"
    open_request = order("delivered", delivered_days_ago=1, after_sales=(AfterSaleView(1, "return", "x", "requested", NOW),))
    assert rules.can_request_after_sale(open_request, "exchange", NOW).code == "after_sale_open"


def test_coupon_usable_checks_threshold_validity_use_and_category() -> None:
    c = CouponView("K1", "满300减30", "30 off", 30000, 3000, NOW - timedelta(days=1), NOW + timedelta(days=3), category="yoga")
    assert rules.coupon_usable(c, 30000, NOW).allowed
    assert rules.coupon_usable(c, 29999, NOW).code == "coupon_below_threshold"
    assert rules.coupon_usable(c, 50000, NOW + timedelta(days=4)).code == "coupon_expired"
    assert rules.coupon_usable(c, 50000, NOW, categories=["running_shoes"]).code == "coupon_wrong_category"
    used = CouponView("K2", "a", "a", 0, 1000, NOW - timedelta(days=1), NOW + timedelta(days=3), used_order_id="E1")
    assert rules.coupon_usable(used, 50000, NOW).code == "coupon_used"


def test_points_summary_expires_fifo_and_warns() -> None:
    old = datetime(2024, 6, 1, tzinfo=SHOP_TZ)  # expires 2026-01-01: gone
    soon = datetime(2025, 3, 1, tzinfo=SHOP_TZ)  # expires 2027-01-01: within 30 days of Dec 10
    entries = [PointsEntryView(500, "a", old, rules.points_expiry(old)),
               PointsEntryView(300, "b", soon, rules.points_expiry(soon)),
               PointsEntryView(-100, "spend", datetime(2025, 4, 1, tzinfo=SHOP_TZ))]
    # The spend consumed the oldest lot first, so 300 of "b" remain.
    summary = rules.points_summary(entries, datetime(2026, 12, 10, tzinfo=SHOP_TZ))
    assert summary.balance == 300 and summary.expiring == 300
    assert summary.next_expiry == datetime(2027, 1, 1, tzinfo=SHOP_TZ)
    assert summary.worth_cents == 300


def test_refundable_cents_leaves_out_excluded_lines() -> None:
    shoes = LineView("A", "a", "a", "running_shoes", "42码", "黑", 1, 60000)
    socks = LineView("B", "b", "b", "socks", "M", "白", 1, 4000)
    o = OrderView(id="E1", customer_id=1, status="delivered", created_at=NOW, ship_name="x", ship_phone="1",
                  ship_address="x", total_cents=64000 - 6400, lines=(shoes, socks))
    assert rules.refundable_cents(o, "return") == round(57600 * 60000 / 64000)
