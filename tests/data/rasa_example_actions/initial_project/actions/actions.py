"""Custom actions of ``rasa init``'s starter bot.

Rasa's starter ships this file with its one example action commented out; the domain uses
no custom action. Kept as a working action so the package registers something testable.
"""
from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher


class ActionHelloWorld(Action):
    """The starter's example action: says "Hello World!"."""

    def name(self) -> str:
        return "action_hello_world"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message(text="Hello World!")
        return []
