"""Training trackers from stories and rules (Rasa's ``TrainingDataGenerator``).

Story steps are glued at their checkpoints (``or`` steps arrive here already
split into blocks joined by generated checkpoints), duplicates are removed and,
when ``augmentation_factor > 0``, finished stories are glued to each other at
random to make longer conversations. Rule trackers are generated the same way,
never augmented, and flagged ``is_rule_tracker``.

Speed: Rasa replays every tracker through the domain to hash its states at each
step. Here the walk works on light "proto trackers" (an event list plus a
running signature of the featurisation-relevant events) and only the finished
ones are turned into ``DialogueStateTracker`` objects. Two histories with the
same signature featurise identically, so de-duplication never drops a tracker
Rasa would keep; it may keep a few that Rasa would merge (e.g. histories that
differ only in unfeaturised slots).
"""
from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from bot.shared.constants import ACTION_LISTEN_NAME, SHOULD_NOT_BE_SET
from bot.shared.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    AllSlotsReset,
    Restarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from bot.shared.tracker import DialogueStateTracker
from bot.shared.training_data.stories import (
    GENERATED_CHECKPOINT_PREFIX,
    STORY_START,
    RuleStep,
    StoryStep,
)
from bot.shared.training_data.story_graph import StoryGraph

logger = logging.getLogger(__name__)


