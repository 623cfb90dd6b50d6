"""The satisfaction rating after a handoff: the 1-5 prompt on resolve, and reading the answer.

The prompt goes out like any bot-side message (the output registry); the answer
arrives in the processor hook as the shopper's next message: a rating is
recorded and thanked, anything else ends the wait for one.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any

from bot.handoff import messages as msg
from bot.handoff.config import HandoffConfig
from bot.handoff.delivery import Delivery, send_in_turn
from bot.handoff.handoffs import Handoff
from bot.handoff.notify import Notifier
from bot.handoff.store import SQLHandoffStore
from bot.shared.message import OutputChannel

logger = logging.getLogger(__name__)

_CSAT_TEXT = re.compile(r"^/?\s*([1-5])\s*(?:星|stars?|★)?\s*$")
_CSAT_PAYLOAD = re.compile(r'^/(\w+)\s*(\{.*\})?\s*$')


def rating_from(message: Any, intent_name: str, entity_name: str) -> int | None:
    """1-5 from the rating intent's entity, a ``/intent{"entity": n}`` payload or plain "4" / "4 stars"."""
    if message is None:
        return None
    intent = (message.intent or {}).get("name")
    text = (message.text or "").strip()
    values: list[Any] = []
    if intent == intent_name:
        values += [e.get("value") for e in (message.entities or []) if e.get("entity") == entity_name]
    payload = _CSAT_PAYLOAD.match(text)
    if payload and payload.group(1) == intent_name and payload.group(2):
        try:
            values.append(json.loads(payload.group(2)).get(entity_name))
        except ValueError:
            pass
    plain = _CSAT_TEXT.match(text)
    if plain:
        values.append(plain.group(1))
    for value in values:
        try:
            rating = int(float(value))
        except (TypeError, ValueError):
            continue
        if 1 <= rating <= 5:
            return rating
    return None


class Csat:
    def __init__(self, config: HandoffConfig, store: SQLHandoffStore, notifier: Notifier, delivery: Delivery) -> None:
        self.config = config
        self.store = store
        self.notifier = notifier
        self.delivery = delivery

    def rating_from(self, message: Any) -> int | None:
        return rating_from(message, self.config.csat_intent, self.config.csat_entity)

    async def ask(self, h: Handoff) -> str:
        """The rating prompt after resolve, as a ``csat`` custom payload the widget renders; returns its delivery."""
        text = msg.text("resolved", h.language or "", self.config.messages)
        custom = {"type": "csat", "text": text, "scale": 5, "intent": self.config.csat_intent,
                  "entity": self.config.csat_entity, "handoff_id": h.id}
        return await self.delivery.say(h, {"custom": custom}, {"handoff_id": h.id, "handoff": "csat"})

    async def handle(self, h: Handoff, tracker: Any, output_channel: OutputChannel | None) -> bool:
        """Hook context: a rating after resolve is recorded; anything else ends the wait for one."""
        from bot.shared.events import BotUttered

        rating = self.rating_from(tracker.latest_message)
        if rating is None:
            await self.store.clear_csat(h.id)
            return False
        if not await self.store.set_csat(h.id, rating):
            return False
        await self.notifier.publish("csat_submitted", h, rating=rating, agent_id=h.agent_id)
        await self.notifier.notify({"type": "csat", "handoff_id": h.id, "queue": h.queue,
                                    "agent_id": h.agent_id, "rating": rating})
        text = msg.text("csat_thanks", h.language or "", self.config.messages)
        tracker.update(BotUttered(text, {}, {"handoff_id": h.id, "handoff": "csat_thanks"}))
        await send_in_turn(output_channel, tracker.sender_id, {"text": text})
        return True
