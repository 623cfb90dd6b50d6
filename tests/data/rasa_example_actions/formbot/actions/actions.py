"""Form validation of Rasa's formbot (examples/formbot/actions/actions.py)."""
from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction

CUISINES = ["caribbean", "chinese", "french", "greek", "indian", "italian", "mexican"]


def _is_int(value: Any) -> bool:
    try:
        int(value)
        return True
    except (TypeError, ValueError):
        return False


class ValidateRestaurantForm(FormValidationAction):
    """Rejects unknown cuisines, non-positive party sizes and unclear seating answers."""

    def name(self) -> str:
        return "validate_restaurant_form"

    def validate_cuisine(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                         domain: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, str) and value.lower() in CUISINES:
            return {"cuisine": value}
        dispatcher.utter_message(response="utter_wrong_cuisine")
        # None makes the form ask for the slot again
        return {"cuisine": None}

    def validate_num_people(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: dict[str, Any]) -> dict[str, Any]:
        if _is_int(value) and int(value) > 0:
            return {"num_people": value}
        dispatcher.utter_message(response="utter_wrong_num_people")
        return {"num_people": None}

    def validate_outdoor_seating(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, str):
            if "out" in value:
                return {"outdoor_seating": True}
            if "in" in value:
                return {"outdoor_seating": False}
            dispatcher.utter_message(response="utter_wrong_outdoor_seating")
            return {"outdoor_seating": None}
        # affirm/deny was mapped to True/False by the from_intent mappings
        return {"outdoor_seating": value}
