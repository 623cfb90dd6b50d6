"""UserMessage defaults and output channels behave like Rasa's."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.shared.message import (
    CollectingOutputChannel,
    OutputChannel,
    UserMessage,
    button_to_string,
)


class TextOnlyChannel(OutputChannel):
    """A channel that only knows text, to exercise the base-class fallbacks."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: object) -> None:
        self.sent.append((recipient_id, text))


def test_user_message_defaults() -> None:
    message = UserMessage("  hello  ")
    assert message.text == "hello"
    assert message.sender_id == "default"
    assert len(message.message_id) == 32 and int(message.message_id, 16) >= 0
    assert isinstance(message.output_channel, CollectingOutputChannel)
    assert message.parse_data is None and message.metadata is None and message.input_channel is None
    assert UserMessage("x").message_id != message.message_id


def test_user_message_keeps_given_values_as_strings() -> None:
    channel = CollectingOutputChannel()
    message = UserMessage(
        "hi", channel, sender_id=42, input_channel="rest", message_id=7, metadata={"a": 1},
        headers={"X": "y"},
    )
    assert message.sender_id == "42"
    assert message.message_id == "7"
    assert message.output_channel is channel
    assert message.metadata == {"a": 1}
    assert message.headers == {"X": "y"}
    assert UserMessage(None).text is None


def test_collecting_channel_collects_rest_shaped_messages() -> None:
    channel = CollectingOutputChannel()
    buttons = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]

    async def run() -> None:
        await channel.send_response("u1", {"text": "Pick one", "buttons": buttons, "image": None})
        await channel.send_response("u1", {"text": "Look", "image": "https://x/img.png"})
        await channel.send_response("u1", {"custom": {"type": "card", "id": 3}})
        await channel.send_response("u1", {"attachment": {"type": "file", "url": "u"}})
        await channel.send_response("u1", {"text": "a\n\nb"})

    asyncio.run(run())
    assert channel.messages == [
        {"recipient_id": "u1", "text": "Pick one", "buttons": buttons},
        {"recipient_id": "u1", "text": "Look"},
        {"recipient_id": "u1", "image": "https://x/img.png"},
        {"recipient_id": "u1", "custom": {"type": "card", "id": 3}},
        {"recipient_id": "u1", "attachment": {"type": "file", "url": "u"}},
        {"recipient_id": "u1", "text": "a"},
        {"recipient_id": "u1", "text": "b"},
    ]
    assert channel.latest_output() == {"recipient_id": "u1", "text": "b"}
    assert CollectingOutputChannel.name() == "collector"
    assert CollectingOutputChannel().latest_output() is None


def test_collecting_channel_sends_quick_replies_as_buttons_like_rasa() -> None:
    channel = CollectingOutputChannel()
    replies = [{"title": "S", "payload": "/size{\"size\": \"S\"}"}]
    asyncio.run(channel.send_response("u", {"text": "Size?", "quick_replies": replies}))
    assert channel.messages == [{"recipient_id": "u", "text": "Size?", "buttons": replies}]


def test_send_response_does_not_mutate_message() -> None:
    message = {"text": "hi", "buttons": [{"title": "a", "payload": "/a"}], "image": "i"}
    snapshot = dict(message)
    asyncio.run(CollectingOutputChannel().send_response("u", message))
    assert message == snapshot


def test_output_channel_falls_back_to_text() -> None:
    channel = TextOnlyChannel()

    async def run() -> None:
        await channel.send_response(
            "u",
            {"text": "Choose", "buttons": [{"title": "A", "payload": "/a"}, {"title": "B"}]},
        )
        await channel.send_response("u", {"image": "http://img"})
        await channel.send_response("u", {"attachment": "file.pdf"})
        await channel.send_response("u", {"custom": {"k": "v"}})
        await channel.send_response(
            "u", {"elements": [{"title": "Shoe", "subtitle": "red", "buttons": [{"title": "Buy"}]}]}
        )

    asyncio.run(run())
    assert [text for _, text in channel.sent] == [
        "Choose",
        "1: A (/a)",
        "2: B",
        "Image: http://img",
        "Attachment: file.pdf",
        '{"k": "v"}',
        "Shoe : red",
        "1: Buy",
    ]
    assert TextOnlyChannel.name() == "TextOnlyChannel"


def test_output_channel_without_text_method_says_what_to_implement() -> None:
    with pytest.raises(NotImplementedError, match="send_text_message"):
        asyncio.run(OutputChannel().send_response("u", {"text": "x"}))


def test_button_to_string_appends_extra_keys() -> None:
    button = {"title": "T", "payload": "/p", "type": "postback"}
    assert button_to_string(button, 1) == '2: T (/p) - {"type": "postback"}'
    assert button == {"title": "T", "payload": "/p", "type": "postback"}


def test_shared_value_modules_import_no_heavy_dependencies() -> None:
    code = (
        "import sys, bot.shared.message, bot.shared.events, bot.shared.tracker, "
        "bot.shared.constants; "
        "print(sorted(m for m in ('sanic', 'torch', 'redis', 'sqlalchemy') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.stdout.strip() == "[]"
