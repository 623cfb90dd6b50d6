"""Incoming user messages and the channels bot replies go out through.

Mirrors ``rasa/core/channels/channel.py`` (3.6) without Sanic: connectors
build a ``UserMessage`` and pass an ``OutputChannel``; the processor calls
``send_response`` with each bot message dict. The base class falls back to
plain text, so a text-only channel only implements ``send_text_message``.
``CollectingOutputChannel`` gathers replies in the shape Rasa's REST channel
returns (``[{"recipient_id": ..., "text": ..., "buttons": [...]}, ...]``).
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Iterable, Optional

from bot.shared.constants import DEFAULT_SENDER_ID

logger = logging.getLogger(__name__)


class UserMessage:
    """One message from a user, with where to send the replies."""

    DEFAULT_SENDER_ID = DEFAULT_SENDER_ID

    def __init__(
        self,
        text: Optional[str] = None,
        output_channel: Optional["OutputChannel"] = None,
        sender_id: Optional[str] = None,
        parse_data: Optional[dict[str, Any]] = None,
        input_channel: Optional[str] = None,
        message_id: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
        sender_verified: bool = True,
        **kwargs: Any,
    ) -> None:
        self.text = text.strip() if text else text
        self.message_id = str(message_id) if message_id is not None else uuid.uuid4().hex
        self.output_channel = output_channel if output_channel is not None else CollectingOutputChannel()
        self.sender_id = str(sender_id) if sender_id is not None else self.DEFAULT_SENDER_ID
        self.input_channel = input_channel
        self.parse_data = parse_data
        self.metadata = metadata
        # False when the caller chose the sender id and nothing proves it (Rasa's REST channel):
        # such a message may not write into a conversation another channel's shopper owns.
        self.sender_verified = sender_verified
        self.headers: Optional[dict[str, Any]] = kwargs.get("headers")

    def __repr__(self) -> str:
        return (
            f"UserMessage(sender_id={self.sender_id!r}, input_channel={self.input_channel!r}, "
            f"message_id={self.message_id!r})"
        )


def button_to_string(button: dict[str, Any], idx: int = 0) -> str:
    """``"1: Title (/payload)"`` plus any extra button keys, for text-only channels."""
    button = dict(button)
    title = button.pop("title", "")
    payload = f" ({button.pop('payload')})" if "payload" in button else ""
    details = f" - {json.dumps(button, sort_keys=True, ensure_ascii=False)}" if button else ""
    return f"{idx + 1}: {title}{payload}{details}"


def element_to_string(element: dict[str, Any], idx: int = 0) -> str:
    element = dict(element)
    title = element.pop("title", "")
    return f"{idx + 1}: {title} - {json.dumps(element, sort_keys=True, ensure_ascii=False)}"


class OutputChannel:
    """Where bot messages go. Defaults degrade rich content to text."""

    @classmethod
    def name(cls) -> str:
        """Channel name, used to pick channel-specific response variations."""
        return cls.__name__

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        """Send one bot message dict (text, buttons, quick_replies, image, custom, ...)."""
        message = dict(message)  # Rasa pops keys; never mutate the caller's dict
        if message.get("quick_replies"):
            await self.send_quick_replies(
                recipient_id, message.pop("text", None), message.pop("quick_replies"), **message
            )
        elif message.get("buttons"):
            await self.send_text_with_buttons(
                recipient_id, message.pop("text", None), message.pop("buttons"), **message
            )
        elif message.get("text"):
            await self.send_text_message(recipient_id, message.pop("text"), **message)

        if message.get("custom"):
            await self.send_custom_json(recipient_id, message.pop("custom"), **message)

        # images and attachments are sent separately, after the text
        if message.get("image"):
            await self.send_image_url(recipient_id, message.pop("image"), **message)

        if message.get("attachment"):
            await self.send_attachment(recipient_id, message.pop("attachment"), **message)

        if message.get("elements"):
            await self.send_elements(recipient_id, message.pop("elements"), **message)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Send plain text; every channel must implement this."""
        raise NotImplementedError(
            f"Output channel '{self.name()}' must implement send_text_message."
        )

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, f"Image: {image}")

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, f"Attachment: {attachment}")

    async def send_text_with_buttons(
        self,
        recipient_id: str,
        text: Optional[str],
        buttons: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        """Fallback: the text, then one numbered line per button."""
        if text:
            await self.send_text_message(recipient_id, text)
        for idx, button in enumerate(buttons):
            await self.send_text_message(recipient_id, button_to_string(button, idx))

    async def send_quick_replies(
        self,
        recipient_id: str,
        text: Optional[str],
        quick_replies: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        """Fallback: quick replies are sent as buttons."""
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_elements(
        self, recipient_id: str, elements: Iterable[dict[str, Any]], **kwargs: Any
    ) -> None:
        """Fallback: each element as ``"title : subtitle"`` with its buttons."""
        for element in elements:
            element_msg = f"{element.get('title', '')} : {element.get('subtitle', '')}"
            await self.send_text_with_buttons(recipient_id, element_msg, element.get("buttons", []))

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        """Fallback: the custom payload as JSON text."""
        await self.send_text_message(recipient_id, json.dumps(json_message, ensure_ascii=False))


class CollectingOutputChannel(OutputChannel):
    """Collects messages as Rasa REST dicts instead of sending them (REST, tests)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    @classmethod
    def name(cls) -> str:
        return "collector"

    @staticmethod
    def _message(
        recipient_id: str,
        text: Optional[str] = None,
        image: Optional[str] = None,
        buttons: Optional[list[dict[str, Any]]] = None,
        attachment: Optional[Any] = None,
        custom: Optional[dict[str, Any]] = None,
        elements: Optional[list[dict[str, Any]]] = None,
        quick_replies: Optional[list[dict[str, Any]]] = None,
    ) -> dict[str, Any]:
        """A REST message dict with only the keys that are set."""
        obj = {
            "recipient_id": recipient_id,
            "text": text,
            "image": image,
            "buttons": buttons,
            "attachment": attachment,
            "custom": custom,
            "elements": elements,
            "quick_replies": quick_replies,
        }
        return {k: v for k, v in obj.items() if v is not None}

    def latest_output(self) -> Optional[dict[str, Any]]:
        return self.messages[-1] if self.messages else None

    async def _persist_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        # like Rasa, blank-line separated paragraphs become separate messages
        for message_part in text.strip().split("\n\n"):
            await self._persist_message(self._message(recipient_id, text=message_part))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, image=image))

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, attachment=attachment))

    async def send_text_with_buttons(
        self,
        recipient_id: str,
        text: Optional[str],
        buttons: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        await self._persist_message(self._message(recipient_id, text=text, buttons=buttons))

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        await self._persist_message(self._message(recipient_id, custom=json_message))
