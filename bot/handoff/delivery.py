"""How a message reaches the shopper outside their own turn: agent replies, notices, the CSAT prompt.

The output comes from the server's :class:`~bot.shared.outputs.OutputRegistry`
(channel + recipient → output); what the channel allows is read from its
declared :class:`~bot.shared.outputs.ChannelCapabilities`, never from its name:
a channel with ``send_window`` says per recipient which path is open now
(``allowed_send_path``), one with ``templates`` carries a reply as a template
message when only that path is open (WeChat's 48-hour rule).
"""
from __future__ import annotations

import logging
from typing import Any

from bot.handoff import messages as msg
from bot.handoff.config import HandoffConfig
from bot.handoff.errors import HandoffError
from bot.handoff.handoffs import Handoff
from bot.shared.message import OutputChannel
from bot.shared.outputs import SEND_DIRECT, SEND_TEMPLATE, OutputRegistry

logger = logging.getLogger(__name__)

# What ``say`` reports as the message's delivery.
DELIVERED, FAILED, RECORDED, TEMPLATE = "delivered", "failed", "recorded", "template"


async def send_in_turn(output: OutputChannel | None, recipient: str, message: dict[str, Any]) -> None:
    """Push on the output channel of the turn in hand (hook context); a failure is logged, not raised."""
    if output is None:
        return
    try:
        await output.send_response(recipient, message)
    except Exception:  # the tracker/SQL already hold it; the widget replays from its outbox
        logger.exception("Could not push a handoff message to %s", recipient)


class Delivery:
    """Records bot-side messages in the conversation and pushes them through the output registry."""

    def __init__(self, config: HandoffConfig, outputs: OutputRegistry, agent: Any = None) -> None:
        self.config = config
        self.outputs = outputs
        self.agent = agent  # appends to trackers (under their lock); None: push only

    def output_for(self, h: Handoff) -> OutputChannel | None:
        return self.outputs.output_for(h.channel, h.conversation_id)

    async def send_path(self, h: Handoff, output: OutputChannel | None) -> str | None:
        """What the channel allows now (customer_service / template / none); None: it has no such rule."""
        capabilities = self.outputs.capabilities(h.channel)
        if output is None or capabilities is None or not capabilities.send_window:
            return None
        try:
            path = await output.allowed_send_path(h.conversation_id)  # type: ignore[attr-defined]
        except Exception:
            logger.exception("Could not check the send window for %s; trying a normal send.", h.conversation_id)
            return None
        return str(getattr(path, "value", path))

    async def reply_path(self, h: Handoff) -> tuple[OutputChannel | None, str | None]:
        """The output and path an agent reply takes; 409 when the channel allows no way to send it now."""
        output = self.output_for(h)
        path = await self.send_path(h, output)
        if path in (None, SEND_DIRECT):
            return output, path
        capabilities = self.outputs.capabilities(h.channel)
        if path != SEND_TEMPLATE or not self.config.wechat_template or not (capabilities and capabilities.templates):
            raise HandoffError(409, msg.text("undeliverable", "en", self.config.messages, path=path))
        return output, path

    async def reply(self, h: Handoff, output: OutputChannel | None, path: str | None, message: dict[str, Any],
                    agent_name: str, metadata: dict[str, Any]) -> str:
        """An agent reply along the path :meth:`reply_path` chose; returns its delivery."""
        if path == SEND_TEMPLATE:
            return await self.say_by_template(h, output, message, agent_name, metadata)
        return await self.say(h, message, metadata)

    async def say_by_template(self, h: Handoff, output: Any, message: dict[str, Any], agent_name: str,
                              metadata: dict[str, Any]) -> str:
        """Outside the channel's send window: the configured template message carries the reply."""
        from bot.shared.events import BotUttered

        template = dict(self.config.wechat_template or {})
        values = {"text": message.get("text") or "", "agent": agent_name}
        data = {}
        for key, value in (template.get("data") or {"first": "{agent}", "keyword1": "{text}"}).items():
            try:
                data[key] = str(value).format(**values)
            except (KeyError, IndexError, ValueError):
                data[key] = str(value)
        if self.agent is not None:
            await self.agent.append_events(h.conversation_id, [BotUttered(
                message.get("text"), {k: v for k, v in message.items() if k != "text"},
                {**metadata, "delivery": TEMPLATE})])
        try:
            await output.send_template(h.conversation_id, template["template_id"], data, template.get("url"))
        except Exception:
            logger.exception("Template message to %s failed.", h.conversation_id)
            return FAILED
        return TEMPLATE

    async def say(self, h: Handoff, message: dict[str, Any], metadata: dict[str, Any]) -> str:
        """Record a bot-side message in the tracker (under its lock) and push it to the shopper.

        Returns ``delivered``, ``failed`` (the channel refused it) or ``recorded`` (no push channel).
        """
        from bot.shared.events import BotUttered

        text = message.get("text")
        data = {k: v for k, v in message.items() if k != "text"}
        if self.agent is not None:
            await self.agent.append_events(h.conversation_id, [BotUttered(text, data, dict(metadata))])
        output = self.output_for(h)
        if output is None:
            logger.debug("No push channel for %s (%s): recorded only.", h.conversation_id, h.channel)
            return RECORDED
        deliver = getattr(output, "deliver_response", None)
        if deliver is None:
            await send_in_turn(output, h.conversation_id, message)
            return DELIVERED
        try:
            return DELIVERED if await deliver(h.conversation_id, message) else FAILED
        except Exception:
            logger.exception("Could not push a handoff message to %s", h.conversation_id)
            return FAILED
