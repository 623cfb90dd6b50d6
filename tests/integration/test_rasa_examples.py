"""Rasa's starter bot and example bots train on kefu and pass their test stories.

Each project is copied from ../shared/benchmarks/rasa_examples (read-only) into tmp,
gets a rasa_sdk action package from tests/data/rasa_example_actions/ where its domain
uses custom actions, is trained with ``bot.model.training.train`` and evaluated with
``bot.testing.runner.evaluate_core`` on its own tests/ stories, or on its training stories
when it ships none (``test core`` skips rules, as Rasa does, so the rules example gets
hand-written test stories in tests/data/projects/rules_example_tests/).

Config changes are made only on the copy, each documented in its edit function.
tests/data/projects/pizzabot covers what the examples don't (checkpoints, ``or``,
FormValidationAction with an interruption, conditional responses, every slot type,
two-stage fallback, rule conditions, ``wait_for_user_input: false``,
``conversation_start``) and is also driven turn by turn through ``bot.agent.Agent``.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.shared.exceptions import UnknownComponentError
from bot.shared.yaml_io import read_yaml_file, to_plain
from tests.conftest import RASA_EXAMPLES, require_shared
from tests.integration.conftest import OWN_PROJECTS, ProjectCase, TrainedProject

# -- config edits (copies only) --------------------------------------------------------


def _drop_components(config: dict[str, Any], names: set[str]) -> None:
    config["pipeline"] = [c for c in config.get("pipeline") or [] if c.get("name") not in names]


def _drop_option(config: dict[str, Any], section: str, component: str, option: str) -> None:
    for item in config.get(section) or []:
        if item.get("name") == component:
            item.pop(option, None)


def moodbot_config(config: dict[str, Any]) -> None:
    """SpacyNLP needs the en_core_web_md model, which is not installed (offline): use
    WhitespaceTokenizer + CountVectorsFeaturizer in place of the three spaCy components."""
    pipeline = [c for c in config["pipeline"] if not str(c.get("name")).startswith("Spacy")]
    config["pipeline"] = [{"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"}, *pipeline]


def duckling_config(config: dict[str, Any]) -> None:
    """DucklingEntityExtractor needs a Duckling server (offline; kefu has no such component)."""
    _drop_components(config, {"DucklingEntityExtractor"})


def concertbot_config(config: dict[str, Any]) -> None:
    """Unchanged: Rasa's options that kefu does not use (``max_training_samples``) are accepted."""


@pytest.fixture(autouse=True)
def _needs_rasa_examples() -> None:
    require_shared(RASA_EXAMPLES)


INITIAL = ProjectCase("initial_project", RASA_EXAMPLES / "initial_project_rasa_3.6.21",
                      ("tests/test_stories.yml",), actions="initial_project")
MOODBOT = ProjectCase("moodbot", RASA_EXAMPLES / "examples" / "moodbot",
                      ("data/stories.yml",), config_edit=moodbot_config)
FORMBOT = ProjectCase("formbot", RASA_EXAMPLES / "examples" / "formbot",
                      ("tests/test_stories.yml",), actions="formbot", config_edit=duckling_config)
RULES = ProjectCase("rules", RASA_EXAMPLES / "examples" / "rules",
                    (str(OWN_PROJECTS / "rules_example_tests" / "test_rules.yml"),),
                    actions="rules", config_edit=duckling_config)
CONCERTBOT = ProjectCase("concertbot", RASA_EXAMPLES / "examples" / "concertbot",
                         ("data/stories.yml",), actions="concertbot", config_edit=concertbot_config)
PIZZABOT = ProjectCase("pizzabot", OWN_PROJECTS / "pizzabot", ("tests/test_stories.yml",))

