from __future__ import annotations

import pytest
from policy_helpers import act, listen, snippet, user

from bot.dialogue.policies import InvalidRule, RulePolicy
from bot.shared.constants import (
    ACTION_DEFAULT_FALLBACK_NAME,
    ACTION_LISTEN_NAME,
    ACTION_RESTART_NAME,
    REQUESTED_SLOT,
)
from bot.shared.events import ActionExecutionRejected, ActiveLoop, SlotSet
from bot.shared.exceptions import InvalidDomain, TrainingDataError


def _predicted(policy, tracker, domain):
    prediction = policy.predict_action_probabilities(tracker, domain)
    return domain.action_names_or_texts[prediction.max_confidence_index], prediction


@pytest.fixture
def greet_rule(make_tracker):
    return make_tracker(
        "greet rule", [snippet(), listen(), user("greet"), act("utter_greet"), listen()], rule=True
    )


@pytest.fixture
def form_rules(make_tracker):
    activate = make_tracker(
        "activate form",
        [snippet(), listen(), user("request_info"), act("info_form"), ActiveLoop("info_form"), listen()],
        rule=True,
    )
    submit = make_tracker(
        "submit form",
        [
            ActiveLoop("info_form"),
            snippet(),
            act("info_form"),
            ActiveLoop(None),
            SlotSet(REQUESTED_SLOT, None),
            act("utter_submit"),
            listen(),
        ],
        rule=True,
    )
    chitchat = make_tracker(
        "chitchat", [snippet(), listen(), user("chitchat"), act("utter_chitchat"), listen()], rule=True
    )
    return [activate, submit, chitchat]


def test_rule_policy_rule_fires_in_any_context(domain, make_tracker, greet_rule):
    policy = RulePolicy()
    policy.train([greet_rule], domain)

    fresh = make_tracker("c1", [listen(), user("greet")])
    assert _predicted(policy, fresh, domain)[0] == "utter_greet"
    later = make_tracker("c2", [listen(), user("thank"), act("utter_welcome"), listen(), user("greet")])
    name, prediction = _predicted(policy, later, domain)
    assert name == "utter_greet"
    assert prediction.max_confidence == 1.0
    assert prediction.policy_name == "RulePolicy" and prediction.policy_priority == 6
    after = make_tracker("c3", [listen(), user("greet"), act("utter_greet")])
    assert _predicted(policy, after, domain)[0] == ACTION_LISTEN_NAME


def test_rule_policy_fallback_below_threshold_when_no_rule_matches(domain, make_tracker, greet_rule):
    policy = RulePolicy({"core_fallback_threshold": 0.4})
    policy.train([greet_rule], domain)
    tracker = make_tracker("c", [listen(), user("goodbye")])
    name, prediction = _predicted(policy, tracker, domain)
    assert name == ACTION_DEFAULT_FALLBACK_NAME
    assert prediction.max_confidence == pytest.approx(0.4)


def test_rule_policy_fallback_disabled_predicts_nothing(domain, make_tracker, greet_rule):
    policy = RulePolicy({"enable_fallback_prediction": False})
    policy.train([greet_rule], domain)
    prediction = policy.predict_action_probabilities(make_tracker("c", [listen(), user("goodbye")]), domain)
    assert prediction.max_confidence == 0.0


def test_rule_policy_unknown_fallback_action_is_invalid_domain(domain, greet_rule):
    policy = RulePolicy({"core_fallback_action_name": "action_my_fallback"})
    with pytest.raises(InvalidDomain, match="action_my_fallback"):
        policy.train([greet_rule], domain)


def test_rule_policy_default_intents_overrule_rules(domain, make_tracker, greet_rule):
    policy = RulePolicy()
    policy.train([greet_rule], domain)
    tracker = make_tracker("c", [listen(), user("restart")])
    assert _predicted(policy, tracker, domain)[0] == ACTION_RESTART_NAME


def test_rule_policy_contradicting_rules_are_reported_by_name(domain, make_tracker, greet_rule):
    other = make_tracker(
        "greet with goodbye", [snippet(), listen(), user("greet"), act("utter_goodbye"), listen()], rule=True
    )
    with pytest.raises(InvalidRule) as info:
        RulePolicy().train([greet_rule, other], domain)
    message = str(info.value)
    assert "greet rule" in message and "greet with goodbye" in message
    assert "utter_greet" in message and "utter_goodbye" in message
    assert isinstance(info.value, TrainingDataError)


