"""``action_extract_slots``: fill slots from the latest user message by their mappings.

Runs after every user message, before the predicted action (the processor calls it).
Mapping types as Rasa 3: ``from_entity`` (entity, role, group), ``from_text``,
``from_intent``, ``from_trigger_intent``, ``custom`` (optionally with an ``action``);
each may restrict ``intent`` / ``not_intent`` and carry ``conditions``
(``active_loop`` and ``requested_slot``). Only slots whose value changes are set.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import Action, executor_knows, intent_name_of, latest_entity_values
from bot.dialogue.actions.custom import custom_action
from bot.shared import constants as c
from bot.shared.events import BotUttered, Event, SlotSet
from bot.shared.exceptions import ActionExecutionError, ActionExecutionRejection

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

FROM_ENTITY = "from_entity"
FROM_INTENT = "from_intent"
FROM_TRIGGER_INTENT = "from_trigger_intent"
FROM_TEXT = "from_text"
CUSTOM = "custom"
PREDEFINED_MAPPING_TYPES = {FROM_ENTITY, FROM_INTENT, FROM_TRIGGER_INTENT, FROM_TEXT}
MAPPING_TYPES = PREDEFINED_MAPPING_TYPES | {CUSTOM}
NOT_INTENT = "not_intent"
IGNORED_INTENTS = "ignored_intents"


# --------------------------------------------------------------------------- mapping helpers


def to_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def active_loop_of(tracker: DialogueStateTracker) -> dict[str, Any]:
    """The tracker's active loop dict (``{}`` when none)."""
    loop = getattr(tracker, "active_loop", None)
    return loop if isinstance(loop, dict) else {}


def is_active_loop_rejected(tracker: DialogueStateTracker) -> bool:
    value = getattr(tracker, "is_active_loop_rejected", None)
    if isinstance(value, bool):
        return value
    return bool(active_loop_of(tracker).get(c.LOOP_REJECTED))


def is_list_slot(slot: Any) -> bool:
    return type(slot).__name__ == "ListSlot" or getattr(slot, "type_name", None) == "list"


def slot_by_name(domain: Domain, name: str) -> Any:
    for slot in domain.slots:
        if slot.name == name:
            return slot
    return None


def form_required_slots(domain: Domain, form_name: str) -> list[str]:
    """The form's ``required_slots`` from the domain."""
    getter = getattr(domain, "required_slots_for_form", None)
    if callable(getter):
        return list(getter(form_name))
    form = (getattr(domain, "forms", None) or {}).get(form_name) or {}
    return list(form.get("required_slots") or [])


def slot_mappings(domain: Domain, slot_name: str) -> list[dict[str, Any]]:
    """The slot's mappings (dicts only)."""
    slot = slot_by_name(domain, slot_name)
    return [m for m in (getattr(slot, "mappings", None) or []) if isinstance(m, dict)]


def mapping_key(mapping: dict[str, Any]) -> str:
    """A mapping as a comparable string (mappings are dicts, not hashable)."""
    return json.dumps(mapping, sort_keys=True, default=str)


def unique_entity_mappings(domain: Domain, form_name: str) -> set[str]:
    """Keys of the ``from_entity`` mappings that fill exactly one of the form's slots."""
    unique: set[str] = set()
    duplicate: set[str] = set()
    for slot_name in form_required_slots(domain, form_name):
        for mapping in slot_mappings(domain, slot_name):
            if mapping.get(c.MAPPING_TYPE) != FROM_ENTITY:
                continue
            key = mapping_key(mapping)
            if key in unique:
                unique.remove(key)
                duplicate.add(key)
            elif key not in duplicate:
                unique.add(key)
    return unique


def form_ignored_intents(domain: Domain, form_name: str | None) -> list[str]:
    if not form_name:
        return []
    form = (getattr(domain, "forms", None) or {}).get(form_name) or {}
    return to_list(form.get(IGNORED_INTENTS)) if isinstance(form, dict) else []


def _active_loop_ignored_intents(mapping: dict, domain: Domain, active_loop_name: str) -> list[str]:
    conditions = mapping.get(c.MAPPING_CONDITIONS)
    if conditions and not any(
        cond.get(c.ACTIVE_LOOP) == active_loop_name for cond in conditions
    ):
        return []
    return form_ignored_intents(domain, active_loop_name)


