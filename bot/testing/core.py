"""``test core``: replay test stories through the dialogue policies (Rasa's rasa/core/test.py).

Every test story becomes a tracker (checkpoints and ``or`` expanded, no
augmentation). At each action of the story the policies predict the next
action on the conversation so far; the prediction is compared with the story,
and the story's own events are fed on either way, so one mistake does not
cascade. User turns use the story's intent; only a ``user:`` line without an
intent is sent through the agent's NLU.

Writes ``story_report.json`` (sklearn classification report over actions plus
``conversation_accuracy``) and ``failed_test_stories.yml`` (wrong actions
annotated ``# predicted: <action>``), as Rasa does.
"""
from __future__ import annotations

import inspect
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    ACTION_SESSION_START_NAME,
    ACTION_UNLIKELY_INTENT_NAME,
)
from bot.shared.events import ActionExecuted, ActionExecutionRejected, UserUttered
from bot.shared.tracker import DialogueStateTracker
from bot.shared.training_data.stories import load_test_stories
from bot.shared.training_data.story_graph import StoryGraph
from bot.shared.training_data.story_writer import write_stories

logger = logging.getLogger(__name__)

REPORT_STORIES_FILE = "story_report.json"
FAILED_STORIES_FILE = "failed_test_stories.yml"
SUCCESSFUL_STORIES_FILE = "successful_test_stories.yml"
STORIES_WITH_WARNINGS_FILE = "stories_with_warnings.yml"
CIRCUIT_BREAKER_TRIPPED = "circuit breaker tripped"
DEFAULT_MAX_NUMBER_OF_PREDICTIONS = 10
IN_TRAINING_DATA_POLICIES = ("MemoizationPolicy", "AugmentedMemoizationPolicy", "RulePolicy")


@runtime_checkable
class PolicyEnsembleLike(Protocol):
    def predict(self, tracker: DialogueStateTracker, domain: Any) -> Any:
        """A PolicyPrediction (``probabilities`` over ``domain.action_names_or_texts``)."""


class AgentLike(Protocol):
    """What evaluation needs from a loaded model. ``nlu_parse(text)`` is optional."""

    domain: Any
    policy_ensemble: PolicyEnsembleLike


class WronglyPredictedAction(ActionExecuted):
    """The expected action, remembering what the model predicted instead."""

    type_name = "wrong_action"

    def __init__(
        self,
        action_name_target: Optional[str],
        action_text_target: Optional[str],
        action_name_prediction: str,
        policy: Optional[str] = None,
        confidence: Optional[float] = None,
        timestamp: Optional[float] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        self.action_name_prediction = action_name_prediction
        super().__init__(
            action_name_target, policy, confidence, timestamp, metadata, action_text=action_text_target
        )

    def inline_comment(self) -> str:
        return f"predicted: {self.action_name_prediction}"

    def as_story_string(self) -> str:
        return f"{self.action_name or self.action_text}   <!-- {self.inline_comment()} -->"


@dataclass(frozen=True)
class CoreEvaluation:
    """Summary of a ``test core`` run (Rasa's result dict, as attributes)."""

    report: dict[str, Any]
    precision: float
    f1: float
    accuracy: float
    actions: list[dict[str, Any]]
    in_training_data_fraction: float
    conversation_accuracy: dict[str, Any]
    failed_stories: list[str] = field(default_factory=list)
    successful_stories: list[str] = field(default_factory=list)
    is_end_to_end_evaluation: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "precision": self.precision,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "actions": self.actions,
            "in_training_data_fraction": self.in_training_data_fraction,
            "conversation_accuracy": self.conversation_accuracy,
            "failed_stories": self.failed_stories,
            "is_end_to_end_evaluation": self.is_end_to_end_evaluation,
        }


@dataclass
class _StoryResult:
    tracker: DialogueStateTracker
    name: str
    targets: list[str]
    predictions: list[str]
    actions: list[dict[str, Any]]

    @property
    def failed(self) -> bool:
        return self.targets != self.predictions


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _action_names(domain: Any) -> list[str]:
    return list(getattr(domain, "action_names_or_texts", []) or [])


def _form_names(domain: Any) -> set[str]:
    forms = getattr(domain, "form_names", None)
    if forms is None:
        forms = getattr(domain, "forms", {}) or {}
    return set(forms)


