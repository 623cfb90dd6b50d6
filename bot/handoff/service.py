"""The handoff service: the facade the agent API and the processor hook call.

One instance per worker process. SQL (``SQLHandoffStore``) holds every
handoff, relayed message and audit line; the live queue orders waiting
handoffs; agents' online/away status (heartbeat TTL) and loads live in a
``Presence`` and console notifications go through a ``NotificationBus`` --
both in memory by default, on Redis when ``handoff.queue`` names Redis, so
every worker routes with the same picture and every console hears every
change. Agent consoles subscribe with :meth:`HandoffService.subscribe` (the
websocket does) and get every change as a small dict.

The work is done by one part per concept: :mod:`~bot.handoff.escalation`
(opening a handoff), :mod:`~bot.handoff.routing` (who takes it),
:mod:`~bot.handoff.relay` (messages both ways), :mod:`~bot.handoff.csat`
(the rating), :mod:`~bot.handoff.delivery` (reaching the shopper through the
output registry), :mod:`~bot.handoff.notify` (consoles, broker, webhook). They
pass typed :class:`~bot.handoff.handoffs.Handoff` records; the public methods
here check who may do what and return the dicts the API sends as JSON.

Locking rule: code running inside the processor hook holds the shopper's
conversation lock, so it updates the tracker in hand and never calls
``agent.append_events`` for its own conversation; everything else (agent
replies, resolve, assignment after the fact) goes through ``append_events``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Mapping

from bot.handoff.agents import AgentRoster, AgentState
from bot.handoff.config import AgentSpec, HandoffConfig
from bot.handoff.csat import Csat
from bot.handoff.delivery import Delivery
from bot.handoff.errors import HandoffError
from bot.handoff.escalation import Escalator
from bot.handoff.handoffs import Handoff, HandoffRecords, summary_view
from bot.handoff.notify import Listener, Notifier
from bot.handoff.presence import InMemoryBus, InMemoryPresence, create_shared_state
from bot.handoff.queue import InMemoryLiveQueue, score
from bot.handoff.relay import Relay
from bot.handoff.routing import Router
from bot.handoff.rules import Escalation
from bot.handoff.store import ASSIGNED, QUEUED, SQLHandoffStore
from bot.shared.message import OutputChannel
from bot.shared.outputs import OutputRegistry
from bot.web.principals import Principal, Role

__all__ = ["HandoffError", "HandoffService", "ProfileProvider", "summary_view"]

logger = logging.getLogger(__name__)

ProfileProvider = Callable[[str | None, str], Awaitable[dict[str, Any] | None]]


def console_actor(agent: AgentSpec) -> Principal:
    """An agent logged into the console, as the server's audit log records principals."""
    role = Role(agent.role) if agent.role in {r.value for r in Role} else Role.AGENT
    return Principal(subject=agent.id, role=role, via="console")