def intent_is_desired(mapping: dict, tracker: DialogueStateTracker, domain: Domain) -> bool:
    """``intent`` / ``not_intent`` of the mapping (plus the form's ``ignored_intents``)."""
    intents = to_list(mapping.get(c.INTENT))
    not_intents = to_list(mapping.get(NOT_INTENT))
    loop_name = tracker.active_loop_name
    if loop_name:
        not_intents = not_intents + _active_loop_ignored_intents(mapping, domain, loop_name)
    intent = intent_name_of(tracker.latest_message)
    if intents:
        return intent in intents
    return intent not in set(not_intents)


def entity_is_desired(mapping: dict, tracker: DialogueStateTracker) -> bool:
    return bool(
        latest_entity_values(
            tracker,
            mapping.get(c.ENTITY_ATTRIBUTE_TYPE),
            mapping.get(c.ENTITY_ATTRIBUTE_ROLE),
            mapping.get(c.ENTITY_ATTRIBUTE_GROUP),
        )
    )


def check_mapping_validity(slot_name: str, mapping: dict, domain: Domain) -> bool:
    """False (with a warning) for mappings naming an unknown entity/intent or type."""
    mapping_type = mapping.get(c.MAPPING_TYPE)
    if mapping_type not in MAPPING_TYPES:
        logger.warning(
            "Slot '%s' has a mapping of unknown type '%s'; valid types: %s. Skipping it.",
            slot_name, mapping_type, ", ".join(sorted(MAPPING_TYPES)),
        )
        return False
    if mapping_type == FROM_ENTITY and mapping.get(c.ENTITY_ATTRIBUTE_TYPE) not in domain.entities:
        logger.warning(
            "Slot '%s' uses a 'from_entity' mapping for the entity '%s' which is not in the "
            "domain. Skipping it; add the entity under `entities:` in domain.yml.",
            slot_name, mapping.get(c.ENTITY_ATTRIBUTE_TYPE),
        )
        return False
    if mapping_type == FROM_INTENT and mapping.get(c.INTENT) is not None:
        intents = to_list(mapping.get(c.INTENT))
        if not any(i in domain.intents for i in intents):
            logger.warning(
                "Slot '%s' uses a 'from_intent' mapping for unknown intent(s) %s. Skipping it.",
                slot_name, intents,
            )
            return False
    return True


def matches_mapping_conditions(mapping: dict, tracker: DialogueStateTracker, slot_name: str) -> bool:
    """Whether the mapping's ``conditions`` (active loop, requested slot) hold now."""
    conditions = mapping.get(c.MAPPING_CONDITIONS)
    if not conditions:
        return True
    if is_active_loop_rejected(tracker) and tracker.get_slot(c.REQUESTED_SLOT) == slot_name:
        return False
    active = tracker.active_loop_name
    for condition in conditions:
        loop = condition.get(c.ACTIVE_LOOP)
        if loop and loop == active:
            requested = condition.get(c.REQUESTED_SLOT)
            if not requested or requested == tracker.get_slot(c.REQUESTED_SLOT):
                return True
        if loop is None and active is None:
            return True
    return False


def extract_value_from_predefined_mapping(mapping: dict, tracker: DialogueStateTracker) -> list[Any]:
    """Candidate values for a predefined mapping ([] when it doesn't apply)."""
    mapping_type = mapping.get(c.MAPPING_TYPE)
    if mapping_type == FROM_ENTITY:
        if not entity_is_desired(mapping, tracker):
            return []
        return latest_entity_values(
            tracker,
            mapping.get(c.ENTITY_ATTRIBUTE_TYPE),
            mapping.get(c.ENTITY_ATTRIBUTE_ROLE),
            mapping.get(c.ENTITY_ATTRIBUTE_GROUP),
        )
    if mapping_type == FROM_INTENT:
        return [mapping.get("value")]
    if mapping_type == FROM_TRIGGER_INTENT:
        active = tracker.active_loop_name
        loops = [cond.get(c.ACTIVE_LOOP) for cond in mapping.get(c.MAPPING_CONDITIONS) or []]
        if active is None or (loops and active not in loops):
            return []
        return [mapping.get("value")]
    if mapping_type == FROM_TEXT:
        message = tracker.latest_message
        return [getattr(message, "text", None)] if message is not None else []
    return []


# --------------------------------------------------------------------------- action


