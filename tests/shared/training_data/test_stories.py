from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.shared.constants import RULE_SNIPPET_ACTION_NAME
from bot.shared.domain import Domain
from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from bot.shared.exceptions import TrainingDataError
from bot.shared.training_data.stories import (
    GENERATED_CHECKPOINT_PREFIX,
    STORY_START,
    RuleStep,
    load_story_steps,
    load_test_stories,
    parse_entity_annotations,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "stories"


def _write(tmp_path: Path, text: str, name: str = "stories.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _example_files(root: Path) -> list[Path]:
    files = sorted(root.glob("examples/*/data/*.yml"))
    files += sorted((root / "initial_project_rasa_3.6.21").glob("*/*.yml"))
    files += sorted((root / "rasa_repo_data/data/test_yaml_stories").glob("*.y*ml"))
    return files


def test_load_story_steps_reads_all_rasa_example_data(rasa_examples: Path) -> None:
    files = _example_files(rasa_examples)
    assert len(files) > 50
    total = 0
    for f in files:
        total += len(load_story_steps([f]))
    assert total > 150


@pytest.mark.parametrize(
    "project",
    ["formbot", "moodbot", "concertbot", "rules", "reminderbot", "knowledgebasebot", "responseselectorbot"],
)
def test_load_story_steps_accepts_example_projects_with_their_domain(rasa_examples: Path, project: str) -> None:
    root = rasa_examples / "examples" / project
    steps = load_story_steps([root / "data"], Domain.load(root / "domain.yml"))
    assert steps


def test_load_story_steps_broken_yaml_names_file_and_line(rasa_examples: Path) -> None:
    path = rasa_examples / "rasa_repo_data/data/test_wrong_yaml_stories/wrong_yaml.yml"
    with pytest.raises(TrainingDataError) as info:
        load_story_steps([path])
    assert info.value.filename == str(path)
    assert info.value.line is not None


def test_load_story_steps_strips_leading_slash_of_intent(rasa_examples: Path, caplog) -> None:
    path = rasa_examples / "rasa_repo_data/data/test_wrong_yaml_stories/intent_with_leading_slash.yml"
    with caplog.at_level(logging.WARNING):
        steps = load_story_steps([path])
    user = [e for e in steps[0].events if isinstance(e, UserUttered)][0]
    assert user.intent_name == "simple"
    assert "starts with '/'" in caplog.text


def test_load_story_steps_ignores_files_without_stories_or_rules() -> None:
    assert load_story_steps([DATA / "notes.yml"]) == []


def test_load_story_steps_unknown_step_key_names_line_and_fix() -> None:
    with pytest.raises(TrainingDataError) as info:
        load_story_steps([DATA / "broken_unknown_key.yml"])
    assert info.value.line == 6
    assert "acton" in info.value.message
    assert "action" in (info.value.fix or "")


def test_load_story_steps_story_without_steps_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, 'version: "3.1"\nstories:\n- story: empty\n  steps: []\n')
    with pytest.raises(TrainingDataError) as info:
        load_story_steps([path])
    assert info.value.line == 3
    assert "no steps" in info.value.message


def test_load_story_steps_unknown_intent_warns_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rasa trains a story with an intent missing from the domain (it warns): so does kefu."""
    domain = Domain.load(DATA / "domain.yml")
    path = _write(tmp_path, 'version: "3.1"\nstories:\n- story: s\n  steps:\n  - intent: grete\n  - action: utter_greet\n')
    with caplog.at_level("WARNING"):
        steps = load_story_steps([path], domain)
    assert steps
    assert any(":5: Intent 'grete'" in r.getMessage() for r in caplog.records)


def test_load_story_steps_unknown_action_slot_against_domain(tmp_path: Path) -> None:
    domain = Domain.load(DATA / "domain.yml")
    cases = {
        "- intent: greet\n  - action: utter_hello": ("utter_hello", 6),
        "- intent: greet\n  - slot_was_set:\n    - nmae: x": ("nmae", 6),
    }
    for steps, (name, line) in cases.items():
        path = _write(tmp_path, f'version: "3.1"\nstories:\n- story: s\n  steps:\n  {steps}\n')
        with pytest.raises(TrainingDataError) as info:
            load_story_steps([path], domain)
        assert name in info.value.message
        assert info.value.line == line
        # Rasa's lenient behaviour is available too
        assert load_story_steps([path], domain, strict=False)


def test_load_story_steps_or_splits_block_at_generated_checkpoint() -> None:
    steps = [s for s in load_story_steps([DATA / "stories.yml"]) if not isinstance(s, RuleStep)]
    first = [s for s in steps if s.block_name == "greet then ask"]
    # two blocks for the two `or` options, one continuation after the generated checkpoint
    assert len(first) == 3
    or_blocks = [s for s in first if s.start_checkpoints[0].name == STORY_START]
    assert len(or_blocks) == 2
    generated = {cp.name for s in or_blocks for cp in s.end_checkpoints}
    assert len(generated) == 1 and next(iter(generated)).startswith(GENERATED_CHECKPOINT_PREFIX)
    intents = sorted(s.events[-1].intent_name for s in or_blocks)
    assert intents == ["affirm", "thank_you"]
    continuation = [s for s in first if s not in or_blocks][0]
    assert continuation.end_checkpoints[0].name == "asked_name"


def test_load_story_steps_rules_have_snippet_markers_and_conditions() -> None:
    rules = [s for s in load_story_steps([DATA / "stories.yml"]) if isinstance(s, RuleStep)]
    goodbye = next(r for r in rules if r.block_name == "say goodbye")
    assert isinstance(goodbye.events[0], ActionExecuted)
    assert goodbye.events[0].action_name == RULE_SNIPPET_ACTION_NAME
    assert goodbye.events[-1].action_name == "utter_goodbye"

    form = next(r for r in rules if r.block_name == "submit form")
    conditions = form.get_rules_condition()
    assert len(conditions) == 1 and isinstance(conditions[0], ActiveLoop)
    assert conditions[0].name == "order_form"
    body = form.get_rules_events()
    assert body[0].action_name == RULE_SNIPPET_ACTION_NAME
    assert isinstance(body[2], ActiveLoop) and body[2].name is None
    assert isinstance(body[3], SlotSet) and body[3].value is None


def test_load_story_steps_wait_for_user_input_false_and_conversation_start(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'version: "3.1"\nrules:\n- rule: r1\n  conversation_start: true\n  steps:\n'
        "  - intent: greet\n  - action: utter_greet\n  wait_for_user_input: false\n",
    )
    (rule,) = load_story_steps([path])
    assert isinstance(rule.events[0], UserUttered)  # no leading snippet at conversation start
    assert rule.events[-1].action_name == RULE_SNIPPET_ACTION_NAME


def test_load_story_steps_or_in_rule_is_accepted_like_rasa(rasa_examples: Path) -> None:
    path = rasa_examples / "rasa_repo_data/data/test_yaml_stories/rules_without_stories.yml"
    steps = load_story_steps([path])
    assert sum(1 for s in steps if s.block_name == "start optional preferences") == 3


def test_load_story_steps_entities_and_slot_defaults(tmp_path: Path) -> None:
    domain = Domain.load(DATA / "domain.yml")
    path = _write(
        tmp_path,
        'version: "3.1"\nstories:\n- story: s\n  steps:\n  - intent: inform\n    entities:\n'
        "    - name: Josh\n    - name\n  - slot_was_set:\n    - name\n  - action: utter_done\n",
    )
    (step,) = load_story_steps([path], domain)
    user = step.events[0]
    assert user.entities == [{"entity": "name", "value": "Josh"}, {"entity": "name", "value": ""}]
    slot = step.events[1]
    assert isinstance(slot, SlotSet) and slot.key == "name" and slot.value == "filled"


def test_load_test_stories_keeps_user_text_and_inline_entities() -> None:
    steps = load_test_stories(DATA / "test_stories.yml")
    user = [e for s in steps for e in s.events if isinstance(e, UserUttered)]
    assert user[0].text == "hello there" and user[0].intent_name == "greet"
    josh = next(u for u in user if u.intent_name == "inform")
    assert josh.text == "I am Josh"
    assert josh.entities == [{"start": 5, "end": 9, "value": "Josh", "entity": "name"}]


def test_load_test_stories_folder_prefers_test_prefixed_files() -> None:
    steps = load_test_stories(DATA)
    assert {s.source_name for s in steps} == {str(DATA / "test_stories.yml")}


def test_parse_entity_annotations_supports_rasa_forms() -> None:
    text, entities = parse_entity_annotations(
        'fly from [Berlin]{"entity": "city", "role": "from"} to [NYC](city:New York) [x][{"entity": "a"}, {"entity": "b"}]'
    )
    assert text == "fly from Berlin to NYC x"
    assert entities[0] == {"start": 9, "end": 15, "value": "Berlin", "entity": "city", "role": "from"}
    assert entities[1] == {"start": 19, "end": 22, "value": "New York", "entity": "city"}
    assert [e["entity"] for e in entities[2:]] == ["a", "b"]


def test_load_story_steps_other_version_warns(tmp_path: Path, caplog) -> None:
    path = _write(tmp_path, 'version: "2.0"\nstories:\n- story: s\n  steps:\n  - intent: greet\n')
    with caplog.at_level(logging.WARNING):
        assert len(load_story_steps([path])) == 1
    assert '"2.0"' in caplog.text


def test_dump_story_steps_round_trips_checkpoints_and_rules(tmp_path: Path) -> None:
    from bot.shared.training_data.story_writer import dump_story_steps

    original = load_story_steps([DATA / "stories.yml"])
    path = _write(tmp_path, dump_story_steps(original), "dumped.yml")
    again = load_story_steps([path])
    assert len(again) == len(original)
    assert sorted(s.block_name for s in again) == sorted(s.block_name for s in original)
    form = next(s for s in again if s.block_name == "submit form")
    assert isinstance(form, RuleStep) and len(form.get_rules_condition()) == 1
