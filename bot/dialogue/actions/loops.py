"""Loop actions: actions that stay active over several turns (forms, two-stage fallback).

Mirrors Rasa's ``rasa/core/actions/loops.py``: activate when not active, ``do`` one
step, deactivate (``ActiveLoop(None)``) when ``is_done``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import Action
from bot.shared.events import ActiveLoop, Event

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.tracker import DialogueStateTracker


class LoopAction(Action):
    """Base class; subclasses implement ``do`` and ``is_done``."""

    async def run(
        self,
        output_channel: Any,
        nlg: Any,
        tracker: DialogueStateTracker,
        domain: Domain,
        metadata: dict[str, Any] | None = None,
    ) -> list[Event]:
        events: list[Event] = []
        if not await self.is_activated(output_channel, nlg, tracker, domain):
            events += self._default_activation_events()
            events += await self.activate(output_channel, nlg, tracker, domain)

        if not await self.is_done(output_channel, nlg, tracker, domain, events):
            events += await self.do(output_channel, nlg, tracker, domain, events)

        if await self.is_done(output_channel, nlg, tracker, domain, events):
            events += self._default_deactivation_events()
            events += await self.deactivate(output_channel, nlg, tracker, domain, events)
        return events

    async def is_activated(self, output_channel, nlg, tracker, domain) -> bool:
        return tracker.active_loop_name == self.name()

    def _default_activation_events(self) -> list[Event]:
        return [ActiveLoop(self.name())]

    async def activate(self, output_channel, nlg, tracker, domain) -> list[Event]:
        """Extra events on activation (none by default)."""
        return []

    async def do(self, output_channel, nlg, tracker, domain, events_so_far: list[Event]) -> list[Event]:
        raise NotImplementedError

    async def is_done(self, output_channel, nlg, tracker, domain, events_so_far: list[Event]) -> bool:
        raise NotImplementedError

    def _default_deactivation_events(self) -> list[Event]:
        return [ActiveLoop(None)]

    async def deactivate(
        self, output_channel, nlg, tracker, domain, events_so_far: list[Event]
    ) -> list[Event]:
        """Extra events on deactivation (none by default)."""
        return []
