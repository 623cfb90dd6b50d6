"""Senders: how a due message reaches the customer, behind one small interface.

``check(outgoing)`` applies the channel's own rules (returns a skip/hold verdict or None);
``send(outgoing)`` delivers and returns the path used. ``outgoing.send_id`` is the
idempotency key: a retry after a crash carries the same id, and a sender that can
deduplicate (the widget outbox, a merchant API) must.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, cast

from bot.shared.message import CollectingOutputChannel
from bot.shared.outputs import (
    SEND_NONE,
    SEND_TEMPLATE,
    ChannelCapabilities,
    OutputProvider,
    OutputRegistry,
    ProactiveOutput,
    WindowedOutput,
)
from bot.triggers.guards import Verdict
from bot.triggers.journeys import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    send_id: str
    customer_id: str
    sender_id: str
    journey: str
    step: str
    variant: str
    message: Message
    slots: dict[str, Any] = field(default_factory=dict)
    transactional: bool = False
    profile: dict[str, Any] = field(default_factory=dict)


class Sender(Protocol):
    async def check(self, outgoing: Outgoing) -> Verdict | None: ...

    async def send(self, outgoing: Outgoing) -> str: ...


class DryRunSender:
    """Sends nothing; remembers what would have gone out (``triggers simulate``, tests)."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.deliveries: dict[str, int] = {}

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        return None

    async def send(self, outgoing: Outgoing) -> str:
        if outgoing.send_id not in self.deliveries:  # idempotent by send id
            self.sent.append(outgoing)
        self.deliveries[outgoing.send_id] = self.deliveries.get(outgoing.send_id, 0) + 1
        return "dry_run"


async def _set_slots(agent: Any, outgoing: Outgoing) -> None:
    if not outgoing.slots:
        return
    from bot.shared.events import SlotSet

    await agent.append_events(outgoing.sender_id, [SlotSet(k, v) for k, v in outgoing.slots.items()])


async def render_through_agent(agent: Any, outgoing: Outgoing, output_channel: Any, idempotent: bool = True) -> None:
    """Run the step's response or custom action in the customer's conversation, then listen.

    ``Agent.send_proactive`` does it under the conversation lock: the event's slots set
    first, exactly this action (no prediction after it), the turn closed with
    ``action_listen``; the send id is its idempotency key, so a retry after a crash does
    not repeat the message in the conversation (``idempotent=False`` where rendering is
    not the delivery, e.g. WeChat's API call follows it). Agents without it (fakes, older ones)
    get the slots appended and ``execute_action``.
    """
    send_proactive = getattr(agent, "send_proactive", None)
    if send_proactive is not None:
        await send_proactive(outgoing.sender_id, outgoing.message.name, output_channel, slots=dict(outgoing.slots),
                             metadata={"trigger": {"journey": outgoing.journey, "step": outgoing.step,
                                                   "variant": outgoing.variant, "send_id": outgoing.send_id}},
                             idempotency_key=outgoing.send_id if idempotent else None, policy="TriggerScheduler")
        return
    await _set_slots(agent, outgoing)
    await agent.execute_action(outgoing.sender_id, outgoing.message.name, output_channel)


