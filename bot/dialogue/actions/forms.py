"""Forms: loops that ask for required slots until all are filled (Rasa's ``forms.py``).

Per turn: validate the slots ``action_extract_slots`` just set (through the
``validate_<form>`` custom action when there is one, a rasa_sdk
``FormValidationAction``), then ask for the next empty required slot with
``action_ask_<form>_<slot>`` / ``utter_ask_<form>_<slot>`` / ``action_ask_<slot>`` /
``utter_ask_<slot>``, or deactivate when none is left. If the requested slot was not
filled, the form raises ``ActionExecutionRejection`` so other policies can handle the
interruption; the form resumes when predicted again.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import ActionLookup, executor_knows
from bot.dialogue.actions.custom import custom_action
from bot.dialogue.actions.extract_slots import (
    FROM_ENTITY,
    ActionExtractSlots,
    active_loop_of,
    form_required_slots,
    mapping_key,
    slot_mappings,
    unique_entity_mappings,
)
from bot.dialogue.actions.loops import LoopAction
from bot.shared import constants as c
from bot.shared.events import ActionExecuted, ActionExecutionRejected, ActiveLoop, Event, SlotSet
from bot.shared.exceptions import ActionExecutionRejection

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)


class FormAction(LoopAction):
    """Executes a form defined under ``forms:`` in the domain.

    ``lookup`` (the factory) resolves the ``utter_ask_*`` / ``action_ask_*`` the domain declares.
    """

    def __init__(
        self, form_name: str, action_endpoint: Any = None, executor: Any = None, *, lookup: ActionLookup
    ) -> None:
        self._form_name = form_name
        self.action_endpoint = action_endpoint
        self.executor = executor
        self._lookup = lookup
        self._unique_entity_mappings: set[str] | None = None

    def name(self) -> str:
        return self._form_name

    # ------------------------------------------------------------------ slots

    def required_slots(self, domain: Domain) -> list[str]:
        """The form's ``required_slots`` from the domain."""
        return form_required_slots(domain, self.name())

    def get_mappings_for_slot(self, slot_name: str, domain: Domain) -> list[dict[str, Any]]:
        return slot_mappings(domain, slot_name)

    def entity_mapping_is_unique(self, mapping: dict[str, Any], domain: Domain) -> bool:
        if self._unique_entity_mappings is None:
            self._unique_entity_mappings = unique_entity_mappings(domain, self.name())
        return mapping_key(mapping) in self._unique_entity_mappings

    def get_slot_to_fill(self, tracker: DialogueStateTracker) -> str | None:
        """The requested slot, if it belongs to this form (not to a previous one)."""
        if tracker.active_loop_name == self.name():
            return tracker.get_slot(c.REQUESTED_SLOT)
        return None

    @staticmethod
    def _should_request_slot(tracker: DialogueStateTracker, slot_name: str) -> bool:
        return tracker.get_slot(slot_name) is None

    # ------------------------------------------------------------------ validation

    def _validation_action_name(self) -> str:
        return f"validate_{self.name()}"

    def _has_validation_action(self, domain: Domain) -> bool:
        name = self._validation_action_name()
        return name in domain.action_names_or_texts or executor_knows(self.executor, name)

    def _temporary_tracker(
        self, tracker: DialogueStateTracker, additional_events: list[Event], domain: Domain
    ) -> DialogueStateTracker:
        """The tracker as it will be after this run, for validation and asking."""
        from bot.shared.tracker import DialogueStateTracker

        return DialogueStateTracker.from_events(
            tracker.sender_id,
            list(tracker.events_after_latest_restart())
            + [SlotSet(c.REQUESTED_SLOT, self.get_slot_to_fill(tracker))]
            + [ActionExecuted(self.name())]
            + list(additional_events),
            slots=domain.slots,
        )

    async def validate_slots(
        self,
        slot_candidates: dict[str, Any],
        tracker: DialogueStateTracker,
        domain: Domain,
        output_channel: Any,
        nlg: Any,
    ) -> list[Event]:
        """SlotSet events for the candidates, corrected by ``validate_<form>`` if defined."""
        logger.debug("Validating extracted slots of form '%s': %s", self.name(), slot_candidates)
        events: list[Event] = [SlotSet(name, value) for name, value in slot_candidates.items()]
        if not self._has_validation_action(domain):
            return events
        temp = self._temporary_tracker(tracker, events, domain)
        action = custom_action(self._validation_action_name(), self.action_endpoint, self.executor)
        validate_events = await action.run(output_channel, nlg, temp, domain)
        validated = {e.key for e in validate_events if isinstance(e, SlotSet)}
        # candidates the validator leaves alone count as valid; it rejects with SlotSet(x, None)
        return list(validate_events) + [e for e in events if e.key not in validated]

    @staticmethod
    def _user_rejected_manually(validation_events: list[Event]) -> bool:
        return any(isinstance(e, ActionExecutionRejected) for e in validation_events)

    @staticmethod
    def _slot_events_since_last_user_uttered(tracker: DialogueStateTracker) -> list[SlotSet]:
        events = list(tracker.events)
        latest = tracker.latest_message
        index = 0
        if latest is not None:
            for i in range(len(events) - 1, -1, -1):
                if events[i] is latest:
                    index = i
                    break
            else:
                for i in range(len(events) - 1, -1, -1):
                    if events[i] == latest:
                        index = i
                        break
        return [e for e in events[index:] if isinstance(e, SlotSet)]

    def _slot_is_set_by_non_unique_entity_mappings(
        self, mapping: dict, slot_name: str, tracker: DialogueStateTracker, domain: Domain
    ) -> bool:
        if mapping.get(c.MAPPING_TYPE) != FROM_ENTITY:
            return False
        if self.get_slot_to_fill(tracker) == slot_name:
            return False
        return not self.entity_mapping_is_unique(mapping, domain)

    def _get_slot_extractions(self, tracker: DialogueStateTracker, domain: Domain) -> dict[str, Any]:
        """Values ``action_extract_slots`` set this turn for the form's slots."""
        if not active_loop_of(tracker).get(c.LOOP_NAME):
            return {}  # pre-filled slots were validated at activation
        required = set(self.required_slots(domain))
        requested = self.get_slot_to_fill(tracker)
        if requested:
            required.add(requested)  # slots added dynamically by a validation action
        values: dict[str, Any] = {}
        for event in self._slot_events_since_last_user_uttered(tracker):
            if event.key not in required:
                continue
            mappings = self.get_mappings_for_slot(event.key, domain)
            if not mappings or any(
                not self._slot_is_set_by_non_unique_entity_mappings(m, event.key, tracker, domain)
                for m in mappings
            ):
                values[event.key] = event.value
        return values

    async def validate(
        self, tracker: DialogueStateTracker, domain: Domain, output_channel: Any, nlg: Any
    ) -> list[Event]:
        """Validate this turn's extractions; reject when the requested slot got nothing."""
        values = self._get_slot_extractions(tracker, domain)
        validation_events = await self.validate_slots(values, tracker, domain, output_channel, nlg)
        some_slots_validated = any(
            isinstance(e, SlotSet) and e.key != c.REQUESTED_SLOT for e in validation_events
        )
        slot_to_fill = self.get_slot_to_fill(tracker)
        if slot_to_fill and not some_slots_validated and not self._user_rejected_manually(
            validation_events
        ):
            raise ActionExecutionRejection(
                self.name(), f"Failed to extract slot {slot_to_fill} with action {self.name()}."
            )
        return validation_events

    async def _validate_if_required(
        self, tracker: DialogueStateTracker, domain: Domain, output_channel: Any, nlg: Any
    ) -> list[Event]:
        """Validate right after the user spoke, unless coming back from an interruption."""
        loop = active_loop_of(tracker)
        needs_validation = not loop.get(c.LOOP_NAME) or (
            tracker.latest_action_name == c.ACTION_LISTEN_NAME
            and not loop.get(c.LOOP_INTERRUPTED, False)
        )
        if needs_validation:
            return await self.validate(tracker, domain, output_channel, nlg)
        return await self.validate_slots({}, tracker, domain, output_channel, nlg)

    # ------------------------------------------------------------------ asking

    def _name_of_utterance(self, domain: Domain, slot_name: str) -> str | None:
        candidates = [
            f"action_ask_{self.name()}_{slot_name}",
            f"{c.UTTER_PREFIX}ask_{self.name()}_{slot_name}",
            f"action_ask_{slot_name}",
            f"{c.UTTER_PREFIX}ask_{slot_name}",
        ]
        names = set(domain.action_names_or_texts)
        return next((n for n in candidates if n in names or executor_knows(self.executor, n)), None)

    async def _ask_for_slot(
        self, domain: Domain, nlg: Any, output_channel: Any, slot_name: str, tracker: DialogueStateTracker
    ) -> list[Event]:
        name = self._name_of_utterance(domain, slot_name)
        if not name:
            logger.debug("No action or response found to ask for slot '%s'.", slot_name)
            return []
        if name in domain.action_names_or_texts:
            action = self._lookup(name, domain)
        else:
            action = custom_action(name, self.action_endpoint, self.executor)
        return await action.run(output_channel, nlg, tracker, domain)

    def _find_next_slot_to_request(self, tracker: DialogueStateTracker, domain: Domain) -> str | None:
        return next(
            (s for s in self.required_slots(domain) if self._should_request_slot(tracker, s)), None
        )

    async def request_next_slot(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        output_channel: Any,
        nlg: Any,
        events_so_far: list[Event],
    ) -> list[Event]:
        """Ask for the next slot (the validator may have chosen it), or finish."""
        if await self.is_done(output_channel, nlg, tracker, domain, events_so_far):
            # the validation action ended the form early
            return [SlotSet(c.REQUESTED_SLOT, None)]
        slot_to_request = next(
            (
                e.value
                for e in reversed(events_so_far)
                if isinstance(e, SlotSet) and e.key == c.REQUESTED_SLOT
            ),
            None,
        )
        temp = self._temporary_tracker(tracker, events_so_far, domain)
        events: list[Event] = []
        if not slot_to_request:
            slot_to_request = self._find_next_slot_to_request(temp, domain)
            events.append(SlotSet(c.REQUESTED_SLOT, slot_to_request))
        if slot_to_request:
            return events + await self._ask_for_slot(domain, nlg, output_channel, slot_to_request, temp)
        return [SlotSet(c.REQUESTED_SLOT, None)]

    # ------------------------------------------------------------------ loop hooks

    async def activate(self, output_channel, nlg, tracker, domain) -> list[Event]:
        """Extract slots as the active form (``from_trigger_intent``) and validate pre-filled ones."""
        active = tracker.copy()
        active.update(ActiveLoop(self.name()), domain)
        extraction = await ActionExtractSlots(self.action_endpoint, self.executor).run(
            output_channel, nlg, active, domain
        )
        extraction = [e for e in extraction if isinstance(e, SlotSet)]
        for event in extraction:
            active.update(event, domain)
        prefilled = {
            name: active.get_slot(name)
            for name in self.required_slots(domain)
            if not self._should_request_slot(active, name)
        }
        if not prefilled:
            return extraction
        validated = await self.validate_slots(prefilled, tracker, domain, output_channel, nlg)
        return extraction + validated

    async def do(self, output_channel, nlg, tracker, domain, events_so_far) -> list[Event]:
        events = await self._validate_if_required(tracker, domain, output_channel, nlg)
        if not self._user_rejected_manually(events):
            events += await self.request_next_slot(
                tracker, domain, output_channel, nlg, list(events_so_far) + events
            )
        return events

    async def is_done(self, output_channel, nlg, tracker, domain, events_so_far) -> bool:
        """Done when the last ``requested_slot`` set is None or the last loop event is None."""
        if any(isinstance(e, ActionExecutionRejected) for e in events_so_far):
            return False
        last_requested = next(
            (e for e in reversed(events_so_far) if isinstance(e, SlotSet) and e.key == c.REQUESTED_SLOT),
            None,
        )
        if last_requested is not None and last_requested.value is None:
            return True
        last_loop = next((e for e in reversed(events_so_far) if isinstance(e, ActiveLoop)), None)
        return last_loop is not None and last_loop.name is None

    async def deactivate(self, *args: Any, **kwargs: Any) -> list[Event]:
        logger.debug("Deactivating the form '%s'.", self.name())
        return []


__all__ = ["FormAction"]
