"""RulePolicy: rules, forms (active loops), default intents and core fallback.

Follows Rasa 3.6's ``rasa/core/policies/rule_policy.py``: rules are memorised as
JSON keys of the states after the last ``...``; a key matches a conversation when
every feature it names is present (``should_not_be_set`` features must be absent);
the longest matching key wins. An active loop predicts itself, then
``action_listen``, unless it rejected execution. Training runs every rule and story
through the policy and refuses contradictions with a report naming them.
"""
from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from bot.dialogue.policies.memoization import MemoizationPolicy
from bot.dialogue.policies.policy import (
    DEFAULT_CORE_FALLBACK_THRESHOLD,
    POLICY_MAX_HISTORY,
    POLICY_PRIORITY,
    RULE_POLICY_PRIORITY,
    PolicyPrediction,
    State,
    SupportedData,
    format_tracker_states,
    get_active_loop_name,
    is_prev_action_listen_in_state,
    training_states_and_labels,
)
from bot.shared.constants import (
    ACTION_BACK_NAME,
    ACTION_DEFAULT_FALLBACK_NAME,
    ACTION_LISTEN_NAME,
    ACTION_NAME,
    ACTION_RESTART_NAME,
    ACTION_SESSION_START_NAME,
    ACTIVE_LOOP,
    INTENT_NAME_KEY,
    LOOP_NAME,
    PREVIOUS_ACTION,
    RULE_ONLY_LOOPS,
    RULE_ONLY_SLOTS,
    RULE_SNIPPET_ACTION_NAME,
    SHOULD_NOT_BE_SET,
    SLOTS,
    USER_INTENT_BACK,
    USER_INTENT_RESTART,
    USER_INTENT_SESSION_START,
)
from bot.shared.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    LoopInterrupted,
    SlotSet,
    UserUttered,
)
from bot.shared.exceptions import InvalidDomain, TrainingDataError

logger = logging.getLogger(__name__)

DOCS_URL_RULES = "https://rasa.com/docs/rasa/rules"

# Rasa's default actions overrule everything at any time.
DEFAULT_ACTION_MAPPINGS = {
    USER_INTENT_RESTART: ACTION_RESTART_NAME,
    USER_INTENT_BACK: ACTION_BACK_NAME,
    USER_INTENT_SESSION_START: ACTION_SESSION_START_NAME,
}

RULES = "rules"
RULES_FOR_LOOP_UNHAPPY_PATH = "rules_for_loop_unhappy_path"
RULES_NOT_IN_STORIES = "rules_not_in_stories"

LOOP_WAS_INTERRUPTED = "loop_was_interrupted"
DO_NOT_PREDICT_LOOP_ACTION = "do_not_predict_loop_action"

DEFAULT_RULES = "predicting default action with intent "
LOOP_RULES = "handling active loops and forms - "
LOOP_RULES_SEPARATOR = " - "


class InvalidRule(TrainingDataError):
    """Rules are contradictory, incomplete or too long (Rasa's ``InvalidRule``)."""

    def __init__(self, message: str, fix: Optional[str] = None) -> None:
        super().__init__(
            message,
            fix=fix or f"Update your stories and rules; see {DOCS_URL_RULES}.",
        )


@dataclass(frozen=True)
class ActionFingerprint:
    """Slots and loops an action sets somewhere in the training data."""

    slots: list[str] = field(default_factory=list)
    active_loop: list[Optional[str]] = field(default_factory=list)


def _slot_has_features(slot: Any) -> bool:
    if not getattr(slot, "influence_conversation", True):
        return False
    try:
        return slot.feature_dimensionality() != 0
    except Exception:  # noqa: BLE001 - custom slots may not implement it
        return True


