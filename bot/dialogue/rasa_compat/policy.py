"""Rasa 3's ``Policy`` base class and tracker featurizers, over kefu's state featurisation.

A policy a project wrote against ``rasa.core.policies.policy.Policy`` subclasses this
class; :class:`bot.dialogue.rasa_compat.adapter.RasaGraphPolicy` runs it inside kefu's
ensemble. The states, labels and predictions are kefu's own (the same as Rasa's:
``bot/dialogue/policies/policy.py``), so a copy of a Rasa policy learns and predicts
what it would on Rasa.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from bot.dialogue.policies.policy import (
    DEFAULT_MAX_HISTORY,
    DEFAULT_POLICY_PRIORITY,
    POLICY_MAX_HISTORY,
    POLICY_PRIORITY,
    PolicyPrediction,
    State,
    SupportedData,
    format_tracker_states as _format_tracker_states,
    prediction_states as _prediction_states,
    training_states_and_labels as _training_states_and_labels,
)
from bot.dialogue.rasa_compat.engine import ExecutionContext, GraphComponent, ModelStorage, Resource

FEATURIZER_FILE = "featurizer.json"


class SingleStateFeaturizer:
    """Accepted where Rasa's policies pass one; kefu's policies featurise states themselves."""

    def to_dict(self) -> dict[str, Any]:
        return {}


class TrackerFeaturizer:
    """Turns trackers into state sequences and action labels (``rasa.core.featurizers``)."""

    def __init__(self, state_featurizer: Optional[SingleStateFeaturizer] = None) -> None:
        self.state_featurizer = state_featurizer
        self.max_history: Optional[int] = None
        self.remove_duplicates = True

    def training_states_and_labels(self, trackers: list[Any], domain: Any, omit_unset_slots: bool = False,
                                   ignore_action_unlikely_intent: bool = False
                                   ) -> tuple[list[list[State]], list[list[str]]]:
        return _training_states_and_labels(trackers, domain, self.max_history,
                                           omit_unset_slots=omit_unset_slots,
                                           remove_duplicates=self.remove_duplicates)

    def prediction_states(self, trackers: list[Any], domain: Any, use_text_for_last_user_input: bool = False,
                          ignore_rule_only_turns: bool = False, rule_only_data: Optional[dict[str, Any]] = None,
                          ignore_action_unlikely_intent: bool = False) -> list[list[State]]:
        return [
            _prediction_states(tracker, domain, self.max_history,
                               use_text_for_last_user_input=use_text_for_last_user_input,
                               ignore_rule_only_turns=ignore_rule_only_turns, rule_only_data=rule_only_data)
            for tracker in trackers
        ]

    def persist(self, path: str | Path) -> None:
        data = {"class": type(self).__name__, "max_history": self.max_history,
                "remove_duplicates": self.remove_duplicates}
        (Path(path) / FEATURIZER_FILE).write_text(json.dumps(data), encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> Optional["TrackerFeaturizer"]:
        file = Path(path) / FEATURIZER_FILE
        if not file.is_file():
            return None
        data = json.loads(file.read_text(encoding="utf-8"))
        cls = {"MaxHistoryTrackerFeaturizer": MaxHistoryTrackerFeaturizer,
               "FullDialogueTrackerFeaturizer": FullDialogueTrackerFeaturizer}.get(data.get("class"),
                                                                                  MaxHistoryTrackerFeaturizer)
        featurizer = cls()
        featurizer.max_history = data.get("max_history")
        featurizer.remove_duplicates = bool(data.get("remove_duplicates", True))
        return featurizer


class FullDialogueTrackerFeaturizer(TrackerFeaturizer):
    """The whole dialogue as one sequence (no history limit)."""


class MaxHistoryTrackerFeaturizer(TrackerFeaturizer):
    """The last ``max_history`` turns before each action."""

    def __init__(self, state_featurizer: Optional[SingleStateFeaturizer] = None,
                 max_history: Optional[int] = None, remove_duplicates: bool = True) -> None:
        super().__init__(state_featurizer)
        self.max_history = max_history
        self.remove_duplicates = remove_duplicates


class Policy(GraphComponent):
    """``rasa.core.policies.policy.Policy`` as Rasa 3.6 defines what subclasses rely on."""

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_DATA

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {POLICY_PRIORITY: DEFAULT_POLICY_PRIORITY, POLICY_MAX_HISTORY: DEFAULT_MAX_HISTORY}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 execution_context: ExecutionContext, featurizer: Optional[TrackerFeaturizer] = None) -> None:
        self.config = config
        if featurizer is None:
            featurizer = self._create_featurizer()
        self.__featurizer = featurizer
        self.priority = config.get(POLICY_PRIORITY, DEFAULT_POLICY_PRIORITY)
        self.finetune_mode = execution_context.is_finetuning
        self._model_storage = model_storage
        self._resource = resource
        self._execution_context = execution_context
        self._rule_only_data: dict[str, Any] = {}

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext, **kwargs: Any) -> "Policy":
        return cls(config, model_storage, resource, execution_context)

    def _create_featurizer(self) -> TrackerFeaturizer:
        return self._standard_featurizer()

    def _standard_featurizer(self) -> TrackerFeaturizer:
        return MaxHistoryTrackerFeaturizer(SingleStateFeaturizer(), max_history=self.config.get(POLICY_MAX_HISTORY))

    @property
    def featurizer(self) -> TrackerFeaturizer:
        return self.__featurizer

    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> Resource:
        raise NotImplementedError(f"{type(self).__name__} does not implement train().")

    def predict_action_probabilities(self, tracker: Any, domain: Any,
                                     rule_only_data: Optional[dict[str, Any]] = None,
                                     **kwargs: Any) -> PolicyPrediction:
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_action_probabilities().")

    def _prediction_states(self, tracker: Any, domain: Any, use_text_for_last_user_input: bool = False,
                           rule_only_data: Optional[dict[str, Any]] = None) -> list[State]:
        return self.featurizer.prediction_states(
            [tracker], domain, use_text_for_last_user_input=use_text_for_last_user_input,
            ignore_rule_only_turns=self.supported_data() == SupportedData.ML_DATA,
            rule_only_data=rule_only_data,
        )[0]

    def _default_predictions(self, domain: Any) -> list[float]:
        return [0.0] * len(domain.action_names_or_texts)

    def _prediction(self, probabilities: list[float], events: Optional[list[Any]] = None,
                    optional_events: Optional[list[Any]] = None, is_end_to_end_prediction: bool = False,
                    is_no_user_prediction: bool = False, diagnostic_data: Optional[dict[str, Any]] = None,
                    action_metadata: Optional[dict[str, Any]] = None) -> PolicyPrediction:
        return PolicyPrediction(probabilities, type(self).__name__, self.priority, events, optional_events,
                                is_end_to_end_prediction, is_no_user_prediction, diagnostic_data,
                                action_metadata=action_metadata)

    @staticmethod
    def format_tracker_states(states: list[State]) -> str:
        return _format_tracker_states(states)

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "Policy":
        featurizer = None
        try:
            with model_storage.read_from(resource) as path:
                featurizer = TrackerFeaturizer.load(path)
        except ValueError:
            pass
        return cls(config, model_storage, resource, execution_context, featurizer=featurizer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}@{id(self)}"
