"""The dashboard with Customer 360: its segments, its identities for chat-to-order, its health figures.

Real SQLite files for both stores; the Customer 360 service is the real one (its rules from
customers.yml / health.yml below). Every expected value is worked out by hand in the comments.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.api import dashboard_payload, trend_days
from bot.analytics.config import AnalyticsConfig
from bot.analytics.directory import Customer360Directory
from bot.analytics.ingest import Ingester
from bot.analytics.store import AnalyticsStore, Filters
from bot.customers.ingress import from_broker
from bot.customers.rules import load_rules
from bot.customers.service import CustomerService
from bot.customers.store import CustomerStore
from tests.analytics.history import T0, user

DAY = 86400.0
OPENID = "oWECHAT-42"
START, END = "2026-11-02", "2026-11-03"
# score = 100 - days since the last order (clamped); bands: healthy >= 70, watch >= 40, at_risk
HEALTH_YML = """\
components:
  repurchase: {signal: days_since_last_order, normalise: {low: 100, high: 0}, weight: 1}
bands: {healthy: 70, watch: 40, at_risk: 0}
"""
CUSTOMERS_YML = """\
segments:
  流失风险:
    when: {health_band: at_risk}
  活跃:
    when: {health_band: healthy}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Feature:
    def __init__(self, service: CustomerService) -> None:
        self.service = service


async def _order(c360: CustomerService, customer: str, order: str, ts: float, **extra: Any) -> None:
    item = from_broker({"event": "order_paid", "customer_id": customer, "order_id": order, "timestamp": ts,
                        "data": {"total_cents": 10000}, "outbox_id": order, **extra})
    await c360.ingest(item.event, item.links, item.proof)


