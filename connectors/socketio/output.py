"""The widget's output channel: bot messages in Rasa's socket.io shapes, recorded before emitted."""
from __future__ import annotations

from typing import Any, Iterable, Protocol

from bot.shared.message import OutputChannel

__all__ = ["SessionEmitter", "SocketIOOutput"]


class SessionEmitter(Protocol):
    """What the output needs from the channel (:class:`~connectors.socketio.channel.SocketIOInput`)."""

    async def record_and_emit(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Record ``message`` in the session's outbox, then emit it to the session's room."""
        ...


class SocketIOOutput(OutputChannel):
    """Sends bot messages to a session's room, recording each in the outbox first.

    ``session_id`` fixes the room; without it the ``recipient_id`` passed to
    each send is the room, so one instance serves the HTTP API's
    ``?output_channel=socketio`` for any conversation. ``reply_to`` (the ``message_id`` of
    the shopper message being answered) is put in every message sent, so a client pairs
    each reply with its question even when replies arrive late, twice or out of order.
    """

    @classmethod
    def name(cls) -> str:
        return "socketio"

    def __init__(self, channel: SessionEmitter, session_id: str | None = None,
                 reply_to: str | None = None) -> None:
        self.channel = channel
        self.session_id = session_id
        self.reply_to = reply_to
        self.sent: list[dict[str, Any]] = []

    async def _send_message(self, recipient_id: str, message: dict[str, Any]) -> None:
        room = self.session_id or recipient_id
        record = {"sender": "bot", **message}
        if self.reply_to:
            record["reply_to"] = self.reply_to
        entry = await self.channel.record_and_emit(room, record)
        self.sent.append(entry)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        for message_part in text.strip().split("\n\n"):
            await self._send_message(recipient_id, {"text": message_part})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self._send_message(
            recipient_id, {"attachment": {"type": "image", "payload": {"src": image}}}
        )

    async def send_text_with_buttons(
        self,
        recipient_id: str,
        text: str | None,
        buttons: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        quick_replies = []
        for button in buttons:
            reply = {"content_type": "text", "title": button.get("title", "")}
            for key in ("payload", "url", "type"):
                if key in button:
                    reply[key] = button[key]
            quick_replies.append(reply)
        await self._send_message(recipient_id, {"text": text, "quick_replies": quick_replies})

    async def send_elements(
        self, recipient_id: str, elements: Iterable[dict[str, Any]], **kwargs: Any
    ) -> None:
        for element in elements:
            await self._send_message(
                recipient_id,
                {
                    "attachment": {
                        "type": "template",
                        "payload": {"template_type": "generic", "elements": element},
                    }
                },
            )

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        # Rasa emits custom payloads as emit(**json_message), i.e. its `data` value.
        data = json_message.get("data") if isinstance(json_message, dict) else None
        if isinstance(data, dict):
            await self._send_message(recipient_id, dict(data))
        else:
            await self._send_message(recipient_id, {"custom": json_message})

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"attachment": attachment})
