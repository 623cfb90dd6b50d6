"""This worker's picture of the agents: who is online, what each holds, who may see what.

The truth lives in a ``Presence`` (in memory, or Redis shared by every worker);
:class:`AgentRoster` caches it and is refreshed before each routing decision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from bot.handoff.config import AgentSpec
from bot.handoff.errors import HandoffError

ONLINE, AWAY = "online", "away"


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


class AgentRoster:
    """``agent id → AgentState`` for the configured agents, kept current from the presence."""

    def __init__(self, specs: Iterable[AgentSpec], presence: Any) -> None:
        self.presence = presence
        self.agents: dict[str, AgentState] = {a.id: AgentState(a) for a in specs}

    def state(self, agent_id: str) -> AgentState:
        state = self.agents.get(agent_id)
        if state is None:
            raise HandoffError(404, f"No agent '{agent_id}'. Fix: add it under 'handoff.agents' in config.yml.")
        return state

    async def refresh(self) -> None:
        """Pull every agent's status and held handoffs from the (possibly shared) presence."""
        snapshot = await self.presence.snapshot(list(self.agents))
        for agent_id, (online, active) in snapshot.items():
            state = self.agents[agent_id]
            state.status = ONLINE if online else AWAY
            state.active = active

    def heard_status(self, agent: dict[str, Any]) -> None:
        """An ``agent_status`` notification from any worker: keep this cache current between refreshes."""
        state = self.agents.get(agent.get("id", ""))
        if state is not None:
            state.status = agent.get("status", state.status)

    async def release(self, agent_id: str | None, handoff_id: str) -> None:
        if not agent_id:
            return
        await self.presence.release(agent_id, handoff_id)
        state = self.agents.get(agent_id)
        if state is not None:
            state.active.discard(handoff_id)

    def can_see(self, spec: AgentSpec, queue: str | None, agent_id: str | None) -> bool:
        if spec.is_supervisor or agent_id == spec.id:
            return True
        state = self.agents.get(spec.id)
        if state is None or queue is None:
            return False
        skill, _, language = queue.partition(":")  # skills ["*"] see every skill's queue, as eligible() routes
        return queue in state.queues() or ("*" in spec.skills and language in spec.languages)

    def candidates(self, queue: str) -> list[AgentState]:
        """Eligible agents, least loaded first."""
        eligible = [s for s in self.agents.values() if s.eligible(queue)]
        return sorted(eligible, key=lambda s: (s.load / max(1, s.spec.max_concurrent), s.load, s.spec.id))

    def has_capacity(self) -> bool:
        return any(s.status == ONLINE and s.load < s.spec.max_concurrent for s in self.agents.values())

    def estimated_wait_minutes(self, queue: str, position: int, avg_handle_time_s: float) -> int:
        capacity = sum(max(1, s.spec.max_concurrent) for s in self.agents.values()
                       if s.status == ONLINE and queue.partition(":")[0] in s.spec.skills)
        return max(1, math.ceil(position * avg_handle_time_s / max(1, capacity) / 60))
