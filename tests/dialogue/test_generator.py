from __future__ import annotations

import time
from pathlib import Path

from bot.dialogue.generator import TrainingDataGenerator, generate_training_trackers
from bot.shared.constants import RULE_SNIPPET_ACTION_NAME, SHOULD_NOT_BE_SET
from bot.shared.domain import Domain
from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from bot.shared.training_data.stories import load_story_steps
from bot.shared.training_data.story_graph import StoryGraph

DATA = Path(__file__).resolve().parents[1] / "data" / "stories"
YAML_STORIES = "rasa_repo_data/data/test_yaml_stories"


def _domain() -> Domain:
    return Domain.load(DATA / "domain.yml")


def _intents(tracker) -> list[str]:
    return [e.intent_name for e in tracker.events if isinstance(e, UserUttered)]


def test_generate_glues_checkpoints_and_expands_or() -> None:
    domain = _domain()
    graph = StoryGraph(load_story_steps([DATA / "stories.yml"], domain))
    stories = TrainingDataGenerator(graph, domain, augmentation_factor=0).generate_story_trackers()
    # 2 `or` options x 2 continuations after the checkpoint
    assert sorted(_intents(t)[1:] for t in stories) == [
        ["affirm", "goodbye"], ["affirm", "inform"], ["thank_you", "goodbye"], ["thank_you", "inform"],
    ]
    for t in stories:
        assert not t.is_rule_tracker and t.is_augmented is False
        assert isinstance(t.events[0], ActionExecuted) and t.events[0].action_name == "action_listen"
        assert t.events[-1].action_name == "action_listen"
        assert " > " in t.sender_id  # block names of the glued parts


def test_generate_sets_slots_from_entities_via_domain_mappings() -> None:
    domain = _domain()
    graph = StoryGraph(load_story_steps([DATA / "stories.yml"], domain))
    stories = TrainingDataGenerator(graph, domain, augmentation_factor=0).generate_story_trackers()
    informed = [t for t in stories if "inform" in _intents(t)]
    assert all(t.get_slot("name") == "Josh" for t in informed)


def test_generate_rule_trackers_are_flagged_and_mark_unset_values() -> None:
    domain = _domain()
    graph = StoryGraph(load_story_steps([DATA / "stories.yml"], domain))
    trackers = generate_training_trackers(graph, domain, augmentation_factor=20)
    rules = [t for t in trackers if t.is_rule_tracker]
    assert len(rules) == 2
    assert not any(t.is_augmented for t in rules)
    form_rule = next(t for t in rules if t.sender_id == "submit form")
    assert form_rule.events[1].action_name == RULE_SNIPPET_ACTION_NAME
    loops = [e for e in form_rule.events if isinstance(e, ActiveLoop)]
    assert [e.name for e in loops] == ["order_form", SHOULD_NOT_BE_SET]
    assert any(isinstance(e, SlotSet) and e.value == SHOULD_NOT_BE_SET for e in form_rule.events)


def test_generate_augmentation_is_marked_and_deterministic() -> None:
    domain = _domain()
    graph = StoryGraph(load_story_steps([DATA / "stories.yml"], domain))
    first = generate_training_trackers(graph, domain, augmentation_factor=10, seed=1)
    second = generate_training_trackers(graph, domain, augmentation_factor=10, seed=1)
    augmented = [t for t in first if t.is_augmented]
    assert augmented and len(augmented) <= 100
    assert [len(t.events) for t in first] == [len(t.events) for t in second]
    # augmented stories are several stories glued together: more than one greet
    assert max(_intents(t).count("greet") for t in augmented) >= 2
    # no double action_listen where stories were glued
    for t in augmented:
        names = [e.action_name for e in t.applied_events() if isinstance(e, ActionExecuted)]
        assert all(not (a == b == "action_listen") for a, b in zip(names, names[1:]))


def test_generate_checkpoint_after_or_gives_one_tracker_per_option(rasa_examples: Path) -> None:
    steps = load_story_steps([rasa_examples / YAML_STORIES / "stories_checkpoint_after_or.yml"])
    trackers = generate_training_trackers(StoryGraph(steps), Domain.empty(), augmentation_factor=0)
    assert sorted(_intents(t)[0] for t in trackers) == ["affirm", "thank_you"]


def test_generate_two_equal_or_statements(rasa_examples: Path) -> None:
    steps = load_story_steps([rasa_examples / YAML_STORIES / "story_with_two_equal_or_statements.yml"])
    trackers = generate_training_trackers(StoryGraph(steps), Domain.empty(), augmentation_factor=0)
    # 2x2 paths of the first story, the second adds the 2 `or` options of its only `or`
    assert len(trackers) == 6


def test_generate_follows_cycles_with_slot_conditions(rasa_examples: Path) -> None:
    domain = Domain.from_yaml(
        'version: "3.1"\nintents: [greet, default]\nentities: [name]\n'
        "slots:\n  name:\n    type: text\n    mappings:\n    - type: from_entity\n      entity: name\n"
        "responses:\n  utter_greet: [{text: hi}]\n  utter_goodbye: [{text: bye}]\n  utter_default: [{text: d}]\n"
    )
    steps = load_story_steps([rasa_examples / YAML_STORIES / "stories_with_cycle.yml"], domain)
    trackers = generate_training_trackers(StoryGraph(steps), domain, augmentation_factor=0)
    assert trackers
    assert all(t.get_slot("name") == "Josh" for t in trackers if t.events[-2].action_name == "action_restart")
    assert any(
        [e.action_name for e in t.events if isinstance(e, ActionExecuted)].count("utter_default") >= 1
        for t in trackers
    )


def test_generate_is_fast_for_a_few_hundred_steps(tmp_path: Path) -> None:
    intents = [f"i{k}" for k in range(30)]
    lines = ['version: "3.1"', "stories:"]
    for n in range(100):
        a, b, c = intents[n % 30], intents[(n * 7) % 30], intents[(n * 11) % 30]
        lines += [
            f"- story: s{n}", "  steps:", f"  - intent: {a}", f"  - action: utter_{a}",
            "  - or:", f"    - intent: {b}", f"    - intent: {c}", f"  - action: utter_{b}",
            f"  - checkpoint: c{n % 10}",
        ]
    for n in range(10):
        lines += [f"- story: end{n}", "  steps:", f"  - checkpoint: c{n}", "  - intent: i0", "  - action: utter_i0"]
    path = tmp_path / "big.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    graph = StoryGraph(load_story_steps([path]))
    assert len(graph.story_steps) >= 300
    start = time.perf_counter()
    trackers = generate_training_trackers(graph, Domain.empty(), augmentation_factor=50)
    elapsed = time.perf_counter() - start
    assert len(trackers) >= 200
    assert elapsed < 20, elapsed
