"""Issue #20 points 2 and 5: the demo's triggers.yml journeys driven by the shop's own outbox events.

The shop store writes the events (back in stock, coupon redeemed) as it does in production;
they go through the broker conversion (`from_broker_message`) into a real trigger engine
(SQLite store and queue) with the demo's triggers.yml, quiet hours and caps included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actions.shop import coupon_template_views
from actions.shop.sql import SqlShopStore
from bot.triggers.clock import TestClock
from bot.triggers.engine import TriggerEngine
from bot.triggers.events import BehaviourEvent, from_broker_message
from bot.triggers.journeys import load_triggers_text
from bot.triggers.queue import SQLJobQueue
from bot.triggers.store import SQLTriggerStore
from tests.shop.conftest import NOW
from tests.triggers.conftest import RecordingSender, local_ts

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def engine(tmp_path: Path):
    store = SQLTriggerStore(f"sqlite+aiosqlite:///{tmp_path / 'triggers.db'}")
    await store.setup()
    clock = TestClock(NOW.timestamp())
    sender = RecordingSender()
    config = load_triggers_text((ROOT / "triggers.yml").read_text(encoding="utf-8"))
    eng = TriggerEngine(config, store, SQLJobQueue(store.engine), sender, clock)
    yield eng, sender, clock, store
    await store.close()


def _sent(sender: RecordingSender, customer: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(o.journey, o.step, o.message.name, o.slots) for o in sender.to(customer)]


async def test_back_in_stock_from_the_shop_reaches_the_subscriber(engine, shop_url: str) -> None:
    eng, sender, clock, _ = engine
    shop = SqlShopStore(shop_url)
    try:
        product = next(p for p in await shop.products() if p.variants)
        size = product.variants[0].size
        colour = product.variants[0].colour
        await shop.set_stock(product.sku, 0, size=size, colour=colour, now=NOW)
        assert await shop.subscribe_restock(product.sku, size=size, colour=colour, sender_id="widget-sid-1",
                                            customer_id=None, now=NOW)
        events = await shop.set_stock(product.sku, 5, size=size, colour=colour, now=NOW)
    finally:
        await shop.close()
    await eng.submit([from_broker_message(e) for e in events])
    clock.advance(2)
    await eng.drain()
    assert _sent(sender, "widget-sid-1") == [
        ("restock_notice", "notify", "utter_trigger_back_in_stock", {"product": product.title_zh, "size": size})]


async def test_shipping_updates_are_transactional_and_care_waits_a_day_and_for_quiet_hours(engine) -> None:
    eng, sender, clock, _ = engine
    now = clock.now()
    await eng.submit([
        BehaviourEvent("s1", "order_shipped", "c1", now, {"order_id": "E20261123001", "carrier": "顺丰",
                                                          "tracking_number": "SF123"}, {}, "c1"),
        BehaviourEvent("d1", "order_delivered", "c2", now, {"order_id": "E20261123002"}, {}, "c2"),
    ])
    clock.advance(2)
    await eng.drain()
    assert _sent(sender, "c1") == [("shipping_updates", "shipped", "utter_trigger_shipped",
                                    {"order_id": "E20261123001", "carrier": "顺丰", "tracking_number": "SF123"})]
    assert _sent(sender, "c2") == []
    # delivered 10:00 → care due 10:00 next day, inside the send window
    clock.set(local_ts(2026, 11, 24, 10, 1))
    await eng.drain()
    assert [s[:2] for s in _sent(sender, "c2")] == [("post_purchase_care", "care")]


async def test_welcome_sequence_sends_hello_then_the_coupon_unless_the_shopper_bought(engine) -> None:
    eng, sender, clock, _ = engine
    now = clock.now()
    await eng.submit([BehaviourEvent("r1", "customer_registered", "new1", now, {}, {}, "new1"),
                      BehaviourEvent("r2", "customer_registered", "new2", now, {}, {}, "new2")])
    clock.advance(61)
    await eng.drain()
    assert [s[:3] for s in _sent(sender, "new1")] == [("welcome", "hello", "utter_trigger_welcome")]
    await eng.submit([BehaviourEvent("p2", "order_paid", "new2", clock.now(), {"order_id": "E1"}, {}, "new2")])
    clock.advance(86400 + 60)
    await eng.drain()
    assert [s[1:3] for s in _sent(sender, "new1")] == [("hello", "utter_trigger_welcome"),
                                                       ("first_order_coupon", "action_coupon_welcome")]
    assert [s[1] for s in _sent(sender, "new2")] == ["hello"]  # bought: no coupon step


async def test_coupon_redeemed_counts_as_the_birthday_journeys_conversion(engine, shop_url: str) -> None:
    eng, sender, clock, store = engine
    shop = SqlShopStore(shop_url)
    shop.sync_coupon_templates(coupon_template_views())
    try:
        customer = await shop.customer_by_identity("wechat", "demo-wechat-openid")
        cid = str(customer.id)
        await eng.submit([BehaviourEvent("b1", "customer_birthday", cid, clock.now(), {}, {}, "demo-wechat-openid")])
        clock.set(local_ts(2026, 11, 24, 10, 1))  # "at 10:00" the next morning
        await eng.drain()
        assert [s[:3] for s in _sent(sender, cid)] == [("birthday", "greeting", "action_coupon_birthday")]
        issued = await shop.issue_coupon(customer.id, "BDAY30", issue_key="journey:birthday:greeting",
                                         issued_by="journey:birthday:greeting", now=NOW)  # what the action does
        redeemed = await shop.redeem_coupon(issued.coupon.code, "E20261101001", now=NOW)
    finally:
        await shop.close()
    body = dict(redeemed.event, timestamp=clock.now())
    await eng.submit([from_broker_message(body)])
    counts = await store.report_counts()
    conversions = counts.get("conversions") or []
    assert [tuple(row[:2]) for row in conversions] == [("birthday", "greeting")], counts


async def test_browse_follow_up_is_ab_tested_carries_the_card_and_stops_on_a_cart(engine) -> None:
    eng, sender, clock, _ = engine
    now = clock.now()
    viewers = [f"v{i}" for i in range(12)]
    await eng.submit([BehaviourEvent(f"pv-{c}", "product_viewed", c, now, {"sku": "RUN-00002", "product_name": "疾风磐石跑鞋03"},
                                     {}, c) for c in viewers + ["carted"]])
    await eng.submit([BehaviourEvent("cart-1", "cart_item_added", "carted", now + 60, {"sku": "RUN-00002"}, {}, "carted")])
    clock.advance(2 * 3600 + 60)
    await eng.drain()
    sent = [o for c in viewers for o in sender.to(c)]
    assert len(sent) == len(viewers) and {o.journey for o in sent} == {"browse_follow_up"}
    assert {o.variant for o in sent} == {"compare", "nudge"}  # 12 shoppers split between both arms
    compare = [o for o in sent if o.variant == "compare"]
    assert all(o.slots == {"product": "疾风磐石跑鞋03", "product_sku": "RUN-00002"} for o in compare)
    assert [o.journey for o in sender.to("carted")] == []  # added to cart: no follow-up


async def test_care_message_due_in_quiet_hours_waits_for_the_morning(engine) -> None:
    eng, sender, clock, _ = engine
    clock.set(local_ts(2026, 11, 23, 22, 0))
    await eng.submit([BehaviourEvent("d9", "order_delivered", "night", clock.now(), {"order_id": "E20261123009"}, {}, "night")])
    clock.set(local_ts(2026, 11, 24, 22, 1))  # due 22:00, inside quiet hours 21:00-09:00
    await eng.drain()
    assert _sent(sender, "night") == []
    clock.set(local_ts(2026, 11, 25, 9, 1))
    await eng.drain()
    assert [s[:2] for s in _sent(sender, "night")] == [("post_purchase_care", "care")]