async def _predict(agent: AgentLike, tracker: DialogueStateTracker) -> tuple[str, Any, Optional[str], Optional[float]]:
    """(action name, prediction, policy name, confidence) for the next action."""
    domain = agent.domain
    prediction = await _maybe_await(agent.policy_ensemble.predict(tracker, domain))
    probabilities = list(getattr(prediction, "probabilities", None) or [])
    names = _action_names(domain)
    if probabilities and max(probabilities) > 0:
        index = max(range(len(probabilities)), key=probabilities.__getitem__)
        name = names[index] if index < len(names) else ACTION_LISTEN_NAME
        confidence = float(probabilities[index])
    else:
        name, confidence = ACTION_LISTEN_NAME, None
    return name, prediction, getattr(prediction, "policy_name", None), confidence


async def _run_action_prediction(
    agent: AgentLike, partial: DialogueStateTracker, expected: Optional[str]
) -> tuple[str, Any, Optional[str], Optional[float]]:
    predicted, prediction, policy, confidence = await _predict(agent, partial)
    if (
        policy
        and predicted != expected
        and partial.active_loop_name == predicted
        and predicted in _form_names(agent.domain)
    ):
        # The form may have rejected execution (validation failed, user changed
        # topic): actions don't run during evaluation, so emulate the rejection.
        partial.update(ActionExecutionRejected(predicted))
        predicted, prediction, policy, confidence = await _predict(agent, partial)
    return predicted, prediction, policy, confidence


async def _parse_user_text(agent: AgentLike, event: UserUttered) -> UserUttered:
    """A story line with text but no intent: take intent and entities from NLU."""
    parse = getattr(agent, "nlu_parse", None)
    if not callable(parse):
        logger.warning(
            "Test story turn %r has no intent and the agent has no NLU; it is kept as text only.",
            event.text,
        )
        return event
    parsed = await _maybe_await(parse(event.text))
    parsed = dict(parsed or {})
    return UserUttered(
        event.text, parsed.get("intent"), parsed.get("entities") or [], parsed,
        timestamp=event.timestamp,
    )


async def _predict_tracker_actions(
    tracker: DialogueStateTracker,
    agent: AgentLike,
    max_number_of_predictions: int,
) -> _StoryResult:
    domain = agent.domain
    events = list(tracker.events)
    partial = DialogueStateTracker.from_events(
        tracker.sender_id,
        events[:1],
        getattr(domain, "slots", None),
        sender_source=tracker.sender_source,
    )
    targets: list[str] = []
    predictions: list[str] = []
    actions: list[dict[str, Any]] = []
    should_predict_another_action = True
    num_predicted_actions = 0

    for event in events[1:]:
        if isinstance(event, ActionExecuted):
            expected = event.action_name or event.action_text
            if num_predicted_actions >= max_number_of_predictions and should_predict_another_action:
                predicted, policy, confidence = CIRCUIT_BREAKER_TRIPPED, None, None
            else:
                predicted, _, policy, confidence = await _run_action_prediction(agent, partial, expected)
            targets.append(str(expected))
            predictions.append(predicted)
            actions.append(
                {"action": expected, "predicted": predicted, "policy": policy, "confidence": confidence}
            )
            if predicted != expected:
                partial.update(
                    WronglyPredictedAction(
                        event.action_name, event.action_text, predicted, policy, confidence, event.timestamp
                    )
                )
            else:
                partial.update(
                    ActionExecuted(
                        event.action_name, policy, confidence, event.timestamp,
                        action_text=event.action_text,
                    )
                )
            should_predict_another_action = predicted not in (ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME)
            num_predicted_actions += 1
        elif isinstance(event, UserUttered):
            if event.text and not event.intent_name:
                event = await _parse_user_text(agent, event)
            partial.update(event)
            num_predicted_actions = 0
        else:
            partial.update(event)

    name = f"{tracker.sender_id} ({tracker.sender_source})" if tracker.sender_source else tracker.sender_id
    return _StoryResult(partial, name, targets, predictions, actions)


