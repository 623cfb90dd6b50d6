"""The conversation state: events plus the state they produce when replayed.

Mirrors ``rasa/shared/core/trackers.py`` (3.6): the same attribute names, the
same ``current_state()`` JSON (what ``GET /conversations/{id}/tracker``
returns) and the same ``applied_events()`` rules for restarts, rewinds,
undos and loop interruptions, so policies trained on kefu trackers see what
Rasa's would.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any, Deque, Generator, Iterable, Iterator, Optional, Union

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_NAME,
    ACTION_SESSION_START_NAME,
    ACTION_TEXT,
    ACTIVE_LOOP,
    ASSISTANT_ID_KEY,
    DEFAULT_SENDER_ID,
    ENTITIES,
    ENTITY_ATTRIBUTE_GROUP,
    ENTITY_ATTRIBUTE_ROLE,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    FOLLOWUP_ACTION,
    LOOP_INTERRUPTED,
    LOOP_NAME,
    LOOP_REJECTED,
    METADATA_MODEL_ID,
    PREVIOUS_ACTION,
    SHOULD_NOT_BE_SET,
    TRIGGER_MESSAGE,
)
from bot.shared.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    BotUttered,
    DefinePrevUserUtteredFeaturization,
    Event,
    Restarted,
    SessionStarted,
    UserUttered,
    UserUtteranceReverted,
    deserialise_events,
    split_events,
)
from bot.shared.exceptions import InvalidRequest

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.domain import Domain

logger = logging.getLogger(__name__)

State = dict[str, dict[str, Any]]
FrozenState = frozenset


class EventVerbosity(Enum):
    """Which events a tracker dump includes."""

    NONE = 1  # no events
    APPLIED = 2  # only events that shape the current state
    AFTER_RESTART = 3  # everything after the latest restart (incl. reverted ones)
    ALL = 4  # every logged event


class _FallbackAnySlot:
    """Untyped slot used when ``bot.shared.slots`` is unavailable."""

    def __init__(self, name: str, initial_value: Any = None) -> None:
        self.name = name
        self.initial_value = initial_value
        self.value = initial_value
        self.mappings: list[dict[str, Any]] = []
        self.influence_conversation = False

    def reset(self) -> None:
        self.value = self.initial_value

    def __repr__(self) -> str:
        return f"AnySlot({self.name}: {self.value})"


def _make_any_slot(name: str) -> Any:
    try:
        from bot.shared.slots import AnySlot  # type: ignore[attr-defined]
    except ImportError:
        return _FallbackAnySlot(name)
    try:
        return AnySlot(name, mappings=[])
    except TypeError:
        return AnySlot(name)


class AnySlotDict(dict):
    """Slot dict that pretends every slot exists (trackers built without a domain)."""

    def __missing__(self, key: str) -> Any:
        value = self[key] = _make_any_slot(key)
        return value

    def __contains__(self, key: object) -> bool:
        return True


class Dialogue:
    """A conversation's events under a name (Rasa's ``Dialogue``)."""

    def __init__(self, name: str, events: list[Event]) -> None:
        self.name = name
        self.events = events

    def __str__(self) -> str:
        return f"Dialogue with name '{self.name}' and turns:\n" + "\n".join(
            f"\t{e}" for e in self.events
        )

    def as_dict(self) -> dict[str, Any]:
        return {"events": [e.as_dict() for e in self.events], "name": self.name}

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> "Dialogue":
        return cls(parameters.get("name", ""), deserialise_events(parameters.get("events", [])))


class DialogueStateTracker:
    """Maintains the state of one conversation by applying its events in order."""

    @classmethod
    def from_dict(
        cls,
        sender_id: str,
        events_as_dict: list[dict[str, Any]],
        slots: Optional[Iterable[Any]] = None,
        max_event_history: Optional[int] = None,
    ) -> "DialogueStateTracker":
        """Rebuild a tracker from Rasa event dicts by replaying them."""
        return cls.from_events(sender_id, deserialise_events(events_as_dict), slots, max_event_history)

    @classmethod
    def from_events(
        cls,
        sender_id: str,
        evts: Iterable[Event],
        slots: Optional[Iterable[Any]] = None,
        max_event_history: Optional[int] = None,
        sender_source: Optional[str] = None,
        domain: Optional["Domain"] = None,
        is_rule_tracker: bool = False,
    ) -> "DialogueStateTracker":
        """Create a tracker and apply ``evts`` to it."""
        tracker = cls(
            sender_id,
            slots,
            max_event_history,
            is_rule_tracker=is_rule_tracker,
            sender_source=sender_source,
        )
        for event in evts:
            tracker.update(event, domain)
        return tracker

    def __init__(
        self,
        sender_id: str,
        slots: Optional[Iterable[Any]] = None,
        max_event_history: Optional[int] = None,
        is_rule_tracker: bool = False,
        *,
        sender_source: Optional[str] = None,
    ) -> None:
        self._max_event_history = max_event_history
        self.events: Deque[Event] = self._create_events([])
        self.sender_id = sender_id
        # Each tracker owns copies of the slots: values must not leak between trackers.
        if slots is not None:
            self.slots: dict[str, Any] = {slot.name: copy.copy(slot) for slot in slots}
        else:
            self.slots = AnySlotDict()
        self.sender_source = sender_source
        self.is_rule_tracker = is_rule_tracker

        # current state; MUST be re-creatable by replaying the events (see _reset)
        self._paused = False
        self.followup_action: Optional[str] = ACTION_LISTEN_NAME
        self.latest_action: Optional[dict[str, str]] = None
        self.latest_message: Optional[UserUttered] = None
        self.latest_bot_utterance: Optional[BotUttered] = None
        self.active_loop: dict[str, Any] = {}
        self._reset()

        # stamped into the metadata of every new event when set
        self.model_id: Optional[str] = None
        self.assistant_id: Optional[str] = None

    # --- public interface -----------------------------------------------------------
    def current_state(
        self, event_verbosity: EventVerbosity = EventVerbosity.NONE
    ) -> dict[str, Any]:
        """The tracker as Rasa's JSON (``GET /conversations/{id}/tracker``)."""
        events = self._events_for_verbosity(event_verbosity)
        events_as_dict = [e.as_dict() for e in events] if events is not None else None
        latest_event_time = self.events[-1].timestamp if len(self.events) > 0 else None
        return {
            "sender_id": self.sender_id,
            "slots": self.current_slot_values(),
            "latest_message": self._latest_message_data(),
            "latest_event_time": latest_event_time,
            FOLLOWUP_ACTION: self.followup_action,
            "paused": self.is_paused(),
            "events": events_as_dict,
            "latest_input_channel": self.get_latest_input_channel(),
            ACTIVE_LOOP: self.active_loop,
            "latest_action": self.latest_action,
            "latest_action_name": self.latest_action_name,
        }

    def _events_for_verbosity(self, event_verbosity: EventVerbosity) -> Optional[list[Event]]:
        if event_verbosity == EventVerbosity.ALL:
            return list(self.events)
        if event_verbosity == EventVerbosity.AFTER_RESTART:
            return self.events_after_latest_restart()
        if event_verbosity == EventVerbosity.APPLIED:
            return self.applied_events()
        return None

    def _latest_message_data(self) -> Optional[dict[str, Any]]:
        if not self.latest_message:
            return None
        data = self.latest_message.parse_data.copy()
        # entities found by policies join the NLU ones, so custom actions see both
        data[ENTITIES] = self.latest_message.entities
        return data

    @staticmethod
    def freeze_current_state(state: State) -> FrozenState:
        """Hashable form of a state (used as memoization / rule lookup keys)."""
        return frozenset(
            {
                key: frozenset(values.items()) if isinstance(values, dict) else frozenset(values)
                for key, values in state.items()
            }.items()
        )

    def past_states(
        self,
        domain: "Domain",
        omit_unset_slots: bool = False,
        ignore_rule_only_turns: bool = False,
        rule_only_data: Optional[dict[str, Any]] = None,
    ) -> list[State]:
        """The featurisable states of this conversation, computed by the domain."""
        return domain.states_for_tracker_history(
            self,
            omit_unset_slots=omit_unset_slots,
            ignore_rule_only_turns=ignore_rule_only_turns,
            rule_only_data=rule_only_data,
        )

    def change_loop_to(self, loop_name: Optional[str]) -> None:
        """Activate ``loop_name`` (remembering the message that triggered it) or deactivate."""
        if loop_name is not None:
            self.active_loop = {
                LOOP_NAME: loop_name,
                LOOP_INTERRUPTED: False,
                LOOP_REJECTED: False,
                TRIGGER_MESSAGE: self.latest_message.parse_data if self.latest_message else None,
            }
        else:
            self.active_loop = {}

    def interrupt_loop(self, is_interrupted: bool) -> None:
        """Mark that the active loop entered an unhappy path."""
        if self.active_loop:
            self.active_loop[LOOP_INTERRUPTED] = is_interrupted

    def reject_action(self, action_name: str) -> None:
        """Tell the active loop that it rejected execution."""
        if self.active_loop and action_name == self.active_loop_name:
            self.active_loop[LOOP_REJECTED] = True

    def set_latest_action(self, action: dict[str, str]) -> None:
        """Set the latest action; resets the loop's interruption and rejection flags."""
        self.latest_action = action
        if self.active_loop_name:
            self.active_loop[LOOP_INTERRUPTED] = False
        if self.active_loop and action.get(ACTION_NAME) == self.active_loop_name:
            self.active_loop[LOOP_REJECTED] = False

    def current_slot_values(self) -> dict[str, Any]:
        return {key: slot.value for key, slot in self.slots.items()}

    def get_slot(self, key: str) -> Optional[Any]:
        if key in self.slots:
            return self.slots[key].value
        logger.info("Tried to access non existent slot '%s'.", key)
        return None

    def get_latest_entity_values(
        self,
        entity_type: str,
        entity_role: Optional[str] = None,
        entity_group: Optional[str] = None,
    ) -> Iterator[Any]:
        """Values of entities of a type (and role/group) in the latest user message."""
        if self.latest_message is None:
            return iter([])
        return (
            x[ENTITY_ATTRIBUTE_VALUE]
            for x in self.latest_message.entities
            if x.get(ENTITY_ATTRIBUTE_TYPE) == entity_type
            and x.get(ENTITY_ATTRIBUTE_GROUP) == entity_group
            and x.get(ENTITY_ATTRIBUTE_ROLE) == entity_role
        )

    def get_latest_input_channel(self) -> Optional[str]:
        for e in reversed(self.events):
            if isinstance(e, UserUttered):
                return e.input_channel
        return None

    def is_paused(self) -> bool:
        return self._paused

    def idx_after_latest_restart(self) -> int:
        """Index of the first event after the latest ``Restarted`` (0 if none)."""
        for i, event in enumerate(reversed(self.events)):
            if isinstance(event, Restarted):
                return len(self.events) - i
        return 0

    def events_after_latest_restart(self) -> list[Event]:
        return list(self.events)[self.idx_after_latest_restart():]

    def init_copy(self) -> "DialogueStateTracker":
        """A fresh tracker with the same sender, slots (initial values) and flags."""
        return DialogueStateTracker(
            self.sender_id or DEFAULT_SENDER_ID,
            self.slots.values(),
            self._max_event_history,
            is_rule_tracker=self.is_rule_tracker,
            sender_source=self.sender_source,
        )

    def generate_all_prior_trackers(
        self,
    ) -> Generator[tuple["DialogueStateTracker", bool], None, None]:
        """Yield the tracker before each action (and ``hide_rule_turn``), then the final one."""
        tracker = self.init_copy()
        for event in self.applied_events():
            if isinstance(event, ActionExecuted):
                yield tracker, event.hide_rule_turn
            tracker.update(event)
        yield tracker, False

    def applied_events(self) -> list[Event]:
        """Events that shape the current state, without reverted/undone ones.

        ``Restarted`` and ``SessionStarted`` drop everything before them;
        ``ActionReverted`` drops back to before the latest action,
        ``UserUtteranceReverted`` to before the latest user message (and the
        ``action_listen`` preceding it); a loop action that runs again on the
        happy path replaces the turns since its previous execution.
        """
        loop_names = [
            event.name for event in self.events if isinstance(event, ActiveLoop) and event.name
        ]
        applied: list[Event] = []
        for event in self.events:
            if isinstance(event, (Restarted, SessionStarted)):
                applied = []
            elif isinstance(event, ActionReverted):
                self._undo_till_previous(ActionExecuted, applied)
            elif isinstance(event, UserUtteranceReverted):
                # a user message always follows an action_listen: remove both
                self._undo_till_previous(UserUttered, applied)
                self._undo_till_previous(ActionExecuted, applied)
            elif (
                isinstance(event, ActionExecuted)
                and event.action_name in loop_names
                and not self._first_loop_execution_or_unhappy_path(event.action_name, applied)
            ):
                self._undo_till_previous_loop_execution(event.action_name, applied)
            else:
                applied.append(event)
        return applied

    @staticmethod
    def _undo_till_previous(event_type: type[Event], done_events: list[Event]) -> None:
        """Pop events until (and including) the latest one of ``event_type``."""
        for e in reversed(done_events[:]):
            del done_events[-1]
            if isinstance(e, event_type):
                break

    def _first_loop_execution_or_unhappy_path(
        self, loop_action_name: str, applied_events: list[Event]
    ) -> bool:
        next_action: Optional[str] = None
        for event in reversed(applied_events):
            # a deactivation means previous loop events belong to another loop run
            if isinstance(event, ActiveLoop) and event.name is None:
                return True
            if self._is_within_unhappy_path(loop_action_name, event, next_action):
                return True
            if isinstance(event, ActionExecuted):
                if event.action_name == loop_action_name:
                    return False
                next_action = event.action_name
        return True

    @staticmethod
    def _is_within_unhappy_path(
        loop_action_name: str, event: Event, next_action_in_the_future: Optional[str]
    ) -> bool:
        # live conversations: the loop rejected execution
        loop_was_rejected_previously = (
            isinstance(event, ActionExecutionRejected) and event.action_name == loop_action_name
        )
        # training data has no rejections: another action ran after the user message
        other_action_after_latest_user_utterance = (
            isinstance(event, UserUttered)
            and next_action_in_the_future is not None
            and next_action_in_the_future != loop_action_name
        )
        return loop_was_rejected_previously or other_action_after_latest_user_utterance

    @staticmethod
    def _undo_till_previous_loop_execution(loop_action_name: str, done_events: list[Event]) -> None:
        offset = 0
        for e in reversed(done_events[:]):
            if isinstance(e, ActionExecuted) and e.action_name == loop_action_name:
                break
            if isinstance(e, (ActionExecuted, UserUttered, DefinePrevUserUtteredFeaturization)):
                del done_events[-1 - offset]
            else:
                # keep other events (e.g. SlotSet) and remember where they are
                offset += 1

    def replay_events(self) -> None:
        """Re-apply the applied events (after a ``_reset``); used by rewind / undo."""
        for event in self.applied_events():
            event.apply_to(self)

    def recreate_from_dialogue(self, dialogue: Dialogue) -> None:
        """Restore state from a ``Dialogue`` (as persisted by tracker stores)."""
        if not isinstance(dialogue, Dialogue):
            raise InvalidRequest(
                f"Expected a Dialogue, got {type(dialogue).__name__}. "
                f"Fix: deserialise it with Dialogue.from_parameters first."
            )
        self._reset()
        self.events.extend(dialogue.events)
        self.replay_events()

    @classmethod
    def from_dialogue(
        cls,
        dialogue: Dialogue,
        slots: Optional[Iterable[Any]] = None,
        max_event_history: Optional[int] = None,
    ) -> "DialogueStateTracker":
        tracker = cls(dialogue.name, slots, max_event_history)
        tracker.recreate_from_dialogue(dialogue)
        return tracker

    def as_dialogue(self) -> Dialogue:
        """All events under the sender id; enough to recreate this tracker."""
        return Dialogue(self.sender_id, list(self.events))

    def copy(self) -> "DialogueStateTracker":
        """An independent duplicate (events replayed into a fresh tracker)."""
        return self.travel_back_in_time(float("inf"))

    def travel_back_in_time(self, target_time: float) -> "DialogueStateTracker":
        """A new tracker with the state at ``target_time`` (events at that time included)."""
        tracker = self.init_copy()
        tracker.model_id = self.model_id
        tracker.assistant_id = self.assistant_id
        for event in self.events:
            if event.timestamp <= target_time:
                tracker.update(event)
            else:
                break
        return tracker

    def update(self, event: Event, domain: Optional["Domain"] = None) -> None:
        """Log ``event`` and apply it to the state."""
        if not isinstance(event, Event):
            raise InvalidRequest(
                f"Tracker '{self.sender_id}': cannot log {event!r}, it is not an Event. "
                f"Fix: build events with bot.shared.events (e.g. Event.from_parameters)."
            )
        if self.model_id and METADATA_MODEL_ID not in event.metadata:
            event.metadata = {**event.metadata, METADATA_MODEL_ID: self.model_id}
        if self.assistant_id and ASSISTANT_ID_KEY not in event.metadata:
            event.metadata = {**event.metadata, ASSISTANT_ID_KEY: self.assistant_id}
        self.events.append(event)
        event.apply_to(self)

    def update_with_events(
        self,
        new_events: Iterable[Event],
        domain: Optional["Domain"] = None,
        override_timestamp: bool = True,
    ) -> None:
        """Apply several events; by default re-stamp them so they sort after the history."""
        for e in new_events:
            if override_timestamp:
                e.timestamp = time.time()
            self.update(e, domain)

    def get_last_event_for(
        self,
        event_type: Union[type[Event], tuple[type[Event], ...]],
        action_names_to_exclude: Optional[list[str]] = None,
        skip: int = 0,
        event_verbosity: EventVerbosity = EventVerbosity.APPLIED,
    ) -> Optional[Any]:
        """The latest event of a type, optionally excluding actions and skipping ``skip`` hits."""
        to_exclude = action_names_to_exclude or []

        def matches(e: Event) -> bool:
            excluded = isinstance(e, ActionExecuted) and e.action_name in to_exclude
            return isinstance(e, event_type) and not excluded

        filtered = filter(matches, reversed(self._events_for_verbosity(event_verbosity) or []))
        for _ in range(skip):
            next(filtered, None)
        return next(filtered, None)

    def last_executed_action_has(self, name: str, skip: int = 0) -> bool:
        """Whether the latest action other than ``action_listen`` was ``name``."""
        last = self.get_last_event_for(
            ActionExecuted, action_names_to_exclude=[ACTION_LISTEN_NAME], skip=skip
        )
        return last is not None and last.action_name == name

    # --- state changes; called by events' apply_to, not directly ---------------
    def _reset(self) -> None:
        """Back to the initial state; the event log is kept."""
        self._reset_slots()
        self._paused = False
        self.latest_action = {}
        self.latest_message = UserUttered.empty()
        self.latest_bot_utterance = BotUttered.empty()
        self.followup_action = ACTION_LISTEN_NAME
        self.active_loop = {}

    def _reset_slots(self) -> None:
        for slot in self.slots.values():
            slot.reset()

    def _set_slot(self, key: str, value: Any) -> None:
        if key in self.slots:
            self.slots[key].value = value
        else:
            logger.debug(
                "Tracker '%s': ignored value for unknown slot '%s'; add it to the domain's "
                "slots to keep it.",
                self.sender_id,
                key,
            )

    def _create_events(self, evts: list[Event]) -> Deque[Event]:
        return deque(evts, self._max_event_history)

    def __eq__(self, other: Any) -> bool:
        if isinstance(self, type(other)):
            return list(other.events) == list(self.events) and self.sender_id == other.sender_id
        return False

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"DialogueStateTracker(sender_id={self.sender_id!r}, events={len(self.events)}, "
            f"latest_action_name={self.latest_action_name!r})"
        )

    def trigger_followup_action(self, action: str) -> None:
        self.followup_action = action

    def clear_followup_action(self) -> None:
        self.followup_action = None

    @property
    def active_loop_name(self) -> Optional[str]:
        """Name of the active loop, or ``None`` (also for the rule marker ``should_not_be_set``)."""
        if not self.active_loop or self.active_loop.get(LOOP_NAME) == SHOULD_NOT_BE_SET:
            return None
        return self.active_loop.get(LOOP_NAME)

    @property
    def latest_action_name(self) -> Optional[str]:
        """Name (or end-to-end text) of the latest action."""
        if self.latest_action is None:
            return None
        return self.latest_action.get(ACTION_NAME) or self.latest_action.get(ACTION_TEXT)

    @property
    def is_active_loop_rejected(self) -> bool:
        return bool(self.active_loop and self.active_loop.get(LOOP_REJECTED))

    @property
    def is_active_loop_interrupted(self) -> bool:
        return bool(self.active_loop and self.active_loop.get(LOOP_INTERRUPTED))

    def fingerprint(self) -> str:
        """Stable hash of sender id, slot values and events."""
        data: dict[str, Any] = {"sender_id": self.sender_id}
        if self.slots:
            data["slots"] = self.current_slot_values()
        if self.events:
            data["events"] = [
                {k: v for k, v in e.as_dict().items() if k != "timestamp"} for e in self.events
            ]
        text = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.md5(text.encode("utf-8")).hexdigest()


def get_active_loop_name(state: State) -> Optional[str]:
    """The active loop's name in a featurised state, or ``None``."""
    if not state.get(ACTIVE_LOOP) or state[ACTIVE_LOOP].get(LOOP_NAME) == SHOULD_NOT_BE_SET:
        return None
    return state[ACTIVE_LOOP].get(LOOP_NAME)


def is_prev_action_listen_in_state(state: State) -> bool:
    """Whether the state's previous action is ``action_listen``."""
    return state.get(PREVIOUS_ACTION, {}).get(ACTION_NAME) == ACTION_LISTEN_NAME


def get_trackers_for_conversation_sessions(
    tracker: DialogueStateTracker,
) -> list[DialogueStateTracker]:
    """Split a tracker into one tracker per conversation session."""
    sessions = split_events(
        tracker.events,
        ActionExecuted,
        {"action_name": ACTION_SESSION_START_NAME},
        include_splitting_event=True,
    )
    return [
        DialogueStateTracker.from_events(
            tracker.sender_id,
            evts,
            tracker.slots.values(),
            max_event_history=tracker._max_event_history,
            sender_source=tracker.sender_source,
        )
        for evts in sessions
    ]
