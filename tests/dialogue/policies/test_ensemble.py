from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import act, listen, snippet, user

from bot.dialogue.policies import POLICIES, Policy, PolicyEnsemble, PolicyPrediction, RulePolicy
from bot.shared.constants import ACTION_DEFAULT_FALLBACK_NAME
from bot.shared.events import ActionExecutionRejected, DefinePrevUserUtteredFeaturization, SlotSet
from bot.shared.exceptions import ConfigError, UnknownComponentError


class FixedPolicy(Policy):
    """Always predicts one action with a fixed confidence (for ensemble tests)."""

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        return {"priority": 1, "action": "utter_greet", "confidence": 1.0, "no_user": False}

    def train(self, training_trackers, domain, **kwargs):
        self.trained_on = len(training_trackers)

    def predict_action_probabilities(self, tracker, domain, rule_only_data=None, **kwargs):
        probabilities = self._default_predictions(domain)
        probabilities[domain.index_for_action(self.config["action"])] = self.config["confidence"]
        return self._prediction(probabilities, is_no_user_prediction=self.config["no_user"])


def _fixed(action, priority, confidence=1.0, no_user=False):
    return FixedPolicy({"action": action, "priority": priority, "confidence": confidence, "no_user": no_user})


def _name(prediction, domain):
    return domain.action_names_or_texts[prediction.max_confidence_index]


def test_ensemble_tie_broken_by_priority(domain, make_tracker):
    tracker = make_tracker("c", [listen(), user("greet")])
    for policies in ([_fixed("utter_greet", 1), _fixed("utter_goodbye", 3)],
                     [_fixed("utter_goodbye", 3), _fixed("utter_greet", 1)]):
        assert _name(PolicyEnsemble(policies).predict(tracker, domain), domain) == "utter_goodbye"
    # equal priority: the policy listed first wins
    same = PolicyEnsemble([_fixed("utter_welcome", 2), _fixed("utter_goodbye", 2)])
    assert _name(same.predict(tracker, domain), domain) == "utter_welcome"


def test_ensemble_confidence_beats_priority_and_no_user_beats_confidence(domain, make_tracker):
    tracker = make_tracker("c", [listen(), user("greet")])
    ensemble = PolicyEnsemble([_fixed("utter_greet", 1, 0.9), _fixed("utter_goodbye", 6, 0.3)])
    assert _name(ensemble.predict(tracker, domain), domain) == "utter_greet"
    ensemble = PolicyEnsemble([_fixed("utter_greet", 1, 0.9), _fixed("utter_goodbye", 1, 0.2, no_user=True)])
    assert _name(ensemble.predict(tracker, domain), domain) == "utter_goodbye"


def test_ensemble_zeroes_rejected_action(domain, make_tracker):
    tracker = make_tracker("c", [listen(), user("greet"), ActionExecutionRejected("utter_goodbye")])
    ensemble = PolicyEnsemble([_fixed("utter_greet", 1, 0.5), _fixed("utter_goodbye", 3, 1.0)])
    prediction = ensemble.predict(tracker, domain)
    assert _name(prediction, domain) == "utter_greet"
    assert prediction.probabilities[domain.index_for_action("utter_goodbye")] == 0.0


def test_ensemble_marks_user_featurization_after_listen(domain, make_tracker):
    ensemble = PolicyEnsemble([_fixed("utter_greet", 1)])
    prediction = ensemble.predict(make_tracker("c", [listen(), user("greet")]), domain)
    assert DefinePrevUserUtteredFeaturization(False) in prediction.events
    prediction = ensemble.predict(make_tracker("c", [listen(), user("greet"), act("utter_greet")]), domain)
    assert prediction.events == []