def get_evaluation_metrics(
    targets: Sequence[str], predictions: Sequence[str]
) -> tuple[dict[str, Any], float, float, float]:
    """sklearn report over the target labels (Rasa's ``get_evaluation_metrics``)."""
    from sklearn import metrics
    from sklearn.exceptions import UndefinedMetricWarning

    labels = sorted(set(targets))
    if not labels:
        logger.warning("No labels to evaluate. Skip evaluation.")
        return {}, 0.0, 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        report = metrics.classification_report(
            targets, predictions, labels=labels, output_dict=True, zero_division=0
        )
        precision = metrics.precision_score(targets, predictions, labels=labels, average="weighted", zero_division=0)
        f1 = metrics.f1_score(targets, predictions, labels=labels, average="weighted", zero_division=0)
        accuracy = metrics.accuracy_score(targets, predictions)
    report = json.loads(json.dumps(report, default=float))
    # sklearn writes "micro avg" instead of "accuracy" when predictions contain
    # labels no story expects; the report always carries the plain accuracy.
    report.setdefault("accuracy", float(accuracy))
    return report, float(precision), float(f1), float(accuracy)


def _in_training_data_fraction(actions: list[dict[str, Any]]) -> float:
    in_data = [
        a for a in actions if a["policy"] and any(p in str(a["policy"]) for p in IN_TRAINING_DATA_POLICIES)
    ]
    return len(in_data) / len(actions) if actions else 0.0


def generate_test_trackers(
    test_story_paths: Sequence[str | Path] | str | Path, domain: Any, max_stories: Optional[int] = None
) -> list[DialogueStateTracker]:
    """One tracker per test conversation (checkpoints/``or`` expanded, no augmentation)."""
    from bot.dialogue.generator import TrainingDataGenerator

    steps = load_test_stories(test_story_paths)
    generator = TrainingDataGenerator(
        StoryGraph(steps), domain, augmentation_factor=0, use_story_concatenation=False
    )
    trackers = generator.generate_story_trackers()
    return trackers[:max_stories] if max_stories else trackers


async def evaluate_stories(
    test_story_paths: Sequence[str | Path] | str | Path,
    agent: AgentLike,
    out_dir: Optional[str | Path] = None,
    max_stories: Optional[int] = None,
    successes: bool = False,
    errors: bool = True,
    max_number_of_predictions: int = DEFAULT_MAX_NUMBER_OF_PREDICTIONS,
) -> CoreEvaluation:
    """Evaluate test stories against ``agent``'s policies; write reports into ``out_dir``."""
    trackers = generate_test_trackers(test_story_paths, agent.domain, max_stories)
    logger.info("Evaluating %d stories", len(trackers))

    results = [await _predict_tracker_actions(t, agent, max_number_of_predictions) for t in trackers]
    targets = [x for r in results for x in r.targets]
    predictions = [x for r in results for x in r.predictions]
    actions = [a for r in results for a in r.actions]
    failed = [r for r in results if r.failed]
    succeeded = [r for r in results if not r.failed]

    report, precision, f1, accuracy = get_evaluation_metrics(targets, predictions)
    num_convs = len(results)
    conversation_accuracy = {
        "accuracy": (len(succeeded) / num_convs) if num_convs else 0.0,
        "correct": len(succeeded),
        "with_warnings": 0,
        "total": num_convs,
    }
    if num_convs:
        report["conversation_accuracy"] = conversation_accuracy

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_STORIES_FILE).write_text(
            json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        if errors:
            write_stories(
                [(r.name, r.tracker.events) for r in failed],
                out / FAILED_STORIES_FILE,
                "None of the test stories failed - all good!",
            )
            write_stories([], out / STORIES_WITH_WARNINGS_FILE, "No warnings for test stories")
        if successes:
            write_stories(
                [(r.name, r.tracker.events) for r in succeeded],
                out / SUCCESSFUL_STORIES_FILE,
                "None of the test stories succeeded :(",
            )
        logger.info("Stories report saved to %s.", out / REPORT_STORIES_FILE)

    logger.info(
        "Evaluation on CONVERSATION level: correct %d / %d; ACTION level accuracy %.3f",
        len(succeeded), num_convs, accuracy,
    )
    return CoreEvaluation(
        report=report,
        precision=precision,
        f1=f1,
        accuracy=accuracy,
        actions=actions,
        in_training_data_fraction=_in_training_data_fraction(actions),
        conversation_accuracy=conversation_accuracy,
        failed_stories=[r.name for r in failed],
        successful_stories=[r.name for r in succeeded],
    )


__all__ = [
    "ACTION_UNLIKELY_INTENT_NAME",
    "AgentLike",
    "CoreEvaluation",
    "PolicyEnsembleLike",
    "WronglyPredictedAction",
    "evaluate_stories",
    "generate_test_trackers",
    "get_evaluation_metrics",
]