class ActionExtractSlots(Action):
    """Rasa's default ``action_extract_slots``."""

    def __init__(self, action_endpoint: Any = None, executor: Any = None) -> None:
        self._action_endpoint = action_endpoint
        self._executor = executor

    def name(self) -> str:
        return c.ACTION_EXTRACT_SLOTS

    async def _run_custom_action(
        self, name: str, output_channel, nlg, tracker, domain
    ) -> list[Event]:
        """SlotSet and BotUttered events of a custom mapping action; others dropped."""
        kept: list[Event] = []
        try:
            events = await custom_action(name, self._action_endpoint, self._executor).run(
                output_channel, nlg, tracker, domain
            )
        except (ActionExecutionError, ActionExecutionRejection) as e:
            logger.warning(
                "Custom action '%s' failed (%s); '%s' could not fill slots with custom mappings.",
                name, e, self.name(),
            )
            return kept
        for event in events:
            if isinstance(event, (SlotSet, BotUttered)):
                kept.append(event)
            else:
                logger.info(
                    "Custom slot-mapping action '%s' returned a '%s' event; only slot and bot "
                    "events are allowed here, so it is ignored.",
                    name, getattr(event, "type_name", type(event).__name__),
                )
        return kept

    def _fails_unique_entity_mapping_check(
        self, slot_name: str, mapping: dict, tracker, domain
    ) -> bool:
        """A non-unique entity mapping must not fill a form slot that isn't requested."""
        if mapping.get(c.MAPPING_TYPE) != FROM_ENTITY:
            return False
        form_name = tracker.active_loop_name
        if not form_name or tracker.get_slot(c.REQUESTED_SLOT) == slot_name:
            return False
        if slot_name not in form_required_slots(domain, form_name):
            return False
        return mapping_key(mapping) not in unique_entity_mappings(domain, form_name)

    def _has_validation_action(self, domain) -> bool:
        name = c.ACTION_VALIDATE_SLOT_MAPPINGS
        return name in (getattr(domain, "user_actions", None) or []) or executor_knows(
            self._executor, name
        )

    async def _execute_validation_action(
        self, extraction_events: list[Event], output_channel, nlg, tracker, domain
    ) -> list[Event]:
        slot_events = [e for e in extraction_events if isinstance(e, SlotSet)]
        if not self._has_validation_action(domain):
            return extraction_events
        from bot.shared.tracker import DialogueStateTracker

        temp = DialogueStateTracker.from_events(
            tracker.sender_id,
            list(tracker.events_after_latest_restart()) + slot_events,
            slots=domain.slots,
        )
        validate_events = await self._run_custom_action(
            c.ACTION_VALIDATE_SLOT_MAPPINGS, output_channel, nlg, temp, domain
        )
        validated = {e.key for e in validate_events if isinstance(e, SlotSet)}
        # a candidate the validator says nothing about counts as valid
        others = [e for e in extraction_events if not (isinstance(e, SlotSet) and e.key in validated)]
        return validate_events + others

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        events: list[Event] = []
        executed_custom: set[str] = set()
        for slot in domain.slots:
            if slot.name in c.DEFAULT_SLOT_NAMES:
                continue
            for mapping in getattr(slot, "mappings", None) or []:
                if not isinstance(mapping, dict):
                    continue
                if not check_mapping_validity(slot.name, mapping, domain):
                    continue
                if not intent_is_desired(mapping, tracker, domain):
                    continue
                if mapping.get(c.MAPPING_TYPE) != FROM_TRIGGER_INTENT and not matches_mapping_conditions(
                    mapping, tracker, slot.name
                ):
                    continue
                if self._fails_unique_entity_mapping_check(slot.name, mapping, tracker, domain):
                    continue

                mapping_type = mapping.get(c.MAPPING_TYPE)
                if mapping_type in PREDEFINED_MAPPING_TYPES:
                    values = extract_value_from_predefined_mapping(mapping, tracker)
                    if not values:
                        continue
                    value = values if is_list_slot(slot) else values[-1]
                    if value is None:
                        continue
                    if tracker.get_slot(slot.name) != value:
                        events.append(SlotSet(slot.name, value))
                    break  # the first mapping that applies wins
                if mapping_type == CUSTOM:
                    action_name = mapping.get("action")
                    if action_name and action_name not in executed_custom:
                        executed_custom.add(action_name)
                        events.extend(
                            await self._run_custom_action(
                                action_name, output_channel, nlg, tracker, domain
                            )
                        )
        return await self._execute_validation_action(events, output_channel, nlg, tracker, domain)
