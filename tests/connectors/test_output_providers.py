"""Channels as output providers: which real channels the server's registry takes, and what they declare."""
from __future__ import annotations

from typing import Any

import pytest
from sanic import Blueprint

from bot.shared.message import CollectingOutputChannel
from bot.shared.outputs import ChannelCapabilities, OutputProvider, OutputRegistry
from connectors.base import InputChannel, OnNewMessage, create_input_channels
from connectors.rest import CallbackInput, RestInput
from connectors.socketio import SocketIOInput, SocketIOOutput
from connectors.wechat.channel import WeChatInput, WeChatOutput

WECHAT = {"app_id": "wx1234567890abcdef", "app_secret": "s3cret", "token": "kefutoken"}


class PushingChannel(InputChannel):
    """A custom (Rasa-style) channel with its own output: it keeps reaching its shoppers."""

    @classmethod
    def name(cls) -> str:
        return "custom_push"

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        return Blueprint(self.blueprint_name())

    def get_output_channel(self) -> CollectingOutputChannel:
        return CollectingOutputChannel()


class SilentChannel(PushingChannel):
    """A custom channel without an output of its own."""

    @classmethod
    def name(cls) -> str:
        return "custom_silent"

    get_output_channel = InputChannel.get_output_channel  # type: ignore[assignment]


def all_channels() -> list[Any]:
    built = create_input_channels({"rest": None, "callback": {"url": "http://127.0.0.1:9/bot"},
                                   "socketio": {"session_persistence": True}, "wechat": WECHAT})
    return [*built, PushingChannel(), SilentChannel()]


def test_output_registry_from_channels_takes_only_channels_that_push() -> None:
    registry = OutputRegistry.from_channels(all_channels())
    assert registry.names() == ["socketio", "wechat", "custom_push"]
    assert "rest" not in registry and "callback" not in registry and "custom_silent" not in registry
    assert registry.output_for("rest", "u1") is None


def test_output_registry_channels_declare_their_capabilities() -> None:
    registry = OutputRegistry.from_channels(all_channels())
    assert registry.capabilities("socketio") == ChannelCapabilities(label="widget")
    assert registry.capabilities("wechat") == ChannelCapabilities(
        label="wechat", send_window=True, templates=True, renders_then_sends=True, recipient_key="wechat_openid")
    assert registry.capabilities("custom_push") == ChannelCapabilities(label="custom_push")
    assert RestInput().capabilities().push is False
    assert CallbackInput("http://127.0.0.1:9/bot").capabilities().push is False
    assert SilentChannel().capabilities().push is False and SilentChannel().output_for("u1") is None


def test_output_registry_outputs_reach_the_recipient() -> None:
    channels = all_channels()
    registry = OutputRegistry.from_channels(channels)
    widget = registry.output_for("socketio", "sess-1")
    assert isinstance(widget, SocketIOOutput) and widget.session_id == "sess-1"
    socketio = next(c for c in channels if isinstance(c, SocketIOInput))
    assert widget.channel is socketio
    wechat = registry.output_for("wechat", "oUser")
    assert isinstance(wechat, WeChatOutput)
    for method in ("deliver_response", "allowed_send_path", "send_template", "send_proactive"):
        assert callable(getattr(wechat, method))
    assert isinstance(registry.output_for("custom_push", "u1"), CollectingOutputChannel)
    assert registry.output_for("nope", "u1") is None


@pytest.mark.parametrize("channel", all_channels(), ids=lambda c: c.name())
def test_every_input_channel_is_an_output_provider(channel: InputChannel) -> None:
    assert isinstance(channel, OutputProvider)
    assert channel.capabilities().label in (channel.name(), "widget")


def test_wechat_input_output_for_any_openid() -> None:
    channel = WeChatInput.from_credentials(WECHAT)
    assert channel.output_for("oA").channel is channel
