"""Segments and health in journey entry filters, the win-back journey entered by a threshold action,
and handoff routing raised by health.yml (configured, not coded)."""
from __future__ import annotations

from typing import Any

import pytest

from bot.customers.profile import CustomerEvent
from bot.customers.service import CustomerService
from bot.handoff.escalation import Escalator
from bot.triggers.events import BehaviourEvent
from tests.customers.conftest import DAY, T0
from tests.triggers.conftest import clock, make_engine, sender, sql_queue, store  # noqa: F401 (fixtures)

TRIGGERS = """
settings:
  timezone: Asia/Shanghai
  max_event_age: 3650d
journeys:
  win_back:
    entry:
      event: customer_health_changed
      properties: {journey: win_back}
      profile: {customer.health_band: at_risk}
    steps:
      - {name: ask, delay: 1s, response: utter_win_back}
  vip_cart:
    entry:
      event: cart_item_added
      profile: {customer.segments.高价值: true}
    steps:
      - {name: remind, delay: 1s, response: utter_vip_cart}
"""


async def run_all(engine: Any, clock: Any) -> None:
    for _ in range(5):
        clock.set(clock.now() + 3600)
        await engine.drain()


@pytest.mark.asyncio
async def test_segment_filter_and_win_back_journey(service: CustomerService, store: Any, sql_queue: Any,  # noqa: F811
                                                    sender: Any, clock: Any) -> None:  # noqa: F811
    engine = make_engine(store, sql_queue, sender, clock, TRIGGERS)

    async def context(customer_id: str) -> Any:
        return await service.context("shop_customer", customer_id)

    engine.customer_context = context
    outcomes: list[dict[str, Any]] = []

    async def listen(batch: list[dict[str, Any]]) -> None:
        outcomes.extend(batch)

    engine.outcome_listener = listen
    service.clock.now = clock.now()  # type: ignore[attr-defined]
    rich = ("shop_customer", "43")
    await service.ingest(CustomerEvent("o43", "order_paid", clock.now() - DAY, {"total_cents": 50000}, rich), proof="t")
    await service.ingest(CustomerEvent("o44", "order_paid", clock.now() - DAY, {"total_cents": 100},
                                       ("shop_customer", "44")), proof="t")
    for cid in ("43", "44"):
        await engine.process(BehaviourEvent(f"cart-{cid}", "cart_item_added", cid, clock.now(), {}), trusted=True)
    await run_all(engine, clock)
    assert [o.message.response for o in sender.to("43")] == ["utter_vip_cart"]
    assert sender.to("44") == []
    # customer 45 falls to at-risk: the threshold action publishes customer_health_changed → win_back
    key = ("shop_customer", "45")
    await service.ingest(CustomerEvent("o45", "order_paid", clock.now() - 300 * DAY, {"total_cents": 100}, key), proof="t")
    await service.ingest(CustomerEvent("c45", "csat_submitted", clock.now() - DAY, {"rating": 1}, key), proof="t")
    body = service.published[-1]  # type: ignore[attr-defined]
    assert body["event"] == "customer_health_changed" and body["customer_id"] == "45"
    await engine.handle_broker_message(body)
    await run_all(engine, clock)
    assert [o.message.response for o in sender.to("45")] == ["utter_win_back"]
    # the scheduler's outcomes reach the customer's timeline
    sent = [o for o in outcomes if o["outcome"] == "sent"]
    assert {(o["customer_id"], o["journey"]) for o in sent} == {("43", "vip_cart"), ("45", "win_back")}
    from bot.customers.ingress import send_outcomes

    for item in send_outcomes(outcomes):
        await service.ingest(item.event, item.links, item.proof)
    cid = await service.find("shop_customer", "45")
    items = (await service.timeline(cid, types=["proactive_send"]))["items"]
    assert [(i["data"]["journey"], i["data"]["outcome"]) for i in items] == [("win_back", "sent")]


class _Records:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def create(self, values: dict[str, Any]) -> Any:
        self.values = values

        class H:
            id = values["id"]
            queue = values["queue"]

            def summary(self) -> dict[str, Any]:
                return {}
        return H()


def test_health_routing_raises_priority_and_picks_the_senior_queue() -> None:
    """The escalator reads the routing Customer 360 put on the profile (HandoffService.escalate adds it)."""
    import asyncio

    from bot.handoff.config import HandoffConfig
    from bot.handoff.rules import Escalation
    from bot.shared.events import UserUttered
    from bot.shared.tracker import DialogueStateTracker

    config = HandoffConfig.from_dict({"auto_assign": False})
    records = _Records()

    class Queue:
        async def add(self, *a: Any) -> None: ...

        async def position(self, *a: Any) -> int:
            return 1

    class Roster:
        def estimated_wait_minutes(self, *a: Any) -> int:
            return 1

    class Router:
        roster = Roster()

    class Notifier:
        async def notify(self, *a: Any, **k: Any) -> None: ...

        async def publish(self, *a: Any, **k: Any) -> None: ...

    escalator = Escalator(config, records, Queue(), Router(), Notifier(), lambda: T0, lambda aw: None)
    tracker = DialogueStateTracker("conv-1", [])
    tracker.update(UserUttered("我要投诉", parse_data={"intent": {"name": "complaint", "confidence": 1.0}}))
    escalation = Escalation(reason="complaint", detail="", urgent=False)
    asyncio.run(escalator.escalate(tracker, escalation, None, None))
    base = records.values["priority"]
    profile = {"customer360": {"routing_priority": 2, "skill_group": "senior", "tags": ["流失风险"]}}
    asyncio.run(escalator.escalate(tracker, escalation, None, profile))
    assert records.values["priority"] == base + 2
    assert records.values["queue"].startswith("senior:")
    assert records.values["customer_id"] is None
