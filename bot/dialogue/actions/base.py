"""What every action shares: the ``Action`` base class and small helpers over trackers and responses.

An action never talks to the user directly: bot messages come back as ``BotUttered``
events and the processor sends them on the output channel, then applies all events
to the tracker (Rasa's ``rasa/core/actions/action.py``). This module imports no other
module of the package: the concrete actions import it, :mod:`.factory` imports them, and
actions that run others by name get the factory as an :data:`ActionLookup` instead of
importing it (tests/dialogue/actions/test_import_graph.py keeps the graph acyclic).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

from bot.shared import constants as c
from bot.shared.events import ActionExecuted, BotUttered, Event, Restarted

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.tracker import DialogueStateTracker


class Action:
    """Next thing the bot does in reply to a dialogue state."""

    def name(self) -> str:
        raise NotImplementedError

    async def run(
        self,
        output_channel: Any,
        nlg: Any,
        tracker: DialogueStateTracker,
        domain: Domain,
        metadata: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Returns the events this action causes (bot messages as ``BotUttered``)."""
        raise NotImplementedError

    def event_for_successful_execution(self, prediction: Any = None) -> ActionExecuted:
        """The ``ActionExecuted`` the processor logs after this action ran."""
        if prediction is None:
            return ActionExecuted(self.name())
        return ActionExecuted(
            self.name(),
            getattr(prediction, "policy_name", None),
            getattr(prediction, "max_confidence", None),
            hide_rule_turn=getattr(prediction, "hide_rule_turn", False),
            metadata=getattr(prediction, "action_metadata", None),
        )

    def __str__(self) -> str:
        return f"{self.__class__.__name__}('{self.name()}')"

    __repr__ = __str__


ActionLookup = Callable[[str, "Domain"], Action]
"""Resolves an action name to the action to run: :func:`.factory.action_for_name_or_text` bound
to the action endpoint and executor. Loop actions that run other actions by name (forms, the
two-stage fallback) get one, so they need not import the factory (which imports them)."""


def channel_name(output_channel: Any) -> str:
    """Name of the output channel for channel-specific response variations."""
    name = getattr(output_channel, "name", None)
    if callable(name):
        try:
            return str(name())
        except TypeError:
            return "collector"
    return str(name) if name else "collector"


async def generate_response(
    nlg: Any, utter_action: str, tracker: DialogueStateTracker, output_channel: Any, **kwargs: Any
) -> dict[str, Any] | None:
    """Calls ``nlg.generate`` whether it is sync (templated) or async (NLG server)."""
    if nlg is None:
        return None
    result = nlg.generate(utter_action, tracker, channel_name(output_channel), **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return dict(result) if result else None


def create_bot_utterance(message: dict[str, Any]) -> BotUttered:
    """``BotUttered`` from a rendered response; unknown keys go to its metadata (as Rasa)."""
    message = dict(message)
    return BotUttered(
        text=message.pop("text", None),
        data={
            "elements": message.pop("elements", None),
            "quick_replies": message.pop("quick_replies", None),
            "buttons": message.pop("buttons", None),
            # legacy: the image doubles as attachment when there is none
            "attachment": message.pop("attachment", None) or message.get("image", None),
            "image": message.pop("image", None),
            "custom": message.pop("custom", None),
        },
        metadata=message,
    )


def intent_name_of(message: Any) -> str | None:
    """Intent name of a ``UserUttered`` (or ``None``)."""
    if message is None:
        return None
    name = getattr(message, "intent_name", None)
    if name:
        return name
    intent = getattr(message, "intent", None) or {}
    return intent.get(c.INTENT_NAME_KEY) if isinstance(intent, dict) else None


def latest_entity_values(
    tracker: DialogueStateTracker,
    entity_type: str | None,
    entity_role: str | None = None,
    entity_group: str | None = None,
) -> list[Any]:
    """Values of the latest message's entities matching type, role and group exactly."""
    message = tracker.latest_message
    if message is None:
        return []
    return [
        e.get(c.ENTITY_ATTRIBUTE_VALUE)
        for e in (getattr(message, "entities", None) or [])
        if e.get(c.ENTITY_ATTRIBUTE_TYPE) == entity_type
        and e.get(c.ENTITY_ATTRIBUTE_ROLE) == entity_role
        and e.get(c.ENTITY_ATTRIBUTE_GROUP) == entity_group
    ]


def _events_of(tracker: DialogueStateTracker) -> list[Event]:
    return list(tracker.events)


def last_executed_action_has(tracker: DialogueStateTracker, name: str, skip: int = 0) -> bool:
    """Whether the last executed non-listen action (after ``skip`` ones) is ``name``."""
    seen = 0
    for event in reversed(_events_of(tracker)):
        if isinstance(event, ActionExecuted) and event.action_name != c.ACTION_LISTEN_NAME:
            if seen == skip:
                return event.action_name == name
            seen += 1
    return False


def last_event_for(tracker: DialogueStateTracker, types: type | tuple[type, ...], skip: int = 0) -> Any:
    """The latest event of ``types`` after the latest restart, skipping ``skip`` matches."""
    events = _events_of(tracker)
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], Restarted):
            events = events[index + 1 :]
            break
    seen = 0
    for event in reversed(events):
        if isinstance(event, types):
            if seen == skip:
                return event
            seen += 1
    return None


def executor_knows(executor: Any, name: str) -> bool:
    """Whether a rasa_sdk ``ActionExecutor`` has ``name`` registered."""
    return executor is not None and name in (getattr(executor, "actions", None) or {})