# expected number of test stories, so an empty or half-parsed file cannot pass
CASES = [
    pytest.param(INITIAL, 7, id="initial_project"),
    pytest.param(MOODBOT, 3, id="moodbot"),
    # DIET 100 + TED 100 epochs, as the project configures: ~2 min on 2 cores
    pytest.param(FORMBOT, 3, id="formbot", marks=pytest.mark.slow),
    pytest.param(RULES, 8, id="rules", marks=pytest.mark.slow),
    pytest.param(CONCERTBOT, 6, id="concertbot"),
    pytest.param(PIZZABOT, 12, id="pizzabot"),
]


def _evaluate(project: TrainedProject, case: ProjectCase, out: Path) -> Any:
    from bot.testing.runner import evaluate_core

    stories = [Path(s) if Path(s).is_absolute() else project.root / s for s in case.test_stories]
    return asyncio.run(evaluate_core(project.model_path, stories, out))


@pytest.mark.parametrize(("case", "expected_total"), CASES)
def test_example_bot_passes_its_test_stories(case: ProjectCase, expected_total: int, trained_projects,
                                             tmp_path: Path) -> None:
    project = trained_projects(case)
    result = _evaluate(project, case, tmp_path)

    conv = result.conversation_accuracy
    report = (tmp_path / "failed_test_stories.yml")
    details = report.read_text(encoding="utf-8") if report.exists() else ""
    print(f"{case.name}: trained in {project.train_seconds:.1f} s; "
          f"stories {conv['correct']}/{conv['total']}")
    assert conv["total"] == expected_total
    assert result.failed_stories == [], details
    assert conv["correct"] == expected_total
    story_report = json.loads((tmp_path / "story_report.json").read_text(encoding="utf-8"))
    assert story_report["conversation_accuracy"]["accuracy"] == pytest.approx(1.0)


