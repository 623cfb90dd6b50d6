"""A trigger send through the output registry built from real channels: the widget's outbox, and
WeChat's 客服/template paths against the fake WeChat API server on 127.0.0.1."""
from __future__ import annotations

import time
from typing import Any

import pytest

from bot.shared.outputs import OutputRegistry
from bot.triggers import default_sender
from bot.triggers.journeys import Message
from bot.triggers.senders import Outgoing
from connectors.rest import RestInput
from connectors.socketio import SocketIOInput
from connectors.wechat.channel import WeChatInput
from tests.connectors.wechat.conftest import APP_ID, APP_SECRET, TOKEN, fake_api  # noqa: F401

pytestmark = pytest.mark.asyncio

OPENID = "oShopper7"


class ScriptAgent:
    """Runs a step by saying its response name (the real agent is covered by test_send_proactive)."""

    def __init__(self) -> None:
        self.slots: list[tuple[str, dict[str, Any]]] = []

    def is_ready(self) -> bool:
        return True

    async def append_events(self, sender_id: str, events: list[Any]) -> None:
        self.slots.append((sender_id, {e.key: e.value for e in events}))

    async def execute_action(self, sender_id: str, name: str, output_channel: Any) -> None:
        await output_channel.send_text_message(sender_id, f"text of {name}")


def outgoing(channel: str, sender_id: str = "conv-1", template: str | None = None, **profile: Any) -> Outgoing:
    return Outgoing(send_id=f"j:c:{channel}:0", customer_id="c1", sender_id=sender_id, journey="j", step="s",
                    variant="A", message=Message(response="utter_cart_reminder", template=template),
                    slots={"product": "跑鞋"}, profile={"channel": channel, **profile})


def wechat_channel(api: Any) -> WeChatInput:
    channel = WeChatInput.from_credentials({"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN,
                                            "api_base": api.base_url, "retry_backoff": 0.01})
    return channel


async def test_channel_sender_pushes_to_the_widget_outbox() -> None:
    widget = SocketIOInput(session_persistence=True)
    sender = default_sender(ScriptAgent(), OutputRegistry.from_channels([RestInput(), widget]))
    assert sender.default == "socketio"
    due = outgoing("socketio", sender_id="sess-9")
    assert await sender.check(due) is None
    assert await sender.send(due) == "widget"
    history = await widget.history("sess-9")  # kept for the widget's next open
    assert [(m["sender"], m["text"]) for m in history] == [("bot", "text of utter_cart_reminder")]
    assert (await sender.check(outgoing("rest"))).reason == "no_channel"


async def test_channel_sender_wechat_inside_window_sends_customer_service(fake_api: Any) -> None:  # noqa: F811
    wechat = wechat_channel(fake_api)
    try:
        await wechat.policy.record_inbound(OPENID, time.time())
        sender = default_sender(ScriptAgent(), OutputRegistry.from_channels([wechat]))
        due = outgoing("wechat", wechat_openid=OPENID)
        assert await sender.check(due) is None
        assert await sender.send(due) == "wechat_customer_service"
        assert [(m["touser"], m["text"]["content"]) for m in fake_api.custom_sent] == [
            (OPENID, "text of utter_cart_reminder")]
    finally:
        await wechat.close()


async def test_channel_sender_wechat_outside_window_sends_the_template_or_skips(fake_api: Any) -> None:  # noqa: F811
    wechat = wechat_channel(fake_api)
    try:
        sender = default_sender(ScriptAgent(), OutputRegistry.from_channels([wechat]))
        assert (await sender.check(outgoing("wechat", sender_id=OPENID))).reason == "wechat_window_closed"
        due = outgoing("wechat", sender_id=OPENID, template="TPL_CART")
        assert await sender.check(due) is None
        assert await sender.send(due) == "wechat_template"
        assert fake_api.custom_sent == []
        (sent,) = fake_api.template_sent
        assert (sent["touser"], sent["template_id"], sent["data"]) == (OPENID, "TPL_CART", {"product": {"value": "跑鞋"}})
        await wechat.policy.set_opted_out(OPENID, True)
        assert (await sender.check(due)).reason == "wechat_unsubscribed"
    finally:
        await wechat.close()
