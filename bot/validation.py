"""``python -m bot data validate``: find mistakes before training.

Checks (errors fail the command; warnings fail it with --fail-on-warnings):
- intents, entities, actions, responses and slots used in stories/rules exist in the domain;
- every ``utter_*`` action in the domain has a response;
- NLU intents and entities are in the domain, and domain intents have examples;
- the same example is not labelled with two intents;
- stories/rules don't contradict each other (same history, different next action);
- unused responses and intents (warnings).
"""
from __future__ import annotations

import argparse
import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from bot.shared.constants import (
    ACTION_LISTEN_NAME,
    DEFAULT_ACTION_NAMES,
    DEFAULT_INTENTS,
    RULE_SNIPPET_ACTION_NAME,
    UTTER_PREFIX,
)
from bot.shared.events import ActionExecuted, SlotSet, UserUttered, ActiveLoop
from bot.shared.exceptions import BotError
from bot.shared.importer import ProjectImporter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    message: str
    location: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"[{self.level}] {where}{self.message}"


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)

    def error(self, message: str, location: str = "") -> None:
        self.findings.append(Finding("error", message, location))

    def warning(self, message: str, location: str = "") -> None:
        self.findings.append(Finding("warning", message, location))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def _step_location(step: Any) -> str:
    source = getattr(step, "source_name", None) or ""
    line = getattr(step, "source_line", None)
    name = getattr(step, "block_name", "")
    loc = f"{source}:{line}" if source and line else source
    return f"{loc} ('{name}')" if name else loc


def validate_story_names(domain: Any, steps: Iterable[Any], report: ValidationReport) -> tuple[set, set]:
    """Intents/actions/slots used in stories and rules must exist in the domain."""
    used_intents: set[str] = set()
    used_actions: set[str] = set()
    intents = set(domain.intents)
    actions = set(domain.action_names_or_texts)
    slots = {s.name for s in domain.slots}
    for step in steps:
        loc = _step_location(step)
        for event in getattr(step, "events", []):
            if isinstance(event, UserUttered):
                name = event.intent_name
                if name:
                    used_intents.add(name)
                    if name not in intents:
                        report.error(f"Intent '{name}' is used in a story/rule but not listed in the domain.", loc)
            elif isinstance(event, ActionExecuted):
                name = event.action_name
                if not name or name == RULE_SNIPPET_ACTION_NAME:
                    continue
                used_actions.add(name)
                if name not in actions:
                    report.error(f"Action '{name}' is used in a story/rule but not listed in the domain.", loc)
            elif isinstance(event, SlotSet):
                if event.key not in slots:
                    report.error(f"Slot '{event.key}' is used in a story/rule but not defined in the domain.", loc)
            elif isinstance(event, ActiveLoop):
                if event.name:
                    used_actions.add(event.name)
                    if event.name not in actions:
                        report.error(f"Loop/form '{event.name}' is used in a story/rule but not in the domain.", loc)
    return used_intents, used_actions


def validate_responses(domain: Any, used_actions: set[str], report: ValidationReport) -> None:
    responses = set(domain.responses)
    retrieval_actions = {f"{UTTER_PREFIX}{i}" for i in domain.retrieval_intents}
    retrieval_actions |= {r.split("/", 1)[0] for r in responses if "/" in r}
    for action in domain.user_actions:
        if action.startswith(UTTER_PREFIX) and action not in responses and action not in retrieval_actions:
            # Rasa warns here (Domain.check_missing_responses) and trains the project.
            where = domain.source_of("actions", action)
            loc = f"{where[0]}:{where[1]}" if where[0] and where[1] else (where[0] or "domain")
            report.warning(f"Action '{action}' looks like a response but the domain has no response '{action}'.", loc)
    forms = set(getattr(domain, "forms", {}) or {})
    for response in sorted(responses):
        if response in used_actions or response.split("/", 1)[0] in used_actions:
            continue  # `utter_faq/ask_price` is used through the retrieval action `utter_faq`
        if response.startswith("utter_ask_") or response in ("utter_default", "utter_greet", "utter_restart"):
            continue  # used by forms / default actions
        if any(response.startswith(f"utter_ask_{f}_") for f in forms):
            continue
        report.warning(f"Response '{response}' is not used in any story or rule.", "domain")


