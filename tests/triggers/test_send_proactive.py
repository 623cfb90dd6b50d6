"""Agent.send_proactive: a response/action in a conversation without a user message, under the
conversation lock, persisted, idempotent by key; the trigger senders go through it."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from bot.agent import Agent
from bot.model.training import train
from bot.shared.constants import ACTION_LISTEN_NAME
from bot.shared.events import ActionExecuted, BotUttered, UserUttered
from bot.shared.exceptions import BotError
from bot.shared.message import CollectingOutputChannel
from bot.triggers.journeys import Message
from bot.shared.outputs import OutputRegistry
from bot.triggers.senders import AgentSender, ChannelSender, Outgoing

PROJECT = Path(__file__).resolve().parents[1] / "data" / "projects" / "turnbot"

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(root=PROJECT, out=tmp_path_factory.mktemp("turnbot-models")).model_path


@pytest_asyncio.fixture
async def agent(model_path):
    a = await Agent.create(model_path, project_root=PROJECT)
    yield a
    await a.close()


def _names(tracker) -> list[str]:
    return [e.action_name for e in tracker.events if isinstance(e, ActionExecuted)]


async def test_send_proactive_runs_response_with_slots_and_persists(agent):
    channel = CollectingOutputChannel()
    messages = await agent.send_proactive("p1", "utter_greet", channel, slots={"name": "Ann"})
    assert [m["text"] for m in messages] == ["Hello Ann!"]
    assert messages[0]["recipient_id"] == "p1"
    assert [m["text"] for m in channel.messages] == ["Hello Ann!"]
    tracker = await agent.get_tracker("p1")
    assert tracker.get_slot("name") == "Ann"
    # a session started, exactly this action ran, the turn ends listening (no fallback predicted)
    assert _names(tracker)[-2:] == ["utter_greet", ACTION_LISTEN_NAME]
    assert [e.text for e in tracker.events if isinstance(e, BotUttered)] == ["Hello Ann!"]
    assert not any(isinstance(e, UserUttered) for e in tracker.events)
    # the shopper's next message continues the same conversation
    replies = await agent.handle_text("/greet", "p1")
    assert [r["text"] for r in replies] == ["Hello Ann!"]


async def test_send_proactive_runs_custom_action_and_passes_metadata(agent):
    messages = await agent.send_proactive("p2", "action_count", metadata={"campaign": "x"})
    assert [m["text"] for m in messages] == ["Count 1"]
    tracker = await agent.get_tracker("p2")
    executed = [e for e in tracker.events if isinstance(e, ActionExecuted) and e.action_name == "action_count"]
    assert executed[0].metadata.get("campaign") == "x"


async def test_send_proactive_is_idempotent_by_key(agent):
    first = await agent.send_proactive("p3", "utter_greet", slots={"name": "Bo"}, idempotency_key="send-1")
    again = await agent.send_proactive("p3", "utter_greet", slots={"name": "Bo"}, idempotency_key="send-1")
    other = await agent.send_proactive("p3", "utter_greet", idempotency_key="send-2")
    assert (len(first), again, len(other)) == (1, [], 1)
    tracker = await agent.get_tracker("p3")
    assert [e.text for e in tracker.events if isinstance(e, BotUttered)] == ["Hello Bo!", "Hello Bo!"]


async def test_send_proactive_unknown_action_names_the_fix(agent):
    with pytest.raises(BotError, match="Fix:"):
        await agent.send_proactive("p4", "utter_does_not_exist")
    assert _names(await agent.get_tracker("p4")) == []


async def test_send_proactive_waits_for_the_conversation_lock(agent):
    async with agent.lock_store.lock("p5"):
        task = asyncio.create_task(agent.send_proactive("p5", "utter_greet", slots={"name": "Cy"}))
        await asyncio.sleep(0.2)
        assert not task.done()  # a turn in progress is not interleaved with
    assert [m["text"] for m in await asyncio.wait_for(task, 5)] == ["Hello Cy!"]


def _outgoing(send_id: str = "j:c:e:0") -> Outgoing:
    return Outgoing(send_id, "c", "p6", "j", "s", "A", Message(response="utter_greet"), {"name": "Di"})


async def test_agent_sender_uses_send_proactive_and_a_retry_is_harmless(agent):
    channel = CollectingOutputChannel()
    sender = AgentSender(agent, lambda o: channel)
    assert await sender.send(_outgoing()) == "agent"
    assert await sender.send(_outgoing()) == "agent"  # the scheduler retried the same send id
    assert [m["text"] for m in channel.messages] == ["Hello Di!"]
    tracker = await agent.get_tracker("p6")
    executed = [e for e in tracker.events if isinstance(e, ActionExecuted) and e.action_name == "utter_greet"]
    assert executed[0].policy == "TriggerScheduler"
    assert executed[0].metadata["trigger"]["send_id"] == "j:c:e:0"


async def test_wechat_sender_renders_again_on_retry(agent):
    """WeChat's delivery is the API call after rendering, so a retry must render again."""
    from connectors.wechat.policy import SendPath

    class FakeWeChat:
        def __init__(self):
            self.sent = []

        async def allowed_send_path(self, openid):
            return SendPath.CUSTOMER_SERVICE

        async def send_proactive(self, openid, messages, template_id=None, template_data=None, url=None):
            self.sent.append([m["text"] for m in messages])
            return SendPath.CUSTOMER_SERVICE

    from connectors.wechat.channel import WECHAT_CAPABILITIES

    class Provider:
        def name(self):
            return "wechat"

        def capabilities(self):
            return WECHAT_CAPABILITIES

        def output_for(self, recipient_id):
            return wechat

    wechat = FakeWeChat()
    sender = ChannelSender(agent, OutputRegistry([Provider()]))
    await sender.send(_outgoing("w:0"))
    await sender.send(_outgoing("w:0"))
    assert wechat.sent == [["Hello Di!"], ["Hello Di!"]]
