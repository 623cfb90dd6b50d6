"""Graph of story steps joined by checkpoints (Rasa's ``StoryGraph``).

Orders steps topologically so that a step runs after every step that ends in
one of its start checkpoints, finds the edges that close cycles, and can
rewrite those cycles into generated checkpoints the tracker generator can
follow a bounded number of times (``with_cycles_removed``).
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict, deque
from typing import Any, Iterable, Optional

from bot.shared.training_data.stories import (
    CHECKPOINT_CYCLE_PREFIX,
    GENERATED_CHECKPOINT_PREFIX,
    GENERATED_HASH_LENGTH,
    STORY_END,
    STORY_START,
    Checkpoint,
    RuleStep,
    StoryStep,
)

logger = logging.getLogger(__name__)


class StoryGraph:
    """Story steps pooled from all stories and rules, ordered by checkpoints."""

    def __init__(
        self,
        story_steps: list[StoryStep],
        story_end_checkpoints: Optional[dict[str, str]] = None,
    ) -> None:
        self.story_steps = list(story_steps)
        self.step_lookup = {s.id: s for s in self.story_steps}
        ordered_ids, cyclic_edges = StoryGraph.order_steps(self.story_steps)
        self.ordered_ids = ordered_ids
        self.cyclic_edge_ids = cyclic_edges
        self.story_end_checkpoints = dict(story_end_checkpoints or {})

    def __hash__(self) -> int:
        return int(hashlib.md5(self.as_story_string().encode("utf-8")).hexdigest(), 16)  # noqa: S324

    def ordered_steps(self) -> list[StoryStep]:
        """Steps in topological order (a step after those leading into it)."""
        return [self.step_lookup[i] for i in self.ordered_ids]

    def cyclic_edges(self) -> list[tuple[StoryStep, StoryStep]]:
        return [(self.step_lookup[s], self.step_lookup[e]) for s, e in self.cyclic_edge_ids]

    def merge(self, other: Optional["StoryGraph"]) -> "StoryGraph":
        if not other:
            return self
        ends = dict(self.story_end_checkpoints)
        ends.update(other.story_end_checkpoints)
        return StoryGraph(self.story_steps + other.story_steps, ends)

    def is_empty(self) -> bool:
        return not self.story_steps

    @property
    def story_steps_only(self) -> list[StoryStep]:
        return [s for s in self.story_steps if not isinstance(s, RuleStep)]

    @property
    def rule_steps(self) -> list[RuleStep]:
        return [s for s in self.story_steps if isinstance(s, RuleStep)]

    def unused_checkpoints(self) -> set[str]:
        """Checkpoint names used only as a start or only as an end (typos, leftovers)."""
        return {
            name
            for name in self._find_unused_checkpoints(self.story_steps, self.story_end_checkpoints)
            if name is not None and not name.startswith(GENERATED_CHECKPOINT_PREFIX)
        }

    def warn_unused_checkpoints(self) -> set[str]:
        """Log one warning per unused checkpoint, naming the block and file."""
        unused = self.unused_checkpoints()
        for name in sorted(unused):
            for step in self.story_steps:
                starts = {c.name for c in step.start_checkpoints}
                ends = {c.name for c in step.end_checkpoints}
                if name in starts:
                    logger.warning(
                        "%s:%s: '%s' starts with checkpoint '%s' but no story ends with it; "
                        "the block is never reached.",
                        step.source_name, step.source_line, step.block_name, name,
                    )
                elif name in ends:
                    logger.warning(
                        "%s:%s: '%s' ends with checkpoint '%s' but no story starts with it.",
                        step.source_name, step.source_line, step.block_name, name,
                    )
        return unused

    # -- cycles -------------------------------------------------------------

    @staticmethod
    def overlapping_checkpoint_names(cps: list[Checkpoint], other_cps: list[Checkpoint]) -> set[str]:
        return {cp.name for cp in cps} & {cp.name for cp in other_cps}

    def with_cycles_removed(self) -> "StoryGraph":
        """A graph whose cycle-closing edges go through generated sink/source checkpoints."""
        story_end_checkpoints = dict(self.story_end_checkpoints)
        story_steps = {s.id: s for s in self.story_steps}
        all_overlapping: set[str] = set()

        for s, e in self.cyclic_edge_ids:
            cid = uuid.uuid4().hex[:GENERATED_HASH_LENGTH]
            prefix = GENERATED_CHECKPOINT_PREFIX + CHECKPOINT_CYCLE_PREFIX
            sink_cp_name = prefix + "SINK_" + cid
            connector_cp_name = prefix + "CONN_" + cid
            source_cp_name = prefix + "SRC_" + cid
            story_end_checkpoints[sink_cp_name] = source_cp_name

            overlapping = self.overlapping_checkpoint_names(
                story_steps[s].end_checkpoints, story_steps[e].start_checkpoints
            )
            all_overlapping.update(overlapping)

            start = story_steps[s].create_copy(use_new_id=False)
            start.end_checkpoints = [cp for cp in start.end_checkpoints if cp.name not in overlapping]
            start.end_checkpoints.append(Checkpoint(sink_cp_name))
            story_steps[s] = start

            needs_connector = False
            for k, step in list(story_steps.items()):
                additional = []
                for original in overlapping:
                    for cp in step.start_checkpoints:
                        if cp.name != original:
                            continue
                        if k == e:
                            cp_name = source_cp_name
                        else:
                            cp_name = connector_cp_name
                            needs_connector = True
                        if not any(
                            c.name == cp_name and c.conditions == cp.conditions
                            for c in step.start_checkpoints + additional
                        ):
                            additional.append(Checkpoint(cp_name, cp.conditions))
                if additional:
                    updated = step.create_copy(use_new_id=False)
                    updated.start_checkpoints = updated.start_checkpoints + additional
                    story_steps[k] = updated
            if needs_connector:
                start.end_checkpoints.append(Checkpoint(connector_cp_name))

        self._remove_unused_generated_cps(story_steps, all_overlapping, story_end_checkpoints)
        return StoryGraph(list(story_steps.values()), story_end_checkpoints)

    def _remove_unused_generated_cps(
        self,
        story_steps: dict[str, StoryStep],
        overlapping_cps: set[str],
        story_end_checkpoints: dict[str, str],
    ) -> None:
        unused = self._find_unused_checkpoints(story_steps.values(), story_end_checkpoints)
        unused_overlapping = unused & overlapping_cps
        unused_generated = {n for n in unused if n and n.startswith(GENERATED_CHECKPOINT_PREFIX)}
        to_remove = set()
        for k, step in list(story_steps.items()):
            updated = step.create_copy(use_new_id=False)
            updated.start_checkpoints = [c for c in updated.start_checkpoints if c.name not in unused_overlapping]
            updated.end_checkpoints = [c for c in updated.end_checkpoints if c.name not in unused_generated]
            if (step.start_checkpoints and not updated.start_checkpoints) or (
                step.end_checkpoints and not updated.end_checkpoints
            ):
                to_remove.add(k)
            story_steps[k] = updated
        for k in to_remove:
            del story_steps[k]

    @staticmethod
    def _find_unused_checkpoints(
        story_steps: Iterable[StoryStep], story_end_checkpoints: dict[str, str]
    ) -> set[Any]:
        collected_start: set[Any] = {STORY_END, STORY_START}
        collected_end: set[Any] = {STORY_END, STORY_START}
        for step in story_steps:
            for start in step.start_checkpoints:
                collected_start.add(start.name)
            for end in step.end_checkpoints:
                collected_end.add(story_end_checkpoints.get(end.name, end.name))
        return collected_end.symmetric_difference(collected_start)

    def get(self, step_id: str) -> Optional[StoryStep]:
        return self.step_lookup.get(step_id)

    def as_story_string(self) -> str:
        return "".join(step.as_story_string() for step in self.story_steps)

    # -- ordering -----------------------------------------------------------

    @staticmethod
    def order_steps(story_steps: list[StoryStep]) -> tuple[deque, list[tuple[str, str]]]:
        """Topological sort of step ids plus the edges that had to be cut (cycles)."""
        by_start: dict[Any, list[StoryStep]] = defaultdict(list)
        for step in story_steps:
            for start in step.start_checkpoints:
                by_start[start.name].append(step)
        graph = {
            s.id: {other.id for end in s.end_checkpoints for other in by_start[end.name]}
            for s in story_steps
        }
        return StoryGraph.topological_sort(graph)

    @staticmethod
    def topological_sort(graph: dict[str, set[str]]) -> tuple[deque, list[tuple[str, str]]]:
        """Rasa's DFS top-sort (iterative, so long story chains cannot overflow the stack)."""
        GRAY, BLACK = 0, 1
        ordered: deque = deque()
        unprocessed = sorted(set(graph), key=_step_sort_key)
        unprocessed_set = set(unprocessed)
        visited: dict[str, int] = {}
        removed_edges: set[tuple[str, str]] = set()

        while unprocessed:
            root = unprocessed.pop()
            if root not in unprocessed_set:
                continue
            unprocessed_set.discard(root)
            visited[root] = GRAY
            stack = [(root, iter(sorted(graph.get(root, set()), key=_step_sort_key)))]
            while stack:
                node, children = stack[-1]
                advanced = False
                for k in children:
                    state = visited.get(k)
                    if state == GRAY:
                        removed_edges.add((node, k))
                        continue
                    if state == BLACK:
                        continue
                    unprocessed_set.discard(k)
                    visited[k] = GRAY
                    stack.append((k, iter(sorted(graph.get(k, set()), key=_step_sort_key))))
                    advanced = True
                    break
                if not advanced:
                    stack.pop()
                    ordered.appendleft(node)
                    visited[node] = BLACK
        return ordered, sorted(removed_edges)


def _step_sort_key(step_id: str) -> tuple[int, str]:
    """Ids are ``<counter>_<uuid>``: sort numerically by the counter (reproducible)."""
    head, _, tail = step_id.partition("_")
    return (int(head), tail) if head.isdigit() else (0, step_id)