def validate_nlu(domain: Any, nlu: Any, used_intents: set[str], report: ValidationReport) -> None:
    if nlu is None:
        return
    domain_intents = set(domain.intents)
    domain_entities = set(domain.entities)
    counts: dict[str, int] = defaultdict(int)
    by_text: dict[str, set[str]] = defaultdict(set)
    for ex in nlu.training_examples:
        intent = ex.get("intent")
        if not intent:
            continue
        counts[intent] += 1
        by_text[ex.text.strip().lower()].add(intent)
        if intent not in domain_intents and counts[intent] == 1:  # once per intent
            report.error(f"Intent '{intent}' has NLU examples but is not listed in the domain.", str(getattr(ex, "source", "") or "nlu"))
        for ent in ex.get("entities") or []:
            if ent.get("entity") not in domain_entities:
                report.warning(f"Entity '{ent.get('entity')}' is annotated in NLU data but not listed in the domain.", str(getattr(ex, "source", "") or "nlu"))
    for text, names in by_text.items():
        if len(names) > 1:
            report.warning(f"Example '{text}' is labelled with several intents: {', '.join(sorted(names))}.", "nlu")
    for intent in sorted(domain_intents - set(DEFAULT_INTENTS)):
        if counts.get(intent, 0) == 0:
            report.warning(f"Intent '{intent}' has no NLU training examples.", "domain")
        if intent not in used_intents:
            report.warning(f"Intent '{intent}' is not used in any story or rule.", "domain")


def validate_story_structure(domain: Any, steps: list[Any], report: ValidationReport, max_history: int = 5) -> None:
    """Report two stories/rules that continue the same history with different actions."""
    try:
        from bot.dialogue.generator import generate_training_trackers
        from bot.shared.training_data.story_graph import StoryGraph
    except ImportError:  # pragma: no cover
        return
    trackers = generate_training_trackers(StoryGraph(steps), domain, augmentation_factor=0)
    seen: dict[str, tuple[str, str]] = {}
    reported: set[tuple[str, str, str]] = set()
    for tracker in trackers:
        if getattr(tracker, "is_rule_tracker", False):
            continue  # rule conflicts are checked by RulePolicy at training time
        states = domain.states_for_tracker_history(tracker)
        actions = [e.action_name or e.action_text for e in tracker.applied_events() if isinstance(e, ActionExecuted)]
        # states[i] precedes actions[i]
        for i, action in enumerate(actions):
            if i >= len(states):
                break
            history = states[max(0, i + 1 - max_history): i + 1]
            key = repr(history)
            name = getattr(tracker, "sender_id", "")
            if key in seen and seen[key][0] != action:
                other_action, other_name = seen[key]
                pair = tuple(sorted((action, other_action))) + (key,)
                if pair not in reported:
                    reported.add(pair)  # type: ignore[arg-type]
                    report.error(
                        f"Story structure conflict: after the same {max_history} turns, "
                        f"'{other_name}' continues with '{other_action}' but '{name}' with '{action}'."
                    )
            elif key not in seen:
                seen[key] = (action, name)


class _LoaderWarnings(logging.Handler):
    """Collects what the readers log at WARNING while a project loads.

    Where kefu is stricter than Rasa (an unknown intent in a slot mapping, a response
    condition on an unknown slot, ...) the readers warn with file:line and go on, as
    Rasa does; `data validate` reports those warnings, `--fail-on-warnings` fails on them.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def _split_location(message: str) -> tuple[str, str]:
    """``'domain.yml:71: text'`` → (``'domain.yml:71'``, ``'text'``)."""
    head, sep, rest = message.partition(": ")
    if sep and ":" in head and " " not in head:
        return head, rest
    return "", message


def load_with_warnings(importer: ProjectImporter) -> tuple[Any, list[Any], list[str]]:
    """Domain, story steps and every warning the readers gave while loading them."""
    handler = _LoaderWarnings()
    shared = logging.getLogger("bot.shared")
    shared.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            domain = importer.get_domain()
            steps = importer.get_story_steps(domain)
            importer.get_nlu_data()
    finally:
        shared.removeHandler(handler)
    found = list(handler.messages)
    for w in caught:
        text = str(w.message)
        if text not in found:
            found.append(text)
    return domain, steps, found


def validate_project(importer: ProjectImporter, check_structure: bool = True) -> ValidationReport:
    report = ValidationReport()
    try:
        domain, steps, loader_warnings = load_with_warnings(importer)
    except BotError:
        domain, steps, loader_warnings = importer.get_domain(), importer.get_story_steps(None), []
    for message in loader_warnings:
        location, text = _split_location(message)
        report.warning(text, location)
    used_intents, used_actions = validate_story_names(domain, steps, report)
    validate_responses(domain, used_actions, report)
    try:
        nlu = importer.get_nlu_data()
    except BotError as e:
        report.error(str(e))
        nlu = None
    validate_nlu(domain, nlu, used_intents, report)
    if check_structure and not report.errors:
        validate_story_structure(domain, steps, report)
    return report


def run_validation(args: argparse.Namespace) -> int:
    importer = ProjectImporter.from_paths(args.root, args.config, args.domain, args.data)
    report = validate_project(importer)
    for finding in report.findings:
        print(str(finding))
    print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s).")
    if report.errors or (args.fail_on_warnings and report.warnings):
        return 1
    return 0
