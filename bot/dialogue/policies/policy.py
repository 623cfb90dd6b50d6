"""Policy base class, predictions and the state featurisation every policy shares.

Mirrors Rasa 3.6's ``rasa/core/policies/policy.py`` and the parts of
``MaxHistoryTrackerFeaturizer`` the policies rely on, without the graph engine:
a policy is built from a plain config dict, trained with ``train(trackers, domain)``,
asked with ``predict_action_probabilities(tracker, domain)`` and saved to a folder.
"""
from __future__ import annotations

import copy
import enum
import importlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Iterable, Optional

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_NAME,
    ACTION_TEXT,
    ACTIVE_LOOP,
    ENTITIES,
    INTENT,
    LOOP_NAME,
    PREVIOUS_ACTION,
    SHOULD_NOT_BE_SET,
    TEXT,
    USER,
)
from bot.shared.events import ActionExecuted
from bot.shared.exceptions import ConfigError, ModelNotFound, UnknownComponentError

logger = logging.getLogger(__name__)

# One dialogue turn as Rasa featurises it, e.g.
# {"user": {"intent": "greet", "entities": ("name",)}, "prev_action": {"action_name":
#  "action_listen"}, "slots": {"vip": (1.0,)}, "active_loop": {"name": "my_form"}}.
State = dict[str, dict[str, Any]]

# Priorities exactly as rasa/core/constants.py.
DEFAULT_POLICY_PRIORITY = 1
UNLIKELY_INTENT_POLICY_PRIORITY = DEFAULT_POLICY_PRIORITY + 1
MEMOIZATION_POLICY_PRIORITY = UNLIKELY_INTENT_POLICY_PRIORITY + 1
RULE_POLICY_PRIORITY = MEMOIZATION_POLICY_PRIORITY + 3
DEFAULT_CORE_FALLBACK_THRESHOLD = 0.3
DEFAULT_MAX_HISTORY = 5

POLICY_PRIORITY = "priority"
POLICY_MAX_HISTORY = "max_history"
METADATA_FILE = "policy.json"


class SupportedData(enum.Enum):
    """Which training trackers a policy learns from (Rasa's ``SupportedData``)."""

    ML_DATA = 1
    RULE_DATA = 2
    ML_AND_RULE_DATA = 3

    @staticmethod
    def trackers_for_supported_data(supported: "SupportedData", trackers: list[Any]) -> list[Any]:
        """Stories go to ML policies, rules to rule policies, both to the RulePolicy."""
        if supported == SupportedData.RULE_DATA:
            return [t for t in trackers if getattr(t, "is_rule_tracker", False)]
        if supported == SupportedData.ML_DATA:
            return [t for t in trackers if not getattr(t, "is_rule_tracker", False)]
        return list(trackers)


class PolicyPrediction:
    """What one policy predicts: confidences over ``domain.action_names_or_texts``.

    A plain class (not frozen) because the ensemble zeroes the confidence of a
    rejected action in place and appends events, exactly as Rasa does.
    """

    def __init__(
        self,
        probabilities: list[float],
        policy_name: Optional[str],
        policy_priority: int = DEFAULT_POLICY_PRIORITY,
        events: Optional[list[Any]] = None,
        optional_events: Optional[list[Any]] = None,
        is_end_to_end_prediction: bool = False,
        is_no_user_prediction: bool = False,
        diagnostic_data: Optional[dict[str, Any]] = None,
        hide_rule_turn: bool = False,
        action_metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.probabilities = [float(p) for p in probabilities]
        self.policy_name = policy_name
        self.policy_priority = policy_priority
        self.events = list(events) if events else []
        self.optional_events = list(optional_events) if optional_events else []
        self.is_end_to_end_prediction = is_end_to_end_prediction
        self.is_no_user_prediction = is_no_user_prediction
        self.diagnostic_data = diagnostic_data or {}
        self.hide_rule_turn = hide_rule_turn
        self.action_metadata = action_metadata

    @staticmethod
    def for_action_name(
        domain: Any,
        action_name: str,
        policy_name: Optional[str] = None,
        confidence: float = 1.0,
        action_metadata: Optional[dict[str, Any]] = None,
    ) -> "PolicyPrediction":
        """A prediction of one action with ``confidence`` (everything else 0)."""
        return PolicyPrediction(
            confidence_scores_for(action_name, confidence, domain),
            policy_name,
            action_metadata=action_metadata,
        )

    @property
    def max_confidence(self) -> float:
        return max(self.probabilities, default=0.0)

    @property
    def max_confidence_index(self) -> int:
        """Index of the winning action; the first one on ties, as ``list.index``."""
        if not self.probabilities:
            return 0
        return self.probabilities.index(self.max_confidence)

    def action_name(self, domain: Any) -> str:
        """Name of the most confident action in ``domain``."""
        return domain.action_names_or_texts[self.max_confidence_index]

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, PolicyPrediction):
            return NotImplemented
        return (
            self.probabilities == other.probabilities
            and self.policy_name == other.policy_name
            and self.policy_priority == other.policy_priority
            and self.events == other.events
            and self.optional_events == other.optional_events
            and self.is_end_to_end_prediction == other.is_end_to_end_prediction
            and self.is_no_user_prediction == other.is_no_user_prediction
            and self.hide_rule_turn == other.hide_rule_turn
            and self.action_metadata == other.action_metadata
        )

    def __repr__(self) -> str:
        return (
            f"PolicyPrediction(policy={self.policy_name}, priority={self.policy_priority}, "
            f"max={self.max_confidence:.3f}@{self.max_confidence_index}, events={self.events})"
        )


