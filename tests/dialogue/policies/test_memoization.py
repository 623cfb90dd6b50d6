from __future__ import annotations

from policy_helpers import act, listen, user

from bot.dialogue.policies import AugmentedMemoizationPolicy, MemoizationPolicy
from bot.shared.events import SlotSet


def _story(make_tracker):
    return make_tracker(
        "price story",
        [listen(), user("greet"), act("utter_greet"), listen(), user("ask_price"), act("utter_price"), listen()],
    )


def test_memoization_recalls_story(domain, make_tracker):
    policy = MemoizationPolicy()
    policy.train([_story(make_tracker)], domain)
    tracker = make_tracker("c", [listen(), user("greet"), act("utter_greet"), listen(), user("ask_price")])
    prediction = policy.predict_action_probabilities(tracker, domain)
    assert domain.action_names_or_texts[prediction.max_confidence_index] == "utter_price"
    assert prediction.max_confidence == 1.0
    assert prediction.policy_priority == 3


def test_memoization_unknown_history_predicts_nothing(domain, make_tracker):
    policy = MemoizationPolicy()
    policy.train([_story(make_tracker)], domain)
    tracker = make_tracker("c", [listen(), user("thank"), act("utter_welcome"), listen(), user("ask_price")])
    assert policy.predict_action_probabilities(tracker, domain).max_confidence == 0.0


def test_memoization_drops_ambiguous_histories(domain, make_tracker):
    other = make_tracker("other", [listen(), user("greet"), act("utter_goodbye"), listen()])
    policy = MemoizationPolicy()
    policy.train([_story(make_tracker), other], domain)
    tracker = make_tracker("c", [listen(), user("greet")])
    assert policy.predict_action_probabilities(tracker, domain).max_confidence == 0.0


def test_memoization_ignores_augmented_trackers(domain, make_tracker):
    augmented = make_tracker("aug", [listen(), user("thank"), act("utter_goodbye"), listen()])
    augmented.is_augmented = True
    policy = MemoizationPolicy()
    policy.train([augmented], domain)
    assert policy.lookup == {}


def test_augmented_memoization_forgets_earlier_turns_and_slots(domain, make_tracker):
    story = make_tracker("short", [listen(), user("ask_price"), act("utter_price"), listen()])
    events = [
        listen(),
        user("thank"),
        SlotSet("vip", True),
        act("utter_welcome"),
        listen(),
        user("ask_price"),
    ]
    plain = MemoizationPolicy()
    plain.train([story], domain)
    assert plain.predict_action_probabilities(make_tracker("c", events), domain).max_confidence == 0.0

    augmented = AugmentedMemoizationPolicy()
    augmented.train([story], domain)
    prediction = augmented.predict_action_probabilities(make_tracker("c", events), domain)
    assert domain.action_names_or_texts[prediction.max_confidence_index] == "utter_price"


def test_memoization_persist_load_same_predictions(domain, make_tracker, tmp_path):
    policy = AugmentedMemoizationPolicy({"max_history": 3})
    policy.train([_story(make_tracker)], domain)
    policy.persist(tmp_path / "memo")
    loaded = AugmentedMemoizationPolicy.load(tmp_path / "memo")
    assert isinstance(loaded, AugmentedMemoizationPolicy)
    assert loaded.max_history == 3 and loaded.lookup == policy.lookup
    tracker = make_tracker("c", [listen(), user("greet"), act("utter_greet"), listen(), user("ask_price")])
    assert loaded.predict_action_probabilities(tracker, domain) == policy.predict_action_probabilities(tracker, domain)
