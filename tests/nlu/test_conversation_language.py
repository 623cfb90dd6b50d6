"""conversation_language: one rule for the reply language of a conversation."""
from __future__ import annotations

from bot.nlu.language import conversation_language
from bot.shared.events import SlotSet, UserUttered
from bot.shared.tracker import DialogueStateTracker


def _tracker(*events: object) -> DialogueStateTracker:
    tracker = DialogueStateTracker("s1", slots=[])
    for event in events:
        tracker.update(event)
    return tracker


def test_conversation_language_prefers_slot_then_parse_then_text() -> None:
    parsed_en = UserUttered("where is my parcel", parse_data={"language": "en"})
    assert conversation_language(_tracker(parsed_en)) == "en"
    assert conversation_language(_tracker(), "where is my order") == "en"
    assert conversation_language(_tracker(), "我的order到哪了") == "zh"
    assert conversation_language(_tracker()) == "zh"
    assert conversation_language(_tracker(), None, default="en") == "en"


def test_conversation_language_slot_wins_over_latest_parse() -> None:
    class WithSlot:
        latest_message = UserUttered("hi", parse_data={"language": "en"})

        def get_slot(self, name: str) -> str:
            assert name == "language"
            return "zh"

    assert conversation_language(WithSlot(), "hello") == "zh"


def test_conversation_language_normalises_regional_codes() -> None:
    class Regional:
        latest_message = None

        def get_slot(self, name: str) -> str:
            return "en-US"

    assert conversation_language(Regional()) == "en"
