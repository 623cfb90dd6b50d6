"""rasa_sdk actions of the pizzabot test project."""
from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction


class ValidatePizzaForm(FormValidationAction):
    """Keeps quantity within 1..10 and lower-cases toppings."""

    def name(self) -> str:
        return "validate_pizza_form"

    def validate_quantity(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: dict[str, Any]) -> dict[str, Any]:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        if 1 <= number <= 10:
            return {"quantity": number}
        dispatcher.utter_message(response="utter_wrong_quantity")
        return {"quantity": None}

    def validate_toppings(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: dict[str, Any]) -> dict[str, Any]:
        values = value if isinstance(value, list) else [value]
        return {"toppings": [str(v).lower() for v in values]}


class ActionRecordOrder(Action):
    """Stores the order as a dict in the `any` slot `order_meta`."""

    def name(self) -> str:
        return "action_record_order"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        order = {k: tracker.get_slot(k) for k in ("size", "quantity", "toppings")}
        return [SlotSet("order_meta", order)]
