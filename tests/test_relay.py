"""The outbox relay moves events from any OutboxPort to the broker, at least once."""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from bot.relay import DEFAULT_OUTBOX_INTERVAL_S, OutboxRelay, create_outbox_relay, forward_outbox
from bot.stores.event_broker import InProcessEventBroker


class MemoryOutbox:
    """An OutboxPort over a list (what a project's own port looks like)."""

    def __init__(self, events: list[dict[str, Any]], interval: float | None = None) -> None:
        self.events = events
        self.published: list[Any] = []
        self.interval = interval
        self.closed = 0

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["outbox_id"] not in self.published][:limit]

    async def mark_published(self, outbox_ids: Sequence[Any]) -> None:
        self.published.extend(outbox_ids)

    async def close(self) -> None:
        self.closed += 1


def _broker() -> tuple[InProcessEventBroker, list[dict]]:
    broker, received = InProcessEventBroker(), []

    async def collect(event: dict) -> None:
        received.append(event)

    broker.subscribe(collect)
    return broker, received


def test_relay_forwards_in_batches_and_marks_after_publishing() -> None:
    port = MemoryOutbox([{"outbox_id": i, "event": "order_cancelled"} for i in range(5)])
    broker, received = _broker()
    assert asyncio.run(forward_outbox(broker, port, batch=2)) == 5
    assert [e["outbox_id"] for e in received] == [0, 1, 2, 3, 4] and port.published == [0, 1, 2, 3, 4]


def test_relay_interval_comes_from_the_port() -> None:
    broker, _ = _broker()
    assert create_outbox_relay(broker, MemoryOutbox([])).interval == DEFAULT_OUTBOX_INTERVAL_S
    assert create_outbox_relay(broker, MemoryOutbox([], interval=0.5)).interval == 0.5
    assert create_outbox_relay(broker, MemoryOutbox([], interval=0)) is None
    assert create_outbox_relay(None, MemoryOutbox([])) is None and create_outbox_relay(broker, None) is None


def test_relay_runs_as_a_background_task_until_the_stop_event() -> None:
    port = MemoryOutbox([{"outbox_id": 1, "event": "return_requested"}], interval=0.01)
    broker, received = _broker()

    async def scenario() -> OutboxRelay:
        relay = create_outbox_relay(broker, port)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.01)
        port.events.append({"outbox_id": 2, "event": "order_cancelled"})
        for _ in range(200):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        await relay.close()
        await relay.close()
        return relay

    relay = asyncio.run(scenario())
    assert [e["outbox_id"] for e in received] == [1, 2] and relay.forwarded == 2
    assert port.closed == 1
