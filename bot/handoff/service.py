"""The handoff service: escalate, route, relay, resolve, rate.

One instance per worker process. SQL (``SQLHandoffStore``) holds every
handoff, relayed message and audit line; the live queue orders waiting
handoffs; agents' online/away status (heartbeat TTL) and loads live in a
``Presence`` and console notifications go through a ``NotificationBus`` --
both in memory by default, on Redis when ``handoff.queue`` names Redis, so
every worker routes with the same picture and every console hears every
change. ``self.agents`` is this worker's cache of that picture, refreshed
before each routing decision. Agent consoles subscribe with :meth:`subscribe`
(the websocket does) and get every change as a small dict.

Locking rule: code running inside the processor hook holds the shopper's
conversation lock, so it updates the tracker in hand and never calls
``agent.append_events`` for its own conversation; everything else (agent
replies, resolve, assignment after the fact) goes through ``append_events``.
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bot.handoff import messages as msg
from bot.handoff.config import AgentSpec, HandoffConfig
from bot.handoff.presence import InMemoryBus, InMemoryPresence, create_shared_state
from bot.handoff.queue import InMemoryLiveQueue, score
from bot.handoff.record import sentiment_trend, summarize, transcript_from_tracker
from bot.handoff.rules import Escalation
from bot.handoff.store import ASSIGNED, QUEUED, SQLHandoffStore
from bot.nlu.language import conversation_language

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], Awaitable[None]]
ProfileProvider = Callable[[str | None, str], Awaitable[dict[str, Any] | None]]
ONLINE, AWAY = "online", "away"
_CSAT_TEXT = re.compile(r"^/?\s*([1-5])\s*(?:星|stars?|★)?\s*$")
_CSAT_PAYLOAD = re.compile(r'^/(\w+)\s*(\{.*\})?\s*$')
LEFT_MESSAGE_PRIORITY = 5  # a message left after hours is the first thing the next shift sees


class HandoffError(Exception):
    """An API-level refusal (status says which HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class AgentState:
    spec: AgentSpec
    status: str = AWAY
    active: set[str] = field(default_factory=set)

    @property
    def load(self) -> int:
        return len(self.active)

    def queues(self) -> set[str]:
        return {f"{s}:{l}" for s in self.spec.skills for l in self.spec.languages}

    def eligible(self, queue: str) -> bool:
        skill, _, lang = queue.partition(":")
        skill_ok = skill in self.spec.skills or "*" in self.spec.skills
        return self.status == ONLINE and self.load < self.spec.max_concurrent and skill_ok and lang in self.spec.languages

    def public(self) -> dict[str, Any]:
        return {**self.spec.public(), "status": self.status, "load": self.load}


def language_of(tracker: Any) -> str:
    return conversation_language(tracker)


def summary_view(h: dict[str, Any]) -> dict[str, Any]:
    """What a queue list shows (no transcript)."""
    record = h.get("record") or {}
    return {k: h.get(k) for k in ("id", "conversation_id", "channel", "status", "reason", "priority", "queue",
                                  "language", "skills", "tags", "agent_id", "customer_id", "after_hours", "csat",
                                  "created_at", "assigned_at", "resolved_at")} | {
        "summary": record.get("summary"), "profile": record.get("profile"),
        "sentiment_trend": record.get("sentiment_trend"), "left_messages": record.get("left_messages") or [],
    }


async def _no_profile(channel: str | None, sender_id: str) -> None:
    return None


class HandoffService:
    def __init__(self, config: HandoffConfig, store: SQLHandoffStore | None = None, queue: Any = None,
                 event_broker: Any = None, agent: Any = None, profile_provider: ProfileProvider | None = None,
                 clock: Callable[[], float] = time.time, presence: Any = None, bus: Any = None) -> None:
        self.config = config
        self.store = store or SQLHandoffStore(config.store_url)
        if queue is None and presence is None and bus is None:
            queue, presence, bus = create_shared_state(config.queue, config.presence_ttl_s, clock)
        self.queue = queue if queue is not None else InMemoryLiveQueue()
        self.presence = presence if presence is not None else InMemoryPresence(config.presence_ttl_s, clock)
        self.bus = bus if bus is not None else InMemoryBus()
        self.event_broker = event_broker
        self.agent = agent
        self.profile_provider = profile_provider or _no_profile  # the server passes the `ports: profile` port
        self.clock = clock
        self.agents: dict[str, AgentState] = {a.id: AgentState(a) for a in config.agents}
        self.listeners: set[Listener] = set()
        self.channels: dict[str, Callable[[str], Any]] = {}
        self._route_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Rebuild the live queue and agent loads from SQL (server restart with handoffs open)."""
        if self._started:
            return
        self._started = True
        await self.store.init()
        await self.queue.clear() if isinstance(self.queue, InMemoryLiveQueue) else None
        for h in await self.store.list((QUEUED,), limit=1_000_000):
            await self.queue.add(h["id"], h["queue"], score(h["priority"], h["created_at"]))
        loads: dict[str, set[str]] = {agent_id: set() for agent_id in self.agents}
        for h in await self.store.list((ASSIGNED,), limit=1_000_000):
            if h["agent_id"] in loads:
                loads[h["agent_id"]].add(h["id"])
        await self.presence.replace_loads(loads)
        await self.refresh_agents()
        await self.bus.start(self._dispatch)
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

    def bind_agent(self, agent: Any) -> None:
        self.agent = agent
        if self.event_broker is None:
            self.event_broker = getattr(agent, "event_broker", None)

    def register_channel(self, name: str, factory: Callable[[str], Any]) -> None:
        """``factory(sender_id)`` returns an OutputChannel that reaches that shopper now."""
        self.channels[name] = factory

    def register_input_channels(self, channels: list[Any]) -> None:
        for channel in channels:
            if hasattr(channel, "get_output_channel_for"):
                self.register_channel(channel.name(), channel.get_output_channel_for)
            elif hasattr(channel, "get_output_channel") and channel.name() not in ("rest", "callback"):
                self.register_channel(channel.name(), lambda _sender, c=channel: c.get_output_channel())

    def _output_for(self, channel: str | None, sender_id: str) -> Any:
        factory = self.channels.get(channel or "")
        if factory is None and channel == "socketio":
            try:
                from connectors.socketio import get_output_channel_for

                return get_output_channel_for(sender_id)
            except ImportError:
                return None
        return factory(sender_id) if factory else None

    # ------------------------------------------------------------------ notifications
    def subscribe(self, listener: Listener) -> None:
        self.listeners.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    async def _notify(self, event: dict[str, Any]) -> None:
        """To every console on every worker (the bus); a bus failure must not fail the caller."""
        event = {"timestamp": self.clock(), **event}
        try:
            await self.bus.publish(event)
        except Exception:
            logger.exception("Could not publish a %s notification; dispatching locally only.", event.get("type"))
            await self._dispatch(event)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if event.get("type") == "agent_status" and isinstance(event.get("agent"), dict):
            state = self.agents.get(event["agent"].get("id", ""))
            if state is not None:  # keep this worker's cache current between refreshes
                state.status = event["agent"].get("status", state.status)
        for listener in list(self.listeners):
            try:
                await listener(event)
            except Exception:
                logger.debug("A console listener failed; dropping it.", exc_info=True)
                self.listeners.discard(listener)

    async def _publish(self, name: str, h: dict[str, Any], **extra: Any) -> None:
        if self.event_broker is None:
            return
        body = {"event": name, "sender_id": h["conversation_id"], "handoff_id": h["id"],
                "customer_id": h.get("customer_id"), "timestamp": self.clock(), **extra}
        try:
            await self.event_broker.publish(body)
        except Exception:
            logger.exception("Could not publish %s for %s", name, h["id"])

    # ------------------------------------------------------------------ visibility
    def can_see(self, spec: AgentSpec, h: dict[str, Any]) -> bool:
        if spec.is_supervisor or h.get("agent_id") == spec.id:
            return True
        state = self.agents.get(spec.id)
        return state is not None and h.get("queue") in state.queues()

    def wants(self, spec: AgentSpec, event: dict[str, Any]) -> bool:
        """Whether ``spec``'s console gets this notification.

        Lists (queued/assigned/resolved, agent status) go to everyone who can see the queue; the
        messages and notes of a conversation an agent owns go to that agent and supervisors only,
        not to every agent of the queue (with 20 agents that was 20 websocket sends per message).
        """
        kind = event.get("type")
        if kind == "agent_status":
            return True
        if kind in ("message", "note") and event.get("agent_id"):
            return spec.is_supervisor or event["agent_id"] == spec.id
        handoff = event.get("handoff") or {"queue": event.get("queue"), "agent_id": event.get("agent_id")}
        return self.can_see(spec, handoff)

    def _agent_state(self, agent_id: str) -> AgentState:
        state = self.agents.get(agent_id)
        if state is None:
            raise HandoffError(404, f"No agent '{agent_id}'. Fix: add it under 'handoff.agents' in config.yml.")
        return state

    # ------------------------------------------------------------------ escalation
    async def escalate(self, tracker: Any, escalation: Escalation, output_channel: Any,
                       profile: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the handoff, pause the bot, tell the shopper what happens next (hook context)."""
        from bot.shared.events import BotUttered, ConversationPaused

        now = self.clock()
        language = language_of(tracker)
        channel = tracker.get_latest_input_channel() if hasattr(tracker, "get_latest_input_channel") else None
        transcript = transcript_from_tracker(tracker)
        skill = self._skill_for(tracker)
        vip = bool(profile and profile.get("vip"))
        tags = [skill, language] + (["vip"] if vip else []) + (["urgent"] if escalation.urgent else [])
        priority = (2 if escalation.urgent else 0) + (1 if vip else 0) + (
            1 if escalation.reason in ("complaint", "negative_sentiment") else 0)
        hours = self.config.service_hours
        after_hours = hours is not None and not hours.is_open(now)
        record = {
            "conversation_id": tracker.sender_id, "channel": channel, "reason": escalation.reason,
            "reason_detail": escalation.detail, "language": language, "profile": profile,
            "sentiment_trend": sentiment_trend(transcript), "transcript": transcript,
            "summary": summarize(transcript, escalation.reason, language), "priority": priority,
            "skills": tags, "after_hours": after_hours,
        }
        values = {
            "id": uuid.uuid4().hex, "conversation_id": tracker.sender_id, "channel": channel, "status": QUEUED,
            "reason": escalation.reason, "priority": priority, "queue": f"{skill}:{language}", "language": language,
            "skills": tags, "tags": [], "customer_id": str(profile["customer_id"]) if profile else None,
            "after_hours": after_hours, "record": record, "notes": [], "created_at": now,
        }
        # Reserve an agent before the row exists, so the row is written once, already assigned
        # (one SQL write per escalation instead of insert + conditional update + queue add/remove).
        assigned_to = await self._reserve_agent(values) if not after_hours and self.config.auto_assign else None
        if assigned_to is not None:
            values.update(status=ASSIGNED, agent_id=assigned_to.spec.id, assigned_at=self.clock())
        try:
            h = await self.store.create(values)
        except Exception:
            if assigned_to is not None:
                await self._release(assigned_to.spec.id, values["id"])
            raise
        tracker.update(ConversationPaused())
        if assigned_to is not None:
            # The agent hears first; broker events and the shopper's notice follow.
            await self._notify({"type": "handoff_assigned", "handoff": summary_view(h),
                                "agent_id": assigned_to.spec.id})
            await self._publish("handoff_requested", h, reason=escalation.reason, detail=escalation.detail)
            await self._publish("handoff_assigned", h, agent_id=assigned_to.spec.id)
            text = msg.text("assigned", language, self.config.messages, agent=assigned_to.spec.name)
        else:
            await self.queue.add(h["id"], h["queue"], score(priority, now))
            await self._publish("handoff_requested", h, reason=escalation.reason, detail=escalation.detail)
            await self._notify({"type": "handoff_queued", "handoff": summary_view(h)})
            if after_hours:
                text = msg.text("after_hours", language, self.config.messages, hours=hours.label() if hours else "")
            else:
                position = await self.queue.position(h["id"]) or 1
                text = msg.text("queued", language, self.config.messages, ahead=position - 1,
                                wait=self.estimated_wait_minutes(h["queue"], position))
        if self.config.webhook_url:
            self._spawn(self._webhook(h))
        tracker.update(BotUttered(text, {}, {"handoff_id": h["id"], "handoff": "notice"}))
        await _send(output_channel, tracker.sender_id, {"text": text})
        return h

    async def _reserve_agent(self, h: dict[str, Any]) -> AgentState | None:
        """The least-loaded eligible agent with a slot reserved for ``h`` (atomic across workers), or None."""
        async with self._route_lock:
            await self.refresh_agents()
            for agent in self._candidates(h["queue"]):
                if await self.presence.reserve(agent.spec.id, h["id"], agent.spec.max_concurrent):
                    agent.active.add(h["id"])
                    return agent
        return None

    def _skill_for(self, tracker: Any) -> str:
        for event in reversed(list(tracker.events)):
            if getattr(event, "type_name", "") == "user":
                intent = (event.intent or {}).get("name")
                if intent in self.config.skills_by_intent:
                    return self.config.skills_by_intent[intent]
        return self.config.default_skill

    def estimated_wait_minutes(self, queue: str, position: int) -> int:
        capacity = sum(max(1, s.spec.max_concurrent) for s in self.agents.values()
                       if s.status == ONLINE and queue.partition(":")[0] in s.spec.skills)
        return max(1, math.ceil(position * self.config.avg_handle_time_s / max(1, capacity) / 60))

    # ------------------------------------------------------------------ presence
    async def refresh_agents(self) -> None:
        """Pull every agent's status and held handoffs from the (possibly shared) presence."""
        snapshot = await self.presence.snapshot(list(self.agents))
        for agent_id, (online, active) in snapshot.items():
            state = self.agents[agent_id]
            state.status = ONLINE if online else AWAY
            state.active = active

    async def agent_view(self, agent_id: str) -> dict[str, Any]:
        await self.refresh_agents()
        return self._agent_state(agent_id).public()

    async def agent_views(self) -> list[dict[str, Any]]:
        await self.refresh_agents()
        return [s.public() for s in self.agents.values()]

    async def heartbeat(self, agent_id: str) -> bool:
        """A console is still there: keep its agent online. False: presence lapsed (set the status again)."""
        return await self.presence.heartbeat(agent_id)

    async def expire_agents(self) -> list[str]:
        """Agents whose console stopped heart-beating go away; their conversations go back to the queue.

        ``presence.expired`` hands each lapse to exactly one worker, so requeueing happens once.
        """
        gone = await self.presence.expired(list(self.agents))
        for agent_id in gone:
            logger.info("Agent %s stopped heart-beating; marking away.", agent_id)
            await self._go_away(agent_id, "requeue_presence_expired")
            await self._notify({"type": "agent_status", "agent": self.agents[agent_id].public()})
        if gone:
            await self.assign_pending()
        return gone

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

    async def _go_away(self, agent_id: str, action: str) -> None:
        """Give an agent's conversations back to the queue (best first again)."""
        state = self._agent_state(agent_id)
        state.status = AWAY
        _, active = (await self.presence.snapshot([agent_id]))[agent_id]
        for handoff_id in sorted(active | state.active):
            await self.presence.release(agent_id, handoff_id)
            state.active.discard(handoff_id)
            h = await self.store.get(handoff_id)
            if h and await self.store.requeue(handoff_id, from_agent=agent_id):
                await self.queue.add(handoff_id, h["queue"], score(h["priority"], h["created_at"]))
                await self.store.audit(agent_id, action, handoff_id, h["conversation_id"])
                await self._notify({"type": "handoff_queued",
                                    "handoff": summary_view({**h, "status": QUEUED, "agent_id": None})})

    # ------------------------------------------------------------------ routing
    def _candidates(self, queue: str) -> list[AgentState]:
        eligible = [s for s in self.agents.values() if s.eligible(queue)]
        return sorted(eligible, key=lambda s: (s.load / max(1, s.spec.max_concurrent), s.load, s.spec.id))

    def _pick(self, queue: str) -> AgentState | None:
        candidates = self._candidates(queue)
        return candidates[0] if candidates else None

    def _has_capacity(self) -> bool:
        return any(s.status == ONLINE and s.load < s.spec.max_concurrent for s in self.agents.values())

    async def _reserve_and_assign(self, h: dict[str, Any]) -> AgentState | None:
        """Least-loaded eligible agent first: reserve a slot (atomic across workers), then the SQL claim."""
        for agent in self._candidates(h["queue"]):
            if not await self.presence.reserve(agent.spec.id, h["id"], agent.spec.max_concurrent):
                continue  # another worker filled this agent, or they just went away
            if await self.store.try_assign(h["id"], agent.spec.id):
                await self.queue.remove(h["id"])
                agent.active.add(h["id"])
                return agent
            await self.presence.release(agent.spec.id, h["id"])
            return None  # another worker or agent took the handoff
        return None

    async def assign_pending(self) -> int:
        """Give waiting handoffs (best first) to the least-loaded eligible agents."""
        if not self.config.auto_assign:
            return 0
        done: list[tuple[dict[str, Any], AgentState]] = []
        async with self._route_lock:
            await self.refresh_agents()
            if not self._has_capacity():
                return 0  # nobody can take work: no queue scan at all
            order = await self.queue.ordered()
            rows = await self.store.get_many(order)
            hours = self.config.service_hours
            closed = hours is not None and not hours.is_open(self.clock())
            for handoff_id in order:
                h = rows.get(handoff_id)
                if h is None or h["status"] != QUEUED:
                    await self.queue.remove(handoff_id)
                    continue
                if h.get("after_hours") and closed:
                    continue
                agent = await self._reserve_and_assign(h)
                if agent is not None:
                    done.append(({**h, "status": ASSIGNED, "agent_id": agent.spec.id, "assigned_at": self.clock()},
                                 agent))
                    if not self._has_capacity():
                        break
        for h, agent in done:
            await self._after_assign(h["id"], agent, tell_shopper=True, h=h)
        return len(done)

    async def _after_assign(self, handoff_id: str, agent: AgentState, tell_shopper: bool,
                            text_key: str = "assigned", h: dict[str, Any] | None = None) -> None:
        """Tell the agent first (console), then the broker and the shopper. ``h``: the row when known."""
        h = h if h is not None else await self.store.get(handoff_id)
        if h is None:
            return
        await self._notify({"type": "handoff_assigned", "handoff": summary_view(h), "agent_id": agent.spec.id})
        await self._publish("handoff_assigned", h, agent_id=agent.spec.id)
        if tell_shopper:
            text = msg.text(text_key, h["language"], self.config.messages, agent=agent.spec.name)
            await self._say(h, {"text": text}, {"handoff_id": h["id"], "handoff": "notice"})

    async def claim(self, handoff_id: str, agent_id: str) -> dict[str, Any]:
        """Atomic: of two agents claiming at once (on any workers) exactly one gets it; the other 409."""
        state = self._agent_state(agent_id)
        h = await self.store.get(handoff_id)
        if h is None:
            raise HandoffError(404, f"No handoff '{handoff_id}'.")
        if not self.can_see(state.spec, h):
            raise HandoffError(403, "This handoff is not in your queues.")
        if h["status"] == ASSIGNED and h["agent_id"] == agent_id:
            return h
        if h["status"] != QUEUED:
            raise HandoffError(409, "Another agent already took this conversation.")
        limit = None if state.spec.is_supervisor else state.spec.max_concurrent
        if not await self.presence.reserve(agent_id, handoff_id, limit, require_online=False):
            await self.refresh_agents()
            raise HandoffError(409, f"You already have {state.load} conversations (limit {state.spec.max_concurrent}).")
        if not await self.store.try_assign(handoff_id, agent_id):
            await self.presence.release(agent_id, handoff_id)
            raise HandoffError(409, "Another agent already took this conversation.")
        await self.queue.remove(handoff_id)
        state.active.add(handoff_id)
        await self.store.audit(agent_id, "claim", handoff_id, h["conversation_id"])
        await self._after_assign(handoff_id, state, tell_shopper=True)
        return await self.store.get(handoff_id)  # type: ignore[return-value]

    async def set_status(self, agent_id: str, status: str) -> dict[str, Any]:
        """Online agents get work; an agent going away hands their conversations back to the queue."""
        if status not in (ONLINE, AWAY):
            raise HandoffError(400, "status must be 'online' or 'away'.")
        state = self._agent_state(agent_id)
        if status == ONLINE:
            await self.presence.set_online(agent_id)
        else:
            await self.presence.set_away(agent_id)
            await self._go_away(agent_id, "requeue_away")
        await self.refresh_agents()
        await self._notify({"type": "agent_status", "agent": state.public()})
        await self.assign_pending()
        return state.public()

    async def transfer(self, handoff_id: str, actor: AgentSpec, to_agent: str | None = None,
                       to_skill: str | None = None, to_language: str | None = None) -> dict[str, Any]:
        """Owner or supervisor moves a conversation to an agent, or back to a (skill, language) queue."""
        h = await self._owned_or_supervised(handoff_id, actor)
        previous = h.get("agent_id")
        if to_agent:
            target = self._agent_state(to_agent)
            if not await self.store.move_to(handoff_id, to_agent):
                raise HandoffError(409, "The handoff is no longer open.")
            await self.queue.remove(handoff_id)
            await self._release(previous, handoff_id)
            await self.presence.reserve(to_agent, handoff_id, None, require_online=False)
            target.active.add(handoff_id)
            await self.store.audit(actor.id, "transfer", handoff_id, h["conversation_id"], f"to agent {to_agent}")
            await self._after_assign(handoff_id, target, tell_shopper=True, text_key="transferred")
        else:
            queue = f"{to_skill or h['queue'].partition(':')[0]}:{to_language or h['language']}"
            if not await self.store.requeue(handoff_id, queue=queue):
                raise HandoffError(409, "The handoff is no longer open.")
            await self._release(previous, handoff_id)
            await self.queue.add(handoff_id, queue, score(h["priority"], h["created_at"]))
            await self.store.audit(actor.id, "transfer", handoff_id, h["conversation_id"], f"to queue {queue}")
            await self._notify({"type": "handoff_queued", "handoff": summary_view({**h, "queue": queue, "status": QUEUED, "agent_id": None})})
            await self.assign_pending()
        return await self.store.get(handoff_id)  # type: ignore[return-value]

    async def _release(self, agent_id: str | None, handoff_id: str) -> None:
        if not agent_id:
            return
        await self.presence.release(agent_id, handoff_id)
        state = self.agents.get(agent_id)
        if state is not None:
            state.active.discard(handoff_id)

    async def _owned_or_supervised(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        h = await self.store.get(handoff_id)
        if h is None:
            raise HandoffError(404, f"No handoff '{handoff_id}'.")
        if h["status"] not in (QUEUED, ASSIGNED):
            raise HandoffError(409, f"The handoff is {h['status']}.")
        if not actor.is_supervisor and h.get("agent_id") != actor.id:
            raise HandoffError(403, "Only the agent who owns this conversation or a supervisor may do that.")
        return h

    # ------------------------------------------------------------------ relay
    async def relay_user_message(self, h: dict[str, Any], tracker: Any, output_channel: Any = None) -> dict[str, Any]:
        """A shopper message while a human owns (or is about to own) the conversation (hook context).

        After hours the message is also left on the handoff record for the next shift.
        """
        from bot.shared.events import ConversationPaused

        if not tracker.is_paused():  # repair: the SQL row survived a crash the tracker save did not
            tracker.update(ConversationPaused())
        latest = tracker.latest_message
        message_id = latest.message_id or uuid.uuid4().hex
        parse = latest.parse_data or {}
        row, created = await self.store.add_message(
            h["id"], message_id, "user", latest.text,
            {"intent": (latest.intent or {}).get("name"), "sentiment": parse.get("sentiment")},
            timestamp=latest.timestamp)
        if created and h.get("after_hours") and h["status"] == QUEUED:
            h = await self._leave_message(h, row, tracker, output_channel)
        if created:
            await self._notify({"type": "message", "handoff_id": h["id"], "queue": h["queue"],
                                "agent_id": h.get("agent_id"), "message": row})
        return row

    async def _leave_message(self, h: dict[str, Any], row: dict[str, Any], tracker: Any,
                             output_channel: Any) -> dict[str, Any]:
        """Store the message on the record; the first one moves the handoff to the front and is acknowledged."""
        from bot.shared.events import BotUttered

        record = dict(h.get("record") or {})
        left = list(record.get("left_messages") or [])
        first = not left
        left.append({"text": row["text"], "timestamp": row["timestamp"], "message_id": row["message_id"]})
        record["left_messages"] = left
        values: dict[str, Any] = {"record": record}
        if first:
            values["priority"] = h["priority"] + LEFT_MESSAGE_PRIORITY
        await self.store.update(h["id"], **values)
        h = {**h, **values}
        if first:
            await self.queue.add(h["id"], h["queue"], score(h["priority"], h["created_at"]))
            hours = self.config.service_hours
            text = msg.text("message_left", h["language"], self.config.messages,
                            hours=hours.label() if hours else "")
            tracker.update(BotUttered(text, {}, {"handoff_id": h["id"], "handoff": "message_left"}))
            await _send(output_channel, tracker.sender_id, {"text": text})
        return h

    async def left_messages_for(self, actor: AgentSpec) -> list[dict[str, Any]]:
        """Messages left after hours that this agent may answer, best first (shown when they come online)."""
        rows = await self.store.list((QUEUED,), after_hours=True)
        return [summary_view(h) for h in rows
                if h.get("after_hours") and (h.get("record") or {}).get("left_messages") and self.can_see(actor, h)]

    async def agent_reply(self, handoff_id: str, actor: AgentSpec, text: str | None = None,
                          data: dict[str, Any] | None = None, client_id: str | None = None,
                          canned: str | None = None) -> dict[str, Any]:
        """Store, record in the tracker as BotUttered{agent_id}, push to the shopper; idempotent by client_id."""
        h = await self._owned_or_supervised(handoff_id, actor)
        if h["status"] != ASSIGNED:
            raise HandoffError(409, "Claim the conversation before replying.")
        if canned:
            replies = self.config.canned_replies.get(canned)
            if not replies:
                raise HandoffError(404, f"No canned reply '{canned}'. Fix: add it under 'handoff.canned_replies'.")
            text = replies.get(h["language"]) or next(iter(replies.values()))
        if not text and not data:
            raise HandoffError(400, "Send 'text', 'product' or 'canned'.")
        message_id = client_id or uuid.uuid4().hex
        output = self._output_for(h.get("channel"), h["conversation_id"])
        path = await _send_path(output, h["conversation_id"])
        if path not in (None, "customer_service"):
            if path != "template" or not self.config.wechat_template:
                raise HandoffError(409, msg.text("undeliverable", "en", self.config.messages, path=path))
        row, created = await self.store.add_message(handoff_id, message_id, "agent", text, data, agent_id=actor.id)
        if not created:
            return row  # a retried send: already delivered once
        message: dict[str, Any] = {}
        if text:
            message["text"] = text
        if data:
            message.update(data)
        metadata = {"agent_id": actor.id, "handoff_id": handoff_id}
        if path == "template":
            row["delivery"] = await self._say_by_template(h, output, message, actor, metadata)
        else:
            row["delivery"] = await self._say(h, message, metadata)
        await self._notify({"type": "message", "handoff_id": handoff_id, "queue": h["queue"],
                            "agent_id": h.get("agent_id"), "message": row})
        return row

    async def _say_by_template(self, h: dict[str, Any], output: Any, message: dict[str, Any], actor: AgentSpec,
                               metadata: dict[str, Any]) -> str:
        """Outside WeChat's customer-service window: the configured template message carries the reply."""
        from bot.shared.events import BotUttered

        template = dict(self.config.wechat_template or {})
        values = {"text": message.get("text") or "", "agent": actor.name}
        data = {}
        for key, value in (template.get("data") or {"first": "{agent}", "keyword1": "{text}"}).items():
            try:
                data[key] = str(value).format(**values)
            except (KeyError, IndexError, ValueError):
                data[key] = str(value)
        if self.agent is not None:
            await self.agent.append_events(h["conversation_id"], [BotUttered(
                message.get("text"), {k: v for k, v in message.items() if k != "text"},
                {**metadata, "delivery": "template"})])
        try:
            await output.send_template(h["conversation_id"], template["template_id"], data, template.get("url"))
        except Exception:
            logger.exception("Template message to %s failed.", h["conversation_id"])
            return "failed"
        return "template"

    async def _say(self, h: dict[str, Any], message: dict[str, Any], metadata: dict[str, Any]) -> str:
        """Record a bot-side message in the tracker (under its lock) and push it to the shopper.

        Returns ``delivered``, ``failed`` (the channel refused it) or ``recorded`` (no push channel).
        """
        from bot.shared.events import BotUttered

        text = message.get("text")
        data = {k: v for k, v in message.items() if k != "text"}
        if self.agent is not None:
            await self.agent.append_events(h["conversation_id"], [BotUttered(text, data, dict(metadata))])
        output = self._output_for(h.get("channel"), h["conversation_id"])
        if output is None:
            logger.debug("No push channel for %s (%s): recorded only.", h["conversation_id"], h.get("channel"))
            return "recorded"
        deliver = getattr(output, "deliver_response", None)
        if deliver is None:
            await _send(output, h["conversation_id"], message)
            return "delivered"
        try:
            return "delivered" if await deliver(h["conversation_id"], message) else "failed"
        except Exception:
            logger.exception("Could not push a handoff message to %s", h["conversation_id"])
            return "failed"

    async def add_note(self, handoff_id: str, actor: AgentSpec, text: str) -> dict[str, Any]:
        h = await self._visible(handoff_id, actor)
        row, _ = await self.store.add_message(handoff_id, uuid.uuid4().hex, "note", text, agent_id=actor.id)
        await self._notify({"type": "note", "handoff_id": handoff_id, "queue": h["queue"],
                            "agent_id": h.get("agent_id"), "message": row})
        return row

    async def set_tags(self, handoff_id: str, actor: AgentSpec, tags: list[str]) -> dict[str, Any]:
        await self._visible(handoff_id, actor)
        await self.store.update(handoff_id, tags=sorted({str(t) for t in tags}))
        return await self.store.get(handoff_id)  # type: ignore[return-value]

    async def _visible(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        h = await self.store.get(handoff_id)
        if h is None:
            raise HandoffError(404, f"No handoff '{handoff_id}'.")
        if not self.can_see(actor, h):
            raise HandoffError(403, "This handoff is not in your queues.")
        return h

    async def transcript(self, handoff_id: str, actor: AgentSpec, action: str = "view") -> dict[str, Any]:
        """The record plus relayed messages; every access is audited."""
        h = await self._visible(handoff_id, actor)
        await self.store.audit(actor.id, f"transcript_{action}", handoff_id, h["conversation_id"])
        return {**h, "messages": await self.store.messages(handoff_id)}

    async def suggestions(self, handoff_id: str, actor: AgentSpec, limit: int = 3) -> list[dict[str, Any]]:
        """KB answers for the shopper's latest message (agent.knowledge.asearch)."""
        h = await self._visible(handoff_id, actor)
        kb = getattr(self.agent, "knowledge", None)
        if kb is None or not hasattr(kb, "asearch"):
            return []
        rows = [m for m in await self.store.messages(handoff_id) if m["sender"] == "user"]
        question = rows[-1]["text"] if rows else next(
            (l["text"] for l in reversed(h["record"].get("transcript", [])) if l["type"] == "user"), "")
        if not question:
            return []
        try:
            base, result = await kb.asearch(question, h["language"])
        except Exception:
            logger.exception("KB suggestions failed for %s", handoff_id)
            return []
        out = []
        for candidate in list(result.candidates)[:limit]:
            entry = base.get(candidate.entry_id)
            answer, _ = entry.answer_for(h["language"]) if entry is not None else (None, None)
            out.append({"id": candidate.entry_id, "score": round(float(candidate.score), 3),
                        "question": candidate.matched_question,
                        "answer": getattr(answer, "text", None) or (str(answer) if answer else None)})
        return out

    # ------------------------------------------------------------------ resolve and rating
    async def resolve(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        """The bot takes over again and asks for a 1-5 rating."""
        from bot.shared.events import ConversationResumed

        h = await self._owned_or_supervised(handoff_id, actor)
        if not await self.store.resolve(handoff_id):
            raise HandoffError(409, "The handoff is no longer open.")
        await self.queue.remove(handoff_id)
        await self._release(h.get("agent_id"), handoff_id)
        await self.store.audit(actor.id, "resolve", handoff_id, h["conversation_id"])
        if self.agent is not None:
            await self.agent.append_events(h["conversation_id"], [ConversationResumed()])
        text = msg.text("resolved", h["language"], self.config.messages)
        custom = {"type": "csat", "text": text, "scale": 5, "intent": self.config.csat_intent,
                  "entity": self.config.csat_entity, "handoff_id": handoff_id}
        await self._say(h, {"custom": custom}, {"handoff_id": handoff_id, "handoff": "csat"})
        resolved = await self.store.get(handoff_id)
        await self._publish("handoff_resolved", resolved, agent_id=h.get("agent_id"),  # type: ignore[arg-type]
                            duration_s=(resolved or {}).get("resolved_at", 0) - h["created_at"])
        await self._notify({"type": "handoff_resolved", "handoff": summary_view(resolved)})  # type: ignore[arg-type]
        await self.assign_pending()
        return resolved  # type: ignore[return-value]

    async def handle_csat(self, h: dict[str, Any], tracker: Any, output_channel: Any) -> bool:
        """Hook context: a rating after resolve is recorded; anything else ends the wait for one."""
        from bot.shared.events import BotUttered

        rating = self.rating_from(tracker.latest_message)
        if rating is None:
            await self.store.clear_csat(h["id"])
            return False
        if not await self.store.set_csat(h["id"], rating):
            return False
        await self._publish("csat_submitted", h, rating=rating, agent_id=h.get("agent_id"))
        await self._notify({"type": "csat", "handoff_id": h["id"], "queue": h["queue"],
                            "agent_id": h.get("agent_id"), "rating": rating})
        text = msg.text("csat_thanks", h["language"], self.config.messages)
        tracker.update(BotUttered(text, {}, {"handoff_id": h["id"], "handoff": "csat_thanks"}))
        await _send(output_channel, tracker.sender_id, {"text": text})
        return True

    def rating_from(self, message: Any) -> int | None:
        if message is None:
            return None
        intent = (message.intent or {}).get("name")
        text = (message.text or "").strip()
        values: list[Any] = []
        if intent == self.config.csat_intent:
            values += [e.get("value") for e in (message.entities or []) if e.get("entity") == self.config.csat_entity]
        payload = _CSAT_PAYLOAD.match(text)
        if payload and payload.group(1) == self.config.csat_intent and payload.group(2):
            import json

            try:
                values.append(json.loads(payload.group(2)).get(self.config.csat_entity))
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

    # ------------------------------------------------------------------ export and webhook
    async def export(self, handoff_id: str, actor: AgentSpec) -> dict[str, Any]:
        data = await self.transcript(handoff_id, actor, action="export")
        return {"version": 1, "handoff": data}

    async def _webhook(self, h: dict[str, Any]) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.config.webhook_token}"} if self.config.webhook_token else {}
        body = {"event": "handoff_requested", "handoff": h}
        for attempt in range(3):
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.post(self.config.webhook_url, json=body, headers=headers)  # type: ignore[arg-type]
                if response.status_code < 500:
                    return
            except httpx.HTTPError as e:
                logger.warning("Handoff webhook attempt %d failed: %s", attempt + 1, e)
            await asyncio.sleep(0.5 * 2 ** attempt)
        logger.error("Handoff webhook gave up for %s", h["id"])


async def _send(output: Any, recipient: str, message: dict[str, Any]) -> None:
    if output is None:
        return
    try:
        await output.send_response(recipient, message)
    except Exception:  # the tracker/SQL already hold it; the widget replays from its outbox
        logger.exception("Could not push a handoff message to %s", recipient)


async def _send_path(output: Any, recipient: str) -> str | None:
    """What the channel allows now (WeChat: customer_service / template / none); None: no such rule."""
    check = getattr(output, "allowed_send_path", None)
    if check is None:
        return None
    try:
        path = await check(recipient)
    except Exception:
        logger.exception("Could not check the send window for %s; trying a normal send.", recipient)
        return None
    return str(getattr(path, "value", path))
