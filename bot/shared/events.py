"""Conversation events, serialised exactly as Rasa 3 serialises them.

A tracker is nothing but a list of events replayed in order, and events are
what crosses every boundary: tracker stores, the event broker, the rasa_sdk
action-server protocol and ``GET /conversations/{id}/tracker``. So every class
here keeps Rasa's ``type_name``, constructor order, ``as_dict()`` keys,
equality and ``apply_to`` semantics (``rasa/shared/core/events.py``, 3.6).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Optional, TypeVar

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_NAME,
    ACTION_NAME_SENDER_ID_CONNECTOR_STR,
    ACTION_SESSION_START_NAME,
    ACTION_TEXT,
    ENTITIES,
    ENTITY_ATTRIBUTE_GROUP,
    ENTITY_ATTRIBUTE_ROLE,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    ENTITY_LABEL_SEPARATOR,
    EXTERNAL_MESSAGE_PREFIX,
    FULL_RETRIEVAL_INTENT_NAME_KEY,
    INTENT,
    INTENT_NAME_KEY,
    IS_EXTERNAL,
    LOOP_INTERRUPTED,
    LOOP_NAME,
    TEXT,
    USE_TEXT_FOR_FEATURIZATION,
)
from bot.shared.exceptions import InvalidRequest

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

E = TypeVar("E", bound="Event")


def _stable_json(value: Any) -> str:
    """Order-independent JSON used for equality / hashing of nested values."""
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def deserialise_events(serialized_events: Iterable[dict[str, Any]]) -> list["Event"]:
    """Turn Rasa event dicts into events; dicts without an ``event`` key are skipped."""
    events: list[Event] = []
    for data in serialized_events:
        if isinstance(data, dict) and "event" in data:
            event = Event.from_parameters(data)
            if event is not None:
                events.append(event)
            else:
                logger.warning("Skipped event that cannot be deserialised: %s", data.get("event"))
    return events


def deserialise_entities(entities: str | list[Any]) -> list[dict[str, Any]]:
    """Entities may arrive JSON-encoded (old Rasa); keep only dicts."""
    if isinstance(entities, str):
        entities = json.loads(entities)
    return [e for e in entities if isinstance(e, dict)]


def split_events(
    events: Iterable["Event"],
    event_type_to_split_on: type["Event"],
    additional_splitting_conditions: Optional[dict[str, Any]] = None,
    include_splitting_event: bool = True,
) -> list[list["Event"]]:
    """Split events at each event of a type (e.g. at ``action_session_start``)."""
    sub_events: list[list[Event]] = []
    current: list[Event] = []

    def is_split_point(evt: Event) -> bool:
        if not isinstance(evt, event_type_to_split_on):
            return False
        if not additional_splitting_conditions:
            return True
        return all(getattr(evt, k, None) == v for k, v in additional_splitting_conditions.items())

    for event in events:
        if is_split_point(event):
            if current:
                sub_events.append(current)
            current = [event] if include_splitting_event else []
        else:
            current.append(event)
    if current:
        sub_events.append(current)
    return sub_events


def do_events_begin_with_session_start(events: list["Event"]) -> bool:
    """True if events start with ``action_session_start`` + ``session_started``."""
    if len(events) < 2:
        return False
    first, second = events[0], events[1]
    return (
        isinstance(first, ActionExecuted)
        and first.action_name == ACTION_SESSION_START_NAME
        and isinstance(second, SessionStarted)
    )


class Event:
    """Something that happened in a conversation and how it changes the tracker.

    Subclasses set ``type_name`` (the ``"event"`` value in JSON) and override
    ``as_dict``, ``_from_parameters``, ``apply_to``, ``__eq__`` and ``__hash__``.
    """

    type_name = "event"

    def __init__(
        self, timestamp: Optional[float] = None, metadata: Optional[dict[str, Any]] = None
    ) -> None:
        # Like Rasa: a falsy timestamp (None, 0) means "now".
        self.timestamp = timestamp or time.time()
        self.metadata = metadata or {}

    # Subclasses compare their payload like Rasa does; this default (same class,
    # same JSON without timestamp) keeps user-defined events comparable.
    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return type(self) is type(other) and self.fingerprint() == other.fingerprint()

    def __ne__(self, other: Any) -> bool:
        return not (self == other)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __str__(self) -> str:
        return f"{self.__class__.__name__}()"

    def __repr__(self) -> str:
        return str(self)

    # --- (de)serialisation ---------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """Rasa's JSON form: ``event``, ``timestamp``, ``metadata`` when non-empty."""
        d: dict[str, Any] = {"event": self.type_name, "timestamp": self.timestamp}
        if self.metadata:
            d["metadata"] = self.metadata
        return d

    def as_story_string(self) -> Optional[str]:
        """Short text form for logs and debug output (Rasa's story string)."""
        return self.type_name

    def fingerprint(self) -> str:
        """Stable hash of the event without its timestamp."""
        data = self.as_dict()
        data.pop("timestamp", None)
        return hashlib.md5(_stable_json(data).encode("utf-8")).hexdigest()

    @staticmethod
    def resolve_by_type(
        type_name: str, default: Optional[type["Event"]] = None
    ) -> Optional[type["Event"]]:
        """The event class for a ``type_name``; unknown names raise with the valid ones."""
        cls = EVENT_TYPES.get(type_name)
        if cls is not None:
            return cls
        if type_name == "topic":
            return None  # Rasa ignores legacy TopicSet events the same way
        if default is not None:
            return default
        valid = ", ".join(sorted(EVENT_TYPES))
        raise InvalidRequest(
            f"Unknown event type '{type_name}'. Valid event types: {valid}. "
            f"Fix: use one of these values for the 'event' key."
        )

    @staticmethod
    def from_parameters(
        parameters: dict[str, Any], default: Optional[type["Event"]] = None
    ) -> Optional["Event"]:
        """Build an event from its Rasa JSON dict (``{"event": "slot", ...}``)."""
        event_name = parameters.get("event")
        if event_name is None:
            return None
        if not isinstance(event_name, str):
            raise InvalidRequest(
                f"The 'event' key must name an event type as a string (e.g. \"slot\"), "
                f"got {type(event_name).__name__}."
            )
        event_class = Event.resolve_by_type(event_name, default)
        if event_class is None:
            return None
        try:
            return event_class._from_parameters(parameters)
        except (TypeError, ValueError, AttributeError) as e:
            if isinstance(e, InvalidRequest):
                raise
            raise InvalidRequest(
                f"Invalid '{event_name}' event {parameters!r}: {e}. "
                f"Fix: send the fields Rasa's '{event_name}' event has."
            ) from e

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> Optional["Event"]:
        return cls(parameters.get("timestamp"), parameters.get("metadata"))

    # --- state -------------------------------------------------------------------
    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        """Change the tracker's state; most events do nothing."""


