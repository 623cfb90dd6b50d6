"""MemoizationPolicy and AugmentedMemoizationPolicy (Rasa 3.6 semantics).

Memoization remembers the exact last ``max_history`` turns of every training
story and predicts the action that followed them with confidence 1.0 — precise,
never generalising. The augmented variant also forgets old turns (and the slots
they set) until a memorised history matches.
"""
from __future__ import annotations

import base64
import json
import logging
import zlib
from typing import Any, Optional

from bot.dialogue.policies.policy import (
    DEFAULT_MAX_HISTORY,
    MEMOIZATION_POLICY_PRIORITY,
    POLICY_MAX_HISTORY,
    POLICY_PRIORITY,
    Policy,
    PolicyPrediction,
    State,
    SupportedData,
    format_tracker_states,
    training_states_and_labels,
)
from bot.shared.constants import ACTION_LISTEN_NAME, PREDICTED_CONFIDENCE_KEY
from bot.shared.events import ActionExecuted

logger = logging.getLogger(__name__)


class MemoizationPolicy(Policy):
    """Predicts the action that followed exactly this history in a story."""

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_DATA

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        return {
            "enable_feature_string_compression": True,
            "use_nlu_confidence_as_score": False,
            POLICY_PRIORITY: MEMOIZATION_POLICY_PRIORITY,
            POLICY_MAX_HISTORY: DEFAULT_MAX_HISTORY,
        }

    def __init__(
        self,
        config: Optional[dict[str, Any]] = None,
        filename: Optional[str] = None,
        line: Optional[int] = None,
        lookup: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(config, filename, line)
        self.lookup: dict[str, Any] = lookup if lookup is not None else {}

    # ---- keys
    def _create_feature_key(self, states: list[State]) -> Optional[str]:
        if not states:
            return None
        # sorted keys: equal states give equal strings; quotes dropped as Rasa does
        feature_str = json.dumps(states, sort_keys=True, default=list).replace('"', "")
        if self.config.get("enable_feature_string_compression"):
            compressed = zlib.compress(feature_str.encode("utf-8"))
            return base64.b64encode(compressed).decode("utf-8")
        return feature_str

    def _create_lookup_from_states(
        self, trackers_as_states: list[list[State]], trackers_as_actions: list[list[str]]
    ) -> dict[str, str]:
        """Histories that led to different actions are ambiguous and dropped."""
        lookup: dict[str, str] = {}
        ambiguous: set[str] = set()
        for states, actions in zip(trackers_as_states, trackers_as_actions):
            action = actions[0]
            key = self._create_feature_key(states)
            if not key or key in ambiguous:
                continue
            if key in lookup:
                if lookup[key] != action:
                    ambiguous.add(key)
                    del lookup[key]
            else:
                lookup[key] = action
        return lookup

    # ---- training
    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> None:
        if "rule_only_data" in kwargs:
            self.set_shared_policy_states(rule_only_data=kwargs["rule_only_data"])
        # augmented trackers would memorise histories no real conversation has
        trackers = [t for t in training_trackers if not getattr(t, "is_augmented", False)]
        states, actions = training_states_and_labels(trackers, domain, self.max_history)
        self.lookup = self._create_lookup_from_states(states, actions)
        logger.debug("Memorized %d unique examples.", len(self.lookup))

    # ---- prediction
    def _recall_states(self, states: list[State]) -> Optional[str]:
        key = self._create_feature_key(states)
        return self.lookup.get(key) if key else None

    def recall(
        self,
        states: list[State],
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
    ) -> Optional[str]:
        return self._recall_states(states)

    def _prediction_result(self, action_name: Optional[str], tracker: Any, domain: Any) -> list[float]:
        result = self._default_predictions(domain)
        if action_name:
            score = 1.0
            if self.config.get("use_nlu_confidence_as_score") and tracker.latest_message is not None:
                intent = getattr(tracker.latest_message, "intent", None) or {}
                score = float(intent.get(PREDICTED_CONFIDENCE_KEY, 1.0))
            result[domain.index_for_action(action_name)] = score
        return result

    def predict_action_probabilities(
        self,
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        result = self._default_predictions(domain)
        states = self._prediction_states(tracker, domain, rule_only_data=rule_only_data)
        if logger.isEnabledFor(logging.DEBUG):  # the dump costs more than the lookup
            logger.debug("Current tracker state:%s", format_tracker_states(states))
        predicted = self.recall(states, tracker, domain, rule_only_data=rule_only_data)
        if predicted is not None and predicted in domain.action_names_or_texts:
            logger.debug("There is a memorised next action '%s'.", predicted)
            result = self._prediction_result(predicted, tracker, domain)
        else:
            logger.debug("There is no memorised next action.")
        return self._prediction(result)

    # ---- persistence
    def _metadata(self) -> dict[str, Any]:
        return {"lookup": self.lookup}

    def _load_metadata(self, metadata: dict[str, Any]) -> None:
        self.lookup = metadata.get("lookup") or {}


def _max_applied_events_for_max_history(tracker: Any, max_history: Optional[int]) -> Optional[int]:
    """Number of trailing events that cover ``max_history`` user turns (Rasa)."""
    if not max_history:
        return None
    num_events = 0
    num_listens = 0
    for event in reversed(tracker.applied_events()):
        num_events += 1
        if isinstance(event, ActionExecuted) and event.action_name == ACTION_LISTEN_NAME:
            num_listens += 1
            if num_listens > max_history:
                return num_events
    return None


def _tracker_from_events(tracker: Any, events: list[Any], domain: Any) -> Any:
    """A fresh tracker (initial slot values) replaying ``events``."""
    new_tracker = tracker.init_copy()
    for event in events:
        new_tracker.update(event, domain)
    return new_tracker


def _strip_leading_events_until_action_executed(events: list[Any], again: bool = False) -> Optional[list[Any]]:
    """Events from the first (``again``: the second) ``ActionExecuted`` on."""
    first = second = None
    for index, event in enumerate(events):
        if isinstance(event, ActionExecuted):
            if first is None:
                first = index
            else:
                second = index
                break
    start = second if again else first
    if start is None:
        return None
    return events[start:] or None


class AugmentedMemoizationPolicy(MemoizationPolicy):
    """Memoization that forgets old turns (and slots they set) to find a match.

    When the exact history is unknown, it replays the conversation from ever later
    actions on a fresh tracker, so slots set before the cut are forgotten — this
    recalls stories even when unrelated slots were filled earlier.
    """

    def recall(
        self,
        states: list[State],
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
    ) -> Optional[str]:
        predicted = self._recall_states(states)
        if predicted is None:
            return self._recall_using_truncation(states, tracker, domain, rule_only_data)
        return predicted

    def _recall_using_truncation(
        self,
        old_states: list[State],
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]],
    ) -> Optional[str]:
        logger.debug("Launch DeLorean...")
        events = list(tracker.applied_events())
        max_events = _max_applied_events_for_max_history(tracker, self.max_history)
        if max_events:
            events = events[-max_events:]
        truncated = _strip_leading_events_until_action_executed(events)
        while truncated is not None:
            truncated_tracker = _tracker_from_events(tracker, truncated, domain)
            states = self._prediction_states(truncated_tracker, domain, rule_only_data=rule_only_data)
            if old_states != states:
                predicted = self._recall_states(states)
                if predicted is not None:
                    if logger.isEnabledFor(logging.DEBUG):  # the dump costs more than the lookup
                        logger.debug("Current tracker state:%s", format_tracker_states(states))
                    return predicted
                old_states = states
            truncated = _strip_leading_events_until_action_executed(truncated, again=True)
        if logger.isEnabledFor(logging.DEBUG):  # the dump costs more than the lookup
            logger.debug("Current tracker state:%s", format_tracker_states(old_states))
        return None