class HandoffService:
    """Escalate, route, relay, resolve, rate: one facade over the handoff parts.

    ``outputs`` reaches shoppers outside their turn (agent replies, notices, the
    CSAT prompt); without it those messages are recorded in the conversation
    only. ``profile_provider(channel, sender_id)`` gives the shopper's profile
    (orders, VIP); None: handoffs carry no profile.
    """

    def __init__(self, config: HandoffConfig, store: SQLHandoffStore | None = None, queue: Any = None,
                 event_broker: Any = None, agent: Any = None, profile_provider: ProfileProvider | None = None,
                 clock: Callable[[], float] = time.time, presence: Any = None, bus: Any = None,
                 outputs: OutputRegistry | None = None) -> None:
        self.config = config
        self.store = store or SQLHandoffStore(config.store_url)
        if queue is None and presence is None and bus is None:
            queue, presence, bus = create_shared_state(config.queue, config.presence_ttl_s, clock)
        self.queue = queue if queue is not None else InMemoryLiveQueue()
        self.presence = presence if presence is not None else InMemoryPresence(config.presence_ttl_s, clock)
        self.bus = bus if bus is not None else InMemoryBus()
        self.profile_provider = profile_provider
        self.clock = clock
        self.records = HandoffRecords(self.store)
        self.roster = AgentRoster(config.agents, self.presence)
        self.notifier = Notifier(self.bus, self.roster, clock, event_broker)
        self.delivery = Delivery(config, outputs if outputs is not None else OutputRegistry(), agent)
        self.router = Router(config, self.records, self.queue, self.roster, self.notifier, self.delivery, clock)
        self.escalator = Escalator(config, self.records, self.queue, self.router, self.notifier, clock, self._spawn)
        self.relay = Relay(config, self.store, self.queue, self.notifier, self.delivery)
        self.csat = Csat(config, self.store, self.notifier, self.delivery)
        self.server_audit: Any = None  # bot.stores.audit.AuditLog, bound by the feature at start
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._started = False

    # ------------------------------------------------------------------ wiring
    @property
    def agent(self) -> Any:
        return self.delivery.agent

    @agent.setter
    def agent(self, agent: Any) -> None:
        self.delivery.agent = agent

    @property
    def outputs(self) -> OutputRegistry:
        """The server's output channels (the server binds them when the worker starts)."""
        return self.delivery.outputs

    @outputs.setter
    def outputs(self, outputs: OutputRegistry) -> None:
        self.delivery.outputs = outputs

    @property
    def event_broker(self) -> Any:
        return self.notifier.event_broker

    @event_broker.setter
    def event_broker(self, broker: Any) -> None:
        self.notifier.event_broker = broker

    @property
    def agents(self) -> dict[str, AgentState]:
        """This worker's cache of every agent's status and load (refreshed before each routing decision)."""
        return self.roster.agents

    def bind_agent(self, agent: Any) -> None:
        self.agent = agent
        if self.event_broker is None:
            self.event_broker = getattr(agent, "event_broker", None)

    async def profile_for(self, channel: str | None, sender_id: str) -> dict[str, Any] | None:
        """The shopper's profile from the provider; None without one, or when the lookup fails."""
        if self.profile_provider is None:
            return None
        try:
            return await self.profile_provider(channel, sender_id)
        except Exception:
            logger.exception("Profile lookup failed for %s", sender_id)
            return None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Rebuild the live queue and agent loads from SQL (server restart with handoffs open)."""
        if self._started:
            return
        self._started = True
        await self.store.init()
        await self.queue.clear() if isinstance(self.queue, InMemoryLiveQueue) else None
        for h in await self.records.list((QUEUED,), limit=1_000_000):
            await self.queue.add(h.id, h.queue, score(h.priority, h.created_at))
        loads: dict[str, set[str]] = {agent_id: set() for agent_id in self.agents}
        for h in await self.records.list((ASSIGNED,), limit=1_000_000):
            if h.agent_id in loads:
                loads[h.agent_id].add(h.id)
        await self.presence.replace_loads(loads)
        await self.roster.refresh()
        await self.bus.start(self.notifier.dispatch)
        if self.config.presence_ttl_s > 0:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except (asyncio.CancelledError, Exception):
                pass
            self._sweeper = None
        await self.drain()
        await self.bus.close()
        await self.presence.close()
        await self.store.close()
        closer = getattr(self.queue, "close", None)
        if closer is not None:
            await closer()
        self._started = False

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep_forever(self) -> None:
        interval = max(0.05, self.config.presence_ttl_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_agents()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Checking agent presence failed; trying again in %.0fs.", interval)

    # ------------------------------------------------------------------ notifications
    def subscribe(self, listener: Listener) -> None:
        self.notifier.subscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.notifier.unsubscribe(listener)

    # ------------------------------------------------------------------ visibility
    def can_see(self, spec: AgentSpec, h: Handoff | Mapping[str, Any]) -> bool:
        """Supervisors see everything, agents their own conversations and their queues (record or store row)."""
        if isinstance(h, Handoff):
            return self.roster.can_see(spec, h.queue, h.agent_id)
        return self.roster.can_see(spec, h.get("queue"), h.get("agent_id"))

    def wants(self, spec: AgentSpec, event: dict[str, Any]) -> bool:
        """Whether ``spec``'s console gets this notification.

        Lists (queued/assigned/resolved, agent status) go to everyone who can see the queue; the
        messages and notes of a conversation an agent owns go to that agent and supervisors only,
        not to every agent of the queue (with 20 agents that was 20 websocket sends per message).
        """
        kind = event.get("type")
        if kind == "agent_status":
            return True
        if kind == "alert":  # operational alerts (bot/alerts): supervisors only
            return spec.is_supervisor
        if kind in ("message", "note") and event.get("agent_id"):
            return spec.is_supervisor or event["agent_id"] == spec.id
        handoff = event.get("handoff") or {"queue": event.get("queue"), "agent_id": event.get("agent_id")}
        return self.can_see(spec, handoff)

    async def _get(self, handoff_id: str) -> Handoff:
        h = await self.records.get(handoff_id)
        if h is None:
            raise HandoffError(404, f"No handoff '{handoff_id}'.")
        return h

    async def _visible(self, handoff_id: str, actor: AgentSpec) -> Handoff:
        h = await self._get(handoff_id)
        if not self.can_see(actor, h):
            raise HandoffError(403, "This handoff is not in your queues.")
        return h

    async def _owned_or_supervised(self, handoff_id: str, actor: AgentSpec) -> Handoff:
        h = await self._get(handoff_id)
        if h.status not in (QUEUED, ASSIGNED):
            raise HandoffError(409, f"The handoff is {h.status}.")
        if not actor.is_supervisor and h.agent_id != actor.id:
            raise HandoffError(403, "Only the agent who owns this conversation or a supervisor may do that.")
        return h

    # ------------------------------------------------------------------ processor hook
    async def current_for(self, conversation_id: str) -> Handoff | None:
        """The open handoff of a conversation, else the one awaiting a rating."""
        return await self.records.current_for(conversation_id)

    async def active_for(self, conversation_id: str) -> Handoff | None:
        return await self.records.active_for(conversation_id)

    async def escalate(self, tracker: Any, escalation: Escalation, output_channel: OutputChannel | None,
                       profile: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the handoff, pause the bot, tell the shopper what happens next (hook context)."""
        customers = getattr(self.agent, "customers", None)  # Customer 360, when the project has it
        if customers is not None:
            context = await customers.context_for("conversation", tracker.sender_id)
            if context:
                profile = {**(profile or {}), "customer360": context}
        return (await self.escalator.escalate(tracker, escalation, output_channel, profile)).as_dict()

    async def relay_user_message(self, h: Handoff, tracker: Any,
                                 output_channel: OutputChannel | None = None) -> dict[str, Any]:
        """A shopper message while a human owns (or is about to own) the conversation (hook context)."""
        return await self.relay.user_message(h, tracker, output_channel)

    async def handle_csat(self, h: Handoff, tracker: Any, output_channel: OutputChannel | None) -> bool:
        """Hook context: a rating after resolve is recorded; anything else ends the wait for one."""
        return await self.csat.handle(h, tracker, output_channel)

    def rating_from(self, message: Any) -> int | None:
        return self.csat.rating_from(message)

    # ------------------------------------------------------------------ agents and routing
    def estimated_wait_minutes(self, queue: str, position: int) -> int:
        return self.roster.estimated_wait_minutes(queue, position, self.config.avg_handle_time_s)

    async def refresh_agents(self) -> None:
        await self.roster.refresh()

    async def agent_view(self, agent_id: str) -> dict[str, Any]:
        await self.roster.refresh()
        return self.roster.state(agent_id).public()

    async def agent_views(self) -> list[dict[str, Any]]:
        await self.roster.refresh()
        return [s.public() for s in self.agents.values()]

    async def heartbeat(self, agent_id: str) -> bool:
        """A console is still there: keep its agent online. False: presence lapsed (set the status again)."""
        return await self.presence.heartbeat(agent_id)

    async def expire_agents(self) -> list[str]:
        """Agents whose console stopped heart-beating go away; their conversations go back to the queue."""
        return await self.router.expire_agents()

    async def set_status(self, agent_id: str, status: str) -> dict[str, Any]:
        """Online agents get work; an agent going away hands their conversations back to the queue."""
        return await self.router.set_status(agent_id, status)

    async def assign_pending(self) -> int:
        """Give waiting handoffs (best first) to the least-loaded eligible agents."""
        return await self.router.assign_pending()

    async def claim(self, handoff_id: str, agent_id: str) -> dict[str, Any]:
        """Atomic: of two agents claiming at once (on any workers) exactly one gets it; the other 409."""
        state = self.roster.state(agent_id)
        h = await self._visible(handoff_id, state.spec)
        return (await self.router.claim(h, state)).as_dict()

    async def transfer(self, handoff_id: str, actor: AgentSpec, to_agent: str | None = None,
                       to_skill: str | None = None, to_language: str | None = None) -> dict[str, Any]:
        """Owner or supervisor moves a conversation to an agent, or back to a (skill, language) queue."""
        h = await self._owned_or_supervised(handoff_id, actor)
        return (await self.router.transfer(h, actor, to_agent, to_skill, to_language)).as_dict()

    # ------------------------------------------------------------------ agent console
    async def left_messages_for(self, actor: AgentSpec) -> list[dict[str, Any]]:
        """Messages left after hours that this agent may answer, best first (shown when they come online)."""
        rows = await self.records.list((QUEUED,), after_hours=True)
        return [h.summary() for h in rows if h.after_hours and h.left_messages and self.can_see(actor, h)]

    async def agent_reply(self, handoff_id: str, actor: AgentSpec, text: str | None = None,
                          data: dict[str, Any] | None = None, client_id: str | None = None,
                          canned: str | None = None) -> dict[str, Any]:
        """Store, record in the tracker as BotUttered{agent_id}, push to the shopper; idempotent by client_id."""
        h = await self._owned_or_supervised(handoff_id, actor)
        return await self.relay.agent_reply(h, actor, text, data, client_id, canned)

    async def add_note(self, handoff_id: str, actor: AgentSpec, text: str) -> dict[str, Any]:
        h = await self._visible(handoff_id, actor)
        return await self.relay.add_note(h, actor, text)

    async def set_tags(self, handoff_id: str, actor: AgentSpec, tags: list[str]) -> dict[str, Any]:
        await self._visible(handoff_id, actor)
        await self.store.update(handoff_id, tags=sorted({str(t) for t in tags}))
        return (await self._get(handoff_id)).as_dict()

    async def transcript(self, handoff_id: str, actor: AgentSpec, action: str = "view") -> dict[str, Any]:
        """The record plus relayed messages; every access is audited."""
        h = await self._visible(handoff_id, actor)
        await self.store.audit(actor.id, f"transcript_{action}", handoff_id, h.conversation_id)
        if self.server_audit is not None:  # the server's audit log too, where an admin reads every transcript access
            await self.server_audit.record(console_actor(actor), f"handoff.transcript_{action}", h.conversation_id,
                                           detail={"handoff_id": handoff_id})
        return {**h.as_dict(), "messages": await self.store.messages(handoff_id)}

    async def export(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        data = await self.transcript(handoff_id, actor, action="export")
        return {"version": 1, "handoff": data}

    async def suggestions(self, handoff_id: str, actor: AgentSpec, limit: int = 3) -> list[dict[str, Any]]:
        """KB answers for the shopper's latest message (agent.knowledge.asearch)."""
        h = await self._visible(handoff_id, actor)
        kb = getattr(self.agent, "knowledge", None)
        if kb is None or not hasattr(kb, "asearch"):
            return []
        rows = [m for m in await self.store.messages(handoff_id) if m["sender"] == "user"]
        question = rows[-1]["text"] if rows else next(
            (l["text"] for l in reversed(h.record.get("transcript", [])) if l["type"] == "user"), "")
        if not question:
            return []
        try:
            base, result = await kb.asearch(question, h.language)
        except Exception:
            logger.exception("KB suggestions failed for %s", handoff_id)
            return []
        out = []
        for candidate in list(result.candidates)[:limit]:
            entry = base.get(candidate.entry_id)
            answer, _ = entry.answer_for(h.language) if entry is not None else (None, None)
            out.append({"id": candidate.entry_id, "score": round(float(candidate.score), 3),
                        "question": candidate.matched_question,
                        "answer": getattr(answer, "text", None) or (str(answer) if answer else None)})
        return out

    # ------------------------------------------------------------------ resolve
    async def resolve(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        """The bot takes over again and asks for a 1-5 rating."""
        from bot.shared.events import ConversationResumed

        h = await self._owned_or_supervised(handoff_id, actor)
        if not await self.store.resolve(handoff_id):
            raise HandoffError(409, "The handoff is no longer open.")
        await self.queue.remove(handoff_id)
        await self.roster.release(h.agent_id, handoff_id)
        await self.store.audit(actor.id, "resolve", handoff_id, h.conversation_id)
        if self.agent is not None:
            await self.agent.append_events(h.conversation_id, [ConversationResumed()])
        await self.csat.ask(h)
        resolved = await self._get(handoff_id)
        await self.notifier.publish("handoff_resolved", resolved, agent_id=h.agent_id,
                                    duration_s=(resolved.resolved_at or 0) - h.created_at)
        await self.notifier.notify({"type": "handoff_resolved", "handoff": resolved.summary()})
        await self.assign_pending()
        return resolved.as_dict()
