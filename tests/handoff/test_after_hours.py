"""After hours: the shopper is told, leaves a message, the next shift sees it first (controllable clock)."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from tests.handoff.helpers import CapturingChannel, ChannelProvider, RecordingBroker, outputs

CST = dt.timezone(dt.timedelta(hours=8))
HOURS = {"start": "09:00", "end": "18:00", "utc_offset_hours": 8}
AGENTS = [{"id": "alice", "name": "Alice", "skills": ["general", "after_sales"],
           "languages": ["en"], "max_concurrent": 1}]


def at(day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=CST).timestamp()


async def make_stack(model: Path, config: Any, clock: Any) -> tuple[Any, Any]:
    from bot.agent import Agent
    from bot.handoff import HandoffHook, HandoffService

    agent = Agent(event_broker=RecordingBroker(), action_package=None)
    await agent.load_model(model)

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    service = HandoffService(config, agent=agent, profile_provider=no_profile, clock=clock,
                             outputs=outputs(ChannelProvider("test", CapturingChannel())))
    agent.add_hook(HandoffHook(service))
    await service.start()
    return agent, service


async def say(agent: Any, sender: str, text: str) -> list[str]:
    from bot.shared.message import CollectingOutputChannel, UserMessage

    out = CollectingOutputChannel()
    await agent.handle_message(UserMessage(text, out, sender, input_channel="test"))
    return [m.get("text") for m in out.messages]


def test_after_hours_leave_message_is_stored_and_shown_first_next_shift(handoff_model: Path,
                                                                        config_factory: Any) -> None:
    now = [at(5, 22)]  # Monday 22:00 in Shanghai, after the 09:00-18:00 shift

    async def scenario() -> None:
        agent, service = await make_stack(handoff_model, config_factory(service_hours=HOURS, agents=AGENTS),
                                          lambda: now[0])
        await service.set_status("alice", "online")  # a night owl online: still no after-hours assignment
        early = await say(agent, "early", "human")
        assert "offline right now" in early[0] and "09:00-18:00" in early[0]
        now[0] = at(5, 23)
        await say(agent, "writer", "human")
        replies = await say(agent, "writer", "Please call me about order 42")
        assert len(replies) == 1 and "your message is saved" in replies[0]
        assert await say(agent, "writer", "My number is 555-0100") == []  # acknowledged once only
        writer = await service.store.active_for("writer")
        early_h = await service.store.active_for("early")
        assert writer["status"] == "queued" and writer["after_hours"] and writer["agent_id"] is None
        assert [m["text"] for m in writer["record"]["left_messages"]] == ["Please call me about order 42",
                                                                         "My number is 555-0100"]
        assert writer["priority"] > early_h["priority"]
        assert await service.queue.ordered() == [writer["id"], early_h["id"]]  # the message first
        tracker = await agent.get_tracker("writer")
        assert tracker.is_paused()
        assert any((e.metadata or {}).get("handoff") == "message_left" for e in tracker.events if e.type_name == "bot")

        await service.set_status("alice", "away")
        now[0] = at(6, 9, 5)  # Tuesday morning: the shift starts
        alice = service.config.agent("alice")
        shown = await service.left_messages_for(alice)
        assert [h["conversation_id"] for h in shown] == ["writer"]
        assert shown[0]["left_messages"][0]["text"] == "Please call me about order 42"
        await service.set_status("alice", "online")
        assert (await service.store.get(writer["id"]))["agent_id"] == "alice"  # first thing, before "early"
        assert (await service.store.get(early_h["id"]))["status"] == "queued"  # alice is at her limit of 1
        await service.close()

    asyncio.run(scenario())


def test_after_hours_open_hours_escalation_is_not_a_left_message(handoff_model: Path, config_factory: Any) -> None:
    now = [at(5, 10)]

    async def scenario() -> None:
        agent, service = await make_stack(handoff_model, config_factory(service_hours=HOURS, agents=AGENTS),
                                          lambda: now[0])
        replies = await say(agent, "day", "human")
        assert "connecting you to a human" in replies[0]
        assert await say(agent, "day", "still there?") == []
        h = await service.store.active_for("day")
        assert not h["after_hours"] and not h["record"].get("left_messages") and h["priority"] == 0
        await service.close()

    asyncio.run(scenario())
