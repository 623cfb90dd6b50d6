"""Exact profile and health values from a known history; incremental equals a full recompute."""
from __future__ import annotations

import pytest

from bot.customers.profile import CustomerEvent
from bot.customers.service import CustomerService
from tests.customers.conftest import DAY, T0

KEY = ("shop_customer", "42")


def history() -> list[CustomerEvent]:
    return [
        CustomerEvent("o1", "order_paid", T0, {"order_id": "E1", "total_cents": 10000, "discount_cents": 1000,
                                                "categories": ["shoes"], "price_bands": ["low"]}, KEY),
        CustomerEvent("o2", "order_paid", T0 + 10 * DAY, {"order_id": "E2", "total_cents": 30000,
                                                           "categories": ["shoes", "bags"],
                                                           "price_bands": ["high", "mid"]}, KEY),
        CustomerEvent("r1", "return_requested", T0 + 12 * DAY, {"order_id": "E2"}, KEY),
        CustomerEvent("c1", "csat_submitted", T0 + 13 * DAY, {"rating": 4}, KEY),
        CustomerEvent("c2", "csat_submitted", T0 + 14 * DAY, {"rating": 5}, KEY),
        CustomerEvent("v1", "recommendation_shown", T0 + 14 * DAY, {}, KEY),
        CustomerEvent("v2", "recommendation_clicked", T0 + 14 * DAY, {}, KEY),
    ]


async def feed(service: CustomerService) -> str:
    service.clock.now = T0 + 30 * DAY  # type: ignore[attr-defined]
    cid = ""
    for event in history():
        cid = await service.ingest(event, proof="shop_event")
    return cid


@pytest.mark.asyncio
async def test_profile_fields_are_computed_exactly(service: CustomerService) -> None:
    cid = await feed(service)
    p = (await service.get(cid))["profile"]
    assert p["order_count"] == 2
    assert p["lifetime_value"] == 40000
    assert p["aov"] == 20000
    assert p["discount_rate"] == 0.5
    assert p["low_price_band_rate"] == round(1 / 3, 4)
    assert p["price_sensitivity"] == round((0.5 + 0.3333) / 2, 4)
    assert p["return_rate"] == 0.5 and p["return_count"] == 1 and p["after_sales_open"] == 1
    assert p["purchase_interval_days"] == 10
    assert p["days_since_last_order"] == 20
    assert p["preferred_categories"] == ["shoes", "bags"]
    assert p["csat_avg"] == 4.5 and p["csat_count"] == 2
    assert p["recommendation_click_rate"] == 1.0
    assert p["orders_90d"] == 2


@pytest.mark.asyncio
async def test_health_score_band_and_explanation_are_exact(service: CustomerService) -> None:
    cid = await feed(service)
    c = await service.get(cid)
    # repurchase: 20 days → (20-100)/(0-100) = 80; satisfaction: (4.5-1)/4 = 87.5
    # score = 50 + 3*(80-50)/5 + 2*(87.5-50)/5 = 50 + 18 + 15 = 83
    assert c["health_score"] == 83.0
    assert c["health_band"] == "healthy"
    factors = c["health"]["factors"]
    assert [(f["component"], f["contribution"]) for f in factors] == [("repurchase", 18.0), ("satisfaction", 15.0)]
    assert c["tags"] == ["高价值", "价格敏感型"]
    trend = c["health_history"]
    assert trend[-1]["score"] == 83.0 and len(trend) >= 2


@pytest.mark.asyncio
async def test_full_recompute_equals_the_incremental_profile(service: CustomerService) -> None:
    cid = await feed(service)
    before = await service.get(cid)
    assert await service.recompute_all() == 1
    after = await service.get(cid)
    assert after["profile"] == before["profile"]
    assert after["health_score"] == before["health_score"]


@pytest.mark.asyncio
async def test_a_redelivered_event_counts_once(service: CustomerService) -> None:
    cid = await feed(service)
    await service.ingest(history()[0], proof="shop_event")
    assert (await service.get(cid))["profile"]["order_count"] == 2