def _stable(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # pragma: no cover - exotic slot values
        return repr(value)


def event_signature(event: Any) -> tuple:
    """What of ``event`` can influence a featurised state (no timestamps, ids)."""
    if isinstance(event, UserUttered):
        intent = event.intent or {}
        name = intent.get("full_retrieval_intent_name") or intent.get("name")
        labels = tuple(
            sorted(
                (str(e.get("entity")), str(e.get("role")), str(e.get("group")))
                for e in (event.entities or [])
            )
        )
        return ("user", name, event.text, labels)
    if isinstance(event, ActionExecuted):
        return ("action", event.action_name, event.action_text)
    if isinstance(event, SlotSet):
        return ("slot", event.key, _stable(event.value))
    if isinstance(event, ActiveLoop):
        return ("loop", event.name)
    d = {k: v for k, v in event.as_dict().items() if k not in ("timestamp", "metadata")}
    return ("event", _stable(d))


@dataclass
class _ProtoTracker:
    """Cheap stand-in for a tracker while stories are glued together."""

    sender_id: str
    sender_source: Optional[str]
    events: list[Any]
    sigs: tuple
    slots: dict[str, Any]
    initial_slots: dict[str, Any] = field(repr=False)
    is_augmented: bool = False

    def copy(self, sender_id: Optional[str] = None, sender_source: Optional[str] = None) -> "_ProtoTracker":
        return _ProtoTracker(
            self.sender_id if sender_id is None else sender_id,
            self.sender_source if sender_source is None else sender_source,
            list(self.events),
            self.sigs,
            dict(self.slots),
            self.initial_slots,
            self.is_augmented,
        )

    def get_slot(self, name: str) -> Any:
        return self.slots.get(name)

    def update(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, ActionReverted):
            # drop the last action (augmentation undoes the final action_listen)
            for i in range(len(self.sigs) - 1, -1, -1):
                if self.sigs[i][0] == "action":
                    self.sigs = self.sigs[:i] + self.sigs[i + 1 :]
                    break
        elif isinstance(event, UserUtteranceReverted):
            for i in range(len(self.sigs) - 1, -1, -1):
                if self.sigs[i][0] == "user":
                    self.sigs = self.sigs[:i]
                    break
        elif isinstance(event, Restarted):
            self.sigs = (("restart",),)
            self.slots = dict(self.initial_slots)
        elif isinstance(event, AllSlotsReset):
            self.sigs = self.sigs + (("reset_slots",),)
            self.slots = dict(self.initial_slots)
        else:
            if isinstance(event, SlotSet):
                self.slots[event.key] = event.value
            self.sigs = self.sigs + (event_signature(event),)

    def hash(self) -> int:
        return hash(self.sigs)


def _subsample(arr: list[Any], max_values: int, rand: random.Random) -> list[Any]:
    """Rasa's ``_subsample_array``: shuffle in place, keep the first ``max_values``."""
    rand.shuffle(arr)
    return arr[:max_values]


class TrainingDataGenerator:
    """Turns a story graph into training trackers (see module docstring)."""

    def __init__(
        self,
        story_graph: StoryGraph,
        domain: Any,
        remove_duplicates: bool = True,
        unique_last_num_states: Optional[int] = None,
        augmentation_factor: int = 50,
        tracker_limit: Optional[int] = None,
        use_story_concatenation: bool = True,
        seed: int = 42,
    ) -> None:
        self.story_graph = story_graph.with_cycles_removed()
        self.domain = domain
        self.remove_duplicates = remove_duplicates
        self.unique_last_num_states = unique_last_num_states
        self.augmentation_factor = augmentation_factor
        # 10x factor is Rasa's heuristic for augmentation rounds
        self.max_number_of_augmented_trackers = augmentation_factor * 10
        self.tracker_limit = tracker_limit
        self.use_story_concatenation = use_story_concatenation
        self.rand = random.Random(seed)
        self.hashed_featurizations: set[int] = set()
        self._slots = list(getattr(domain, "slots", []) or [])
        self._initial_slots = {
            s.name: getattr(s, "initial_value", None) for s in self._slots
        }

    # -- public -------------------------------------------------------------

    def generate(self) -> list[DialogueStateTracker]:
        return self.generate_story_trackers() + self.generate_rule_trackers()

    def generate_story_trackers(self) -> list[DialogueStateTracker]:
        steps = [s for s in self.story_graph.ordered_steps() if not isinstance(s, RuleStep)]
        return self._materialise(self._generate(steps, is_rule_data=False), is_rule=False)

    def generate_rule_trackers(self) -> list[DialogueStateTracker]:
        steps = [s for s in self.story_graph.ordered_steps() if isinstance(s, RuleStep)]
        return self._materialise(self._generate(steps, is_rule_data=True), is_rule=True)

    # -- core walk ----------------------------------------------------------

    def _materialise(self, protos: list[_ProtoTracker], is_rule: bool) -> list[DialogueStateTracker]:
        out = []
        for p in protos:
            tracker = DialogueStateTracker.from_events(
                p.sender_id,
                p.events,
                self._slots,
                max_event_history=self.tracker_limit,
                sender_source=p.sender_source,
                is_rule_tracker=is_rule,
            )
            tracker.is_augmented = p.is_augmented  # type: ignore[attr-defined]
            out.append(tracker)
        return out

    def _generate(self, story_steps: list[StoryStep], is_rule_data: bool) -> list[_ProtoTracker]:
        if not story_steps:
            logger.debug("No %s found.", "rules" if is_rule_data else "story blocks")
            return []
        self._mark_first_action_in_story_steps_as_unpredictable()

        active_trackers: dict[str, list[_ProtoTracker]] = defaultdict(list)
        active_trackers[STORY_START].append(
            _ProtoTracker("", None, [], (), dict(self._initial_slots), self._initial_slots)
        )
        finished: list[_ProtoTracker] = []
        story_end_trackers: list[_ProtoTracker] = []
        phase = 0
        min_num_aug_phases = 3 if (not is_rule_data and self.augmentation_factor > 0) else 0

        used_checkpoints: set[str] = set()
        previous_unused: set[str] = set()
        everything_reachable_is_reached = False

        while not everything_reachable_is_reached or phase < min_num_aug_phases:
            if not sum(len(ts) for ts in active_trackers.values()):
                break
            unused_checkpoints: set[str] = set()

            for step in story_steps:
                incoming: list[_ProtoTracker] = []
                for start in step.start_checkpoints:
                    if active_trackers.get(start.name):
                        incoming.extend(start.filter_trackers(active_trackers[start.name]))
                        used_checkpoints.add(start.name)
                    elif start.name not in used_checkpoints:
                        unused_checkpoints.add(start.name)
                if not incoming:
                    continue
                if self.remove_duplicates:
                    incoming, end_trackers = self._remove_duplicate_trackers(incoming)
                    finished.extend(end_trackers)
                if everything_reachable_is_reached:
                    incoming = _subsample(incoming, self.max_number_of_augmented_trackers, self.rand)

                trackers, end_trackers = self._process_step(step, incoming)
                finished.extend(end_trackers)

                for end in step.end_checkpoints:
                    start_name = self.story_graph.story_end_checkpoints.get(end.name, end.name)
                    active_trackers[start_name].extend(trackers)
                    if start_name in used_checkpoints:
                        unused_checkpoints.add(start_name)
                if not step.end_checkpoints:
                    story_end_trackers.extend(self._remove_duplicate_story_end_trackers(trackers, is_rule_data))

            phase += 1
            if not everything_reachable_is_reached:
                unused_checkpoints = unused_checkpoints | {
                    n for n in active_trackers if n not in used_checkpoints
                }
                active_trackers = defaultdict(
                    list,
                    {n: active_trackers.get(n, []) for n in unused_checkpoints if n != STORY_START},
                )
                num_active = sum(len(ts) for ts in active_trackers.values())
                everything_reachable_is_reached = unused_checkpoints == previous_unused or num_active == 0
                previous_unused = unused_checkpoints
                if everything_reachable_is_reached:
                    previous_unused -= used_checkpoints
                    for start_name in previous_unused:
                        finished.extend(active_trackers.get(start_name, []))
                    phase = 0
            if everything_reachable_is_reached:
                used_checkpoints = set()
                active_trackers = self._create_start_trackers_for_augmentation(story_end_trackers)

        finished.extend(story_end_trackers)
        self._issue_unused_checkpoint_notification(previous_unused)

        if self.augmentation_factor > 0:
            augmented = [t for t in finished if t.is_augmented]
            original = [t for t in finished if not t.is_augmented]
            augmented = _subsample(augmented, self.max_number_of_augmented_trackers, self.rand)
            finished = original + augmented
        logger.debug("Generated %d %s trackers.", len(finished), "rule" if is_rule_data else "story")
        return finished

    def _create_start_trackers_for_augmentation(
        self, story_end_trackers: list[_ProtoTracker]
    ) -> dict[str, list[_ProtoTracker]]:
        active: dict[str, list[_ProtoTracker]] = defaultdict(list)
        if self.use_story_concatenation and self.augmentation_factor > 0:
            ending = _subsample(list(story_end_trackers), self.augmentation_factor, self.rand)
            for t in ending:
                aug = t.copy()
                aug.is_augmented = True
                # every story ends with action_listen; undo it before gluing the next one
                aug.update(ActionReverted())
                active[STORY_START].append(aug)
        return active

    def _process_step(
        self, step: StoryStep, incoming: list[_ProtoTracker]
    ) -> tuple[list[_ProtoTracker], list[_ProtoTracker]]:
        events = step.explicit_events(self.domain)
        trackers: list[_ProtoTracker] = []
        if events:
            for tracker in incoming:
                if tracker.sender_id:
                    if step.block_name and step.block_name not in tracker.sender_id.split(" > "):
                        sender = f"{tracker.sender_id} > {step.block_name}"
                    else:
                        sender = tracker.sender_id
                else:
                    sender = step.block_name or ""
                trackers.append(tracker.copy(sender, step.source_name))

        end_trackers: list[_ProtoTracker] = []
        is_rule = isinstance(step, RuleStep)
        for event in events:
            if is_rule:
                # rules can require a loop / slot to be unset: keep "unset" apart from None
                if isinstance(event, ActiveLoop) and event.name is None:
                    event = ActiveLoop(SHOULD_NOT_BE_SET)
                elif isinstance(event, SlotSet) and event.value is None:
                    event = SlotSet(event.key, SHOULD_NOT_BE_SET)
            for tracker in trackers:
                if isinstance(event, (ActionReverted, UserUtteranceReverted, Restarted)):
                    end_trackers.append(tracker.copy())
                tracker.update(event)
        return trackers, end_trackers

    def _remove_duplicate_trackers(
        self, trackers: list[_ProtoTracker]
    ) -> tuple[list[_ProtoTracker], list[_ProtoTracker]]:
        step_hashed: set[int] = set()
        unique: list[_ProtoTracker] = []
        end_trackers: list[_ProtoTracker] = []
        for tracker in trackers:
            hashed = tracker.hash()
            if hashed in step_hashed:
                continue
            if self.unique_last_num_states:
                last = tracker.sigs[-self.unique_last_num_states :]
                last_hashed = hash(last)
                if last_hashed not in step_hashed:
                    step_hashed.add(last_hashed)
                    unique.append(tracker)
                elif len(tracker.sigs) > len(last) and hashed not in self.hashed_featurizations:
                    self.hashed_featurizations.add(hashed)
                    end_trackers.append(tracker)
            else:
                unique.append(tracker)
            step_hashed.add(hashed)
        return unique, end_trackers

    def _remove_duplicate_story_end_trackers(
        self, trackers: list[_ProtoTracker], is_rule_data: bool
    ) -> list[_ProtoTracker]:
        unique = []
        for tracker in trackers:
            hashed = hash(tracker.sigs + ((is_rule_data,),))
            if hashed not in self.hashed_featurizations:
                self.hashed_featurizations.add(hashed)
                unique.append(tracker)
        return unique

    def _mark_first_action_in_story_steps_as_unpredictable(self) -> None:
        """A story that starts with an action has no history to predict it from."""
        for step in self.story_graph.story_steps:
            if STORY_START in {s.name for s in step.start_checkpoints}:
                for e in step.events:
                    if isinstance(e, UserUttered):
                        break
                    if isinstance(e, ActionExecuted):
                        e.unpredictable = True
                        break

    def _issue_unused_checkpoint_notification(self, unused: set[str]) -> None:
        for cp in sorted(n for n in unused if n):
            if cp.startswith(GENERATED_CHECKPOINT_PREFIX):
                continue
            for step in self.story_graph.story_steps:
                if cp in {s.name for s in step.start_checkpoints}:
                    logger.warning(
                        "%s:%s: unsatisfied start checkpoint '%s' in block '%s': no story ends "
                        "with it. Fix: add '- checkpoint: %s' at the end of the story that should lead here.",
                        step.source_name, step.source_line, cp, step.block_name, cp,
                    )
                if cp in {s.name for s in step.end_checkpoints}:
                    logger.warning(
                        "%s:%s: unsatisfied end checkpoint '%s' in block '%s': no story starts "
                        "with it. Fix: start the continuation with '- checkpoint: %s'.",
                        step.source_name, step.source_line, cp, step.block_name, cp,
                    )


def generate_training_trackers(
    story_graph: StoryGraph,
    domain: Any,
    augmentation_factor: int = 50,
    remove_duplicates: bool = True,
    unique_last_num_states: Optional[int] = None,
    tracker_limit: Optional[int] = None,
    seed: int = 42,
    use_story_concatenation: bool = True,
) -> list[DialogueStateTracker]:
    """Story trackers (original first, then augmented) followed by rule trackers.

    Augmented trackers carry ``is_augmented = True`` (AugmentedMemoization skips
    them); rule trackers carry ``is_rule_tracker = True`` and are never augmented.
    """
    generator = TrainingDataGenerator(
        story_graph,
        domain,
        remove_duplicates=remove_duplicates,
        unique_last_num_states=unique_last_num_states,
        augmentation_factor=augmentation_factor,
        tracker_limit=tracker_limit,
        use_story_concatenation=use_story_concatenation,
        seed=seed,
    )
    return generator.generate()
