"""Custom actions of the turnbot test project (rasa_sdk, run in-process by kefu)."""
import asyncio
import time
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

# (sender_id, enter, exit) of each action_slow run: tests check that runs of one
# conversation never overlap.
SLOW_RUNS: List[tuple] = []
SLOW_SECONDS = 0.2


class ActionCount(Action):
    """Counts the shopper's requests in a slot and says the count."""

    def name(self) -> Text:
        return "action_count"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        count = int(tracker.get_slot("order_count") or 0) + 1
        dispatcher.utter_message(text=f"Count {count}")
        return [SlotSet("order_count", float(count))]


class ActionSlow(Action):
    """Sleeps without blocking the loop, recording when it ran."""

    def name(self) -> Text:
        return "action_slow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        enter = time.monotonic()
        await asyncio.sleep(SLOW_SECONDS)
        SLOW_RUNS.append((tracker.sender_id, enter, time.monotonic()))
        dispatcher.utter_message(text=f"Slow {tracker.latest_message.get('text')}")
        return []