class AlwaysEqualEventMixin(Event):
    """Events without attributes are all equal to each other (per class)."""

    _hash_seed = 0

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, self.__class__):
            return NotImplemented
        return True

    def __hash__(self) -> int:
        return hash(self._hash_seed)


# --- user & bot messages ------------------------------------------------------------


class UserUttered(Event):
    """The user said something; becomes ``tracker.latest_message``."""

    type_name = "user"

    def __init__(
        self,
        text: Optional[str] = None,
        intent: Optional[dict[str, Any]] = None,
        entities: Optional[list[dict[str, Any]]] = None,
        parse_data: Optional[dict[str, Any]] = None,
        timestamp: Optional[float] = None,
        input_channel: Optional[str] = None,
        message_id: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
        use_text_for_featurization: Optional[bool] = None,
    ) -> None:
        self.text = text
        self.intent = intent if intent else {}
        self.entities = list(entities) if entities else []
        self.input_channel = input_channel
        self.message_id = message_id
        super().__init__(timestamp, metadata)

        # Set by policies (DefinePrevUserUtteredFeaturization) at prediction time;
        # during training only one of text / intent exists and decides it.
        self.use_text_for_featurization = use_text_for_featurization
        if self.text and not self.intent_name:
            self.use_text_for_featurization = True
        elif self.intent_name and not self.text:
            self.use_text_for_featurization = False

        self.parse_data: dict[str, Any] = {
            INTENT: self.intent,
            # a copy, so entities added later by policies are not persisted here
            ENTITIES: self.entities.copy(),
            TEXT: self.text,
            "message_id": self.message_id,
            "metadata": self.metadata,
        }
        if parse_data:
            self.parse_data.update(parse_data)
            if isinstance(self.parse_data.get(ENTITIES), list):
                self.parse_data[ENTITIES] = list(self.parse_data[ENTITIES])

    @staticmethod
    def _from_parse_data(
        text: Optional[str],
        parse_data: Optional[dict[str, Any]],
        timestamp: Optional[float] = None,
        input_channel: Optional[str] = None,
        message_id: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> "UserUttered":
        parse_data = parse_data or {}
        return UserUttered(
            text,
            parse_data.get(INTENT),
            parse_data.get(ENTITIES, []),
            parse_data,
            timestamp,
            input_channel,
            message_id,
            metadata,
        )

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "UserUttered":
        return cls._from_parse_data(
            parameters.get("text"),
            parameters.get("parse_data"),
            parameters.get("timestamp"),
            parameters.get("input_channel"),
            parameters.get("message_id"),
            parameters.get("metadata"),
        )

    @property
    def intent_name(self) -> Optional[str]:
        return self.intent.get(INTENT_NAME_KEY)

    @property
    def full_retrieval_intent_name(self) -> Optional[str]:
        return self.intent.get(FULL_RETRIEVAL_INTENT_NAME_KEY)

    def _members(self) -> tuple[Any, ...]:
        return (
            self.text,
            self.intent_name,
            [_stable_json(entity) for entity in self.entities],
        )

    # Like Rasa: timestamps do not matter for equality.
    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, UserUttered):
            return NotImplemented
        return self._members() == other._members()

    def __hash__(self) -> int:
        return hash((self.text, self.intent_name, _stable_json(self.entities)))

    def __str__(self) -> str:
        entities = ""
        if self.entities:
            parts = [
                f"{e.get(ENTITY_ATTRIBUTE_VALUE)} (Type: {e.get(ENTITY_ATTRIBUTE_TYPE)}, "
                f"Role: {e.get(ENTITY_ATTRIBUTE_ROLE)}, Group: {e.get(ENTITY_ATTRIBUTE_GROUP)})"
                for e in self.entities
            ]
            entities = f", entities: {', '.join(parts)}"
        return (
            f"UserUttered(text: {self.text}, intent: {self.intent_name}{entities}, "
            f"use_text_for_featurization: {self.use_text_for_featurization})"
        )

    def __repr__(self) -> str:
        return f"UserUttered('{self.text}', '{self.intent_name}', {json.dumps(self.entities, default=str)})"

    @staticmethod
    def empty() -> "UserUttered":
        return UserUttered(None)

    def is_empty(self) -> bool:
        return not self.text and not self.intent_name and not self.entities

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update(
            {
                "text": self.text,
                "parse_data": self.parse_data,
                "input_channel": self.input_channel,
                "message_id": self.message_id,
                "metadata": self.metadata,
            }
        )
        return d

    def as_sub_state(self) -> dict[str, Any]:
        """The ``user`` part of a featurised state: text or intent, entities (+roles/groups)."""
        entities: list[Any] = [e.get(ENTITY_ATTRIBUTE_TYPE) for e in self.entities]
        entities.extend(
            f"{e.get(ENTITY_ATTRIBUTE_TYPE)}{ENTITY_LABEL_SEPARATOR}{e.get(ENTITY_ATTRIBUTE_ROLE)}"
            for e in self.entities
            if ENTITY_ATTRIBUTE_ROLE in e
        )
        entities.extend(
            f"{e.get(ENTITY_ATTRIBUTE_TYPE)}{ENTITY_LABEL_SEPARATOR}{e.get(ENTITY_ATTRIBUTE_GROUP)}"
            for e in self.entities
            if ENTITY_ATTRIBUTE_GROUP in e
        )
        out: dict[str, Any] = {}
        if self.text and (
            self.use_text_for_featurization or self.use_text_for_featurization is None
        ):
            out[TEXT] = self.text
        if self.intent_name and not self.use_text_for_featurization:
            out[INTENT] = self.intent_name
        # end-to-end utterances carry no entity features
        if entities and not self.use_text_for_featurization:
            out[ENTITIES] = entities
        return out

    def as_story_string(self) -> str:
        entities = ""
        if self.entities:
            entities = json.dumps(
                {e.get(ENTITY_ATTRIBUTE_TYPE): e.get(ENTITY_ATTRIBUTE_VALUE) for e in self.entities},
                ensure_ascii=False,
                default=str,
            )
        return f"{self.intent_name or ''}{entities}"

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.latest_message = self
        tracker.clear_followup_action()

    @staticmethod
    def create_external(
        intent_name: str,
        entity_list: Optional[list[dict[str, Any]]] = None,
        input_channel: Optional[str] = None,
    ) -> "UserUttered":
        """The message ``trigger_intent`` and reminders inject (``EXTERNAL: <intent>``)."""
        return UserUttered(
            text=f"{EXTERNAL_MESSAGE_PREFIX}{intent_name}",
            intent={INTENT_NAME_KEY: intent_name},
            metadata={IS_EXTERNAL: True},
            entities=entity_list or [],
            input_channel=input_channel,
        )


