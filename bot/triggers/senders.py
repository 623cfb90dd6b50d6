"""Senders: how a due message reaches the customer, behind one small interface.

``check(outgoing)`` applies the channel's own rules (returns a skip/hold verdict or None);
``send(outgoing)`` delivers and returns the path used. ``outgoing.send_id`` is the
idempotency key: a retry after a crash carries the same id, and a sender that can
deduplicate (the widget outbox, a merchant API) must.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

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
        from bot.shared.message import CollectingOutputChannel

        channel = self.output_channel_for(outgoing) if self.output_channel_for else None
        await render_through_agent(self.agent, outgoing, channel or CollectingOutputChannel())
        return "agent"


class WidgetSender:
    """The web widget (connectors/socketio.py): pushed into the session's outbox, so a
    shopper who is not online gets it when the widget next opens."""

    def __init__(self, agent: Any, channel_for: Callable[[str], Any] | None = None) -> None:
        self.agent = agent
        if channel_for is None:
            from connectors.socketio import get_output_channel_for

            channel_for = get_output_channel_for
        self.channel_for = channel_for

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        if self.channel_for(outgoing.sender_id) is None:
            return Verdict.skip("widget_not_mounted")
        return None

    async def send(self, outgoing: Outgoing) -> str:
        await render_through_agent(self.agent, outgoing, self.channel_for(outgoing.sender_id))
        return "widget"


class WeChatSender:
    """WeChat: 客服 messages inside the 48 h window, the step's template outside it,
    nothing after the shopper unsubscribed (connectors/wechat/policy.py)."""

    def __init__(self, agent: Any, channel: Any, openid_of: Callable[[Outgoing], str] | None = None) -> None:
        self.agent = agent
        self.channel = channel
        self.openid_of = openid_of or (lambda o: str(o.profile.get("wechat_openid") or o.sender_id))

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        path = await self.channel.allowed_send_path(self.openid_of(outgoing))
        value = getattr(path, "value", str(path))
        if value == "none":
            return Verdict.skip("wechat_unsubscribed")
        if value == "template" and not outgoing.message.template:
            return Verdict.skip("wechat_window_closed")
        return None

    async def send(self, outgoing: Outgoing) -> str:
        from bot.shared.message import CollectingOutputChannel

        collector = CollectingOutputChannel()
        await render_through_agent(self.agent, outgoing, collector, idempotent=False)
        path = await self.channel.send_proactive(
            self.openid_of(outgoing), collector.messages, template_id=outgoing.message.template,
            template_data={k: {"value": str(v)} for k, v in outgoing.slots.items()})
        return f"wechat_{getattr(path, 'value', path)}"


class RoutingSender:
    """Picks a sender by the customer's ``channel`` profile field (default otherwise)."""

    def __init__(self, senders: dict[str, Sender], default: str) -> None:
        self.senders = senders
        self.default = default

    def _pick(self, outgoing: Outgoing) -> Sender | None:
        return self.senders.get(str(outgoing.profile.get("channel") or self.default))

    async def check(self, outgoing: Outgoing) -> Verdict | None:
        sender = self._pick(outgoing)
        if sender is None:
            return Verdict.skip("no_channel")
        return await sender.check(outgoing)

    async def send(self, outgoing: Outgoing) -> str:
        sender = self._pick(outgoing)
        assert sender is not None
        return await sender.send(outgoing)