@pytest.mark.asyncio
async def test_falling_to_at_risk_fires_the_configured_actions_once(service: CustomerService) -> None:
    cid = await feed(service)
    service.clock.now = T0 + 200 * DAY  # type: ignore[attr-defined]
    # a bad rating: satisfaction (4+5+1)/3 = 3.333 → 58.33; repurchase 190 days → 0
    await service.ingest(CustomerEvent("c3", "csat_submitted", T0 + 199 * DAY, {"rating": 1}, KEY), proof="shop_event")
    c = await service.get(cid)
    assert c["health_band"] == "at_risk"
    assert c["health_score"] == round(50 + 3 * (0 - 50) / 5 + 2 * (round(100 * (10 / 3 - 1) / 4, 4) - 50) / 5, 2)
    assert "流失风险" in c["tags"]
    alerts = await service.alerts()
    assert [a["rule"] for a in alerts] == ["winback"]
    assert alerts[0]["detail"]["skill_group"] == "senior"
    assert service.published[-1]["event"] == "customer_health_changed"  # type: ignore[attr-defined]
    assert service.published[-1]["data"]["journey"] == "win_back"  # type: ignore[attr-defined]
    assert service.published[-1]["customer_id"] == "42"  # type: ignore[attr-defined]
    await service.ingest(CustomerEvent("c4", "csat_submitted", T0 + 199 * DAY, {"rating": 1}, KEY), proof="shop_event")
    assert len(await service.alerts()) == 1  # still at risk: no second alert
    ctx = await service.context("shop_customer", "42")
    assert ctx["routing_priority"] == 2 and ctx["skill_group"] == "senior"
    kinds = [i["type"] for i in (await service.timeline(cid))["items"]]
    assert "health_changed" in kinds and "tags_changed" in kinds


@pytest.mark.asyncio
async def test_incremental_updates_equal_a_full_recompute_on_a_mixed_history(service: CustomerService) -> None:
    """Every profile event kind, interleaved across customers in time order, one by one; then a
    full recompute from the stored events must give the same profile, health and tags (the clock
    stands after the last event: both derive the time-dependent fields at the same moment)."""
    import random

    rng = random.Random(17)
    kinds = [("order_paid", lambda i: {"order_id": f"O{i}", "total_cents": rng.randint(500, 90000),
                                       "discount_cents": rng.choice([0, 0, 300]), "coupon_code": rng.choice([None, "C"]),
                                       "categories": rng.sample(["shoes", "bags", "tea", "toys"], 2),
                                       "price_bands": [rng.choice(["low", "mid", "high"])]}),
             ("order_cancelled", lambda i: {"order_id": f"O{i}"}), ("return_requested", lambda i: {}),
             ("refund_completed", lambda i: {}), ("product_viewed", lambda i: {"category": "tea"}),
             ("cart_item_added", lambda i: {}), ("recommendation_shown", lambda i: {}),
             ("recommendation_clicked", lambda i: {}),
             ("conversation_started", lambda i: {"channel": rng.choice(["wechat", "widget"])}),
             ("message", lambda i: {"sentiment": rng.uniform(-1, 1), "intent": rng.choice(["complaint", "faq"])}),
             ("handoff_requested", lambda i: {"reason": rng.choice(["complaint", "negative_sentiment", "asked"])}),
             ("handoff_resolved", lambda i: {"duration_s": rng.randint(60, 9000)}),
             ("csat_submitted", lambda i: {"rating": rng.randint(1, 5)}), ("complaint", lambda i: {})]
    ids = set()
    service.clock.now = T0 + 170 * DAY  # type: ignore[attr-defined]
    for i in range(400):
        kind, data = rng.choice(kinds)
        ts = T0 + i * 0.4 * DAY
        ids.add(await service.ingest(CustomerEvent(f"m{i}", kind, ts, data(i), ("shop_customer", str(i % 5))),
                                     proof="shop_event"))
    before = {cid: await service.get(cid) for cid in ids}
    assert await service.recompute_all() == 5
    for cid in ids:
        after = await service.get(cid)
        for key in ("profile", "health_score", "health_band", "tags", "last_event_at"):
            assert after[key] == before[cid][key], (cid, key)
        assert after["health"]["components"] == before[cid]["health"]["components"]