def create_action_fingerprints(trackers: list[Any], domain: Any) -> dict[str, ActionFingerprint]:
    """For each action, the featurised slots and loops set right after it."""
    events_after_actions: dict[str, set[Any]] = defaultdict(set)
    for tracker in trackers:
        action_name: Optional[str] = None
        for event in tracker.events:
            if isinstance(event, ActionExecuted):
                action_name = event.action_name or event.action_text
                continue
            if isinstance(event, UserUttered):
                # entities may set slots: don't attribute them to action_listen
                action_name = None
                continue
            if action_name:
                events_after_actions[action_name].add(event)
    if not events_after_actions:
        return {}
    featurized_slots = {slot.name for slot in domain.slots if _slot_has_features(slot)}
    fingerprints = {}
    for action_name, events in events_after_actions.items():
        slots = sorted({e.key for e in events if isinstance(e, SlotSet)} & featurized_slots)
        loops = sorted({e.name for e in events if isinstance(e, ActiveLoop)}, key=str)
        fingerprints[action_name] = ActionFingerprint(slots, loops)
    return fingerprints


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _source_of(tracker: Any) -> str:
    """``'name' (file:line)`` when the generator recorded where a rule came from."""
    source = getattr(tracker, "sender_source", None) or getattr(tracker, "source_name", None)
    line = getattr(tracker, "source_line", None)
    if source and line:
        return f"'{tracker.sender_id}' ({source}:{line})"
    if source:
        return f"'{tracker.sender_id}' ({source})"
    return f"'{tracker.sender_id}'"