class DefinePrevUserUtteredFeaturization(Event):
    """Records whether the last action was predicted from the user's text or intent."""

    type_name = "user_featurization"

    def __init__(
        self,
        use_text_for_featurization: bool,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(timestamp, metadata)
        self.use_text_for_featurization = use_text_for_featurization

    def __str__(self) -> str:
        return f"DefinePrevUserUtteredFeaturization({self.use_text_for_featurization})"

    def __hash__(self) -> int:
        return hash(self.use_text_for_featurization)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, DefinePrevUserUtteredFeaturization):
            return NotImplemented
        return self.use_text_for_featurization == other.use_text_for_featurization

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "DefinePrevUserUtteredFeaturization":
        return cls(
            parameters.get(USE_TEXT_FOR_FEATURIZATION),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d[USE_TEXT_FOR_FEATURIZATION] = self.use_text_for_featurization
        return d

    def as_story_string(self) -> None:
        return None

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        # only the user message right before the current action_listen is affected
        if tracker.latest_action_name != ACTION_LISTEN_NAME or not tracker.latest_message:
            return
        tracker.latest_message.use_text_for_featurization = self.use_text_for_featurization


class EntitiesAdded(Event):
    """Entities found after NLU (e.g. by TED) are added to the latest user message."""

    type_name = "entities"

    def __init__(
        self,
        entities: list[dict[str, Any]],
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(timestamp, metadata)
        self.entities = entities if entities is not None else []

    def __str__(self) -> str:
        return f"EntitiesAdded({[e.get(ENTITY_ATTRIBUTE_TYPE) for e in self.entities]})"

    def __hash__(self) -> int:
        return hash(_stable_json(self.entities))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, EntitiesAdded):
            return NotImplemented
        return self.entities == other.entities

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "EntitiesAdded":
        return cls(
            parameters.get(ENTITIES) or [],
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d[ENTITIES] = self.entities
        return d

    def as_story_string(self) -> None:
        return None

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        if tracker.latest_action_name != ACTION_LISTEN_NAME or not tracker.latest_message:
            return
        for entity in self.entities:
            if entity not in tracker.latest_message.entities:
                tracker.latest_message.entities.append(entity)


class BotUttered(Event):
    """The bot said something (text plus ``data``: buttons, image, custom, ...)."""

    type_name = "bot"

    def __init__(
        self,
        text: Optional[str] = None,
        data: Optional[dict[str, Any]] = None,
        metadata: Optional[dict[str, Any]] = None,
        timestamp: Optional[float] = None,
    ) -> None:
        self.text = text
        self.data = data or {}
        super().__init__(timestamp, metadata)

    def _members(self) -> tuple[Any, ...]:
        data = {k: v for k, v in self.data.items() if v is not None}
        meta = {k: v for k, v in self.metadata.items() if v is not None}
        return (self.text, _stable_json(data), _stable_json(meta))

    def __hash__(self) -> int:
        return hash(self._members())

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, BotUttered):
            return NotImplemented
        return self._members() == other._members()

    def __str__(self) -> str:
        return (
            f"BotUttered(text: {self.text}, data: {json.dumps(self.data, default=str)}, "
            f"metadata: {json.dumps(self.metadata, default=str)})"
        )

    def __repr__(self) -> str:
        return (
            f"BotUttered('{self.text}', {json.dumps(self.data, default=str)}, "
            f"{json.dumps(self.metadata, default=str)}, {self.timestamp})"
        )

    def as_story_string(self) -> None:
        return None

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.latest_bot_utterance = self

    def message(self) -> dict[str, Any]:
        """The full message as a dict (data + text + timestamp + metadata)."""
        m = dict(self.data)
        m["text"] = self.text
        m["timestamp"] = self.timestamp
        m.update(self.metadata)
        if m.get("image") == m.get("attachment"):
            # old Rasa copied image into attachment; show the image once
            m["attachment"] = None
        return m

    @staticmethod
    def empty() -> "BotUttered":
        return BotUttered()

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update({"text": self.text, "data": self.data, "metadata": self.metadata})
        return d

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "BotUttered":
        return cls(
            parameters.get("text"),
            parameters.get("data"),
            parameters.get("metadata"),
            parameters.get("timestamp"),
        )


class AgentUttered(Event):
    """A human agent said something to the user (kept for Rasa compatibility)."""

    type_name = "agent"

    def __init__(
        self,
        text: Optional[str] = None,
        data: Optional[Any] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.text = text
        self.data = data
        super().__init__(timestamp, metadata)

    def __hash__(self) -> int:
        return hash((self.text, _stable_json(self.data)))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, AgentUttered):
            return NotImplemented
        return (self.text, _stable_json(self.data)) == (other.text, _stable_json(other.data))

    def __str__(self) -> str:
        return f"AgentUttered(text: {self.text}, data: {json.dumps(self.data, default=str)})"

    def as_story_string(self) -> None:
        return None

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update({"text": self.text, "data": self.data})
        return d

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "AgentUttered":
        return cls(
            parameters.get("text"),
            parameters.get("data"),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )


# --- slots, actions, loops -------------------------------------------------------------


class SlotSet(Event):
    """Sets ``tracker.slots[key]`` to ``value`` (unknown slots are ignored)."""

    type_name = "slot"

    def __init__(
        self,
        key: str,
        value: Optional[Any] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.key = key
        self.value = value
        super().__init__(timestamp, metadata)

    def __repr__(self) -> str:
        return f"SlotSet(key: {self.key}, value: {self.value})"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash((self.key, _stable_json(self.value)))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, SlotSet):
            return NotImplemented
        return (self.key, self.value) == (other.key, other.value)

    def as_story_string(self) -> str:
        return f"{self.type_name}{json.dumps({self.key: self.value}, ensure_ascii=False, default=str)}"

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update({"name": self.key, "value": self.value})
        return d

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "SlotSet":
        return cls(
            parameters.get("name"),
            parameters.get("value"),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._set_slot(self.key, self.value)


class ActionExecuted(Event):
    """An action ran; becomes ``tracker.latest_action`` and clears the followup."""

    type_name = "action"

    def __init__(
        self,
        action_name: Optional[str] = None,
        policy: Optional[str] = None,
        confidence: Optional[float] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
        action_text: Optional[str] = None,
        hide_rule_turn: bool = False,
    ) -> None:
        self.action_name = action_name
        self.policy = policy
        self.confidence = confidence
        self.unpredictable = False
        self.action_text = action_text
        self.hide_rule_turn = hide_rule_turn
        if self.action_name is None and self.action_text is None:
            raise InvalidRequest(
                "An 'action' event needs an action name or an end-to-end action text; "
                "both are missing. Fix: set 'name' (or 'action_text')."
            )
        super().__init__(timestamp, metadata)

    def _members(self) -> tuple[Any, ...]:
        meta = {k: v for k, v in self.metadata.items() if v is not None}
        return (self.action_name, self.action_text, _stable_json(meta))

    def __repr__(self) -> str:
        return (
            f"ActionExecuted(action: {self.action_name}, policy: {self.policy}, "
            f"confidence: {self.confidence})"
        )

    def __str__(self) -> str:
        return str(self.action_name) if self.action_name is not None else str(self.action_text)

    def __hash__(self) -> int:
        return hash(self._members())

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ActionExecuted):
            return NotImplemented
        return self._members() == other._members()

    def as_story_string(self) -> Optional[str]:
        return self.action_name if self.action_name is not None else self.action_text

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "ActionExecuted":
        return cls(
            parameters.get("name"),
            parameters.get("policy"),
            parameters.get("confidence"),
            parameters.get("timestamp"),
            parameters.get("metadata"),
            parameters.get("action_text"),
            parameters.get("hide_rule_turn", False),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update(
            {
                "name": self.action_name,
                "policy": self.policy,
                "confidence": self.confidence,
                "action_text": self.action_text,
                "hide_rule_turn": self.hide_rule_turn,
            }
        )
        return d

    def as_sub_state(self) -> dict[str, str]:
        """``{"action_name": ...}`` or, for end-to-end actions, ``{"action_text": ...}``."""
        if self.action_name:
            return {ACTION_NAME: self.action_name}
        return {ACTION_TEXT: str(self.action_text)}

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.set_latest_action(self.as_sub_state())
        tracker.clear_followup_action()


class ActionExecutionRejected(Event):
    """An action (usually a form) refused to run; policies must pick another."""

    type_name = "action_execution_rejected"

    def __init__(
        self,
        action_name: str,
        policy: Optional[str] = None,
        confidence: Optional[float] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.action_name = action_name
        self.policy = policy
        self.confidence = confidence
        super().__init__(timestamp, metadata)

    def __str__(self) -> str:
        return (
            f"ActionExecutionRejected(action: {self.action_name}, policy: {self.policy}, "
            f"confidence: {self.confidence})"
        )

    def __hash__(self) -> int:
        return hash(self.action_name)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ActionExecutionRejected):
            return NotImplemented
        return self.action_name == other.action_name

    def as_story_string(self) -> None:
        return None

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "ActionExecutionRejected":
        return cls(
            parameters.get("name"),
            parameters.get("policy"),
            parameters.get("confidence"),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update({"name": self.action_name, "policy": self.policy, "confidence": self.confidence})
        return d

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.reject_action(self.action_name)


class FollowupAction(Event):
    """Forces the next action, bypassing the policies."""

    type_name = "followup"

    def __init__(
        self,
        name: str,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.action_name = name
        super().__init__(timestamp, metadata)

    def __hash__(self) -> int:
        return hash(self.action_name)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, FollowupAction):
            return NotImplemented
        return self.action_name == other.action_name

    def __str__(self) -> str:
        return f"FollowupAction(action: {self.action_name})"

    def as_story_string(self) -> str:
        return f"{self.type_name}{json.dumps({'name': self.action_name})}"

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "FollowupAction":
        return cls(parameters.get("name"), parameters.get("timestamp"), parameters.get("metadata"))

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["name"] = self.action_name
        return d

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.trigger_followup_action(self.action_name)


class ActiveLoop(Event):
    """Activates the loop (form) ``name``, or deactivates the active one when ``None``."""

    type_name = "active_loop"

    def __init__(
        self,
        name: Optional[str],
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.name = name
        super().__init__(timestamp, metadata)

    def __str__(self) -> str:
        return f"Loop({self.name})"

    def __repr__(self) -> str:
        return f"ActiveLoop({self.name}, {self.timestamp}, {self.metadata})"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ActiveLoop):
            return NotImplemented
        return self.name == other.name

    def as_story_string(self) -> str:
        return f"{ActiveLoop.type_name}{json.dumps({LOOP_NAME: self.name})}"

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "ActiveLoop":
        return cls(parameters.get(LOOP_NAME), parameters.get("timestamp"), parameters.get("metadata"))

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d[LOOP_NAME] = self.name
        return d

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.change_loop_to(self.name)


class LegacyForm(ActiveLoop):
    """Old ``form`` events (Rasa 1.x) read as ``ActiveLoop``, written as ``active_loop``."""

    type_name = "form"

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["event"] = ActiveLoop.type_name
        return d


class LoopInterrupted(Event):
    """The active loop was interrupted (unhappy path); the form must not validate."""

    type_name = "loop_interrupted"

    def __init__(
        self,
        is_interrupted: bool,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(timestamp, metadata)
        self.is_interrupted = is_interrupted

    def __str__(self) -> str:
        return f"LoopInterrupted({self.is_interrupted})"

    def __hash__(self) -> int:
        return hash(self.is_interrupted)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, LoopInterrupted):
            return NotImplemented
        return self.is_interrupted == other.is_interrupted

    def as_story_string(self) -> None:
        return None

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "LoopInterrupted":
        return LoopInterrupted(
            parameters.get(LOOP_INTERRUPTED, False),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d[LOOP_INTERRUPTED] = self.is_interrupted
        return d

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker.interrupt_loop(self.is_interrupted)


class LegacyFormValidation(LoopInterrupted):
    """Old ``form_validation`` events: ``validate=True`` means not interrupted."""

    type_name = "form_validation"

    def __init__(
        self,
        validate: bool,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(not validate, timestamp, metadata)

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "LoopInterrupted":
        return LoopInterrupted(
            not parameters.get("validate", True),
            parameters.get("timestamp"),
            parameters.get("metadata"),
        )

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d["event"] = LoopInterrupted.type_name
        return d


# --- conversation control ---------------------------------------------------------------


class Restarted(AlwaysEqualEventMixin):
    """Start over: state is reset and ``action_session_start`` runs next."""

    type_name = "restart"
    _hash_seed = 32143124312

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._reset()
        tracker.trigger_followup_action(ACTION_SESSION_START_NAME)


class UserUtteranceReverted(AlwaysEqualEventMixin):
    """Undo everything back to (and including) the latest user message."""

    type_name = "rewind"
    _hash_seed = 32143124315

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._reset()
        tracker.replay_events()


class AllSlotsReset(AlwaysEqualEventMixin):
    """All slots go back to their initial values; history stays."""

    type_name = "reset_slots"
    _hash_seed = 32143124316

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._reset_slots()


class ActionReverted(AlwaysEqualEventMixin):
    """Undo the latest action and the events it produced."""

    type_name = "undo"
    _hash_seed = 32143124318

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._reset()
        tracker.replay_events()


class ConversationPaused(AlwaysEqualEventMixin):
    """The bot stops acting (a human took over)."""

    type_name = "pause"
    _hash_seed = 32143124313

    def as_story_string(self) -> str:
        return str(self)

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._paused = True


class ConversationResumed(AlwaysEqualEventMixin):
    """The bot takes the conversation back."""

    type_name = "resume"
    _hash_seed = 32143124314

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._paused = False


class SessionStarted(AlwaysEqualEventMixin):
    """A new session begins: state is reset (carried-over slots are re-set after it)."""

    type_name = "session_started"
    _hash_seed = 32143124320

    def __repr__(self) -> str:
        return f"SessionStarted(type_name: {self.type_name})"

    def __str__(self) -> str:
        return f"SessionStarted({self.type_name})"

    def as_story_string(self) -> None:
        return None

    def apply_to(self, tracker: "DialogueStateTracker") -> None:
        tracker._reset()


class StoryExported(Event):
    """Rasa's 'dump the story to a file' marker; kept for compatibility, no effect here."""

    type_name = "export"

    def __init__(
        self,
        path: Optional[str] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.path = path
        super().__init__(timestamp, metadata)

    def __hash__(self) -> int:
        return hash(32143124319)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, StoryExported):
            return NotImplemented
        return self.path == other.path

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "StoryExported":
        return cls(parameters.get("path"), parameters.get("timestamp"), parameters.get("metadata"))


# --- reminders ---------------------------------------------------------------------------


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            from dateutil import parser  # optional, handles exotic formats
        except ImportError as e:  # pragma: no cover
            raise InvalidRequest(
                f"Cannot parse reminder date_time '{text}'. Fix: use ISO 8601, "
                f"e.g. '2024-05-01T10:00:00+08:00'."
            ) from e
        return parser.parse(text)


class ReminderScheduled(Event):
    """Trigger ``intent`` (with ``entities``) at ``trigger_date_time``."""

    type_name = "reminder"

    def __init__(
        self,
        intent: str,
        trigger_date_time: datetime,
        entities: Optional[list[dict[str, Any]]] = None,
        name: Optional[str] = None,
        kill_on_user_message: bool = True,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.intent = intent
        self.entities = entities
        self.trigger_date_time = trigger_date_time
        self.kill_on_user_message = kill_on_user_message
        self.name = name if name is not None else str(uuid.uuid1())
        super().__init__(timestamp, metadata)

    def __hash__(self) -> int:
        return hash(
            (
                self.intent,
                _stable_json(self.entities),
                self.trigger_date_time.isoformat(),
                self.kill_on_user_message,
                self.name,
            )
        )

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ReminderScheduled):
            return NotImplemented
        return self.name == other.name

    def __str__(self) -> str:
        return (
            f"ReminderScheduled(intent: {self.intent}, trigger_date: {self.trigger_date_time}, "
            f"entities: {self.entities}, name: {self.name})"
        )

    def scheduled_job_name(self, sender_id: str) -> str:
        """Job id that lets ``ReminderCancelled`` find the job again (Rasa's format)."""
        return (
            f"[{hash(self.name)},{hash(self.intent)},{hash(str(self.entities))}]"
            f"{ACTION_NAME_SENDER_ID_CONNECTOR_STR}{sender_id}"
        )

    def _properties(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "date_time": self.trigger_date_time.isoformat(),
            "entities": self.entities,
            "name": self.name,
            "kill_on_user_msg": self.kill_on_user_message,
        }

    def as_story_string(self) -> str:
        return f"{self.type_name}{json.dumps(self._properties(), default=str)}"

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update(self._properties())
        return d

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "ReminderScheduled":
        return cls(
            parameters.get("intent"),
            _parse_datetime(parameters.get("date_time")),
            parameters.get("entities"),
            name=parameters.get("name"),
            kill_on_user_message=parameters.get("kill_on_user_msg", True),
            timestamp=parameters.get("timestamp"),
            metadata=parameters.get("metadata"),
        )


class ReminderCancelled(Event):
    """Cancel reminders by name / intent / entities (all ``None``: cancel all).

    Unlike Rasa 3.6, ``as_dict`` also writes ``name``, ``intent`` and
    ``entities`` so the event survives a tracker-store round trip (Rasa reads
    these keys but forgets to write them).
    """

    type_name = "cancel_reminder"

    def __init__(
        self,
        name: Optional[str] = None,
        intent: Optional[str] = None,
        entities: Optional[list[dict[str, Any]]] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.name = name
        self.intent = intent
        self.entities = entities
        super().__init__(timestamp, metadata)

    def __hash__(self) -> int:
        return hash((self.name, self.intent, str(self.entities)))

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ReminderCancelled):
            return NotImplemented
        return (self.name, self.intent, str(self.entities)) == (
            other.name,
            other.intent,
            str(other.entities),
        )

    def __str__(self) -> str:
        return (
            f"ReminderCancelled(name: {self.name}, intent: {self.intent}, "
            f"entities: {self.entities})"
        )

    def cancels_job_with_name(self, job_name: str, sender_id: str) -> bool:
        """Whether this event cancels the job named by ``ReminderScheduled.scheduled_job_name``."""
        import re

        match = re.match(
            rf"^\[([\d\-]*),([\d\-]*),([\d\-]*)\]"
            rf"({re.escape(ACTION_NAME_SENDER_ID_CONNECTOR_STR)}{re.escape(sender_id)})$",
            job_name,
        )
        if not match:
            return False
        name_hash, intent_hash, entities_hash = match.group(1, 2, 3)
        return (
            (not self.name or str(hash(self.name)) == name_hash)
            and (not self.intent or str(hash(self.intent)) == intent_hash)
            and (not self.entities or str(hash(str(self.entities))) == entities_hash)
        )

    def as_story_string(self) -> str:
        props = {"name": self.name, "intent": self.intent, "entities": self.entities}
        return f"{self.type_name}{json.dumps(props, default=str)}"

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        d.update({"name": self.name, "intent": self.intent, "entities": self.entities})
        return d

    @classmethod
    def _from_parameters(cls, parameters: dict[str, Any]) -> "ReminderCancelled":
        return cls(
            parameters.get("name"),
            parameters.get("intent"),
            parameters.get("entities"),
            timestamp=parameters.get("timestamp"),
            metadata=parameters.get("metadata"),
        )


# Explicit registry: ``type_name`` -> class (Rasa's names, incl. legacy aliases).
EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name: cls
    for cls in (
        UserUttered,
        BotUttered,
        ActionExecuted,
        SlotSet,
        ActiveLoop,
        FollowupAction,
        AllSlotsReset,
        Restarted,
        SessionStarted,
        ActionExecutionRejected,
        ConversationPaused,
        ConversationResumed,
        EntitiesAdded,
        LoopInterrupted,
        UserUtteranceReverted,
        ActionReverted,
        ReminderScheduled,
        ReminderCancelled,
        StoryExported,
        AgentUttered,
        DefinePrevUserUtteredFeaturization,
        LegacyForm,
        LegacyFormValidation,
    )
}
