"""Custom actions of Rasa's concertbot (examples/concertbot/actions/actions.py)."""
from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

CONCERTS = [{"artist": "Foo Fighters", "reviews": 4.5}, {"artist": "Katy Perry", "reviews": 5.0}]
VENUES = [{"name": "Big Arena", "reviews": 4.5}, {"name": "Rock Cellar", "reviews": 5.0}]


class ActionSearchConcerts(Action):
    def name(self) -> str:
        return "action_search_concerts"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=", ".join(c["artist"] for c in CONCERTS))
        return [SlotSet("concerts", CONCERTS)]


class ActionSearchVenues(Action):
    def name(self) -> str:
        return "action_search_venues"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message(text="here are some venues I found")
        dispatcher.utter_message(text=", ".join(v["name"] for v in VENUES))
        return [SlotSet("venues", VENUES)]


class ActionShowConcertReviews(Action):
    def name(self) -> str:
        return "action_show_concert_reviews"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=f"concerts from slots: {tracker.get_slot('concerts')}")
        return []


class ActionShowVenueReviews(Action):
    def name(self) -> str:
        return "action_show_venue_reviews"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=f"venues from slots: {tracker.get_slot('venues')}")
        return []


class ActionSetMusicPreference(Action):
    """Sets ``likes_music`` from whether the user affirmed or denied."""

    def name(self) -> str:
        return "action_set_music_preference"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
            domain: dict[str, Any]) -> list[dict[str, Any]]:
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent == "affirm":
            return [SlotSet("likes_music", True)]
        if intent == "deny":
            return [SlotSet("likes_music", False)]
        return []
