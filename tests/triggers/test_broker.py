"""Events reaching the engine through the event broker (shop outbox, tracker events)."""
from __future__ import annotations

import pytest

from bot.stores.event_broker import InProcessEventBroker, RedisStreamsEventBroker
from bot.triggers.events import BehaviourEvent, from_broker_message
from tests.triggers.conftest import make_engine


def outbox_body(outbox_id: int, event: str, ts: float) -> dict:
    # actions/shop/sql.py `_event_dict`
    return {"event": event, "sender_id": "web-1", "timestamp": ts, "customer_id": 7, "order_id": "O7",
            "data": {"reason": "size"}, "outbox_id": outbox_id}


def test_from_broker_message_converts_outbox_and_tracker_events():
    shop = from_broker_message(outbox_body(3, "order_delivered", 1.0))
    assert (shop.id, shop.customer_id, shop.properties["order_id"], shop.sender_id) == ("outbox-3", "7", "O7", "web-1")
    paused = from_broker_message({"event": "pause", "sender_id": "s1", "timestamp": 2.0})
    assert paused.type == "handoff_started" and paused.customer_id == "s1"
    user = from_broker_message({"event": "user", "sender_id": "s1", "timestamp": 3.0, "parse_data": {"intent": {"name": "greet"}}})
    assert user.type == "intent_detected" and user.properties == {"intent": "greet"}
    assert from_broker_message({"event": "bot", "sender_id": "s1", "timestamp": 4.0}) is None


@pytest.mark.asyncio
async def test_in_process_broker_feeds_engine_idempotently(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    broker = InProcessEventBroker()
    engine.attach(broker)
    await broker.publish(outbox_body(1, "order_delivered", clock.now()))
    await broker.publish(outbox_body(1, "order_delivered", clock.now()))  # relayed twice (at-least-once)
    assert len(await store.events_for("7")) == 1
    assert len(await store.instances_for("7")) == 1
    clock.advance(5)
    await engine.drain()
    assert [o.sender_id for o in sender.to("7")] == ["web-1"]


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_streams_broker_feeds_engine(store, redis_queue, sender, clock, redis_url):
    broker = RedisStreamsEventBroker(redis_url, stream="test:events")
    engine = make_engine(store, redis_queue, sender, clock, broker=broker)
    await engine.submit([BehaviourEvent("e1", "order_delivered", "c1", clock.now())])
    assert await store.instances_for("c1") == []  # published, not yet consumed
    handled = await broker.process_batch("triggers", "w1", engine.handle_broker_message, count=10)
    assert handled == 1
    assert len(await store.instances_for("c1")) == 1
    await broker.close()