def test_rule_policy_story_contradicting_rule_is_reported(domain, make_tracker, greet_rule):
    story = make_tracker("rude story", [listen(), user("greet"), act("utter_goodbye"), listen()])
    with pytest.raises(InvalidRule) as info:
        RulePolicy().train([greet_rule, story], domain)
    message = str(info.value)
    assert "story 'rude story'" in message
    assert "greet rule" in message
    assert "which predicted action 'utter_greet'" in message


def test_rule_policy_contradiction_check_can_be_disabled(domain, make_tracker, greet_rule):
    story = make_tracker("rude story", [listen(), user("greet"), act("utter_goodbye"), listen()])
    policy = RulePolicy({"check_for_contradictions": False})
    policy.train([greet_rule, story], domain)
    assert _predicted(policy, make_tracker("c", [listen(), user("greet")]), domain)[0] == "utter_greet"


def test_rule_policy_restrict_rules_refuses_two_user_turns(domain, make_tracker):
    long_rule = make_tracker(
        "state machine",
        [snippet(), listen(), user("greet"), act("utter_greet"), listen(), user("thank"), act("utter_welcome"), listen()],
        rule=True,
    )
    with pytest.raises(InvalidRule, match="state machine"):
        RulePolicy().train([long_rule], domain)
    RulePolicy({"restrict_rules": False}).train([long_rule], domain)


def test_rule_policy_form_happy_path_loops(domain, make_tracker, form_rules):
    policy = RulePolicy()
    policy.train(form_rules, domain)

    events = [listen(), user("request_info")]
    assert _predicted(policy, make_tracker("c", events), domain)[0] == "info_form"

    events += [act("info_form"), ActiveLoop("info_form"), SlotSet(REQUESTED_SLOT, "email")]
    name, prediction = _predicted(policy, make_tracker("c", events), domain)
    assert name == ACTION_LISTEN_NAME
    assert prediction.is_no_user_prediction

    events += [listen(), user("inform")]
    name, prediction = _predicted(policy, make_tracker("c", events), domain)
    assert name == "info_form"
    assert prediction.is_no_user_prediction

    events += [act("info_form"), ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)]
    assert _predicted(policy, make_tracker("c", events), domain)[0] == "utter_submit"


def test_rule_policy_form_rejection_takes_unhappy_path_and_returns(domain, make_tracker, form_rules):
    policy = RulePolicy()
    policy.train(form_rules, domain)
    events = [
        listen(),
        user("request_info"),
        act("info_form"),
        ActiveLoop("info_form"),
        SlotSet(REQUESTED_SLOT, "email"),
        listen(),
        user("chitchat"),
        ActionExecutionRejected("info_form"),
    ]
    name, prediction = _predicted(policy, make_tracker("c", events), domain)
    assert name == "utter_chitchat"
    assert not prediction.is_no_user_prediction

    events += [act("utter_chitchat")]
    name, prediction = _predicted(policy, make_tracker("c", events), domain)
    # the chitchat rule ends with action_listen, but inside a form the form resumes
    assert name == "info_form"


def test_rule_policy_rule_only_slots_and_loops(domain, make_tracker, form_rules, greet_rule):
    story = make_tracker("story", [listen(), user("thank"), act("utter_welcome"), listen()])
    vip_rule = make_tracker(
        "vip rule",
        [snippet(), listen(), user("ask_price"), SlotSet("vip", True), act("utter_vip_price"), listen()],
        rule=True,
    )
    policy = RulePolicy()
    policy.train(form_rules + [vip_rule, story], domain)
    data = policy.get_rule_only_data()
    assert "vip" in data["rule_only_slots"]
    assert data["rule_only_loops"] == ["info_form"]


def test_rule_policy_persist_load_keeps_rules(domain, make_tracker, greet_rule, form_rules, tmp_path):
    policy = RulePolicy({"core_fallback_threshold": 0.25})
    policy.train([greet_rule] + form_rules, domain)
    policy.persist(tmp_path / "rules")
    loaded = RulePolicy.load(tmp_path / "rules")
    assert loaded.config["core_fallback_threshold"] == 0.25
    for events in ([listen(), user("greet")], [listen(), user("goodbye")], [listen(), user("request_info")]):
        tracker = make_tracker("c", events)
        assert loaded.predict_action_probabilities(tracker, domain) == policy.predict_action_probabilities(
            tracker, domain
        )
    assert loaded.get_rule_only_data() == policy.get_rule_only_data()