class RulePolicy(MemoizationPolicy):
    """Handles rules, forms and the default intents; falls back below a threshold."""

    # number of user inputs that is allowed in case rules are restricted
    ALLOWED_NUMBER_OF_USER_INPUTS = 1

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_AND_RULE_DATA

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        return {
            POLICY_PRIORITY: RULE_POLICY_PRIORITY,
            "core_fallback_threshold": DEFAULT_CORE_FALLBACK_THRESHOLD,
            "core_fallback_action_name": ACTION_DEFAULT_FALLBACK_NAME,
            "enable_fallback_prediction": True,
            "restrict_rules": True,
            "check_for_contradictions": True,
            "use_nlu_confidence_as_score": False,
            # rules keep every turn after the last `...`: no history limit
            POLICY_MAX_HISTORY: None,
            "enable_feature_string_compression": False,
        }

    def __init__(
        self,
        config: Optional[dict[str, Any]] = None,
        filename: Optional[str] = None,
        line: Optional[int] = None,
        lookup: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(config, filename, line, lookup)
        self.config[POLICY_MAX_HISTORY] = None
        threshold = self.config["core_fallback_threshold"]
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InvalidRule(
                f"RulePolicy option 'core_fallback_threshold' must be a number between 0 and 1, "
                f"got {threshold!r}.",
                fix="Set e.g. 'core_fallback_threshold: 0.3' in config.yml.",
            )
        self._fallback_action_name: str = self.config["core_fallback_action_name"]
        self._enable_fallback_prediction: bool = self.config["enable_fallback_prediction"]
        self._check_for_contradictions: bool = self.config["check_for_contradictions"]
        self._rules_sources: dict[Optional[str], list[tuple[str, Optional[str]]]] = defaultdict(list)
        self.lookup.setdefault(RULES, {})
        self.lookup.setdefault(RULES_FOR_LOOP_UNHAPPY_PATH, {})

    @classmethod
    def raise_if_incompatible_with_domain(cls, config: dict[str, Any], domain: Any) -> None:
        """The fallback action must exist in the domain."""
        name = config.get("core_fallback_action_name")
        if name and name not in domain.action_names_or_texts:
            raise InvalidDomain(
                f"The fallback action '{name}' configured for the RulePolicy is not in the domain.",
                getattr(domain, "filename", None),
                fix=f"Add '{name}' under 'actions:' in the domain or change "
                "'core_fallback_action_name' in config.yml.",
            )

    # ---- keys
    @staticmethod
    def _is_rule_snippet_state(state: State) -> bool:
        return state.get(PREVIOUS_ACTION, {}).get(ACTION_NAME) == RULE_SNIPPET_ACTION_NAME

    def _create_feature_key(self, states: list[State]) -> Optional[str]:
        new_states: list[State] = []
        for state in reversed(states):
            if self._is_rule_snippet_state(state):
                # everything before `...` may be anything
                break
            new_states.insert(0, state)
        if not new_states:
            return None
        return json.dumps(new_states, sort_keys=True, default=list)

    @staticmethod
    def _states_for_unhappy_loop_predictions(states: list[State]) -> list[State]:
        """Keep the previous action and the last turn; ignore the previous intent."""
        if len(states) == 1 or not states[-2].get(PREVIOUS_ACTION):
            return [states[-1]]
        return [{PREVIOUS_ACTION: states[-2][PREVIOUS_ACTION]}, states[-1]]

    @staticmethod
    def _remove_rule_snippet_predictions(lookup: dict[str, str]) -> dict[str, str]:
        return {key: action for key, action in lookup.items() if action != RULE_SNIPPET_ACTION_NAME}

    def _create_loop_unhappy_lookup_from_states(
        self, trackers_as_states: list[list[State]], trackers_as_actions: list[list[str]]
    ) -> dict[str, str]:
        lookup: dict[str, str] = {}
        for states, actions in zip(trackers_as_states, trackers_as_actions):
            action = actions[0]
            active_loop = get_active_loop_name(states[-1])
            if not active_loop:
                continue
            states = self._states_for_unhappy_loop_predictions(states)
            key = self._create_feature_key(states)
            if not key:
                continue
            if is_prev_action_listen_in_state(states[-1]) and action == active_loop:
                # loop predicted after the user answered something else:
                # it must not validate that answer
                lookup[key] = LOOP_WAS_INTERRUPTED
            elif not is_prev_action_listen_in_state(states[-1]) and action != active_loop:
                lookup[key] = DO_NOT_PREDICT_LOOP_ACTION
        return lookup

    # ---- training checks
    def _check_rule_restriction(self, rule_trackers: list[Any]) -> None:
        too_long = [
            _source_of(t)
            for t in rule_trackers
            if sum(isinstance(e, UserUttered) for e in t.events) > self.ALLOWED_NUMBER_OF_USER_INPUTS
        ]
        if too_long:
            raise InvalidRule(
                f"Found rules {', '.join(too_long)} that contain more than "
                f"{self.ALLOWED_NUMBER_OF_USER_INPUTS} user message. Rules are not meant to "
                "hardcode a state machine.",
                fix="Use stories for these cases, or set 'restrict_rules: false' for the RulePolicy.",
            )

    @staticmethod
    def _expected_but_missing_slots(fingerprint: ActionFingerprint, state: State) -> set[str]:
        return set(fingerprint.slots) - set(state.get(SLOTS, {}).keys())

    @staticmethod
    def _check_active_loops_fingerprint(fingerprint: ActionFingerprint, state: State) -> set[Optional[str]]:
        expected = set(fingerprint.active_loop)
        current = state.get(ACTIVE_LOOP, {}).get(LOOP_NAME)
        return set() if current in expected else expected

    @staticmethod
    def _error_messages_from_fingerprints(
        action_name: str, missing_slots: set[str], loops: set[Optional[str]], rule_name: str
    ) -> list[str]:
        messages = []
        if action_name and missing_slots:
            messages.append(
                f"- the action '{action_name}' in rule {rule_name} does not set some of the "
                f"slots that it sets in other rules. Slots not set in rule {rule_name}: "
                f"'{', '.join(sorted(missing_slots))}'. Please update the rule with an "
                "appropriate slot or if it is the last action add 'wait_for_user_input: false' "
                "after this action."
            )
        if action_name and loops:
            shown = {"null" if loop in (None, SHOULD_NOT_BE_SET) else loop for loop in loops}
            shown.add(action_name)
            messages.append(
                f"- the form '{action_name}' in rule {rule_name} does not set the 'active_loop', "
                f"that it sets in other rules: '{', '.join(sorted(shown))}'. Please update the "
                "rule with the appropriate 'active loop' property or if it is the last action "
                "add 'wait_for_user_input: false' after this action."
            )
        return messages

    def _check_for_incomplete_rules(self, rule_trackers: list[Any], domain: Any) -> None:
        fingerprints = create_action_fingerprints(rule_trackers, domain)
        if not fingerprints:
            return
        errors: list[str] = []
        for tracker in rule_trackers:
            states = tracker.past_states(domain)
            action_names = [s.get(PREVIOUS_ACTION, {}).get(ACTION_NAME) for s in states[1:]] + [
                ACTION_LISTEN_NAME
            ]
            for state, action_name in zip(states, action_names):
                previous = state.get(PREVIOUS_ACTION, {}).get(ACTION_NAME)
                fingerprint = fingerprints.get(previous) if previous else None
                if (
                    not fingerprint
                    or action_name == RULE_SNIPPET_ACTION_NAME
                    or previous == RULE_SNIPPET_ACTION_NAME
                ):
                    continue
                errors.extend(
                    self._error_messages_from_fingerprints(
                        previous,
                        self._expected_but_missing_slots(fingerprint, state),
                        self._check_active_loops_fingerprint(fingerprint, state),
                        _source_of(tracker),
                    )
                )
        if errors:
            raise InvalidRule(
                "Incomplete rules found:\n" + "\n".join(errors) + "\n",
                fix="If some slots or active loops should not be set during prediction, set them "
                "to 'null' explicitly in the rules.",
            )

    @staticmethod
    def _get_slots_loops_from_states(trackers_as_states: list[list[State]]) -> tuple[set[str], set[str]]:
        slots: set[str] = set()
        loops: set[str] = set()
        for states in trackers_as_states:
            for state in states:
                slots.update(state.get(SLOTS, {}).keys())
                loop = state.get(ACTIVE_LOOP, {}).get(LOOP_NAME)
                if loop:
                    loops.add(loop)
        return slots, loops

    def _find_rule_only_slots_loops(
        self, rule_states: list[list[State]], story_states: list[list[State]]
    ) -> tuple[list[str], list[str]]:
        rule_slots, rule_loops = self._get_slots_loops_from_states(rule_states)
        story_slots, story_loops = self._get_slots_loops_from_states(story_states)
        return (
            sorted(rule_slots - story_slots - {SHOULD_NOT_BE_SET}),
            sorted(rule_loops - story_loops - {SHOULD_NOT_BE_SET}),
        )

    # ---- contradiction analysis (runs the policy over its own training data)
    def _predict_next_action(self, tracker: Any, domain: Any) -> tuple[Optional[str], Optional[str]]:
        prediction, source = self._predict(tracker, domain)
        predicted = None
        if prediction.probabilities != self._default_predictions(domain) or tracker.is_rule_tracker:
            predicted = domain.action_names_or_texts[prediction.max_confidence_index]
        return predicted, source

    def _predicted_action_name(
        self, tracker: Any, domain: Any, gold_action_name: str
    ) -> tuple[Optional[str], Optional[str]]:
        predicted, source = self._predict_next_action(tracker, domain)
        # inside a loop's unhappy path another action follows: emulate the rejection
        if (
            tracker.active_loop_name
            and predicted != gold_action_name
            and predicted == tracker.active_loop_name
        ):
            tracker.update(ActionExecutionRejected(tracker.active_loop_name))
            predicted, source = self._predict_next_action(tracker, domain)
        return predicted, source

    def _collect_sources(
        self, tracker: Any, predicted: Optional[str], gold: Optional[str], source: str
    ) -> None:
        rule_name = _source_of(tracker)
        if source.startswith(DEFAULT_RULES) or source.startswith(LOOP_RULES):
            gold = predicted
            rule_name = source
        self._rules_sources[source].append((rule_name, gold))

    @staticmethod
    def _default_sources() -> set[str]:
        return {DEFAULT_RULES + intent for intent in DEFAULT_ACTION_MAPPINGS}

    @staticmethod
    def _handling_loop_sources(domain: Any) -> set[str]:
        sources = set()
        for loop_name in _form_names(domain):
            sources.add(LOOP_RULES + loop_name)
            sources.add(LOOP_RULES + loop_name + LOOP_RULES_SEPARATOR + ACTION_LISTEN_NAME)
        return sources

    def _should_delete(self, source: str, tracker: Any, predicted: str) -> bool:
        """A story contradicting only a rule's trailing ``action_listen`` wins."""
        if (
            tracker.is_rule_tracker
            or source.count(PREVIOUS_ACTION) > 1
            or predicted != ACTION_LISTEN_NAME
        ):
            return False
        for rule_source in self.lookup[RULES]:
            if rule_source.startswith(source[:-2]) and rule_source != source:
                return True
        return False

    def _check_prediction(
        self, tracker: Any, predicted: Optional[str], gold: str, source: Optional[str]
    ) -> list[str]:
        if not predicted or not source or predicted == gold:
            return []
        if self._should_delete(source, tracker, predicted):
            self.lookup[RULES].pop(source, None)
            return []
        kind = "rule" if tracker.is_rule_tracker else "story"
        contradicting = sorted(
            {name for name, action in self._rules_sources[source] if action != gold}
        )
        if not contradicting:
            return []
        message = (
            f"- the prediction of the action '{gold}' in {kind} {_source_of(tracker)} "
            f"is contradicting with rule(s) {', '.join(contradicting)}"
        )
        if predicted != self._fallback_action_name:
            message += f" which predicted action '{predicted}'"
        return [message + "."]

    def _run_prediction_on_trackers(
        self, trackers: list[Any], domain: Any, collect_sources: bool
    ) -> tuple[list[str], set[Optional[str]]]:
        if collect_sources:
            self._rules_sources = defaultdict(list)
        errors: list[str] = []
        rules_used_in_stories: set[Optional[str]] = set()
        for tracker in trackers:
            running = tracker.init_copy()
            running.sender_id = tracker.sender_id
            for attr in ("source_name", "source_line"):
                if hasattr(tracker, attr):
                    setattr(running, attr, getattr(tracker, attr))
            next_action_is_unpredictable = True  # the first action always is
            for event in tracker.applied_events():
                if not isinstance(event, ActionExecuted):
                    running.update(event, domain)
                    continue
                if event.action_name == RULE_SNIPPET_ACTION_NAME:
                    next_action_is_unpredictable = True
                    running.update(event, domain)
                    continue
                if next_action_is_unpredictable or getattr(event, "unpredictable", False):
                    next_action_is_unpredictable = False
                    running.update(event, domain)
                    continue
                gold = event.action_name or event.action_text
                predicted, source = self._predicted_action_name(running, domain, gold)
                if collect_sources:
                    if source:
                        self._collect_sources(running, predicted, gold, source)
                else:
                    if not tracker.is_rule_tracker and predicted == gold:
                        rules_used_in_stories.add(source)
                    errors += self._check_prediction(running, predicted, gold, source)
                running.update(event, domain)
        return errors, rules_used_in_stories

    def _analyze_rules(self, rule_trackers: list[Any], all_trackers: list[Any], domain: Any) -> list[str]:
        """Raises on contradictions; returns rules never used in stories."""
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            self._run_prediction_on_trackers(rule_trackers, domain, collect_sources=True)
            errors, used_in_stories = self._run_prediction_on_trackers(
                all_trackers, domain, collect_sources=False
            )
        finally:
            logger.setLevel(level)
        if errors:
            raise InvalidRule(
                "Contradicting rules or stories found:\n" + "\n".join(errors) + "\n",
                fix="Update your stories and rules so that they don't contradict each other.",
            )
        all_rules = (
            set(self._rules_sources.keys()) | self._default_sources() | self._handling_loop_sources(domain)
        )
        return sorted(r for r in all_rules - used_in_stories if r is not None)

    def _create_lookup_from_trackers(self, rule_trackers: list[Any], story_trackers: list[Any], domain: Any) -> None:
        rule_states, rule_actions = training_states_and_labels(
            rule_trackers, domain, None, omit_unset_slots=True
        )
        rules_lookup = self._create_lookup_from_states(rule_states, rule_actions)
        self.lookup[RULES] = self._remove_rule_snippet_predictions(rules_lookup)

        story_states, story_actions = training_states_and_labels(story_trackers, domain, None)
        if self._check_for_contradictions:
            self.lookup[RULE_ONLY_SLOTS], self.lookup[RULE_ONLY_LOOPS] = self._find_rule_only_slots_loops(
                rule_states, story_states
            )
        # all trackers: stories inside loops describe unhappy paths too
        self.lookup[RULES_FOR_LOOP_UNHAPPY_PATH] = self._create_loop_unhappy_lookup_from_states(
            rule_states + story_states, rule_actions + story_actions
        )

    def train(self, training_trackers: list[Any], domain: Any, **kwargs: Any) -> None:
        self.raise_if_incompatible_with_domain(self.config, domain)
        self.lookup = {RULES: {}, RULES_FOR_LOOP_UNHAPPY_PATH: {}}
        trackers = [t for t in training_trackers if not getattr(t, "is_augmented", False)]
        rule_trackers = [t for t in trackers if t.is_rule_tracker]
        if self.config["restrict_rules"]:
            self._check_rule_restriction(rule_trackers)
        if self._check_for_contradictions:
            self._check_for_incomplete_rules(rule_trackers, domain)
        story_trackers = [t for t in trackers if not t.is_rule_tracker]
        self._create_lookup_from_trackers(rule_trackers, story_trackers, domain)
        if self._check_for_contradictions:
            self.lookup[RULES_NOT_IN_STORIES] = self._analyze_rules(rule_trackers, trackers, domain)
        self._rule_only_data = self.get_rule_only_data()
        logger.debug("Memorized %d unique rules.", len(self.lookup[RULES]))

    # ---- matching
    @staticmethod
    def _does_rule_match_state(rule_state: State, conversation_state: State) -> bool:
        for state_type, rule_sub_state in rule_state.items():
            conversation_sub_state = conversation_state.get(state_type, {})
            for key, rule_value in rule_sub_state.items():
                rule_value = _as_tuple(rule_value)
                value = _as_tuple(conversation_sub_state.get(key))
                if (
                    rule_value
                    and rule_value != SHOULD_NOT_BE_SET
                    and value != rule_value
                ) or (
                    rule_value == SHOULD_NOT_BE_SET
                    and value
                    and value != SHOULD_NOT_BE_SET
                ):
                    return False
        return True

    @staticmethod
    @functools.lru_cache(maxsize=1000)
    def _rule_key_to_state(rule_key: str) -> list[State]:
        return json.loads(rule_key)

    def _is_rule_applicable(self, rule_key: str, turn_index: int, conversation_state: State) -> bool:
        reversed_rule_states = list(reversed(self._rule_key_to_state(rule_key)))
        if turn_index >= len(reversed_rule_states):
            return True
        current_previous_action = conversation_state.get(PREVIOUS_ACTION)
        rule_previous_action = reversed_rule_states[turn_index].get(PREVIOUS_ACTION)
        # both are conversation starts
        if not rule_previous_action and not current_previous_action:
            return True
        # only one of them is a conversation start (`conversation_start: true`)
        if not rule_previous_action or not current_previous_action:
            return False
        return self._does_rule_match_state(reversed_rule_states[turn_index], conversation_state)

    def _get_possible_keys(self, lookup: dict[str, str], states: list[State]) -> set[str]:
        possible = set(lookup.keys())
        for index, state in enumerate(reversed(states)):
            possible = {key for key in possible if self._is_rule_applicable(key, index, state)}
        return possible

    @staticmethod
    def _find_action_from_default_actions(tracker: Any) -> tuple[Optional[str], Optional[str]]:
        if tracker.latest_action_name != ACTION_LISTEN_NAME or not tracker.latest_message:
            return None, None
        intent_name = (tracker.latest_message.intent or {}).get(INTENT_NAME_KEY)
        if intent_name is None:
            return None, None
        action = DEFAULT_ACTION_MAPPINGS.get(intent_name)
        if action is None:
            return None, None
        logger.debug("Predicted default action '%s'.", action)
        return action, DEFAULT_RULES + intent_name

    @staticmethod
    def _find_action_from_loop_happy_path(tracker: Any) -> tuple[Optional[str], Optional[str]]:
        active_loop_name = tracker.active_loop_name
        if active_loop_name is None:
            return None, None
        rejected = tracker.is_active_loop_rejected
        latest_action = tracker.latest_action
        should_predict_loop = (
            not rejected and latest_action and latest_action.get(ACTION_NAME) != active_loop_name
        )
        should_predict_listen = not rejected and tracker.latest_action_name == active_loop_name
        if should_predict_loop:
            logger.debug("Predicted loop '%s'.", active_loop_name)
            return active_loop_name, LOOP_RULES + active_loop_name
        if should_predict_listen:
            logger.debug("Predicted '%s' after loop '%s'.", ACTION_LISTEN_NAME, active_loop_name)
            return ACTION_LISTEN_NAME, f"{LOOP_RULES}{active_loop_name}{LOOP_RULES_SEPARATOR}{ACTION_LISTEN_NAME}"
        return None, None

    def _find_action_from_rules(
        self, tracker: Any, domain: Any, use_text_for_last_user_input: bool
    ) -> tuple[Optional[str], Optional[str], bool]:
        """(action or None, matching rule key, whether the loop returns from an unhappy path)."""
        if use_text_for_last_user_input and tracker.latest_action_name != ACTION_LISTEN_NAME:
            return None, None, False
        states = self._prediction_states(
            tracker,
            domain,
            use_text_for_last_user_input,
            rule_only_data=self.get_rule_only_data(),
        )
        if logger.isEnabledFor(logging.DEBUG):  # the dump costs more than the lookup
            logger.debug("Current tracker state:%s", format_tracker_states(states))
        returning_from_unhappy_path = False
        rules = self.lookup.get(RULES, {})
        rule_keys = self._get_possible_keys(rules, states)
        predicted: Optional[str] = None
        best_rule_key = ""
        if rule_keys:
            # several matches: one rule is a subset of another; the longest wins
            best_rule_key = max(rule_keys, key=lambda k: (len(k), k))
            predicted = rules.get(best_rule_key)

        active_loop_name = tracker.active_loop_name
        if active_loop_name:
            unhappy = self.lookup.get(RULES_FOR_LOOP_UNHAPPY_PATH, {})
            conditions = [unhappy.get(key) for key in self._get_possible_keys(unhappy, states)]
            predicted_listen_from_general_rule = predicted == ACTION_LISTEN_NAME and not get_active_loop_name(
                self._rule_key_to_state(best_rule_key)[-1]
            )
            if predicted_listen_from_general_rule:
                if DO_NOT_PREDICT_LOOP_ACTION not in conditions:
                    logger.debug(
                        "Predicted loop '%s' by overwriting '%s' predicted by general rule.",
                        active_loop_name,
                        ACTION_LISTEN_NAME,
                    )
                    return active_loop_name, best_rule_key, returning_from_unhappy_path
                predicted = None
            if LOOP_WAS_INTERRUPTED in conditions:
                logger.debug("Returning from unhappy path; the loop will be told it was interrupted.")
                returning_from_unhappy_path = True

        if predicted is not None:
            logger.debug("There is a rule for the next action '%s'.", predicted)
        else:
            logger.debug("There is no applicable rule.")
        return predicted, best_rule_key or self._create_feature_key(states), returning_from_unhappy_path

    def predict_action_probabilities(
        self,
        tracker: Any,
        domain: Any,
        rule_only_data: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        prediction, _ = self._predict(tracker, domain)
        return prediction

    def _predict(self, tracker: Any, domain: Any) -> tuple[PolicyPrediction, Optional[str]]:
        action_from_text, source_from_text, unhappy_from_text = self._find_action_from_rules(
            tracker, domain, use_text_for_last_user_input=True
        )
        # default intents overrule everything but end-to-end rules
        default_action, default_source = self._find_action_from_default_actions(tracker)
        if default_action and not action_from_text:
            return (
                self._rule_prediction(self._prediction_result(default_action, tracker, domain), default_source),
                default_source,
            )
        # an active loop has priority over rules unless it rejected execution
        loop_action, loop_source = self._find_action_from_loop_happy_path(tracker)
        if loop_action:
            return (
                self._rule_prediction(
                    self._prediction_result(loop_action, tracker, domain),
                    loop_source,
                    is_no_user_prediction=True,
                ),
                loop_source,
            )
        if action_from_text:
            return (
                self._rule_prediction(
                    self._prediction_result(action_from_text, tracker, domain),
                    source_from_text,
                    returning_from_unhappy_path=unhappy_from_text,
                    is_end_to_end_prediction=True,
                ),
                source_from_text,
            )
        action_from_intent, source_from_intent, unhappy_from_intent = self._find_action_from_rules(
            tracker, domain, use_text_for_last_user_input=False
        )
        if action_from_intent and action_from_intent in domain.action_names_or_texts:
            probabilities = self._prediction_result(action_from_intent, tracker, domain)
        else:
            probabilities = self._default_predictions(domain)
        return (
            self._rule_prediction(
                probabilities,
                source_from_intent,
                returning_from_unhappy_path=unhappy_from_text or unhappy_from_intent,
            ),
            source_from_intent,
        )

    def _rule_prediction(
        self,
        probabilities: list[float],
        prediction_source: Optional[str],
        returning_from_unhappy_path: bool = False,
        is_end_to_end_prediction: bool = False,
        is_no_user_prediction: bool = False,
    ) -> PolicyPrediction:
        return PolicyPrediction(
            probabilities,
            self.__class__.__name__,
            self.priority,
            events=[LoopInterrupted(True)] if returning_from_unhappy_path else [],
            is_end_to_end_prediction=is_end_to_end_prediction,
            is_no_user_prediction=is_no_user_prediction,
            hide_rule_turn=prediction_source in self.lookup.get(RULES_NOT_IN_STORIES, []),
            diagnostic_data={"rule": prediction_source} if prediction_source else None,
        )

    def _default_predictions(self, domain: Any) -> list[float]:
        result = super()._default_predictions(domain)
        if self._enable_fallback_prediction and self._fallback_action_name in domain.action_names_or_texts:
            result[domain.index_for_action(self._fallback_action_name)] = float(
                self.config["core_fallback_threshold"]
            )
        return result

    # ---- rule-only data and persistence
    def get_rule_only_data(self) -> dict[str, Any]:
        """Slots and loops used only in rules; ML policies ignore their turns."""
        return {key: list(self.lookup.get(key, [])) for key in (RULE_ONLY_SLOTS, RULE_ONLY_LOOPS)}

    _get_rule_only_data = get_rule_only_data

    def _load_metadata(self, metadata: dict[str, Any]) -> None:
        super()._load_metadata(metadata)
        self.lookup.setdefault(RULES, {})
        self.lookup.setdefault(RULES_FOR_LOOP_UNHAPPY_PATH, {})
        self._rule_only_data = self.get_rule_only_data()


def _form_names(domain: Any) -> list[str]:
    names = getattr(domain, "form_names", None)
    if names is not None:
        return list(names)
    forms = getattr(domain, "forms", None) or {}
    return list(forms.keys()) if isinstance(forms, dict) else list(forms)
