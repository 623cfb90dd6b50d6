"""Custom actions of Rasa's rules example (examples/rules/actions.py).

Rasa's file only defines ``action_validate_loop_q_form``; the domain also lists
``action_stop_q_form`` and ``action_switch_faq`` (unused by its rules), implemented here
with the behaviour their names describe so every domain action resolves.
"""
from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ValidateSlots(Action):
    def name(self) -> str:
        return "action_validate_loop_q_form"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message("validate_some_slot")
        return [SlotSet("some_slot", "sdk")]


class ActionStopQForm(Action):
    """Deactivates ``loop_q_form``."""

    def name(self) -> str:
        return "action_stop_q_form"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        return [ActiveLoop(None), SlotSet("requested_slot", None)]


class ActionSwitchFAQ(Action):
    """Toggles ``detailed_faq`` (a bool slot with a custom mapping)."""

    def name(self) -> str:
        return "action_switch_faq"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        return [SlotSet("detailed_faq", not tracker.get_slot("detailed_faq"))]
