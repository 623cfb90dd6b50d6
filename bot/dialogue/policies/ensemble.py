"""PolicyEnsemble: trains the configured policies and picks the best prediction.

Prediction follows Rasa 3.6's ``DefaultPolicyPredictionEnsemble``:

1. an action just rejected (``ActionExecutionRejected``) gets confidence 0 in
   every prediction;
2. "no user" predictions (a loop continuing) win over all others;
3. then end-to-end (text-based) predictions;
4. then the highest confidence;
5. then the highest policy priority; a full tie goes to the policy listed first.

The winner keeps its events; every policy's ``optional_events`` are added.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from bot.dialogue.policies.policy import Policy, PolicyPrediction, SupportedData
from bot.shared.constants import ACTION_LISTEN_NAME
from bot.shared.events import (
    ActionExecuted,
    ActionExecutionRejected,
    DefinePrevUserUtteredFeaturization,
)
from bot.shared.exceptions import ConfigError, ModelNotFound

logger = logging.getLogger(__name__)

ENSEMBLE_METADATA_FILE = "ensemble.json"


def _policy_dir_name(index: int, policy: Policy) -> str:
    return f"policy_{index}_{type(policy).__name__}"


class PolicyEnsemble:
    """An ordered list of policies trained and asked together."""

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = list(policies)
        self.date_trained: Optional[str] = None
        self._check_priorities()
        self._set_rule_only_data()

    # ---- construction
    @classmethod
    def from_config(
        cls, policies_config: Optional[list[dict[str, Any]]], file: Optional[str] = None
    ) -> "PolicyEnsemble":
        """Policies from config.yml's ``policies:`` list (Rasa names or dotted paths)."""
        from bot.dialogue.policies import policy_from_config

        if policies_config is None:
            policies_config = []
        if not isinstance(policies_config, list):
            raise ConfigError(
                "'policies' must be a list of policies.",
                file,
                fix="Write e.g. 'policies:\\n  - name: RulePolicy'.",
            )
        policies = []
        for index, entry in enumerate(policies_config):
            policy = policy_from_config(entry, file=file, index=index)
            if policy is not None:
                policies.append(policy)
        return cls(policies)

    def _check_priorities(self) -> None:
        by_priority: dict[int, list[str]] = {}
        for policy in self.policies:
            by_priority.setdefault(policy.priority, []).append(type(policy).__name__)
        for priority, names in by_priority.items():
            if len(names) > 1:
                logger.warning(
                    "Policies %s share priority %s; on equal confidence the one listed first wins. "
                    "Give them different priorities to make the choice explicit.",
                    names,
                    priority,
                )

    # ---- rule-only data
    @property
    def rule_only_data(self) -> dict[str, Any]:
        for policy in self.policies:
            getter = getattr(policy, "get_rule_only_data", None)
            if getter is not None:
                return getter()
        return {}

    def _set_rule_only_data(self) -> None:
        data = self.rule_only_data
        for policy in self.policies:
            policy.set_shared_policy_states(rule_only_data=data)

    # ---- training
    def train(self, training_trackers: list[Any], domain: Any, base: "PolicyEnsemble | None" = None,
              epoch_fraction: float = 1.0, **kwargs: Any) -> None:
        """Trains rule-reading policies first so ML policies get the rule-only data.

        ``base``: the previous model's ensemble to fine-tune from (``train --finetune``):
        each policy continues from its counterpart (``Policy.finetune_from``)."""
        if base is not None:
            old_names = [type(p).__name__ for p in base.policies]
            if old_names != [type(p).__name__ for p in self.policies]:
                raise ConfigError(f"Cannot fine-tune: the previous model's policies are {', '.join(old_names)}.",
                                  fix="Train without --finetune, or restore those policies.")
            for policy, old in zip(self.policies, base.policies):
                policy.finetune_from(old, epoch_fraction)
        if not training_trackers:
            logger.info("Skipped dialogue policy training: there are no training stories or rules.")
            return
        self._warn_about_rule_data(training_trackers)
        ordered = sorted(
            self.policies,
            key=lambda p: 0 if p.supported_data() != SupportedData.ML_DATA else 1,
        )
        rule_only_data: dict[str, Any] = {}
        for policy in ordered:
            trackers = SupportedData.trackers_for_supported_data(policy.supported_data(), training_trackers)
            logger.info("Training %s on %d trackers.", type(policy).__name__, len(trackers))
            policy.train(trackers, domain, rule_only_data=rule_only_data, **kwargs)
            getter = getattr(policy, "get_rule_only_data", None)
            if getter is not None and not rule_only_data:
                rule_only_data = getter()
        self._set_rule_only_data()
        self.date_trained = datetime.now().strftime("%Y%m%d-%H%M%S")

    def _warn_about_rule_data(self, trackers: list[Any]) -> None:
        has_rule_policy = any(p.supported_data() != SupportedData.ML_DATA for p in self.policies)
        has_rules = any(getattr(t, "is_rule_tracker", False) for t in trackers)
        if has_rule_policy and not has_rules:
            logger.warning("A rule policy is configured but there are no rules in the training data.")
        elif has_rules and not has_rule_policy:
            logger.warning(
                "The training data has rules but no policy reads them. Add 'RulePolicy' to 'policies' "
                "in config.yml."
            )

    # ---- prediction
    @staticmethod
    def _exclude_last_action_from_predictions(
        prediction: PolicyPrediction, tracker: Any, domain: Any
    ) -> PolicyPrediction:
        """Zero the confidence of an action that just rejected execution."""
        last = next(
            (e for e in reversed(tracker.events) if isinstance(e, (ActionExecutionRejected, ActionExecuted))),
            None,
        )
        if isinstance(last, ActionExecutionRejected) and last.action_name in domain.action_names_or_texts:
            logger.debug("Execution of '%s' was rejected; setting its confidence to 0.", last.action_name)
            prediction.probabilities[domain.index_for_action(last.action_name)] = 0.0
        return prediction

    @staticmethod
    def _pick_best_policy(predictions: list[PolicyPrediction]) -> PolicyPrediction:
        best_index = 0
        best_score: Optional[tuple[bool, bool, float, int]] = None
        for index, prediction in enumerate(predictions):
            score = (
                prediction.is_no_user_prediction,
                prediction.is_end_to_end_prediction,
                prediction.max_confidence,
                prediction.policy_priority,
            )
            if best_score is None or score > best_score:
                best_score, best_index = score, index
        best = predictions[best_index]
        events: list[Any] = []
        for index, prediction in enumerate(predictions):
            if index == best_index:
                events.extend(prediction.events)
            events.extend(prediction.optional_events)
        unique: list[Any] = []
        for event in events:
            if event not in unique:
                unique.append(event)
        return PolicyPrediction(
            best.probabilities,
            best.policy_name,
            best.policy_priority,
            unique,
            is_end_to_end_prediction=best.is_end_to_end_prediction,
            is_no_user_prediction=best.is_no_user_prediction,
            diagnostic_data=best.diagnostic_data,
            hide_rule_turn=best.hide_rule_turn,
            action_metadata=best.action_metadata,
        )

    def combine_predictions(
        self, predictions: list[PolicyPrediction], tracker: Any, domain: Any
    ) -> PolicyPrediction:
        if not predictions:
            logger.warning("No policies configured: predicting '%s'.", ACTION_LISTEN_NAME)
            return PolicyPrediction.for_action_name(domain, ACTION_LISTEN_NAME, None)
        predictions = [self._exclude_last_action_from_predictions(p, tracker, domain) for p in predictions]
        winner = self._pick_best_policy(predictions)
        if tracker.latest_action_name == ACTION_LISTEN_NAME:
            winner.events.append(DefinePrevUserUtteredFeaturization(winner.is_end_to_end_prediction))
        logger.debug("Predicted next action using %s.", winner.policy_name)
        return winner

    def predict(self, tracker: Any, domain: Any) -> PolicyPrediction:
        """The best next action for ``tracker`` (``probabilities`` over the domain's actions)."""
        rule_only_data = self.rule_only_data
        predictions = [
            policy.predict_action_probabilities(tracker, domain, rule_only_data=rule_only_data)
            for policy in self.policies
        ]
        return self.combine_predictions(predictions, tracker, domain)

    probabilities_using_best_policy = predict

    # ---- persistence
    def persist(self, path: str | Path) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "policies": [
                {"name": type(p).__name__, "dir": _policy_dir_name(i, p)} for i, p in enumerate(self.policies)
            ],
            "trained_at": self.date_trained,
        }
        for index, policy in enumerate(self.policies):
            policy.persist(directory / _policy_dir_name(index, policy))
        (directory / ENSEMBLE_METADATA_FILE).write_text(json.dumps(metadata, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "PolicyEnsemble":
        directory = Path(path)
        file = directory / ENSEMBLE_METADATA_FILE
        if not file.is_file():
            raise ModelNotFound(f"{file}: no persisted policy ensemble here. Fix: train the model again.")
        metadata = json.loads(file.read_text(encoding="utf-8"))
        policies = [Policy.load(directory / entry["dir"]) for entry in metadata.get("policies", [])]
        ensemble = cls(policies)
        ensemble.date_trained = metadata.get("trained_at")
        return ensemble

    def __repr__(self) -> str:
        return f"PolicyEnsemble({self.policies!r})"
