"""Escalation rules on hand-built trackers."""
from __future__ import annotations

from typing import Any

from bot.handoff.config import HandoffConfig, ServiceHours
from bot.handoff.rules import check_bot_turn, check_user_message
from bot.shared.events import ActionExecuted, BotUttered, ConversationResumed, UserUttered
from bot.shared.tracker import DialogueStateTracker

CONFIG = HandoffConfig.from_dict({})


def tracker(*events: Any) -> DialogueStateTracker:
    t = DialogueStateTracker("t", [])
    for e in events:
        t.update(e)
    return t


def user(intent: str, sentiment: float = 0.0, urgent: float = 0.0) -> UserUttered:
    parse = {"sentiment": {"label": "negative" if sentiment < -0.15 else "neutral", "score": sentiment},
             "urgency": {"flag": urgent >= 0.5, "score": urgent}}
    return UserUttered("x", {"name": intent, "confidence": 0.9}, [], parse)


def test_rules_user_message_reasons() -> None:
    assert check_user_message(tracker(user("request_human")), CONFIG).reason == "request_human"
    assert check_user_message(tracker(user("complaint")), CONFIG).reason == "complaint"
    assert check_user_message(tracker(user("greet", sentiment=-0.7)), CONFIG).reason == "negative_sentiment"
    assert check_user_message(tracker(user("greet", sentiment=-0.3)), CONFIG) is None
    urgent = check_user_message(tracker(user("greet", urgent=0.9)), CONFIG)
    assert urgent.reason == "urgent" and urgent.urgent
    assert check_user_message(tracker(user("refund")), CONFIG, vip=False) is None
    assert check_user_message(tracker(user("refund")), CONFIG, vip=True).reason == "vip_sensitive"


def test_rules_bot_turn_action_failed_twice_and_kb_unanswered() -> None:
    failed = ActionExecuted("action_check_order", metadata={"kefu_action_failed": True})
    assert check_bot_turn(tracker(user("greet"), failed), CONFIG) is None
    assert check_bot_turn(tracker(user("greet"), failed, user("greet"), failed), CONFIG).reason == "action_failed"
    kb = BotUttered("no idea", {}, {"kb": {"unanswered_count": 1}})
    assert check_bot_turn(tracker(user("faq"), kb, user("faq"), kb), CONFIG).reason == "kb_unanswered"
    # a resolved handoff starts the count again
    assert check_bot_turn(tracker(user("faq"), kb, user("faq"), kb, ConversationResumed()), CONFIG) is None


def test_rules_fallback_streak_resets_on_a_good_turn() -> None:
    fb = ActionExecuted("action_default_fallback")
    good = ActionExecuted("utter_greet")
    three = tracker(user("a"), fb, user("b"), fb, user("c"), fb)
    assert check_bot_turn(three, CONFIG).reason == "repeated_fallback"
    broken = tracker(user("a"), fb, user("b"), good, user("c"), fb)
    assert check_bot_turn(broken, CONFIG) is None


def test_config_service_hours_and_bad_keys() -> None:
    import pytest

    from bot.shared.exceptions import ConfigError

    hours = ServiceHours(start="09:00", end="21:00", utc_offset_hours=0)
    assert hours.is_open(10 * 3600) and not hours.is_open(22 * 3600)
    with pytest.raises(ConfigError, match="Unknown key"):
        HandoffConfig.from_dict({"max_fallbacks": 2})
    with pytest.raises(ConfigError, match="role"):
        HandoffConfig.from_dict({"agents": [{"id": "a", "role": "boss"}]})