def template_data(outgoing: Outgoing, messages: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """A template message's fields: the event's slots, plus what the step's action decided while rendering.

    Rendering runs before the channel picks its path, so a step's action (e.g. one issuing a
    coupon) can name fields for the template in its message's ``custom.template_data``
    (``{"coupon_code": ..., "coupon_terms": ...}``): the template then carries what the
    in-window message says. Those fields win over slots of the same name.
    """
    data = {k: {"value": str(v)} for k, v in outgoing.slots.items()}
    for message in messages:
        extra = (message.get("custom") or {}).get("template_data") if isinstance(message.get("custom"), dict) else None
        if isinstance(extra, dict):
            data.update({str(k): {"value": str(v)} for k, v in extra.items() if v is not None})
    return data


class AgentSender:
    """Delivers through the agent: the response/action runs in the conversation, so the
    tracker shows what was sent; the output channel comes from ``output_channel_for``."""

    def __init__(self, agent: Any, output_channel_for: Callable[[Outgoing], Any] | None = None) -> None:
        self.agent = agent
        self.output_channel_for = output_channel_for

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        if self.agent is None or not self.agent.is_ready():
            return Verdict.hold("agent_not_ready", 0.0)
        return None

    async def send(self, outgoing: Outgoing) -> str:
        channel = self.output_channel_for(outgoing) if self.output_channel_for else None
        await render_through_agent(self.agent, outgoing, channel or CollectingOutputChannel())
        return "agent"


AGENT = "agent"  # the pseudo-channel: the agent alone records the message in the conversation


class ChannelSender:
    """Routes by the customer's ``channel`` profile field to the output registry, by capabilities.

    ``agent`` (or a customer whose channel is the default ``agent``) goes through
    :class:`AgentSender`; a channel the registry lacks is skipped (``no_channel``). For a
    registered channel, its :class:`~bot.shared.outputs.ChannelCapabilities` decide, with
    reasons and paths named by its ``label``: no output for the recipient →
    ``<label>_not_mounted``; ``send_window`` → ``<label>_unsubscribed`` when nothing may be
    sent, ``<label>_window_closed`` when only a template may and the step has none;
    ``renders_then_sends`` → rendered into a collector, then ``send_proactive`` (path
    ``<label>_<send path>``, e.g. ``wechat_template``); otherwise pushed through the output
    while the step runs (path ``<label>``, e.g. ``widget``: the outbox keeps it for a
    closed widget).
    """

    def __init__(self, agent: Any, outputs: OutputRegistry | None = None, default_channel: str | None = None) -> None:
        self.agent = agent
        self.outputs = outputs if outputs is not None else OutputRegistry()
        self.fallback = AgentSender(agent)
        self.default = default_channel or next(iter(self.outputs.names()), AGENT)

    def contact_fields(self) -> tuple[str, ...]:
        """The profile fields naming a recipient on some channel (``wechat_openid``): only a
        trusted producer may set them (:mod:`bot.triggers.trust`)."""
        keys = {caps.recipient_key for caps in (self.outputs.capabilities(n) for n in self.outputs.names())
                if caps is not None and caps.recipient_key}
        return tuple(sorted(keys))

    def _route(self, outgoing: Outgoing) -> tuple[str, OutputProvider | None]:
        channel = str(outgoing.profile.get("channel") or self.default)
        return channel, self.outputs.provider(channel)

    @staticmethod
    def recipient(outgoing: Outgoing, capabilities: ChannelCapabilities) -> str:
        """The channel's recipient id: its profile field when it declares one, else the sender id."""
        key = capabilities.recipient_key
        return str((outgoing.profile.get(key) if key else None) or outgoing.sender_id)

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        channel, provider = self._route(outgoing)
        if provider is None:
            return await self.fallback.check(outgoing) if channel == AGENT else Verdict.skip("no_channel")
        caps = provider.capabilities()
        if not caps.push:
            return Verdict.skip("no_channel")
        recipient = self.recipient(outgoing, caps)
        output = provider.output_for(recipient)
        if output is None:
            return Verdict.skip(f"{caps.label}_not_mounted")
        if caps.send_window:
            path = await cast(WindowedOutput, output).allowed_send_path(recipient)
            if path == SEND_NONE:
                return Verdict.skip(f"{caps.label}_unsubscribed")
            if path == SEND_TEMPLATE and not (caps.templates and outgoing.message.template):
                return Verdict.skip(f"{caps.label}_window_closed")
        return None

    async def send(self, outgoing: Outgoing) -> str:
        channel, provider = self._route(outgoing)
        if provider is None:  # only the agent passes check() without a provider
            return await self.fallback.send(outgoing)
        caps = provider.capabilities()
        recipient = self.recipient(outgoing, caps)
        output = provider.output_for(recipient)
        if output is None:
            raise RuntimeError(f"Channel '{channel}' has no output for customer {outgoing.customer_id!r} "
                               "(send() without a passing check()).")
        if caps.renders_then_sends:
            collector = CollectingOutputChannel()
            await render_through_agent(self.agent, outgoing, collector, idempotent=False)
            path = await cast(ProactiveOutput, output).send_proactive(
                recipient, collector.messages, template_id=outgoing.message.template,
                template_data=template_data(outgoing, collector.messages))
            return f"{caps.label}_{getattr(path, 'value', path)}"
        await render_through_agent(self.agent, outgoing, output)
        return caps.label
