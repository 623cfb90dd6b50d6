from __future__ import annotations

import time

import pytest
from policy_helpers import act, listen, user

from bot.dialogue.policies import MemoizationPolicy, TEDPolicy
from bot.shared.events import SlotSet
from bot.shared.exceptions import ConfigError, UnknownComponentError


@pytest.fixture
def vip_stories(make_tracker):
    """The VIP slot decides the price answer; ask_price never follows thank."""
    return [
        make_tracker("greet", [listen(), user("greet"), act("utter_greet"), listen(),
                               user("ask_price"), act("utter_price"), listen()]),
        make_tracker("greet vip", [listen(), user("greet"), SlotSet("vip", True), act("utter_greet"), listen(),
                                   user("ask_price"), act("utter_vip_price"), listen()]),
        make_tracker("price", [listen(), user("ask_price"), act("utter_price"), listen()]),
        make_tracker("thank", [listen(), user("thank"), act("utter_welcome"), listen()]),
        make_tracker("thank vip", [listen(), user("thank"), SlotSet("vip", True), act("utter_welcome"), listen()]),
        make_tracker("bye", [listen(), user("goodbye"), act("utter_goodbye"), listen()]),
    ]


def _name(prediction, domain):
    return domain.action_names_or_texts[prediction.max_confidence_index]


def test_ted_generalises_beyond_memorisation(domain, make_tracker, vip_stories):
    unseen_vip = make_tracker("c", [listen(), user("thank"), SlotSet("vip", True), act("utter_welcome"),
                                    listen(), user("ask_price")])
    unseen_plain = make_tracker("c", [listen(), user("thank"), act("utter_welcome"), listen(), user("ask_price")])

    memo = MemoizationPolicy()
    memo.train(vip_stories, domain)
    assert memo.predict_action_probabilities(unseen_vip, domain).max_confidence == 0.0

    started = time.monotonic()
    ted = TEDPolicy({"epochs": 60, "random_seed": 1})
    ted.train(vip_stories, domain)
    assert time.monotonic() - started < 30

    vip = ted.predict_action_probabilities(unseen_vip, domain)
    plain = ted.predict_action_probabilities(unseen_plain, domain)
    assert _name(vip, domain) == "utter_vip_price"
    assert _name(plain, domain) == "utter_price"
    assert sum(vip.probabilities) == pytest.approx(1.0, abs=1e-4)
    assert vip.policy_name == "TEDPolicy" and vip.policy_priority == 1
    after_answer = make_tracker("c", [listen(), user("ask_price"), act("utter_price")])
    assert _name(ted.predict_action_probabilities(after_answer, domain), domain) == "action_listen"


def test_ted_is_deterministic_with_a_seed(domain, make_tracker, vip_stories):
    tracker = make_tracker("c", [listen(), user("thank")])
    first = TEDPolicy({"epochs": 5, "random_seed": 7})
    second = TEDPolicy({"epochs": 5, "random_seed": 7})
    first.train(vip_stories, domain)
    second.train(vip_stories, domain)
    assert first.predict_action_probabilities(tracker, domain).probabilities == \
        second.predict_action_probabilities(tracker, domain).probabilities


def test_ted_persist_load_identical_predictions(domain, make_tracker, vip_stories, tmp_path):
    ted = TEDPolicy({"epochs": 10, "max_history": 4, "hidden_size": 16})
    ted.train(vip_stories, domain)
    ted.persist(tmp_path / "ted")
    assert (tmp_path / "ted" / "ted_model.pt").is_file()
    loaded = TEDPolicy.load(tmp_path / "ted")
    assert loaded.config["hidden_size"] == 16 and loaded.max_history == 4
    for events in ([listen(), user("greet")], [listen(), user("thank"), act("utter_welcome"), listen(), user("ask_price")]):
        tracker = make_tracker("c", events)
        assert loaded.predict_action_probabilities(tracker, domain).probabilities == \
            ted.predict_action_probabilities(tracker, domain).probabilities


def test_ted_config_validation(domain):
    with pytest.raises(UnknownComponentError, match="learning_rate"):
        TEDPolicy({"learnig_rate": 0.1})
    with pytest.raises(ConfigError, match="softmax"):
        TEDPolicy({"model_confidence": "cosine"})
    # Rasa options kefu does not use are accepted, so Rasa configs load unchanged
    policy = TEDPolicy({"constrain_similarities": True, "transformer_size": 128, "epochs": 3})
    assert policy.config["epochs"] == 3 and "transformer_size" not in policy.config


def test_ted_untrained_predicts_nothing(domain, make_tracker):
    prediction = TEDPolicy().predict_action_probabilities(make_tracker("c", [listen(), user("greet")]), domain)
    assert prediction.max_confidence == 0.0
