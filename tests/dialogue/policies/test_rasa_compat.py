"""Policies written against Rasa 3's Python API run in kefu (bot/dialogue/rasa_compat).

A project's class imports ``rasa.core.policies.policy`` and friends; with Rasa absent kefu
serves those modules, builds the class with ``create(config, model_storage, resource,
context)``, trains it, keeps its resource folder in the model and ``load``s it back.
"""
from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from policy_helpers import act, listen, user

from bot.dialogue.policies import PolicyEnsemble
from bot.dialogue.rasa_compat import install, missing_apis, rasa_installed
from bot.dialogue.rasa_compat.adapter import RasaGraphPolicy
from bot.model.rasa_api import check_custom_classes
from bot.shared.exceptions import ConfigError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rasa") is not None and not install(), reason="the real Rasa is installed"
)

RASA_STYLE_POLICY = '''
from __future__ import annotations
from typing import Any, Dict, Optional, Text

import rasa.shared.utils.io
from rasa.core.constants import POLICY_PRIORITY
from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class LastIntentPolicy(Policy):
    """Answers the last intent with the action that followed it in the stories."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {POLICY_PRIORITY: 2, "max_history": 2, "answer_confidence": 1.0}

    def __init__(self, config, model_storage, resource, execution_context, featurizer=None, table=None):
        super().__init__(config, model_storage, resource, execution_context, featurizer)
        self.table = table or {}

    def train(self, training_trackers, domain: Domain, **kwargs: Any) -> Resource:
        states, labels = self.featurizer.training_states_and_labels(training_trackers, domain)
        for history, label in zip(states, labels):
            last = history[-1] if history else {}
            if last.get("user") and last.get("prev_action", {}).get("action_name") == "action_listen":
                self.table[history[-1]["user"]["intent"]] = label[0]
        with self._model_storage.write_to(self._resource) as path:
            rasa.shared.utils.io.dump_obj_as_json_to_file(path / "table.json", self.table)
        return self._resource

    def predict_action_probabilities(self, tracker: DialogueStateTracker, domain: Domain,
                                     rule_only_data: Optional[Dict[Text, Any]] = None,
                                     **kwargs: Any) -> PolicyPrediction:
        result = self._default_predictions(domain)
        states = self._prediction_states(tracker, domain, rule_only_data=rule_only_data)
        last = states[-1] if states else {}
        intent = (last.get("user") or {}).get("intent")
        if intent in self.table and last.get("prev_action", {}).get("action_name") == "action_listen":
            result[domain.index_for_action(self.table[intent])] = self.config["answer_confidence"]
        return self._prediction(result)

    @classmethod
    def load(cls, config, model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "LastIntentPolicy":
        with model_storage.read_from(resource) as path:
            table = rasa.shared.utils.io.read_json_file(path / "table.json")
        return cls(config, model_storage, resource, execution_context, table=table)
'''


@pytest.fixture
def rasa_style_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "project_policies"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "last_intent.py").write_text(textwrap.dedent(RASA_STYLE_POLICY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "project_policies.last_intent.LastIntentPolicy"
    for name in [n for n in sys.modules if n.startswith("project_policies")]:
        del sys.modules[name]


def _stories(make_tracker):
    return [make_tracker("price", [listen(), user("greet"), act("utter_greet"), listen(), user("ask_price"),
                                   act("utter_price"), listen()])]


def test_rasa_api_policy_trains_persists_loads_and_predicts(domain, make_tracker, rasa_style_module, tmp_path):
    ensemble = PolicyEnsemble.from_config([{"name": rasa_style_module, "answer_confidence": 0.9}])
    [policy] = ensemble.policies
    assert isinstance(policy, RasaGraphPolicy)
    assert policy.config == {"priority": 2, "max_history": 2, "answer_confidence": 0.9}  # defaults + config.yml
    ensemble.train(_stories(make_tracker), domain)

    ensemble.persist(tmp_path / "core")
    stored = list((tmp_path / "core").glob("policy_0_*/rasa_resource/LastIntentPolicy/table.json"))
    assert len(stored) == 1, "the policy's resource folder is not inside kefu's model"

    loaded = PolicyEnsemble.load(tmp_path / "core")
    tracker = make_tracker("c", [listen(), user("greet"), act("utter_greet"), listen(), user("ask_price")])
    prediction = loaded.predict(tracker, domain)
    assert domain.action_names_or_texts[prediction.max_confidence_index] == "utter_price"
    assert prediction.max_confidence == pytest.approx(0.9)
    assert prediction.policy_name == "LastIntentPolicy"
    assert loaded.policies[0].inner.table == {"greet": "utter_greet", "ask_price": "utter_price"}


def test_rasa_modules_are_kefus_while_rasa_is_absent(rasa_style_module):
    assert install() and not rasa_installed()
    import rasa.core.policies.policy as rasa_policy

    from bot.dialogue.policies.policy import PolicyPrediction
    from bot.dialogue.rasa_compat.policy import Policy

    assert rasa_policy.Policy is Policy and rasa_policy.PolicyPrediction is PolicyPrediction
    with pytest.raises(ModuleNotFoundError, match=r"rasa\.core\.policies\.ted_policy.*compatibility layer offers"):
        importlib.import_module("rasa.core.policies.ted_policy")


def test_missing_apis_names_modules_and_names_not_offered():
    assert missing_apis([("rasa.core.policies.policy", ("Policy", "PolicyPrediction"))]) == []
    assert missing_apis([("rasa.core.policies.policy", ("Policy", "NoSuchThing"))]) == [
        ("rasa.core.policies.policy", ("NoSuchThing",))]
    assert missing_apis([("rasa.nlu.classifiers.diet_classifier", ("DIETClassifier",))]) == [
        ("rasa.nlu.classifiers.diet_classifier", ("DIETClassifier",))]
    assert missing_apis([("rasa.shared.utils.io", ())]) == []  # ``import rasa.shared.utils.io``


def test_train_stops_naming_each_rasa_api_kefu_does_not_offer(tmp_path: Path):
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "__init__.py").write_text("", encoding="utf-8")
    (policy_dir / "mine.py").write_text(
        "from rasa.core.policies.policy import Policy\n"
        "from rasa.core.policies.ted_policy import TEDPolicy\n"
        "from rasa.shared.core.domain import Domain, NotADomainThing\n"
        "class Mine(TEDPolicy):\n    pass\n",
        encoding="utf-8",
    )
    entry = {"name": "policy.mine.Mine"}
    with pytest.raises(ConfigError) as raised:
        check_custom_classes([("policy", entry, 7)], tmp_path, builtin_names=["TEDPolicy"],
                             config_file="config.yml")
    message = str(raised.value)
    assert "config.yml:7" in message
    assert "policy/mine.py:2: rasa.core.policies.ted_policy (TEDPolicy)" in message
    assert "policy/mine.py:3: rasa.shared.core.domain (NotADomainThing)" in message
    assert "rasa.core.policies.policy" not in message  # offered, so not listed


def test_custom_nlu_component_on_rasa_classes_still_stops(tmp_path: Path):
    (tmp_path / "components.py").write_text(
        "from rasa.engine.graph import GraphComponent\nclass MyTokenizer(GraphComponent):\n    pass\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match=r"components\.py:1: rasa\.engine\.graph \(GraphComponent\)"):
        check_custom_classes([("pipeline component", {"name": "components.MyTokenizer"}, 3)], tmp_path,
                             builtin_names=[], config_file="config.yml")
