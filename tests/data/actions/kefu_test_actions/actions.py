"""rasa_sdk actions used by tests/dialogue/actions (one behaviour each)."""
from __future__ import annotations

import asyncio
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection


class ActionCheckOrder(Action):
    """Sets a slot and utters: one free text message and one domain response."""

    def name(self) -> str:
        return "action_check_order"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        order_id = tracker.get_slot("order_id")
        dispatcher.utter_message(text=f"Order {order_id} has shipped.", buttons=[{"title": "ok", "payload": "/affirm"}])
        dispatcher.utter_message(response="utter_greet")
        return [SlotSet("order_status", "shipped")]


class ActionSlow(Action):
    def name(self) -> str:
        return "action_slow"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(3)
        return []


class ActionFail(Action):
    def name(self) -> str:
        return "action_fail"

    def run(self, dispatcher, tracker, domain):
        raise RuntimeError("boom in user code")


class ActionReject(Action):
    def name(self) -> str:
        return "action_reject"

    def run(self, dispatcher, tracker, domain):
        raise ActionExecutionRejection("action_reject", "not now")


class ActionExtractVip(Action):
    """Custom slot mapping action: a slot event is kept, a followup is dropped."""

    def name(self) -> str:
        return "action_extract_vip"

    def run(self, dispatcher, tracker, domain):
        return [SlotSet("vip", True), FollowupAction("action_listen")]


class ValidateOrderForm(FormValidationAction):
    """Order ids must start with "E"; asks for a note when the order is a gift."""

    def name(self) -> str:
        return "validate_order_form"

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> list:
        if tracker.slots.get("gift") is True:
            return domain_slots + ["note"]
        return domain_slots

    def validate_order_id(self, value: Any, dispatcher, tracker, domain) -> dict:
        if isinstance(value, str) and value.startswith("E"):
            return {"order_id": value}
        dispatcher.utter_message(text="That order id looks wrong.")
        return {"order_id": None}
