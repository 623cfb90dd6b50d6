"""Through a real Agent (the tiny NLU-less turnbot): slots from the event, the response in the
conversation, handoff holds from the tracker's ConversationPaused, “别再发了” in chat."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.agent import Agent
from bot.model.training import train
from bot.shared.events import BotUttered, ConversationPaused, ConversationResumed
from bot.shared.message import CollectingOutputChannel
from bot.triggers.engine import tracker_handoff_check
from bot.triggers.events import BehaviourEvent
from bot.triggers.hooks import OptOutHook
from bot.triggers.senders import AgentSender
from tests.triggers.conftest import make_engine

PROJECT = Path(__file__).resolve().parents[1] / "data" / "projects" / "turnbot"
JOURNEY = """
settings: {quiet_hours: {start: "23:00", end: "06:00"}}
journeys:
  delivered:
    entry: {event: order_delivered}
    steps:
      - {name: hello, delay: 2s, response: utter_greet, slots: {name: properties.first_name}}
"""

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(root=PROJECT, out=tmp_path_factory.mktemp("turnbot-models")).model_path


async def test_agent_sender_delivers_response_with_event_slots(model_path, store, sql_queue, clock):
    agent = await Agent.create(model_path, project_root=PROJECT)
    channels: dict[str, CollectingOutputChannel] = {}
    sender = AgentSender(agent, lambda o: channels.setdefault(o.sender_id, CollectingOutputChannel()))
    engine = make_engine(store, sql_queue, sender, clock, text=JOURNEY,
                         is_handoff_open=tracker_handoff_check(agent.tracker_store))
    agent.add_hook(OptOutHook(engine))
    try:
        await agent.append_events("held", [ConversationPaused()])
        await engine.submit([
            BehaviourEvent("e1", "order_delivered", "eve", clock.now(), {"first_name": "Eve"}),
            BehaviourEvent("e2", "order_delivered", "held", clock.now(), {"first_name": "Bo"}),
        ])
        clock.advance(3)
        outcomes = {r.job_id.split(":")[1]: (r.outcome, r.reason) for r in await engine.drain()}
        assert outcomes == {"eve": ("sent", ""), "held": ("hold", "handoff_open")}
        assert [m["text"] for m in channels["eve"].messages] == ["Hello Eve!"]
        tracker = await agent.get_tracker("eve")
        assert [e.text for e in tracker.events if isinstance(e, BotUttered)] == ["Hello Eve!"]

        await agent.append_events("held", [ConversationResumed()])
        clock.advance(engine.settings.handoff_retry)
        await engine.drain()
        assert [m["text"] for m in channels["held"].messages] == ["Hello Bo!"]

        replies = await agent.handle_text("别再发了", "eve")
        assert replies and "不会再" in replies[0]["text"]
        assert (await store.get_profile("eve"))["opted_out"] is True
        await engine.submit([BehaviourEvent("e3", "order_delivered", "eve", clock.now(), {"first_name": "Eve"})])
        clock.advance(3)
        assert [(r.outcome, r.reason) for r in await engine.drain()] == [("skip", "opted_out")]
        assert len(channels["eve"].messages) == 1
    finally:
        await agent.close()
