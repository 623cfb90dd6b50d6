"""Messages while a human owns the conversation: the shopper's to the agent, the agent's to the shopper.

Shopper messages arrive in the processor hook (conversation lock held: the tracker
in hand is updated); agent replies arrive over the API and go through
:class:`~bot.handoff.delivery.Delivery` (``agent.append_events`` + the output registry).
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from bot.handoff import messages as msg
from bot.handoff.config import AgentSpec, HandoffConfig
from bot.handoff.delivery import Delivery, send_in_turn
from bot.handoff.errors import HandoffError
from bot.handoff.handoffs import Handoff
from bot.handoff.notify import Notifier
from bot.handoff.queue import score
from bot.handoff.store import ASSIGNED, QUEUED, SQLHandoffStore, messages as messages_t
from bot.shared.message import OutputChannel

logger = logging.getLogger(__name__)
MESSAGE_ID_LIMIT = messages_t.c.message_id.type.length  # PostgreSQL enforces it

LEFT_MESSAGE_PRIORITY = 5  # a message left after hours is the first thing the next shift sees


class Relay:
    def __init__(self, config: HandoffConfig, store: SQLHandoffStore, queue: Any, notifier: Notifier,
                 delivery: Delivery) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.notifier = notifier
        self.delivery = delivery

    async def _notify_message(self, h: Handoff, kind: str, row: dict[str, Any]) -> None:
        await self.notifier.notify({"type": kind, "handoff_id": h.id, "queue": h.queue,
                                    "agent_id": h.agent_id, "message": row})

    async def user_message(self, h: Handoff, tracker: Any, output_channel: OutputChannel | None = None
                           ) -> dict[str, Any]:
        """A shopper message while a human owns (or is about to own) the conversation (hook context).

        After hours the message is also left on the handoff record for the next shift.
        """
        from bot.shared.events import ConversationPaused

        if not tracker.is_paused():  # repair: the SQL row survived a crash the tracker save did not
            tracker.update(ConversationPaused())
        latest = tracker.latest_message
        message_id = latest.message_id or uuid.uuid4().hex
        if len(message_id) > MESSAGE_ID_LIMIT:  # a channel's own id, longer than the column: a stable digest
            message_id = "sha1-" + hashlib.sha1(message_id.encode("utf-8")).hexdigest()
        parse = latest.parse_data or {}
        row, created = await self.store.add_message(
            h.id, message_id, "user", latest.text,
            {"intent": (latest.intent or {}).get("name"), "sentiment": parse.get("sentiment")},
            timestamp=latest.timestamp)
        if created and h.after_hours and h.status == QUEUED:
            h = await self._leave_message(h, row, tracker, output_channel)
        if created:
            await self._notify_message(h, "message", row)
        return row

    async def _leave_message(self, h: Handoff, row: dict[str, Any], tracker: Any,
                             output_channel: OutputChannel | None) -> Handoff:
        """Store the message on the record; the first one moves the handoff to the front and is acknowledged."""
        from bot.shared.events import BotUttered

        record = dict(h.record)
        left = h.left_messages
        first = not left
        left.append({"text": row["text"], "timestamp": row["timestamp"], "message_id": row["message_id"]})
        record["left_messages"] = left
        values: dict[str, Any] = {"record": record}
        if first:
            values["priority"] = h.priority + LEFT_MESSAGE_PRIORITY
        await self.store.update(h.id, **values)
        h = h.replace(**values)
        if first:
            await self.queue.add(h.id, h.queue, score(h.priority, h.created_at))
            hours = self.config.service_hours
            text = msg.text("message_left", h.language or "", self.config.messages,
                            hours=hours.label() if hours else "")
            tracker.update(BotUttered(text, {}, {"handoff_id": h.id, "handoff": "message_left"}))
            await send_in_turn(output_channel, tracker.sender_id, {"text": text})
        return h

    async def agent_reply(self, h: Handoff, actor: AgentSpec, text: str | None = None,
                          data: dict[str, Any] | None = None, client_id: str | None = None,
                          canned: str | None = None) -> dict[str, Any]:
        """Store, record in the tracker as BotUttered{agent_id}, push to the shopper; idempotent by client_id."""
        if h.status != ASSIGNED:
            raise HandoffError(409, "Claim the conversation before replying.")
        if canned:
            replies = self.config.canned_replies.get(canned)
            if not replies:
                raise HandoffError(404, f"No canned reply '{canned}'. Fix: add it under 'handoff.canned_replies'.")
            text = replies.get(h.language or "") or next(iter(replies.values()))
        if not text and not data:
            raise HandoffError(400, "Send 'text', 'product' or 'canned'.")
        message_id = client_id or uuid.uuid4().hex
        output, path = await self.delivery.reply_path(h)
        row, created = await self.store.add_message(h.id, message_id, "agent", text, data, agent_id=actor.id)
        if not created:
            return row  # a retried send: already delivered once
        message: dict[str, Any] = {}
        if text:
            message["text"] = text
        if data:
            message.update(data)
        metadata = {"agent_id": actor.id, "handoff_id": h.id}
        row["delivery"] = await self.delivery.reply(h, output, path, message, actor.name, metadata)
        await self._notify_message(h, "message", row)
        return row

    async def add_note(self, h: Handoff, actor: AgentSpec, text: str) -> dict[str, Any]:
        row, _ = await self.store.add_message(h.id, uuid.uuid4().hex, "note", text, agent_id=actor.id)
        await self._notify_message(h, "note", row)
        return row
