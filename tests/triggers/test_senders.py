"""Senders: through the agent (slots from the event, then the response/action), WeChat's send paths,
routing through the output registry by the channels' capabilities."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bot.shared.outputs import ChannelCapabilities, OutputRegistry
from bot.triggers.journeys import Message
from bot.triggers.senders import AgentSender, ChannelSender, Outgoing
from connectors.wechat.channel import WECHAT_CAPABILITIES
from connectors.wechat.policy import SendPath

pytestmark = pytest.mark.asyncio


class FakeAgent:
    def __init__(self):
        self.calls = []

    def is_ready(self):
        return True

    async def append_events(self, sender_id, events):
        self.calls.append(("slots", sender_id, {e.key: e.value for e in events}))

    async def execute_action(self, sender_id, name, output_channel):
        self.calls.append(("action", sender_id, name))
        await output_channel.send_text_message(sender_id, f"text of {name}")


def outgoing(**kw):
    base = dict(send_id="j:c:e:0", customer_id="c", sender_id="conv-c", journey="j", step="s", variant="A",
                message=Message(response="utter_cart_reminder"), slots={"product": "跑鞋"})
    base.update(kw)
    return Outgoing(**base)


async def test_agent_sender_sets_slots_then_runs_response():
    agent = FakeAgent()
    assert await AgentSender(agent).send(outgoing()) == "agent"
    assert agent.calls == [("slots", "conv-c", {"product": "跑鞋"}), ("action", "conv-c", "utter_cart_reminder")]


@dataclass
class Provider:
    """An OutputProvider with a fixed output (``None``: nobody reachable)."""

    channel: str
    caps: ChannelCapabilities
    output: Any

    def name(self) -> str:
        return self.channel

    def capabilities(self) -> ChannelCapabilities:
        return self.caps

    def output_for(self, recipient_id: str) -> Any:
        return self.output


def wechat_sender(agent: Any, wechat: Any) -> ChannelSender:
    return ChannelSender(agent, OutputRegistry([Provider("wechat", WECHAT_CAPABILITIES, wechat)]))


def widget_sender(agent: Any, output: Any) -> ChannelSender:
    return ChannelSender(agent, OutputRegistry([Provider("socketio", ChannelCapabilities("widget"), output)]))


class FakeWeChat:
    def __init__(self, path):
        self.path = path
        self.sent = []

    async def allowed_send_path(self, openid):
        return self.path

    async def send_proactive(self, openid, messages, template_id=None, template_data=None, url=None):
        self.sent.append((openid, messages, template_id, template_data))
        return self.path


async def test_wechat_sender_follows_the_48h_rule():
    agent = FakeAgent()
    inside = FakeWeChat(SendPath.CUSTOMER_SERVICE)
    sender = wechat_sender(agent, inside)
    assert await sender.check(outgoing()) is None
    assert await sender.send(outgoing()) == "wechat_customer_service"
    assert inside.sent[0][1][0]["text"] == "text of utter_cart_reminder"
    outside = wechat_sender(agent, FakeWeChat(SendPath.TEMPLATE))
    assert (await outside.check(outgoing())).reason == "wechat_window_closed"
    assert await outside.check(outgoing(message=Message(response="utter_x", template="tpl1"))) is None
    gone = wechat_sender(agent, FakeWeChat(SendPath.NONE))
    assert (await gone.check(outgoing())).reason == "wechat_unsubscribed"


async def test_widget_sender_and_routing():
    from bot.shared.message import CollectingOutputChannel

    agent = FakeAgent()
    channel = CollectingOutputChannel()
    router = widget_sender(agent, channel)
    assert router.default == "socketio"
    assert await router.check(outgoing()) is None
    assert await router.send(outgoing()) == "widget"
    assert channel.messages[0]["text"] == "text of utter_cart_reminder"
    assert (await router.check(outgoing(profile={"channel": "sms"}))).reason == "no_channel"
    assert (await widget_sender(agent, None).check(outgoing())).reason == "widget_not_mounted"
