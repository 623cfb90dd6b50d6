from __future__ import annotations

import logging
from pathlib import Path

from bot.shared.training_data.stories import (
    CHECKPOINT_CYCLE_PREFIX,
    GENERATED_CHECKPOINT_PREFIX,
    load_story_steps,
)
from bot.shared.training_data.story_graph import StoryGraph

DATA = Path(__file__).resolve().parents[2] / "data" / "stories"
YAML_STORIES = "rasa_repo_data/data/test_yaml_stories"


def test_story_graph_orders_steps_after_their_checkpoint_sources() -> None:
    graph = StoryGraph(load_story_steps([DATA / "stories.yml"]))
    order = [s.block_name for s in graph.ordered_steps()]
    last_greet = max(i for i, n in enumerate(order) if n == "greet then ask")
    assert order.index("name given") > last_greet
    assert order.index("goodbye after name") > last_greet
    assert graph.cyclic_edge_ids == []


def test_story_graph_finds_and_removes_cycles(rasa_examples: Path) -> None:
    graph = StoryGraph(load_story_steps([rasa_examples / YAML_STORIES / "stories_with_cycle.yml"]))
    assert len(graph.cyclic_edge_ids) == 2
    acyclic = graph.with_cycles_removed()
    assert acyclic.cyclic_edge_ids == []
    prefix = GENERATED_CHECKPOINT_PREFIX + CHECKPOINT_CYCLE_PREFIX
    assert all(k.startswith(prefix + "SINK_") for k in acyclic.story_end_checkpoints)
    assert len(acyclic.story_end_checkpoints) == 2


def test_story_graph_reports_unused_checkpoints(rasa_examples: Path, caplog) -> None:
    graph = StoryGraph(load_story_steps([rasa_examples / YAML_STORIES / "stories_unused_checkpoints.yml"]))
    with caplog.at_level(logging.WARNING):
        unused = graph.warn_unused_checkpoints()
    assert unused == {"check_end_1", "check_end_2", "check_start"}
    assert "stories_unused_checkpoints.yml:17" in caplog.text


def test_story_graph_topological_sort_is_deterministic_and_handles_long_chains() -> None:
    chain = {f"{i}_x": {f"{i + 1}_x"} for i in range(5000)}
    chain["5000_x"] = set()
    ordered, removed = StoryGraph.topological_sort(chain)
    assert list(ordered)[:3] == ["0_x", "1_x", "2_x"]
    assert removed == []
    ordered, removed = StoryGraph.topological_sort({"1_a": {"2_b"}, "2_b": {"1_a"}})
    assert len(removed) == 1
