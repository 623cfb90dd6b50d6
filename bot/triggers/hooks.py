"""Processor hook: a shopper who writes “别再发了” (or “unsubscribe”) in chat is opted out.

Register with ``agent.add_hook(OptOutHook(engine))``. The hook answers the shopper itself
and tells the processor the message is handled, so no other reply follows. The opt-out is
sticky (reason ``chat``): no event reverses it, only the shopper, by replying “订阅” or
“subscribe” while opted out (otherwise those words go to the bot as usual).
"""
from __future__ import annotations

import logging
from typing import Any

from bot.triggers.guards import is_opt_in_text, is_opt_out_text
from bot.triggers.trust import CHAT

logger = logging.getLogger(__name__)

CONFIRMATION_ZH = "好的，之后不会再主动给您发送消息了。如需恢复，回复“订阅”即可。"
CONFIRMATION_EN = "OK, we won't send you proactive messages any more. Reply 'subscribe' to undo."
RESUMED_ZH = "好的，已为您恢复订阅消息。如需退订，回复“退订”即可。"
RESUMED_EN = "OK, you're subscribed to our messages again. Reply 'unsubscribe' to stop."


class OptOutHook:
    def __init__(self, engine: Any, customer_id_of: Any = None, response: str | None = None) -> None:
        self.engine = engine
        self.customer_id_of = customer_id_of or (lambda tracker: tracker.sender_id)
        self.response = response

    async def after_user_message(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        message = tracker.latest_message
        text = getattr(message, "text", None)
        if is_opt_in_text(text):
            return await self._opt_in(tracker, output_channel, text)
        if not is_opt_out_text(text):
            return False
        customer = self.customer_id_of(tracker)
        await self.engine.opt_out(str(customer), CHAT)
        logger.info("Conversation %s opted out of proactive messages in chat.", tracker.sender_id)
        domain = getattr(processor, "domain", None)
        responses = getattr(domain, "responses", {}) or {}
        if self.response and self.response in responses:
            from bot.shared.nlg import TemplatedNaturalLanguageGenerator

            generated = TemplatedNaturalLanguageGenerator(responses).generate(self.response, tracker, output_channel.name())
            if generated:
                await output_channel.send_response(tracker.sender_id, generated)
                return True
        chinese = any("\u4e00" <= ch <= "\u9fff" for ch in text or "")
        await output_channel.send_text_message(tracker.sender_id, CONFIRMATION_ZH if chinese else CONFIRMATION_EN)
        return True

    async def _opt_in(self, tracker: Any, output_channel: Any, text: str | None) -> bool:
        """Only the shopper undoes their opt-out; when not opted out, “订阅” is an ordinary message."""
        customer = str(self.customer_id_of(tracker))
        profile = await self.engine.store.get_profile(customer)
        if not profile.get("opted_out"):
            return False
        await self.engine.opt_in(customer, CHAT)
        logger.info("Conversation %s opted in to proactive messages again in chat.", tracker.sender_id)
        chinese = any("\u4e00" <= ch <= "\u9fff" for ch in text or "")
        await output_channel.send_text_message(tracker.sender_id, RESUMED_ZH if chinese else RESUMED_EN)
        return True

    async def after_turn(self, processor: Any, tracker: Any, output_channel: Any) -> None:
        return None