def confidence_scores_for(action_name: str, value: float, domain: Any) -> list[float]:
    """All zeros but ``value`` at the index of ``action_name``."""
    results = [0.0] * len(domain.action_names_or_texts)
    results[domain.index_for_action(action_name)] = value
    return results


# ---------------------------------------------------------------- state helpers
def is_prev_action_listen_in_state(state: State) -> bool:
    return state.get(PREVIOUS_ACTION, {}).get(ACTION_NAME) == ACTION_LISTEN_NAME


def get_active_loop_name(state: State) -> Optional[str]:
    """Active loop of a state, ``None`` when unset or explicitly ``null`` in a rule."""
    loop = state.get(ACTIVE_LOOP)
    if not loop or loop.get(LOOP_NAME) == SHOULD_NOT_BE_SET:
        return None
    return loop.get(LOOP_NAME)


def tracker_states(
    tracker: Any,
    domain: Any,
    omit_unset_slots: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only_data: Optional[dict[str, Any]] = None,
) -> list[State]:
    """The tracker's turns as states (a private copy: callers mutate them)."""
    states = tracker.past_states(
        domain,
        omit_unset_slots=omit_unset_slots,
        ignore_rule_only_turns=ignore_rule_only_turns,
        rule_only_data=rule_only_data,
    )
    return copy.deepcopy(list(states))


# The attribute of a tracker that holds its featurised history between the policies
# of one prediction (Rule- and MemoizationPolicy, RulePolicy twice).
_STATES_CACHE_ATTRIBUTE = "_kefu_past_states"


def _past_states(
    tracker: Any,
    domain: Any,
    omit_unset_slots: bool,
    ignore_rule_only_turns: bool,
    rule_only_data: Optional[dict[str, Any]],
) -> list[State]:
    """``tracker.past_states(...)``, computed once per tracker state (read-only: copy before changing).

    A prediction asks for the same history several times (every policy, RulePolicy
    twice), and featurising it replays the whole conversation. States follow from the
    events alone, so a cached result is reused while the tracker holds the same events:
    same length and the same last event object (events are only ever appended; any
    new event, or a rebuilt tracker, misses). Only predictions use it (not training).
    """
    events = getattr(tracker, "events", None)
    cache = getattr(tracker, "__dict__", None)
    if events is None or cache is None:
        return list(tracker.past_states(domain, omit_unset_slots=omit_unset_slots,
                                        ignore_rule_only_turns=ignore_rule_only_turns,
                                        rule_only_data=rule_only_data))
    last = events[-1] if len(events) else None
    # rule-only data is rebuilt per call (a small dict of lists): keyed by its content
    rules_key = json.dumps(rule_only_data, sort_keys=True, default=str) if rule_only_data else ""
    key = (id(domain), omit_unset_slots, ignore_rule_only_turns, rules_key)
    entries = cache.get(_STATES_CACHE_ATTRIBUTE)
    if entries is None or entries[0] != len(events) or entries[1] is not last:
        entries = (len(events), last, {})
        cache[_STATES_CACHE_ATTRIBUTE] = entries
    hit = entries[2].get(key)
    if hit is not None and hit[0] is domain:  # the domain is kept with the states: its id stays its own
        return hit[1]
    states = list(tracker.past_states(domain, omit_unset_slots=omit_unset_slots,
                                      ignore_rule_only_turns=ignore_rule_only_turns,
                                      rule_only_data=rule_only_data))
    entries[2][key] = (domain, states)
    return states


def slice_state_history(states: list[State], max_history: Optional[int]) -> list[State]:
    if not max_history:
        return states
    return states[-max_history:]


