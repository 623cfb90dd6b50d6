"""Prediction-time reuse of a tracker's featurised history (bot/dialogue/policies/policy.py).

One prediction featurises the conversation for every policy (RulePolicy twice); the
states are computed once per tracker state and reused. These tests show the reuse never
changes what a policy sees: after every event of a conversation with a form, the states
of the long-lived tracker equal those of a fresh copy that has never been featurised,
and a caller that changes the states it got does not change the next caller's.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.dialogue.policies.policy import prediction_states
from bot.shared.constants import ACTION_LISTEN_NAME, REQUESTED_SLOT, RULE_ONLY_LOOPS, RULE_ONLY_SLOTS
from bot.shared.domain import Domain
from bot.shared.events import ActionExecuted, ActiveLoop, SessionStarted, SlotSet, UserUttered
from bot.shared.tracker import DialogueStateTracker

TURNBOT = Path(__file__).resolve().parents[1] / "data" / "projects" / "turnbot"


def _user(intent: str, entities: list | None = None) -> UserUttered:
    return UserUttered(f"/{intent}", {"name": intent, "confidence": 1.0}, entities or [],
                       {"intent": {"name": intent, "confidence": 1.0}, "entities": entities or []})


def _conversation() -> list:
    return [
        ActionExecuted("action_session_start"),
        SessionStarted(),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("greet"),
        ActionExecuted("utter_greet"),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("order"),
        ActionExecuted("order_form"),
        ActiveLoop("order_form"),
        SlotSet(REQUESTED_SLOT, "size"),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("inform", [{"entity": "size", "value": "large"}]),
        SlotSet("size", "large"),
        ActionExecuted("order_form"),
        SlotSet(REQUESTED_SLOT, None),
        ActiveLoop(None),
        ActionExecuted("utter_order_done"),
        ActionExecuted(ACTION_LISTEN_NAME),
        _user("count"),
        ActionExecuted("action_count"),
        SlotSet("order_count", 1.0),
        ActionExecuted(ACTION_LISTEN_NAME),
    ]


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(TURNBOT / "domain.yml")


@pytest.mark.parametrize("max_history", [None, 2, 5])
@pytest.mark.parametrize("rule_only", [None, {RULE_ONLY_SLOTS: ["size"], RULE_ONLY_LOOPS: ["order_form"]}])
def test_states_after_every_event_equal_a_fresh_featurisation(domain, max_history, rule_only):
    tracker = DialogueStateTracker("c1", domain.slots)
    checked = 0
    for event in _conversation():
        tracker.update(event, domain)
        for ignore_rule_only_turns in (False, True):
            for use_text in (False, True):
                # the long-lived tracker is asked twice (the second answer comes from the cache)
                first = prediction_states(tracker, domain, max_history, use_text, ignore_rule_only_turns, rule_only)
                again = prediction_states(tracker, domain, max_history, use_text, ignore_rule_only_turns, rule_only)
                fresh = prediction_states(tracker.copy(), domain, max_history, use_text, ignore_rule_only_turns,
                                          rule_only)
                assert first == fresh, (event, ignore_rule_only_turns, use_text)
                assert again == fresh, (event, ignore_rule_only_turns, use_text)
                checked += 1
    assert checked == len(_conversation()) * 4


def test_a_caller_changing_its_states_does_not_change_the_next_callers(domain):
    tracker = DialogueStateTracker("c1", domain.slots)
    for event in _conversation()[:8]:
        tracker.update(event, domain)
    first = prediction_states(tracker, domain, None)
    expected = prediction_states(tracker.copy(), domain, None)
    assert first and first == expected
    first[-1].clear()
    first.append({"prev_action": {"action_name": "tampered"}})
    assert prediction_states(tracker, domain, None) == expected


def test_a_different_rule_only_set_is_not_answered_from_the_cache(domain):
    tracker = DialogueStateTracker("c1", domain.slots)
    for event in _conversation()[:11]:  # the form is active
        tracker.update(event, domain)
    without = prediction_states(tracker, domain, None, ignore_rule_only_turns=True, rule_only_data=None)
    with_rules = prediction_states(tracker, domain, None, ignore_rule_only_turns=True,
                                   rule_only_data={RULE_ONLY_SLOTS: ["size", REQUESTED_SLOT],
                                                   RULE_ONLY_LOOPS: ["order_form"]})
    # the active loop is a feature unless the loop is rule-only
    assert without[-1].get("active_loop") == {"name": "order_form"}
    assert "active_loop" not in with_rules[-1]
    assert with_rules == prediction_states(tracker.copy(), domain, None, ignore_rule_only_turns=True,
                                           rule_only_data={RULE_ONLY_SLOTS: ["size", REQUESTED_SLOT],
                                                           RULE_ONLY_LOOPS: ["order_form"]})