def test_cli_train_and_test_core_on_starter_project(tmp_path: Path) -> None:
    """The documented commands work on ``rasa init``'s starter project as copied."""
    import subprocess
    import sys

    from tests.integration.conftest import copy_project

    root = copy_project(INITIAL, tmp_path / "starter")
    repo = Path(__file__).resolve().parents[2]
    train = subprocess.run([sys.executable, "-m", "bot", "train", "--root", str(root), "--out",
                            str(root / "models")], cwd=repo, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert list((root / "models").glob("*.tar.gz"))
    test = subprocess.run([sys.executable, "-m", "bot", "test", "core", "--root", str(root), "--stories",
                           str(root / "tests" / "test_stories.yml"), "--out", str(root / "results")],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "Stories: 7/7 correct" in test.stdout
    assert (root / "results" / "story_report.json").is_file()


@pytest.mark.parametrize(
    ("case", "section", "component", "option"),
    [
        pytest.param(FORMBOT, "pipeline", "CountVectorsFeaturizer", "token_pattern", id="formbot-token_pattern"),
        pytest.param(RULES, "pipeline", "CountVectorsFeaturizer", "token_pattern", id="rules-token_pattern"),
        pytest.param(CONCERTBOT, "policies", "TEDPolicy", "max_training_samples",
                     id="concertbot-max_training_samples"),
    ],
)
def test_example_config_options_accepted_unchanged(case: ProjectCase, section: str, component: str,
                                                   option: str) -> None:
    """Rasa's example configs load as written (Duckling aside, which needs a server)."""
    from bot.dialogue.policies.ensemble import PolicyEnsemble
    from bot.nlu import NLUPipeline
    from bot.shared.config import load_config

    raw = to_plain(read_yaml_file(case.source / "config.yml"))
    assert any(item.get("name") == component and option in item for item in raw[section])
    config = load_config(case.source / "config.yml")
    config.pipeline[:] = [c for c in config.pipeline if c.get("name") != "DucklingEntityExtractor"]
    NLUPipeline.from_config(config, case.source)
    PolicyEnsemble.from_config(config.policies, config.filename)


# -- conversation-level checks through the Agent ----------------------------------------


async def _talk(project: TrainedProject, turns: list[str], sender: str = "tester") -> tuple[list[list[str]], Any]:
    from bot.agent import Agent

    agent = await Agent.create(project.model_path, None, project_root=project.root)
    try:
        replies = []
        for text in turns:
            messages = await agent.handle_text(text, sender) or []
            replies.append([m.get("text") for m in messages])
        tracker = await agent.tracker_store.retrieve(sender)
        return replies, tracker
    finally:
        await agent.close()


def test_pizzabot_agent_runs_form_validation_interruption_and_conditional_response(trained_projects) -> None:
    project = trained_projects(PIZZABOT)
    replies, tracker = asyncio.run(_talk(project, [
        "/greet",
        "/order_pizza",
        "/bot_challenge",
        '/inform{"size": "large"}',
        '/inform{"quantity": 20}',
        '/inform{"quantity": 3}',
        '/inform{"topping": "Ham"}',
        "/set_vip",
        "/ask_discount",
    ]))
    assert replies[0] == ["Hello! How can I help?"]
    assert replies[1] == ["Which size?"]
    # interruption handled by a rule, then the form asks again
    assert replies[2] == ["I am a bot.", "Which size?"]
    assert replies[3] == ["How many pizzas?"]
    # validate_pizza_form (rasa_sdk FormValidationAction, in process) rejects 20
    assert replies[4] == ["We bake between 1 and 10 pizzas per order.", "How many pizzas?"]
    assert replies[5] == ["Which toppings?"]
    assert replies[6] == ["3.0 large pizza(s) with ['ham']."]
    # conditional response variation: vip == true
    assert replies[7] == ["Welcome back, VIP customer!"]
    assert replies[8] == ["VIPs get 20% off."]
    assert tracker.get_slot("toppings") == ["ham"]
    assert tracker.get_slot("quantity") == 3.0
    assert tracker.get_slot("order_meta") == {"size": "large", "quantity": 3.0, "toppings": ["ham"]}
    assert tracker.get_slot("requested_slot") is None
    assert tracker.active_loop_name is None


def test_concertbot_agent_runs_custom_actions_in_process(trained_projects) -> None:
    project = trained_projects(CONCERTBOT)
    replies, tracker = asyncio.run(_talk(project, ["/search_concerts", "/compare_reviews"]))
    assert replies[0] == ["Foo Fighters, Katy Perry"]
    assert replies[1] == ["concerts from slots: [{'artist': 'Foo Fighters', 'reviews': 4.5}, "
                          "{'artist': 'Katy Perry', 'reviews': 5.0}]"]
    assert tracker.get_slot("concerts")[0]["artist"] == "Foo Fighters"


def test_pizzabot_agent_greets_only_at_conversation_start(trained_projects) -> None:
    project = trained_projects(PIZZABOT)
    replies, _ = asyncio.run(_talk(project, ["/ask_hours", "/greet"], sender="late-greeter"))
    assert replies[0] == ["We are open 11:00-23:00.", "Anything else?"]
    # the `conversation_start: true` rule does not apply mid-conversation
    assert "Hello! How can I help?" not in replies[1]


def test_pizzabot_agent_two_stage_fallback_asks_to_rephrase_then_recovers(trained_projects) -> None:
    from bot.agent import Agent

    project = trained_projects(PIZZABOT)

    async def run() -> tuple[list[list[dict]], Any]:
        agent = await Agent.create(project.model_path, None, project_root=project.root)
        try:
            replies = [await agent.handle_text(t, "lost") or [] for t in ["/nlu_fallback", "/out_of_scope",
                                                                          "/ask_hours"]]
            return replies, await agent.tracker_store.retrieve("lost")
        finally:
            await agent.close()

    replies, tracker = asyncio.run(run())
    # first stage: affirmation question with Yes / No buttons, No = /out_of_scope
    assert [b["payload"] for b in replies[0][0]["buttons"]][-1] == "/out_of_scope"
    # second stage: utter_ask_rephrase from the domain
    assert [m.get("text") for m in replies[1]] == ["Sorry, could you rephrase that?"]
    # a clear message ends the fallback loop and is answered normally
    assert [m.get("text") for m in replies[2]] == ["We are open 11:00-23:00.", "Anything else?"]
    assert tracker.active_loop_name is None