def _remove_user_text_if_intent(trackers_as_states: Iterable[list[State]]) -> None:
    """Every turn is either intent- or text-based; the intent wins in training."""
    for states in trackers_as_states:
        for state in states:
            user = state.get(USER)
            if user and TEXT in user and INTENT in user:
                del user[TEXT]


def _hash_example(states: list[State], label: str) -> str:
    return json.dumps([states, label], sort_keys=True, default=list)


def training_states_and_labels(
    trackers: list[Any],
    domain: Any,
    max_history: Optional[int],
    omit_unset_slots: bool = False,
    remove_duplicates: bool = True,
) -> tuple[list[list[State]], list[list[str]]]:
    """One (history, next action) example per predictable action, as Rasa's
    ``MaxHistoryTrackerFeaturizer.training_states_and_labels``."""
    example_states: list[list[State]] = []
    example_labels: list[list[str]] = []
    seen: set[str] = set()
    for tracker in trackers:
        states = tracker_states(tracker, domain, omit_unset_slots=omit_unset_slots)
        label_index = 0
        for event in tracker.applied_events():
            if not isinstance(event, ActionExecuted):
                continue
            label_index += 1
            if getattr(event, "unpredictable", False):
                continue
            sliced = slice_state_history(states[:label_index], max_history)
            label = event.action_name or event.action_text
            if remove_duplicates:
                key = _hash_example(sliced, label)
                if key in seen:
                    continue
                seen.add(key)
            example_states.append(sliced)
            example_labels.append([label])
    _remove_user_text_if_intent(example_states)
    return example_states, example_labels


def prediction_states(
    tracker: Any,
    domain: Any,
    max_history: Optional[int],
    use_text_for_last_user_input: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only_data: Optional[dict[str, Any]] = None,
) -> list[State]:
    """The last ``max_history`` turns, the last user turn text- or intent-based."""
    # only the last max_history states are copied (the caller changes them below)
    states = copy.deepcopy(slice_state_history(
        _past_states(tracker, domain, False, ignore_rule_only_turns, rule_only_data), max_history
    ))
    if states:
        last_state = states[-1]
        if is_prev_action_listen_in_state(last_state):
            user = last_state.get(USER, {})
            if use_text_for_last_user_input:
                user.pop(INTENT, None)
                user.pop(ENTITIES, None)
            else:
                user.pop(TEXT, None)
    _remove_user_text_if_intent([states])
    return states


def format_tracker_states(states: list[State]) -> str:
    """Readable multi-line dump of states for debug logs."""
    lines = []
    for index, state in enumerate(states):
        parts = []
        for key in (USER, PREVIOUS_ACTION, ACTIVE_LOOP, "slots"):
            if state.get(key):
                parts.append(f"{key}: {state[key]}")
        lines.append(f"[state {index + 1}] " + " | ".join(parts))
    return "\n" + "\n".join(lines) if lines else ""


def action_of_state(state: State) -> Optional[str]:
    prev = state.get(PREVIOUS_ACTION, {})
    return prev.get(ACTION_NAME) or prev.get(ACTION_TEXT)