def test_ensemble_from_config_resolves_names_and_dotted_paths():
    ensemble = PolicyEnsemble.from_config(
        [
            {"name": "RulePolicy", "core_fallback_threshold": 0.4},
            {"name": "MemoizationPolicy", "max_history": 3},
            {"name": "UnexpecTEDIntentPolicy", "max_history": 5, "epochs": 100},
            {"name": "TEDPolicy", "epochs": 2, "constrain_similarities": True},
            {"name": "test_ensemble.FixedPolicy", "priority": 9},
        ],
        file="config.yml",
    )
    names = [type(p).__name__ for p in ensemble.policies]
    assert names == ["RulePolicy", "MemoizationPolicy", "TEDPolicy", "FixedPolicy"]
    assert ensemble.policies[0].config["core_fallback_threshold"] == 0.4
    assert ensemble.policies[1].max_history == 3
    assert "UnexpecTEDIntentPolicy" in POLICIES


def test_ensemble_from_config_errors_list_valid_options():
    with pytest.raises(UnknownComponentError) as info:
        PolicyEnsemble.from_config([{"name": "RulePolicy", "core_fallback_treshold": 0.3}], file="config.yml")
    message = str(info.value)
    assert "core_fallback_treshold" in message and "core_fallback_threshold" in message
    assert "config.yml" in message
    with pytest.raises(UnknownComponentError, match="TEDPolicy"):
        PolicyEnsemble.from_config([{"name": "FancyPolicy"}])
    with pytest.raises(UnknownComponentError, match="RulePolicy"):
        PolicyEnsemble.from_config([{"name": "MappingPolicy"}])
    with pytest.raises(ConfigError, match="name"):
        PolicyEnsemble.from_config([{"max_history": 3}])


@pytest.fixture
def training_data(make_tracker):
    return [
        make_tracker("greet rule", [snippet(), listen(), user("greet"), act("utter_greet"), listen()], rule=True),
        make_tracker("bye rule", [snippet(), listen(), user("goodbye"), act("utter_goodbye"), listen()], rule=True),
        make_tracker("price", [listen(), user("ask_price"), act("utter_price"), listen()]),
        make_tracker("vip price", [listen(), user("thank"), SlotSet("vip", True), act("utter_welcome"), listen(),
                                   user("ask_price"), act("utter_vip_price"), listen()]),
    ]


def test_ensemble_trains_and_persists_with_identical_predictions(domain, make_tracker, training_data, tmp_path):
    ensemble = PolicyEnsemble.from_config(
        [{"name": "RulePolicy"}, {"name": "AugmentedMemoizationPolicy"}, {"name": "TEDPolicy", "epochs": 20}]
    )
    ensemble.train(training_data, domain)
    conversations = [
        [listen(), user("greet")],
        [listen(), user("ask_price")],
        [listen(), user("greet"), act("utter_greet"), listen(), user("thank")],
        [listen(), user("inform")],
    ]
    greet = ensemble.predict(make_tracker("c", conversations[0]), domain)
    assert _name(greet, domain) == "utter_greet" and greet.policy_name == "RulePolicy"
    price = ensemble.predict(make_tracker("c", conversations[1]), domain)
    assert _name(price, domain) == "utter_price" and price.policy_name == "AugmentedMemoizationPolicy"

    ensemble.persist(tmp_path / "core")
    loaded = PolicyEnsemble.load(tmp_path / "core")
    assert [type(p).__name__ for p in loaded.policies] == [type(p).__name__ for p in ensemble.policies]
    for events in conversations:
        tracker = make_tracker("c", events)
        assert loaded.predict(tracker, domain) == ensemble.predict(tracker, domain)


def test_ensemble_core_fallback_when_nothing_is_confident(domain, make_tracker, training_data):
    ensemble = PolicyEnsemble([RulePolicy({"core_fallback_threshold": 0.3}), _fixed("utter_chitchat", 1, 0.2)])
    ensemble.train(training_data, domain)
    prediction = ensemble.predict(make_tracker("c", [listen(), user("inform")]), domain)
    assert _name(prediction, domain) == ACTION_DEFAULT_FALLBACK_NAME
    assert prediction.policy_name == "RulePolicy"
    assert prediction.max_confidence == pytest.approx(0.3)


def test_ensemble_ml_policies_train_on_stories_only(domain, training_data):
    fixed = _fixed("utter_greet", 1)
    PolicyEnsemble([RulePolicy(), fixed]).train(training_data, domain)
    assert fixed.trained_on == 2