async def _world(tmp_path: Path, linked: bool) -> tuple[AnalyticsStore, CustomerService, Any]:
    (tmp_path / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
    (tmp_path / "customers.yml").write_text(CUSTOMERS_YML, encoding="utf-8")
    clock = Clock(T0)
    c360 = CustomerService(CustomerStore(f"sqlite:///{tmp_path / 'customers.db'}"), load_rules(tmp_path), clock=clock)
    # day 1 (clock T0): 42 last ordered 80 days ago (score 20, at_risk; its WeChat openid proven by the
    # shop's event), 7 ten days ago (90, healthy), 9 fifty days ago (50, watch)
    await _order(c360, "42", "E42a", T0 - 80 * DAY, profile={"wechat_openid": OPENID})
    await _order(c360, "7", "E7", T0 - 10 * DAY)
    await _order(c360, "9", "E9", T0 - 50 * DAY)
    store = AnalyticsStore(f"sqlite:///{tmp_path / 'analytics.db'}")
    await store.open()
    directory = Customer360Directory(_Feature(c360)) if linked else None
    ingester = Ingester(store, AnalyticsConfig(), directory.segment_of if directory else None, directory)
    # the openid chats on WeChat, an unknown widget shopper on socketio
    # (the openid clicks a recommendation in that chat; s2 clicks one too)
    for body in (user(OPENID, T0 + 3600, "ask_price", "wechat"), user("s2", T0 + 3700, "greet"),
                 {"event": "recommendation_clicked", "sender_id": OPENID, "timestamp": T0 + 3650,
                  "data": {"product_id": "p1"}},
                 {"event": "recommendation_clicked", "sender_id": "s2", "timestamp": T0 + 3750,
                  "data": {"product_id": "p2"}}):
        await ingester.handle(body)
    # day 2: 42 orders in the shop (its shop id only) — 20 h after the chat, inside the 7-day window
    clock.now = T0 + DAY
    await _order(c360, "42", "E42b", T0 + DAY)  # 42's score: 100, healthy
    await ingester.handle({"event": "order_paid", "customer_id": "42", "order_id": "E42b", "timestamp": T0 + DAY,
                           "data": {"total_cents": 10000}})
    await ingester.flush()
    return store, c360, directory


@pytest.mark.asyncio
async def test_orders_convert_the_wechat_chat_through_customer_360_identities(tmp_path: Path) -> None:
    store, c360, directory = await _world(tmp_path, linked=True)
    try:
        payload = await dashboard_payload(store, Filters(START, END), directory=directory)
        figures = payload["figures"]
        assert figures["conversations"] == 2 and figures["orders"] == 1
        assert figures["chat_to_order"] == 0.5  # the openid's chat converted by shop customer 42's order
        # its recommendation click counts as ordered: 1 of the 2 conversations with a click, 100.00 paid
        assert (figures["rec_clicked"], figures["rec_ordered"], figures["rec_order_rate"],
                figures["rec_order_value"]) == (2, 1, 0.5, 100.0)
        assert payload["choices"]["segments"] == ["流失风险"]  # 42 was at risk when the chat began
        segment = (await dashboard_payload(store, Filters(START, END, segment="流失风险"), directory=directory))
        assert segment["figures"]["conversations"] == 1 and segment["figures"]["chat_to_order"] == 1.0
        assert segment["figures"]["orders"] == 1  # the order is counted in its conversation's segment
    finally:
        await store.close()
        await c360.close()


@pytest.mark.asyncio
async def test_without_customer_360_the_openid_chat_is_not_matched_to_the_shop_order(tmp_path: Path) -> None:
    store, c360, _ = await _world(tmp_path, linked=False)
    try:
        payload = await dashboard_payload(store, Filters(START, END))
        assert payload["figures"]["conversations"] == 2 and payload["figures"]["chat_to_order"] == 0.0
        assert payload["figures"]["rec_ordered"] == 0 and payload["figures"]["rec_order_rate"] == 0.0
        assert payload["choices"]["segments"] == [] and payload["health"] is None
        assert "health_distribution" not in payload["tables"]
    finally:
        await store.close()
        await c360.close()


@pytest.mark.asyncio
async def test_health_distribution_and_trend(tmp_path: Path) -> None:
    store, c360, directory = await _world(tmp_path, linked=True)
    try:
        payload = await dashboard_payload(store, Filters(START, END), directory=directory)
        health = payload["health"]
        # now: 42 at 100 and 7 at 90 (healthy, both in the 90-100 bin), 9 at 50 (watch)
        assert health["customers"] == 3 and health["bands"] == {"healthy": 2, "watch": 1, "at_risk": 0}
        assert [b["customers"] for b in health["bins"]] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
        # end of 11-02: 20 / 90 / 50 -> one per band, mean 53.3; end of 11-03: 100 / 90 / 50 -> mean 80.0
        assert [(p["day"], p["bands"], p["customers"], p["mean"]) for p in health["trend"]] == [
            ("2026-11-02", {"healthy": 1, "watch": 1, "at_risk": 1}, 3, 53.3),
            ("2026-11-03", {"healthy": 2, "watch": 1, "at_risk": 0}, 3, 80.0)]
        assert payload["tables"]["health_trend"][0] == {"day": "2026-11-02", "customers": 3, "mean": 53.3,
                                                        "band_healthy": 1, "band_watch": 1, "band_at_risk": 1}
        # the segment filter: customers in 活跃 (healthy) now — 42 and 7
        active = (await dashboard_payload(store, Filters(START, END, segment="活跃"), directory=directory))["health"]
        assert active["customers"] == 2 and active["bands"] == {"healthy": 2, "watch": 0, "at_risk": 0}
        assert [(p["bands"]["at_risk"], p["mean"]) for p in active["trend"]] == [(1, 55.0), (0, 95.0)]
        # definitions for the page and the CSV tables
        assert payload["definitions"]["health_trend"]["name"] == "Health-score trend"
    finally:
        await store.close()
        await c360.close()


def test_trend_is_daily_up_to_92_days_then_weekly() -> None:
    assert trend_days(Filters("2026-11-01", "2026-11-03")) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    weekly = trend_days(Filters("2025-12-07", "2026-12-06"))
    assert weekly[-1] == "2026-12-06" and weekly[-2] == "2026-11-29" and len(weekly) == 53
    assert dt.date.fromisoformat(weekly[0]) >= dt.date(2025, 12, 7)