# ---------------------------------------------------------------- the base class
def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str) -> type:
    """Import ``package.module.Class``; errors name the path and the fix."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ImportError(f"'{path}' is not a dotted path 'package.module.Class'.")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, class_name)
    except AttributeError as e:
        raise ImportError(f"Module '{module_name}' has no class '{class_name}'.") from e


class Policy:
    """Base of all dialogue policies.

    Subclasses declare ``get_default_config()``; the config passed in is checked
    against it so a typo in config.yml fails at load time with the valid options.
    """

    # Option names Rasa accepts for a policy that kefu reads but does not use.
    IGNORED_OPTIONS: ClassVar[frozenset[str]] = frozenset()

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_DATA

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        return {POLICY_PRIORITY: DEFAULT_POLICY_PRIORITY}

    def __init__(
        self,
        config: Optional[dict[str, Any]] = None,
        filename: Optional[str] = None,
        line: Optional[int] = None,
    ) -> None:
        self.config = self.validate_config(config or {}, filename, line)
        self.priority: int = int(self.config.get(POLICY_PRIORITY, DEFAULT_POLICY_PRIORITY))
        self._rule_only_data: dict[str, Any] = {}

    # ---- config
    @classmethod
    def validate_config(
        cls, config: dict[str, Any], filename: Optional[str] = None, line: Optional[int] = None
    ) -> dict[str, Any]:
        """Defaults merged with ``config``; unknown options raise with the valid ones."""
        defaults = cls.get_default_config()
        given = {k: v for k, v in dict(config).items() if k != "name"}
        unknown = [k for k in given if k not in defaults and k not in cls.IGNORED_OPTIONS]
        if unknown:
            valid = ", ".join(sorted(defaults))
            raise UnknownComponentError(
                f"Unknown option(s) {', '.join(repr(k) for k in unknown)} for policy "
                f"'{cls.__name__}'.",
                filename,
                line,
                fix=f"Use only these options: {valid}.",
            )
        ignored = [k for k in given if k in cls.IGNORED_OPTIONS]
        if ignored:
            logger.info("%s: option(s) %s accepted for Rasa compatibility but not used.", cls.__name__, ignored)
        merged = copy.deepcopy(defaults)
        merged.update({k: v for k, v in given.items() if k in defaults})
        return merged

    # ---- rule-only data shared by the RulePolicy
    def set_shared_policy_states(self, rule_only_data: Optional[dict[str, Any]] = None, **_: Any) -> None:
        self._rule_only_data = dict(rule_only_data or {})

    # ---- training / prediction
    def finetune_from(self, base: "Policy", epoch_fraction: float) -> None:
        """Make the next ``train`` continue from ``base`` (this policy as the model being
        fine-tuned has it; ``train --finetune``). By default the policy trains from the data
        as usual (memoization and rules are rebuilt from the stories anyway)."""

    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def predict_action_probabilities(
        self,
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        raise NotImplementedError

    def _default_predictions(self, domain: Any) -> list[float]:
        return [0.0] * len(domain.action_names_or_texts)

    def _prediction(
        self,
        probabilities: list[float],
        events: Optional[list[Any]] = None,
        optional_events: Optional[list[Any]] = None,
        is_end_to_end_prediction: bool = False,
        is_no_user_prediction: bool = False,
        diagnostic_data: Optional[dict[str, Any]] = None,
        action_metadata: Optional[dict[str, Any]] = None,
    ) -> PolicyPrediction:
        return PolicyPrediction(
            probabilities,
            self.__class__.__name__,
            self.priority,
            events,
            optional_events,
            is_end_to_end_prediction,
            is_no_user_prediction,
            diagnostic_data,
            action_metadata=action_metadata,
        )

    def _prediction_states(
        self,
        tracker: Any,
        domain: Any,
        use_text_for_last_user_input: bool = False,
        rule_only_data: Optional[dict[str, Any]] = None,
    ) -> list[State]:
        """ML-only policies ignore the turns that only rules produced (as Rasa)."""
        if rule_only_data is None:
            rule_only_data = self._rule_only_data
        return prediction_states(
            tracker,
            domain,
            self.max_history,
            use_text_for_last_user_input=use_text_for_last_user_input,
            ignore_rule_only_turns=self.supported_data() == SupportedData.ML_DATA,
            rule_only_data=rule_only_data,
        )

    @property
    def max_history(self) -> Optional[int]:
        return self.config.get(POLICY_MAX_HISTORY)

    # ---- persistence
    def _metadata(self) -> dict[str, Any]:
        """JSON-serialisable trained state; subclasses add what they learned."""
        return {}

    def _load_metadata(self, metadata: dict[str, Any]) -> None:
        """Restores what ``_metadata`` returned."""

    def persist(self, path: str | Path) -> None:
        """Writes ``policy.json`` (class, config, learned data) into ``path``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        data = {
            "class": class_path(type(self)),
            "config": self.config,
            "rule_only_data": self._rule_only_data,
            "data": self._metadata(),
        }
        (directory / METADATA_FILE).write_text(
            json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Loads a policy saved by ``persist``; on the base class, the stored class."""
        file = Path(path) / METADATA_FILE
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ModelNotFound(f"{file}: no persisted policy here. Fix: train the model again.") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"Persisted policy is not valid JSON: {e}", file, e.lineno,
                              fix="Train the model again.") from e
        policy_cls = cls
        stored = data.get("class")
        if stored and stored != class_path(cls):
            try:
                policy_cls = import_class(stored)
            except ImportError as e:
                raise ConfigError(f"Persisted policy class '{stored}' cannot be imported: {e}", file,
                                  fix="Install the package that defines it or retrain.") from e
        policy = policy_cls(data.get("config") or {})
        policy._rule_only_data = data.get("rule_only_data") or {}
        policy._load_metadata(data.get("data") or {})
        policy._load_extra(Path(path))
        return policy

    def _load_extra(self, path: Path) -> None:
        """Hook for non-JSON artefacts (TED's torch weights)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(priority={self.priority})"
