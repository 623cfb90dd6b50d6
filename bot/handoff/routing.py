"""Who takes which handoff: reservation, assignment, claims, transfers, agents going away.

An agent's slot is reserved in the presence first (atomic across workers), then
the SQL row is claimed with a conditional update; whichever fails undoes the
other, so two workers never give one agent more than their limit nor one
handoff to two agents.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from bot.handoff import messages as msg
from bot.handoff.agents import AWAY, ONLINE, AgentRoster, AgentState
from bot.handoff.config import AgentSpec, HandoffConfig
from bot.handoff.delivery import Delivery
from bot.handoff.errors import HandoffError
from bot.handoff.handoffs import Handoff, HandoffRecords
from bot.handoff.notify import Notifier
from bot.handoff.queue import score
from bot.handoff.store import ASSIGNED, QUEUED

logger = logging.getLogger(__name__)


class Router:
    def __init__(self, config: HandoffConfig, records: HandoffRecords, queue: Any, roster: AgentRoster,
                 notifier: Notifier, delivery: Delivery, clock: Callable[[], float]) -> None:
        self.config = config
        self.records = records
        self.store = records.store
        self.queue = queue
        self.roster = roster
        self.presence = roster.presence
        self.notifier = notifier
        self.delivery = delivery
        self.clock = clock
        self._lock = asyncio.Lock()

    async def reserve_agent(self, handoff_id: str, queue: str) -> AgentState | None:
        """The least-loaded eligible agent with a slot reserved for the handoff (atomic across workers), or None."""
        async with self._lock:
            await self.roster.refresh()
            for agent in self.roster.candidates(queue):
                if await self.presence.reserve(agent.spec.id, handoff_id, agent.spec.max_concurrent):
                    agent.active.add(handoff_id)
                    return agent
        return None

    async def _reserve_and_assign(self, h: Handoff) -> AgentState | None:
        """Least-loaded eligible agent first: reserve a slot (atomic across workers), then the SQL claim."""
        for agent in self.roster.candidates(h.queue):
            if not await self.presence.reserve(agent.spec.id, h.id, agent.spec.max_concurrent):
                continue  # another worker filled this agent, or they just went away
            if await self.store.try_assign(h.id, agent.spec.id):
                await self.queue.remove(h.id)
                agent.active.add(h.id)
                return agent
            await self.presence.release(agent.spec.id, h.id)
            return None  # another worker or agent took the handoff
        return None

    async def assign_pending(self) -> int:
        """Give waiting handoffs (best first) to the least-loaded eligible agents."""
        if not self.config.auto_assign:
            return 0
        done: list[tuple[Handoff, AgentState]] = []
        async with self._lock:
            await self.roster.refresh()
            if not self.roster.has_capacity():
                return 0  # nobody can take work: no queue scan at all
            order = await self.queue.ordered()
            rows = await self.records.get_many(order)
            hours = self.config.service_hours
            closed = hours is not None and not hours.is_open(self.clock())
            for handoff_id in order:
                h = rows.get(handoff_id)
                if h is None or h.status != QUEUED:
                    await self.queue.remove(handoff_id)
                    continue
                if h.after_hours and closed:
                    continue
                agent = await self._reserve_and_assign(h)
                if agent is not None:
                    done.append((h.replace(status=ASSIGNED, agent_id=agent.spec.id, assigned_at=self.clock()), agent))
                    if not self.roster.has_capacity():
                        break
        for h, agent in done:
            await self.after_assign(h.id, agent, tell_shopper=True, h=h)
        return len(done)

    async def after_assign(self, handoff_id: str, agent: AgentState, tell_shopper: bool,
                           text_key: str = "assigned", h: Handoff | None = None) -> None:
        """Tell the agent first (console), then the broker and the shopper. ``h``: the record when known."""
        h = h if h is not None else await self.records.get(handoff_id)
        if h is None:
            return
        await self.notifier.notify({"type": "handoff_assigned", "handoff": h.summary(), "agent_id": agent.spec.id})
        await self.notifier.publish("handoff_assigned", h, agent_id=agent.spec.id)
        if tell_shopper:
            text = msg.text(text_key, h.language or "", self.config.messages, agent=agent.spec.name)
            await self.delivery.say(h, {"text": text}, {"handoff_id": h.id, "handoff": "notice"})

    async def claim(self, h: Handoff, state: AgentState) -> Handoff:
        """Atomic: of two agents claiming at once (on any workers) exactly one gets it; the other 409."""
        agent_id = state.spec.id
        if h.status == ASSIGNED and h.agent_id == agent_id:
            return h
        if h.status != QUEUED:
            raise HandoffError(409, "Another agent already took this conversation.")
        limit = None if state.spec.is_supervisor else state.spec.max_concurrent
        if not await self.presence.reserve(agent_id, h.id, limit, require_online=False):
            await self.roster.refresh()
            raise HandoffError(409, f"You already have {state.load} conversations (limit {state.spec.max_concurrent}).")
        if not await self.store.try_assign(h.id, agent_id):
            await self.presence.release(agent_id, h.id)
            raise HandoffError(409, "Another agent already took this conversation.")
        await self.queue.remove(h.id)
        state.active.add(h.id)
        await self.store.audit(agent_id, "claim", h.id, h.conversation_id)
        await self.after_assign(h.id, state, tell_shopper=True)
        return await self._reread(h.id)

    async def transfer(self, h: Handoff, actor: AgentSpec, to_agent: str | None = None,
                       to_skill: str | None = None, to_language: str | None = None) -> Handoff:
        """Move a conversation to an agent, or back to a (skill, language) queue."""
        previous = h.agent_id
        if to_agent:
            target = self.roster.state(to_agent)
            if not await self.store.move_to(h.id, to_agent):
                raise HandoffError(409, "The handoff is no longer open.")
            await self.queue.remove(h.id)
            await self.roster.release(previous, h.id)
            await self.presence.reserve(to_agent, h.id, None, require_online=False)
            target.active.add(h.id)
            await self.store.audit(actor.id, "transfer", h.id, h.conversation_id, f"to agent {to_agent}")
            await self.after_assign(h.id, target, tell_shopper=True, text_key="transferred")
        else:
            queue = f"{to_skill or h.queue.partition(':')[0]}:{to_language or h.language}"
            if not await self.store.requeue(h.id, queue=queue):
                raise HandoffError(409, "The handoff is no longer open.")
            await self.roster.release(previous, h.id)
            await self.queue.add(h.id, queue, score(h.priority, h.created_at))
            await self.store.audit(actor.id, "transfer", h.id, h.conversation_id, f"to queue {queue}")
            await self.notifier.notify({"type": "handoff_queued",
                                        "handoff": h.replace(queue=queue, status=QUEUED, agent_id=None).summary()})
            await self.assign_pending()
        return await self._reread(h.id)

    async def _reread(self, handoff_id: str) -> Handoff:
        h = await self.records.get(handoff_id)
        if h is None:
            raise HandoffError(404, f"No handoff '{handoff_id}'.")
        return h

    async def set_status(self, agent_id: str, status: str) -> dict[str, Any]:
        """Online agents get work; an agent going away hands their conversations back to the queue."""
        if status not in (ONLINE, AWAY):
            raise HandoffError(400, "status must be 'online' or 'away'.")
        state = self.roster.state(agent_id)
        if status == ONLINE:
            await self.presence.set_online(agent_id)
        else:
            await self.presence.set_away(agent_id)
            await self.go_away(agent_id, "requeue_away")
        await self.roster.refresh()
        await self.notifier.notify({"type": "agent_status", "agent": state.public()})
        await self.assign_pending()
        return state.public()

    async def expire_agents(self) -> list[str]:
        """Agents whose console stopped heart-beating go away; their conversations go back to the queue.

        ``presence.expired`` hands each lapse to exactly one worker, so requeueing happens once.
        """
        gone = await self.presence.expired(list(self.roster.agents))
        for agent_id in gone:
            logger.info("Agent %s stopped heart-beating; marking away.", agent_id)
            await self.go_away(agent_id, "requeue_presence_expired")
            await self.notifier.notify({"type": "agent_status", "agent": self.roster.agents[agent_id].public()})
        if gone:
            await self.assign_pending()
        return gone

    async def go_away(self, agent_id: str, action: str) -> None:
        """Give an agent's conversations back to the queue (best first again)."""
        state = self.roster.state(agent_id)
        state.status = AWAY
        _, active = (await self.presence.snapshot([agent_id]))[agent_id]
        for handoff_id in sorted(active | state.active):
            await self.presence.release(agent_id, handoff_id)
            state.active.discard(handoff_id)
            h = await self.records.get(handoff_id)
            if h and await self.store.requeue(handoff_id, from_agent=agent_id):
                await self.queue.add(handoff_id, h.queue, score(h.priority, h.created_at))
                await self.store.audit(agent_id, action, handoff_id, h.conversation_id)
                await self.notifier.notify({"type": "handoff_queued",
                                            "handoff": h.replace(status=QUEUED, agent_id=None).summary()})
