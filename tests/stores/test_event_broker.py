"""Event brokers: in-process fan-out and Redis Streams consumer groups."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from bot.shared.exceptions import UnknownComponentError
from bot.stores.event_broker import (
    InProcessEventBroker,
    RedisStreamsEventBroker,
    create_event_broker,
)


def event(i: int) -> dict[str, Any]:
    return {"sender_id": f"s{i}", "event": "user", "text": f"消息 {i}", "timestamp": 1_700_000_000.0 + i}


class Collector:
    def __init__(self, fail_times: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_times = fail_times

    async def __call__(self, body: dict[str, Any]) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler crashed")
        self.received.append(body)


@pytest.mark.asyncio
async def test_in_process_broker_failing_subscriber_does_not_affect_others(caplog):
    broker = InProcessEventBroker()
    broken, healthy = Collector(fail_times=100), Collector()
    broker.subscribe(broken)
    broker.subscribe(healthy)

    for i in range(3):
        await broker.publish(event(i))

    assert healthy.received == [event(0), event(1), event(2)]
    assert "handler crashed" in caplog.text

    broker.unsubscribe(healthy)
    await broker.publish(event(3))
    assert len(healthy.received) == 3


@pytest.mark.redis
class TestRedisStreamsEventBroker:
    @pytest.mark.asyncio
    async def test_redis_broker_every_group_gets_every_event(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events")
        for i in range(4):
            await broker.publish(event(i), headers={"kind": "test"})

        triggers, metrics = Collector(), Collector()
        assert await broker.process_batch("triggers", "w1", triggers, count=10) == 4
        assert await broker.process_batch("metrics", "w1", metrics, count=10) == 4

        assert triggers.received == [event(i) for i in range(4)]
        assert metrics.received == triggers.received
        # acknowledged: nothing left pending, nothing delivered twice
        assert (await broker.redis.xpending("test:events", "triggers"))["pending"] == 0
        assert await broker.process_batch("triggers", "w1", triggers) == 0

    @pytest.mark.asyncio
    async def test_redis_broker_consumers_of_one_group_share_the_work(self, make_redis_broker):
        publisher = make_redis_broker(stream="test:events")
        await publisher.ensure_group("workers")  # group exists before the events arrive
        for i in range(6):
            await publisher.publish(event(i))

        first, second = Collector(), Collector()
        worker_a, worker_b = make_redis_broker(stream="test:events"), make_redis_broker(stream="test:events")
        await worker_a.process_batch("workers", "a", first, count=3)
        await worker_b.process_batch("workers", "b", second, count=10)

        assert first.received == [event(i) for i in range(3)]
        assert second.received == [event(i) for i in range(3, 6)]

    @pytest.mark.asyncio
    async def test_redis_broker_redelivers_unacked_messages_to_another_consumer(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events")
        await broker.ensure_group("g")
        await broker.publish(event(1))

        failing = Collector(fail_times=1)
        assert await broker.process_batch("g", "a", failing, claim_idle_ms=50) == 0
        assert (await broker.redis.xpending("test:events", "g"))["pending"] == 1

        rescuer = Collector()
        # not idle long enough yet: nobody steals a message still being worked on
        assert await broker.process_batch("g", "b", rescuer, claim_idle_ms=10_000) == 0
        await asyncio.sleep(0.1)
        assert await broker.process_batch("g", "b", rescuer, claim_idle_ms=50) == 1
        assert rescuer.received == [event(1)]
        assert (await broker.redis.xpending("test:events", "g"))["pending"] == 0

    @pytest.mark.asyncio
    async def test_redis_broker_claims_messages_of_a_crashed_consumer(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events")
        started = asyncio.Event()

        async def hangs(body: dict[str, Any]) -> None:
            started.set()
            await asyncio.Event().wait()

        crashed = asyncio.create_task(broker.consume("g", "crashed", hangs, block_ms=50))
        await asyncio.sleep(0.05)  # let it create the group
        await broker.publish(event(7))
        await asyncio.wait_for(started.wait(), 2)
        crashed.cancel()  # the worker dies mid-message; no XACK was sent
        with pytest.raises(asyncio.CancelledError):
            await crashed

        survivor = Collector()
        await asyncio.sleep(0.1)
        handled = await make_redis_broker(stream="test:events").process_batch(
            "g", "survivor", survivor, claim_idle_ms=50
        )
        assert handled == 1 and survivor.received == [event(7)]

    @pytest.mark.asyncio
    async def test_redis_broker_dead_letters_after_max_deliveries(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events")
        await broker.ensure_group("g")
        await broker.publish(event(9))
        poisoned = Collector(fail_times=100)

        await broker.process_batch("g", "a", poisoned, claim_idle_ms=0, max_deliveries=2)
        await broker.process_batch("g", "a", poisoned, claim_idle_ms=0, max_deliveries=2)
        await broker.process_batch("g", "a", poisoned, claim_idle_ms=0, max_deliveries=2)

        assert (await broker.redis.xpending("test:events", "g"))["pending"] == 0
        dead = await broker.redis.xrange("test:events:dead")
        assert len(dead) == 1 and dead[0][1]["group"] == "g"

    @pytest.mark.asyncio
    async def test_redis_broker_trims_stream_to_maxlen(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events", maxlen=100)
        for i in range(1000):
            await broker.publish(event(i))
        length = await broker.redis.xlen("test:events")
        assert 100 <= length < 300

    @pytest.mark.asyncio
    async def test_redis_broker_subscribe_consumes_in_background(self, make_redis_broker):
        broker = make_redis_broker(stream="test:events")
        received = asyncio.Queue()

        async def handler(body: dict[str, Any]) -> None:
            await received.put(body)

        await broker.ensure_group("kefu")
        broker.subscribe(handler)
        await broker.publish(event(3))
        assert await asyncio.wait_for(received.get(), 3) == event(3)
        await broker.close()
        assert broker._tasks == []


def test_create_event_broker_by_type():
    assert isinstance(create_event_broker(None), InProcessEventBroker)
    assert isinstance(
        create_event_broker(SimpleNamespace(url=None, type="in_process", token=None, kwargs={})),
        InProcessEventBroker,
    )
    redis_config = SimpleNamespace(
        url="redis://localhost:6390/0", type="redis", token=None, kwargs={"stream": "shop:events", "maxlen": 500}
    )
    broker = create_event_broker(redis_config)
    assert isinstance(broker, RedisStreamsEventBroker)
    assert broker.stream == "shop:events" and broker.maxlen == 500
    with pytest.raises(UnknownComponentError, match="pika"):
        create_event_broker(SimpleNamespace(url=None, type="pika", token=None, kwargs={}))
