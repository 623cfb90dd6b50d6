"""Reader for Rasa 3 YAML stories, rules and test stories.

Mirrors ``rasa/shared/core/training_data/story_reader/yaml_story_reader.py`` and
``structures.py``: every story or rule becomes one or more ``StoryStep`` blocks
joined by checkpoints (explicit ``checkpoint:`` steps, and generated ones for
``or:`` steps). Rules become ``RuleStep`` blocks that start with the rule
snippet marker ``...`` (unless ``conversation_start: true``) and end with it
when ``wait_for_user_input: false``; ``condition:`` events are kept apart as
conditions. Every block remembers its file and line so errors can point there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_SESSION_START_NAME,
    FULL_RETRIEVAL_INTENT_NAME_KEY,
    INTENT_NAME_KEY,
    PREDICTED_CONFIDENCE_KEY,
    RESPONSE_IDENTIFIER_DELIMITER,
    RULE_SNIPPET_ACTION_NAME,
)
from bot.shared.exceptions import TrainingDataError, YamlError
from bot.shared.yaml_io import line_of, read_yaml_file, to_plain, yaml_files

logger = logging.getLogger(__name__)

# Checkpoint names, as in Rasa's structures.py.
STORY_START = "STORY_START"
STORY_END = None
GENERATED_CHECKPOINT_PREFIX = "GENR_"
CHECKPOINT_CYCLE_PREFIX = "CYCL_"
GENERATED_HASH_LENGTH = 5

LATEST_TRAINING_DATA_FORMAT_VERSION = "3.1"
TEST_STORIES_FILE_PREFIX = "test_"
INTENT_MESSAGE_PREFIX = "/"

KEY_STORIES = "stories"
KEY_STORY_NAME = "story"
KEY_RULES = "rules"
KEY_RULE_NAME = "rule"
KEY_STEPS = "steps"
KEY_ENTITIES = "entities"
KEY_USER_INTENT = "intent"
KEY_USER_MESSAGE = "user"
KEY_SLOT_NAME = "slot_was_set"
KEY_ACTIVE_LOOP = "active_loop"
KEY_ACTION = "action"
KEY_BOT_END_TO_END_MESSAGE = "bot"
KEY_CHECKPOINT = "checkpoint"
KEY_METADATA = "metadata"
KEY_OR = "or"
KEY_RULE_CONDITION = "condition"
KEY_WAIT_FOR_USER_INPUT_AFTER_RULE = "wait_for_user_input"
KEY_RULE_FOR_CONVERSATION_START = "conversation_start"

STEP_KEYS = (
    KEY_USER_INTENT,
    KEY_USER_MESSAGE,
    KEY_ENTITIES,
    KEY_OR,
    KEY_ACTION,
    KEY_BOT_END_TO_END_MESSAGE,
    KEY_CHECKPOINT,
    KEY_SLOT_NAME,
    KEY_ACTIVE_LOOP,
    KEY_METADATA,
)
STORY_ITEM_KEYS = (KEY_STORY_NAME, KEY_STEPS, KEY_METADATA)
RULE_ITEM_KEYS = (
    KEY_RULE_NAME,
    KEY_STEPS,
    KEY_METADATA,
    KEY_RULE_CONDITION,
    KEY_WAIT_FOR_USER_INPUT_AFTER_RULE,
    KEY_RULE_FOR_CONVERSATION_START,
)

# Rasa numbers steps so sorting by id is reproducible.
_STEP_COUNT = 1


def _next_step_id() -> str:
    global _STEP_COUNT
    step_id = f"{_STEP_COUNT}_{uuid.uuid4().hex}"
    _STEP_COUNT += 1
    return step_id


@dataclass(frozen=True)
class Checkpoint:
    """A named joint between story blocks; ``conditions`` filter by slot values."""

    name: Optional[str]
    conditions: dict[str, Any] = field(default_factory=dict)

    def as_story_string(self) -> str:
        dumped = json.dumps(self.conditions) if self.conditions else ""
        return f"{self.name}{dumped}"

    def filter_trackers(self, trackers: list[Any]) -> list[Any]:
        """Keep the trackers whose slots match every condition."""
        if not self.conditions:
            return trackers
        for slot_name, slot_value in self.conditions.items():
            trackers = [t for t in trackers if t.get_slot(slot_name) == slot_value]
        return trackers

    def __hash__(self) -> int:  # conditions is a dict; hash by name only
        return hash(self.name)


class StoryStep:
    """A section of a story between two checkpoints (Rasa's ``StoryStep``).

    ``events`` holds Rasa events; a nested list stands for an unexpanded
    ``or`` (only produced when reading for conversion, never for training).
    """

    is_rule = False

    def __init__(
        self,
        block_name: Optional[str] = None,
        start_checkpoints: Optional[list[Checkpoint]] = None,
        end_checkpoints: Optional[list[Checkpoint]] = None,
        events: Optional[list[Any]] = None,
        source_name: Optional[str] = None,
        source_line: Optional[int] = None,
    ) -> None:
        self.block_name = block_name
        self.start_checkpoints = list(start_checkpoints) if start_checkpoints else []
        self.end_checkpoints = list(end_checkpoints) if end_checkpoints else []
        self.events = list(events) if events else []
        self.source_name = source_name
        self.source_line = source_line
        self.id = _next_step_id()

    def create_copy(self, use_new_id: bool) -> "StoryStep":
        copied = StoryStep(
            self.block_name,
            self.start_checkpoints,
            self.end_checkpoints,
            self.events[:],
            self.source_name,
            self.source_line,
        )
        if not use_new_id:
            copied.id = self.id
        return copied

    def add_event(self, event: Any) -> None:
        self.events.append(event)

    def add_events(self, events: list[Any]) -> None:
        self.events.append(events)

    @staticmethod
    def is_action_listen(event: Any) -> bool:
        return _is_plain_action(event, ACTION_LISTEN_NAME)

    @staticmethod
    def is_action_session_start(event: Any) -> bool:
        return _is_plain_action(event, ACTION_SESSION_START_NAME)

    def _add_action_listen(self, events: list[Any]) -> None:
        if not events or not self.is_action_listen(events[-1]):
            events.append(_action(ACTION_LISTEN_NAME))

    def explicit_events(self, domain: Any, should_append_final_listen: bool = True) -> list[Any]:
        """Events plus the implicit ones: ``action_listen`` before each user turn
        and at the end, and slots filled from entities (``slots_for_entities``)."""
        from bot.shared.events import UserUttered

        events: list[Any] = []
        for e in self.events:
            if isinstance(e, UserUttered):
                self._add_action_listen(events)
                events.append(e)
                events.extend(slots_for_entities(domain, e.entities or []))
            else:
                events.append(e)
        if not self.end_checkpoints and should_append_final_listen:
            self._add_action_listen(events)
        return events

    def as_story_string(self) -> str:
        """A short human-readable dump (for hashing and debugging)."""
        lines = [f"## {self.block_name}"]
        lines += [f"> {c.as_story_string()}" for c in self.start_checkpoints if c.name != STORY_START]
        for e in self.events:
            lines.append(f"    - {_event_story_string(e)}")
        lines += [f"> {c.as_story_string()}" for c in self.end_checkpoints]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(block_name={self.block_name!r}, "
            f"start_checkpoints={self.start_checkpoints!r}, "
            f"end_checkpoints={self.end_checkpoints!r}, events={self.events!r})"
        )


class RuleStep(StoryStep):
    """A rule block; ``condition_events_indices`` marks the ``condition:`` events."""

    is_rule = True

    def __init__(
        self,
        block_name: Optional[str] = None,
        start_checkpoints: Optional[list[Checkpoint]] = None,
        end_checkpoints: Optional[list[Checkpoint]] = None,
        events: Optional[list[Any]] = None,
        source_name: Optional[str] = None,
        source_line: Optional[int] = None,
        condition_events_indices: Optional[set[int]] = None,
    ) -> None:
        super().__init__(
            block_name, start_checkpoints, end_checkpoints, events, source_name, source_line
        )
        self.condition_events_indices = set(condition_events_indices or ())

    def create_copy(self, use_new_id: bool) -> "RuleStep":
        copied = RuleStep(
            self.block_name,
            self.start_checkpoints,
            self.end_checkpoints,
            self.events[:],
            self.source_name,
            self.source_line,
            self.condition_events_indices,
        )
        if not use_new_id:
            copied.id = self.id
        return copied

    def get_rules_condition(self) -> list[Any]:
        return [e for i, e in enumerate(self.events) if i in self.condition_events_indices]

    def get_rules_events(self) -> list[Any]:
        return [e for i, e in enumerate(self.events) if i not in self.condition_events_indices]

    def add_event_as_condition(self, event: Any) -> None:
        self.condition_events_indices.add(len(self.events))
        self.events.append(event)


# --------------------------------------------------------------------------- helpers


def _action(name: Optional[str] = None, text: Optional[str] = None) -> Any:
    from bot.shared.events import ActionExecuted

    if text is not None:
        return ActionExecuted(action_name=None, action_text=text)
    return ActionExecuted(action_name=name)


def _is_plain_action(event: Any, name: str) -> bool:
    from bot.shared.events import ActionExecuted

    return type(event) is ActionExecuted and event.action_name == name


def _event_story_string(event: Any) -> str:
    """Deterministic one-line description (no timestamps), used for hashes."""
    if isinstance(event, list):
        return " OR ".join(_event_story_string(e) for e in event)
    type_name = getattr(event, "type_name", type(event).__name__)
    if hasattr(event, "intent") and hasattr(event, "entities"):
        intent = (getattr(event, "intent", None) or {})
        name = intent.get(FULL_RETRIEVAL_INTENT_NAME_KEY) or intent.get(INTENT_NAME_KEY)
        ents = json.dumps(getattr(event, "entities", None) or [], sort_keys=True, default=str)
        text = getattr(event, "text", None)
        return f"user: {name}{ents}" + (f" {text!r}" if text else "")
    if hasattr(event, "action_name") and hasattr(event, "action_text"):
        return f"action: {event.action_name or event.action_text!r}"
    if hasattr(event, "key") and hasattr(event, "value"):
        return f"slot: {event.key}={json.dumps(event.value, sort_keys=True, default=str)}"
    if type_name == "active_loop":
        return f"active_loop: {getattr(event, 'name', None)}"
    return str(type_name)


def slots_for_entities(domain: Any, entities: Sequence[dict[str, Any]]) -> list[Any]:
    """SlotSet events for slots with a ``from_entity`` mapping matching ``entities``.

    Uses ``domain.slots_for_entities`` when the Domain has it (Rasa's name),
    otherwise applies Rasa 3.6's rule itself.
    """
    if domain is None or not entities:
        return []
    own = getattr(domain, "slots_for_entities", None)
    if callable(own):
        return list(own(list(entities)))
    from bot.shared.events import SlotSet

    if getattr(domain, "store_entities_as_slots", True) is False:
        return []
    events = []
    for slot in getattr(domain, "slots", []) or []:
        matching = []
        for mapping in getattr(slot, "mappings", None) or []:
            if mapping.get("type") != "from_entity":
                continue
            conditions = mapping.get("conditions")
            if conditions and conditions[0].get("active_loop") is not None:
                continue
            for entity in entities:
                if (
                    entity.get("entity") == mapping.get("entity")
                    and entity.get("role") == mapping.get("role")
                    and entity.get("group") == mapping.get("group")
                ):
                    matching.append(entity.get("value"))
        if matching:
            is_list = getattr(slot, "type_name", None) == "list"
            events.append(SlotSet(slot.name, matching if is_list else matching[-1]))
    return events


# Rasa's entity annotation syntax: [text](entity), [text](entity:value),
# [text]{"entity": ...}, [text][{...}, {...}].
_ENTITY_REGEX = re.compile(
    r"\[(?P<entity_text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?:\:(?P<value>[^)]+))?\)"
    r"|\{(?P<entity_dict>[^}]+?)\}"
    r"|\[(?P<list_entity_dicts>.*?)\])"
)


def parse_entity_annotations(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities (with start/end offsets) of an annotated user line."""
    entities: list[dict[str, Any]] = []
    plain_parts: list[str] = []
    offset = 0  # length of plain text so far
    last = 0
    for match in _ENTITY_REGEX.finditer(text):
        plain_parts.append(text[last : match.start()])
        offset += match.start() - last
        entity_text = match.group("entity_text")
        start, end = offset, offset + len(entity_text)
        dicts: list[dict[str, Any]] = []
        if match.group("entity"):
            d: dict[str, Any] = {"entity": match.group("entity")}
            if match.group("value"):
                d["value"] = match.group("value")
            dicts.append(d)
        elif match.group("entity_dict"):
            dicts.append(_json_annotation("{" + match.group("entity_dict") + "}", text))
        elif match.group("list_entity_dicts") is not None:
            loaded = _json_annotation("[" + match.group("list_entity_dicts") + "]", text)
            dicts.extend(loaded if isinstance(loaded, list) else [loaded])
        for d in dicts:
            entity = {
                "start": start,
                "end": end,
                "value": d.get("value", entity_text),
                "entity": d.get("entity"),
            }
            for extra in ("role", "group"):
                if d.get(extra) is not None:
                    entity[extra] = d[extra]
            entities.append(entity)
        plain_parts.append(entity_text)
        offset = end
        last = match.end()
    plain_parts.append(text[last:])
    return "".join(plain_parts), entities


def _json_annotation(raw: str, text: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainingDataError(
            f"Invalid entity annotation {raw!r} in user message {text!r}: {e.msg}.",
            fix='Write entity dictionaries as JSON, e.g. [Berlin]{"entity": "city", "value": "BER"}.',
        ) from e


def _text_hash(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - not security


# --------------------------------------------------------------------------- builder


class _StepBuilder:
    """Rasa's ``StoryStepBuilder``: splits one story/rule at checkpoints and ``or``s."""

    def __init__(self, name: str, source_name: Optional[str], line: Optional[int], is_rule: bool) -> None:
        self.name = name
        self.source_name = source_name
        self.line = line
        self.is_rule = is_rule
        self.story_steps: list[StoryStep] = []
        self.current_steps: list[StoryStep] = []
        self.start_checkpoints: list[Checkpoint] = []

    def add_checkpoint(self, name: str, conditions: dict[str, Any]) -> None:
        if not self.current_steps:
            self.start_checkpoints.append(Checkpoint(name, conditions))
            return
        if conditions:
            logger.warning(
                "%s:%s: end or intermediate checkpoint '%s' has slot conditions; they are ignored.",
                self.source_name, self.line, name,
            )
        additional = []
        for t in self.current_steps:
            if t.end_checkpoints:
                tcp = t.create_copy(use_new_id=True)
                tcp.end_checkpoints = [Checkpoint(name)]
                additional.append(tcp)
            else:
                t.end_checkpoints = [Checkpoint(name)]
        self.current_steps.extend(additional)

    def _prev_end_checkpoints(self) -> list[Checkpoint]:
        if not self.current_steps:
            return self.start_checkpoints
        end_names = sorted({e.name for s in self.current_steps for e in s.end_checkpoints})
        return [Checkpoint(n) for n in end_names]

    def add_user_messages(self, messages: list[Any]) -> None:
        self.ensure_current_steps()
        if len(messages) == 1:
            for t in self.current_steps:
                t.add_event(messages[0])
            return
        generated = self._or_checkpoint_name(messages)
        updated = []
        for t in self.current_steps:
            for message in messages:
                copied = t.create_copy(use_new_id=True)
                copied.add_event(message)
                copied.end_checkpoints = [Checkpoint(generated)]
                updated.append(copied)
        self.current_steps = updated

    def add_event(self, event: Any, is_condition: bool = False) -> None:
        self.ensure_current_steps()
        for t in self.current_steps:
            if is_condition and isinstance(t, RuleStep):
                t.add_event_as_condition(event)
            else:
                t.add_event(event)

    def ensure_current_steps(self) -> None:
        completed = [s for s in self.current_steps if s.end_checkpoints]
        unfinished = [s for s in self.current_steps if not s.end_checkpoints]
        self.story_steps.extend(completed)
        self.current_steps = unfinished if unfinished else self._next_story_steps()

    def flush(self) -> None:
        if self.current_steps:
            self.story_steps.extend(self.current_steps)
            self.current_steps = []

    def _next_story_steps(self) -> list[StoryStep]:
        start = self._prev_end_checkpoints() or [Checkpoint(STORY_START)]
        cls = RuleStep if self.is_rule else StoryStep
        return [cls(block_name=self.name, start_checkpoints=start, source_name=self.source_name, source_line=self.line)]

    def _or_checkpoint_name(self, messages: list[Any]) -> str:
        texts = sorted(_event_story_string(m) for m in messages)
        starts = sorted({str(c.name) for s in self.current_steps for c in s.start_checkpoints})
        events = [_event_story_string(e) for s in self.current_steps for e in s.events]
        unique = f"{self.name}_<>_{'@@@'.join(events)}_<>_{'@@@'.join(starts)}_<>_{'@@@'.join(texts)}"
        return f"{GENERATED_CHECKPOINT_PREFIX}OR_{_text_hash(unique)[:GENERATED_HASH_LENGTH]}"


# --------------------------------------------------------------------------- reader


class YAMLStoryReader:
    """Reads ``stories:`` and ``rules:`` of one parsed YAML file into story steps."""

    def __init__(self, domain: Any = None, source_name: Optional[str] = None, strict: bool = True) -> None:
        self.domain = domain
        self.source_name = source_name
        self.strict = strict
        self.story_steps: list[StoryStep] = []
        self._builder: Optional[_StepBuilder] = None
        self._is_rule = False
        self._is_parsing_conditions = False
        self._domain_intents: Optional[set[str]] = None
        self._domain_actions: Optional[set[str]] = None
        self._domain_slots: Optional[dict[str, Any]] = None
        if domain is not None:
            self._domain_intents = set(getattr(domain, "intents", []) or [])
            self._domain_actions = set(getattr(domain, "action_names_or_texts", []) or [])
            self._domain_slots = {s.name: s for s in getattr(domain, "slots", []) or []}
            # Retrieval actions (utter_<retrieval intent>) need no domain entry
            # when responses or a retrieval intent exist for them (Rasa).
            responses = getattr(domain, "responses", {}) or {}
            self._domain_actions |= {k.split("/", 1)[0] for k in responses if "/" in k}
            self._domain_actions |= {
                f"utter_{i}" for i in (getattr(domain, "retrieval_intents", []) or [])
            }

    # -- entry points -------------------------------------------------------

    def read_from_file(self, filename: str | Path) -> list[StoryStep]:
        self.source_name = str(filename)
        try:
            content = read_yaml_file(filename)
        except YamlError as e:
            raise TrainingDataError(e.message, e.filename, e.line, e.fix) from e
        return self.read_from_parsed_yaml(content)

    def read_from_parsed_yaml(self, content: Any) -> list[StoryStep]:
        if content is None:
            return []
        if not isinstance(content, dict):
            self._error(
                "A stories/rules file must be a YAML mapping with 'stories:' or 'rules:'.",
                line_of(content),
                "Start the file with 'version: \"3.1\"' and a 'stories:' or 'rules:' list.",
            )
        check_format_version(content, self.source_name)
        for key, is_rule in ((KEY_STORIES, False), (KEY_RULES, True)):
            data = content.get(key)
            if data is None:
                continue
            if not isinstance(data, list):
                self._error(
                    f"'{key}' must be a list of {'rules' if is_rule else 'stories'}.",
                    line_of(content, key),
                    f"Write each item as '- {KEY_RULE_NAME if is_rule else KEY_STORY_NAME}: <name>' with 'steps:'.",
                )
            self._is_rule = is_rule
            for index, item in enumerate(data):
                self._parse_item(item, line_of(data, index=index))
            self._add_current_to_result()
        return self.story_steps

    # -- items --------------------------------------------------------------

    def _title(self) -> str:
        return KEY_RULE_NAME if self._is_rule else KEY_STORY_NAME

    def _parse_item(self, item: Any, line: Optional[int]) -> None:
        title = self._title()
        if not isinstance(item, dict):
            self._error(
                f"Unexpected item {to_plain(item)!r}: items under '{title}s' must be mappings.",
                line,
                f"Write '- {title}: <name>' followed by 'steps:'.",
            )
        allowed = RULE_ITEM_KEYS if self._is_rule else STORY_ITEM_KEYS
        if title not in item:
            other = KEY_STORY_NAME if self._is_rule else KEY_RULE_NAME
            hint = f" It looks like a {other}; move it under '{other}s:'." if other in item else ""
            self._error(
                f"Item under '{title}s' has no '{title}' key.{hint}",
                line,
                f"Give every item a name with '{title}: <name>'.",
            )
        for key in item:
            if key not in allowed:
                self._error(
                    f"Unknown key '{key}' in {title} '{item.get(title)}'.",
                    line_of(item, key) or line,
                    f"Valid keys of a {title} are: {', '.join(allowed)}.",
                )
        name = item.get(title)
        if not name:
            logger.warning("%s:%s: a %s has an empty name.", self.source_name, line, title)
            name = ""
        steps = item.get(KEY_STEPS)
        if not steps:
            self._error(
                f"The {title} '{name}' has no steps.",
                line,
                f"Add a 'steps:' list (e.g. '- intent: greet' and '- action: utter_greet') or delete the {title}.",
            )
        if not isinstance(steps, list):
            self._error(f"'steps' of {title} '{name}' must be a list.", line_of(item, KEY_STEPS) or line,
                        "Write each step as a list item starting with '- '.")

        self._add_current_to_result()
        self._builder = _StepBuilder(str(name), self.source_name, line, self._is_rule)
        if self._is_rule:
            conditions = item.get(KEY_RULE_CONDITION) or []
            if not isinstance(conditions, list):
                self._error(f"'condition' of rule '{name}' must be a list of steps.",
                            line_of(item, KEY_RULE_CONDITION) or line,
                            "Write conditions like steps, e.g. '- active_loop: my_form'.")
            self._is_parsing_conditions = True
            for index, condition in enumerate(conditions):
                self._parse_step(condition, line_of(conditions, index=index) or line)
            self._is_parsing_conditions = False
            if not item.get(KEY_RULE_FOR_CONVERSATION_START):
                self._add_event(_action(RULE_SNIPPET_ACTION_NAME))
        for index, step in enumerate(steps):
            self._parse_step(step, line_of(steps, index=index) or line)
        if self._is_rule and item.get(KEY_WAIT_FOR_USER_INPUT_AFTER_RULE) is False:
            self._add_event(_action(RULE_SNIPPET_ACTION_NAME))

    def _add_current_to_result(self) -> None:
        if self._builder is not None:
            self._builder.flush()
            self.story_steps.extend(self._builder.story_steps)
            self._builder = None

    # -- steps --------------------------------------------------------------

    def _parse_step(self, step: Any, line: Optional[int]) -> None:
        if isinstance(step, str):
            self._error(
                f"Unexpected step {step!r} in {self._title()} '{self._builder.name if self._builder else ''}'.",
                line,
                "Steps are mappings such as '- intent: greet' or '- action: utter_greet'.",
            )
        if not isinstance(step, dict):
            self._error(f"Unexpected step {to_plain(step)!r}.", line,
                        f"Steps are mappings with one of: {', '.join(STEP_KEYS)}.")
        unknown = [k for k in step if k not in STEP_KEYS]
        if unknown:
            self._error(
                f"Unknown step key '{unknown[0]}' in {self._title()} '{self._builder.name if self._builder else ''}'.",
                line_of(step, unknown[0]) or line,
                f"Use one of: {', '.join(STEP_KEYS)}.",
            )
        if KEY_USER_INTENT in step or KEY_USER_MESSAGE in step:
            self._parse_user_utterance(step, line)
        elif KEY_OR in step:
            self._parse_or_statement(step, line)
        elif KEY_ACTION in step:
            self._parse_action(step, line)
        elif KEY_BOT_END_TO_END_MESSAGE in step:
            self._parse_bot_message(step, line)
        elif KEY_CHECKPOINT in step:
            self._parse_checkpoint(step, line)
        elif KEY_SLOT_NAME in step:
            self._parse_slot(step, line)
        elif KEY_ACTIVE_LOOP in step:
            self._parse_active_loop(step[KEY_ACTIVE_LOOP], line)
        elif KEY_METADATA in step:
            pass
        else:
            self._error(f"Step {to_plain(step)!r} has no step key.", line,
                        f"Use one of: {', '.join(STEP_KEYS)}.")

    def _parse_user_utterance(self, step: dict, line: Optional[int]) -> None:
        self._builder_or_fail(line).add_user_messages([self._parse_raw_user_utterance(step, line)])

    def _parse_or_statement(self, step: dict, line: Optional[int]) -> None:
        options = step.get(KEY_OR)
        if not isinstance(options, list) or not options:
            self._error("'or' must be a non-empty list of user steps.", line,
                        "Write '- or:' followed by '- intent: a' and '- intent: b'.")
        utterances = []
        for index, option in enumerate(options):
            option_line = line_of(options, index=index) or line
            if isinstance(option, dict) and (KEY_USER_INTENT in option or KEY_USER_MESSAGE in option):
                utterances.append(self._parse_raw_user_utterance(option, option_line))
            elif isinstance(option, dict) and KEY_SLOT_NAME in option and len(option) == 1:
                # Rasa 3 also allows alternatives of slot_was_set in `or`.
                utterances.append(self._slot_events(option, option_line))
            else:
                self._error(
                    f"'or' can only contain '{KEY_USER_INTENT}' / '{KEY_USER_MESSAGE}' or "
                    f"'{KEY_SLOT_NAME}' steps, found {to_plain(option)!r}.",
                    option_line,
                    "Put only user steps (e.g. '- intent: affirm') under 'or'.",
                )
        builder = self._builder_or_fail(line)
        # slot_was_set alternatives may hold several events; wrap them so each
        # option stays one element of the `or` (flattened on the copies).
        if any(isinstance(u, list) for u in utterances):
            self._add_or_with_lists(builder, utterances)
        else:
            builder.add_user_messages(utterances)

    def _add_or_with_lists(self, builder: _StepBuilder, options: list[Any]) -> None:
        builder.ensure_current_steps()
        generated = builder._or_checkpoint_name([e for o in options for e in (o if isinstance(o, list) else [o])])
        updated = []
        for t in builder.current_steps:
            for option in options:
                copied = t.create_copy(use_new_id=True)
                for e in option if isinstance(option, list) else [option]:
                    copied.add_event(e)
                copied.end_checkpoints = [Checkpoint(generated)]
                updated.append(copied)
        builder.current_steps = updated

    def _user_intent_from_step(self, step: dict, line: Optional[int]) -> tuple[Optional[str], Optional[str]]:
        raw = step.get(KEY_USER_INTENT)
        if raw is None:
            return None, None
        intent = str(raw).strip()
        if not intent:
            self._error("User intent cannot be empty.", line, "Write the intent name, e.g. '- intent: greet'.")
        if intent.startswith(INTENT_MESSAGE_PREFIX):
            logger.warning(
                "%s:%s: user intent '%s' starts with '/'; this is not required and is removed.",
                self.source_name, line, intent,
            )
            intent = intent[1:]
        base, _, response_key = intent.partition(RESPONSE_IDENTIFIER_DELIMITER)
        return base, intent if response_key else None

    def _parse_raw_user_utterance(self, step: dict, line: Optional[int]) -> Any:
        from bot.shared.events import UserUttered

        intent_name, full_retrieval_intent = self._user_intent_from_step(step, line)
        if intent_name is not None:
            self._check_intent(intent_name, line)
        intent: dict[str, Any] = {}
        if intent_name is not None:
            intent = {INTENT_NAME_KEY: intent_name, PREDICTED_CONFIDENCE_KEY: 1.0}
            if full_retrieval_intent:
                intent[FULL_RETRIEVAL_INTENT_NAME_KEY] = full_retrieval_intent
        if KEY_USER_MESSAGE in step:
            raw_text = step.get(KEY_USER_MESSAGE)
            if raw_text is None or not str(raw_text).strip():
                self._error("User message cannot be empty.", line, "Write the text after 'user:' or remove the key.")
            plain_text, entities = parse_entity_annotations(str(raw_text).strip())
            if plain_text.startswith(INTENT_MESSAGE_PREFIX) and not entities:
                entities = _entities_from_intent_message(plain_text)
            if step.get(KEY_ENTITIES):
                entities = entities + self._parse_raw_entities(step[KEY_ENTITIES], line)
        else:
            plain_text = None
            entities = self._parse_raw_entities(step.get(KEY_ENTITIES) or [], line)
        parse_data = {
            "text": plain_text,
            "intent": dict(intent) if intent else {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0},
            "entities": entities,
        }
        return UserUttered(plain_text, intent or None, entities, parse_data)

    def _parse_raw_entities(self, raw_entities: Any, line: Optional[int]) -> list[dict[str, Any]]:
        if not isinstance(raw_entities, list):
            self._error("'entities' must be a list.", line,
                        "Write '- entity_name: value' or '- entity_name' items under 'entities:'.")
        final = []
        for entity in raw_entities:
            if isinstance(entity, dict):
                d: dict[str, Any] = {}
                for key, value in entity.items():
                    if key == "role":
                        d["role"] = value
                    elif key == "group":
                        d["group"] = value
                    else:
                        d["entity"] = str(key)
                        d["value"] = to_plain(value)
                final.append({k: d[k] for k in ("entity", "value", "role", "group") if d.get(k) is not None})
            else:
                final.append({"entity": str(entity), "value": ""})
        return final

    def _parse_action(self, step: dict, line: Optional[int]) -> None:
        name = step.get(KEY_ACTION)
        if not name or not str(name).strip():
            self._error("Action name cannot be empty.", line, "Write the action name, e.g. '- action: utter_greet'.")
        name = str(name).strip()
        self._check_action(name, line)
        self._add_event(_action(name), line)

    def _parse_bot_message(self, step: dict, line: Optional[int]) -> None:
        text = step.get(KEY_BOT_END_TO_END_MESSAGE)
        if text is None or not str(text).strip():
            self._error("Bot message cannot be empty.", line, "Write the bot text after 'bot:'.")
        self._add_event(_action(text=str(text).strip()), line)

    def _parse_active_loop(self, name: Any, line: Optional[int]) -> None:
        from bot.shared.events import ActiveLoop

        if name is not None:
            name = str(name)
            self._check_action(name, line, kind="active loop")
        self._add_event(ActiveLoop(name), line)

    def _slot_events(self, step: dict, line: Optional[int]) -> list[Any]:
        from bot.shared.events import SlotSet

        slots = step.get(KEY_SLOT_NAME)
        if isinstance(slots, (str, dict)):
            slots = [slots]
        if not isinstance(slots, list):
            self._error("'slot_was_set' must be a list of slot names or '{name: value}' items.", line,
                        "Write '- slot_was_set:' followed by '- my_slot: value'.")
        events = []
        for slot in slots:
            if isinstance(slot, dict):
                for key, value in slot.items():
                    self._check_slot(str(key), line)
                    events.append(SlotSet(str(key), to_plain(value)))
            elif isinstance(slot, str):
                self._check_slot(slot, line)
                events.append(SlotSet(slot, self._slot_default_value(slot)))
            else:
                self._error(f"Invalid slot {to_plain(slot)!r} under 'slot_was_set'.", line,
                            "Items must be slot names or '{name: value}' mappings.")
        return events

    def _parse_slot(self, step: dict, line: Optional[int]) -> None:
        for event in self._slot_events(step, line):
            self._add_event(event, line)

    def _slot_default_value(self, slot_name: str) -> Any:
        if not self._domain_slots or slot_name not in self._domain_slots:
            return None
        slot = self._domain_slots[slot_name]
        type_name = getattr(slot, "type_name", None)
        if type_name == "text":
            return "filled"
        if type_name == "bool":
            return True
        if getattr(slot, "influence_conversation", False):
            logger.warning(
                "%s: slot '%s' of type '%s' is referenced by name only; it is treated as empty.",
                self.source_name, slot_name, type_name,
            )
        return None

    def _parse_checkpoint(self, step: dict, line: Optional[int]) -> None:
        name = step.get(KEY_CHECKPOINT)
        if not name:
            self._error("Checkpoint name cannot be empty.", line, "Write '- checkpoint: <name>'.")
        conditions: dict[str, Any] = {}
        slots = step.get(KEY_SLOT_NAME) or []
        for slot in slots if isinstance(slots, list) else [slots]:
            if not isinstance(slot, dict):
                self._error(f"Checkpoint '{name}' has an invalid slot condition {to_plain(slot)!r}.", line,
                            "Write checkpoint slot conditions as '- slot_name: value'.")
            for key, value in slot.items():
                self._check_slot(str(key), line)
                conditions[str(key)] = to_plain(value)
        self._builder_or_fail(line).add_checkpoint(str(name), conditions)

    # -- plumbing -----------------------------------------------------------

    def _builder_or_fail(self, line: Optional[int]) -> _StepBuilder:
        if self._builder is None:  # pragma: no cover - items always create one
            self._error("Step outside of a story or rule.", line, "Put steps under 'steps:'.")
        return self._builder  # type: ignore[return-value]

    def _add_event(self, event: Any, line: Optional[int] = None) -> None:
        self._builder_or_fail(line).add_event(event, is_condition=self._is_parsing_conditions)

    def _problem(self, message: str, line: Optional[int], fix: str) -> None:
        if self.strict:
            self._error(message, line, fix)
        logger.warning("%s:%s: %s %s", self.source_name, line, message, fix)

    def _check_intent(self, intent: str, line: Optional[int]) -> None:
        if self._domain_intents is not None and intent not in self._domain_intents:
            # Rasa warns ("Found intent ... which is not part of the domain") and trains:
            # such a turn never matches a message, so it only costs the story.
            logger.warning(
                "%s:%s: Intent '%s' is used in %s '%s' "
                "but is not in the domain. Add '%s' to 'intents:' in domain.yml or fix the spelling.",
                self.source_name, line, intent, self._title(),
                self._builder.name if self._builder else '', intent,
            )

    def _check_action(self, name: str, line: Optional[int], kind: str = "action") -> None:
        if self._domain_actions is None or name == RULE_SNIPPET_ACTION_NAME:
            return
        if kind == "action" and name.startswith("utter_") and self._domain_intents is not None:
            # responses can be defined by an NLG server / ResponseSelector training data
            if name[len("utter_"):] in self._domain_intents:
                return
        if name not in self._domain_actions:
            self._problem(
                f"The {kind} '{name}' is used in {self._title()} "
                f"'{self._builder.name if self._builder else ''}' but is not in the domain.",
                line,
                f"Add '{name}' to 'actions:', 'forms:' or 'responses:' in domain.yml or fix the spelling.",
            )

    def _check_slot(self, name: str, line: Optional[int]) -> None:
        if self._domain_slots is not None and name not in self._domain_slots:
            self._problem(
                f"Slot '{name}' is used in {self._title()} '{self._builder.name if self._builder else ''}' "
                "but is not in the domain.",
                line,
                f"Add '{name}' to 'slots:' in domain.yml or fix the spelling.",
            )

    def _error(self, message: str, line: Optional[int], fix: str) -> None:
        raise TrainingDataError(message, self.source_name, line, fix)


def _entities_from_intent_message(text: str) -> list[dict[str, Any]]:
    """Entities of a ``/intent{"entity": "value"}`` user message."""
    match = re.match(r"^/[^{@]+(\{.*\})", text)
    if not match:
        return []
    try:
        parsed = json.loads(match.group(1))
    except json.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    out = []
    for key, value in parsed.items():
        for v in value if isinstance(value, list) else [value]:
            out.append({"entity": key, "value": v, "start": match.start(1), "end": match.end(1)})
    return out


def check_format_version(content: dict, filename: Optional[str]) -> None:
    """Warn when ``version`` is missing or differs from 3.1; reject non-versions."""
    version = content.get("version")
    if version is None:
        logger.debug("%s has no 'version' key; assuming %s.", filename, LATEST_TRAINING_DATA_FORMAT_VERSION)
        return
    text = str(version).strip("\"' ")
    try:
        major, minor = (int(p) for p in (text.split(".") + ["0"])[:2])
    except ValueError as e:
        raise TrainingDataError(
            f"Invalid training data format version {version!r}.",
            filename,
            line_of(content, "version"),
            fix=f'Use version: "{LATEST_TRAINING_DATA_FORMAT_VERSION}".',
        ) from e
    if major == 3 and minor <= 1:
        return  # Rasa 3.0 files read as 3.1, as Rasa 3.6 reads them (no warning)
    if (major, minor) != (3, 1):
        logger.warning(
            '%s:%s: training data format version "%s" differs from "%s"; reading it as %s.',
            filename, line_of(content, "version"), text,
            LATEST_TRAINING_DATA_FORMAT_VERSION, LATEST_TRAINING_DATA_FORMAT_VERSION,
        )


# --------------------------------------------------------------------------- loading


def _candidate_files(paths: Iterable[str | Path] | str | Path) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        for f in yaml_files(p):
            if f not in files:
                files.append(f)
    return files


def _has_story_keys(path: Path) -> tuple[bool, Any]:
    try:
        content = read_yaml_file(path)
    except YamlError as e:
        raise TrainingDataError(e.message, e.filename, e.line, e.fix) from e
    ok = isinstance(content, dict) and (KEY_STORIES in content or KEY_RULES in content)
    return ok, content


def is_story_file(path: str | Path) -> bool:
    """True for a YAML file with a ``stories:`` or ``rules:`` key."""
    return _has_story_keys(Path(path))[0]


def load_story_steps(
    paths: Iterable[str | Path] | str | Path,
    domain: Any = None,
    strict: bool = True,
) -> list[StoryStep]:
    """Story and rule steps of every YAML file under ``paths`` with stories/rules.

    With a domain, intents, actions and slots are checked against it;
    ``strict=False`` turns those checks into warnings (Rasa's behaviour).
    """
    steps: list[StoryStep] = []
    for f in _candidate_files(paths):
        ok, content = _has_story_keys(f)
        if not ok:
            continue
        reader = YAMLStoryReader(domain, str(f), strict=strict)
        steps.extend(reader.read_from_parsed_yaml(content))
    logger.debug("Read %d story steps.", len(steps))
    return steps


def load_test_stories(paths: Iterable[str | Path] | str | Path, domain: Any = None) -> list[StoryStep]:
    """Steps of test stories: files given directly, or ``test_*`` files in folders.

    A folder without ``test_``-prefixed story files contributes all its story files.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    selected: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            story_files = [f for f in yaml_files(p) if is_story_file(f)]
            prefixed = [f for f in story_files if f.name.startswith(TEST_STORIES_FILE_PREFIX)]
            selected.extend(prefixed or story_files)
        elif p.is_file():
            selected.append(p)
        else:
            raise TrainingDataError("Test story path does not exist.", p, fix="Pass an existing file or folder.")
    return load_story_steps(selected, domain, strict=False)


def __getattr__(name: str) -> Any:
    """``StoryGraph`` lives in story_graph.py; re-exported lazily (no import cycle)."""
    if name == "StoryGraph":
        from bot.shared.training_data.story_graph import StoryGraph

        return StoryGraph
    raise AttributeError(name)
