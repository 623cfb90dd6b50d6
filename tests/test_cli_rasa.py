"""Rasa 3.6's CLI as projects script it: train nlu|core, test [core|nlu], data split|convert|suggest,
visualize, interactive — each run on a tiny project in tmp_path."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.cli import _resolve_aliases, build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
language: en
assistant_id: cli-rasa-test
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 3
  - name: LogisticRegressionClassifier
  - name: RegexEntityExtractor
    use_lookup_tables: true
  - name: EntitySynonymMapper
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
"""
NLU = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello
    - hey there
    - good morning
    - hello friend
- intent: order
  examples: |
    - I want a [pizza](food)
    - order a [burger](food) please
    - can I get a [pizza](food)
    - one [salad](food) please
    - I'd like to order [pasta](food)
- synonym: pizza
  examples: |
    - pizzas
- lookup: food
  examples: |
    - pizza
    - burger
    - salad
    - pasta
"""
DOMAIN = """\
version: "3.1"
intents: [greet, order]
entities: [food]
responses:
  utter_greet:
  - text: Hi!
actions: [action_take_order]
"""
STORIES = """\
version: "3.1"
stories:
- story: just greet
  steps:
  - intent: greet
  - action: utter_greet
- story: greet then order
  steps:
  - intent: greet
  - action: utter_greet
  - intent: order
  - action: action_take_order
"""
TEST_STORIES_OK = """\
version: "3.1"
stories:
- story: greeting
  steps:
  - user: hello
    intent: greet
  - action: utter_greet
"""
TEST_STORY_WRONG = """\
- story: ordering gets a greeting
  steps:
  - intent: order
  - action: utter_greet
"""
ACTIONS = """\
from rasa_sdk import Action


class TakeOrder(Action):
    def name(self):
        return "action_take_order"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Order taken")
        return []
"""


def _cli(args: list[str], cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bot", *args, "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _nlu_project(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "config.yml").write_text(CONFIG)
    (root / "data" / "nlu.yml").write_text(NLU)
    return root


def _full_project(root: Path) -> Path:
    _nlu_project(root)
    (root / "domain.yml").write_text(DOMAIN)
    (root / "data" / "stories.yml").write_text(STORIES)
    (root / "tests").mkdir()
    (root / "tests" / "test_stories.yml").write_text(TEST_STORIES_OK)
    return root


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("argv,expected", [
    (["train", "nlu", "--nlu", "x.yml"], ["train", "--nlu-only", "--nlu", "x.yml"]),
    (["train", "core", "-s", "s.yml"], ["train", "--core-only", "-s", "s.yml"]),
    (["train", "--nlu", "nlu"], ["train", "--nlu", "nlu"]),  # a path named nlu stays a path
    (["test"], ["test", "all"]),
    (["test", "--stories", "t.yml"], ["test", "all", "--stories", "t.yml"]),
    (["test", "core"], ["test", "core"]),
    (["-v", "test", "nlu"], ["-v", "test", "nlu"]),
])
def test_resolve_aliases_rasa_spellings(argv: list[str], expected: list[str]) -> None:
    assert _resolve_aliases(argv) == expected


def test_train_and_test_parse_rasas_flags() -> None:
    parser = build_parser()
    a = parser.parse_args(_resolve_aliases([
        "train", "nlu", "--nlu", "data/nlu.yml", "more/", "--fixed-model-name", "m", "--out", "o", "-c", "c.yml",
        "--num-threads", "2"]))
    assert a.nlu_only and a.nlu == ["data/nlu.yml", "more/"] and a.fixed_model_name == "m" and a.num_threads == 2
    a = parser.parse_args(["train", "--data", "a", "b", "--domain", "domain/", "--stories", "s.yml"])
    assert a.data == ["a", "b"] and a.domain == "domain/" and a.stories == ["s.yml"]
    a = parser.parse_args(["test", "core", "--stories", "t.yml", "--endpoints", "e.yml", "--model", "m.tar.gz",
                           "--out", "r", "--fail-on-prediction-errors", "--max-stories", "3"])
    assert (a.stories, a.endpoints, a.model, a.out, a.fail_on_prediction_errors) == (
        ["t.yml"], "e.yml", "m.tar.gz", "r", True)
    a = parser.parse_args(["test", "nlu", "-u", "t.yml", "--cross-validation", "-f", "3", "--runs", "2",
                           "--config", "a.yml", "b.yml", "--no-plot"])
    assert (a.nlu, a.folds, a.runs, a.config, a.no_plot) == (["t.yml"], 3, 2, ["a.yml", "b.yml"], True)
    a = parser.parse_args(_resolve_aliases(["test", "--stories", "t.yml", "--nlu", "n.yml", "--endpoints", "e.yml"]))
    assert a.test_command == "all" and a.stories == ["t.yml"] and a.nlu == ["n.yml"]


def test_rasa_option_kefu_lacks_names_the_equivalent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["test", "nlu", "--percentages", "0", "50"])
    assert "data suggest" in capsys.readouterr().err


# --------------------------------------------------------------------------- train nlu / core


@pytest.mark.slow
def test_train_nlu_without_domain_parses_and_serves_the_shell(tmp_path: Path) -> None:
    project = _nlu_project(tmp_path / "p")
    result = _cli(["train", "nlu", "--fixed-model-name", "nlu-only", "--nlu", "data/nlu.yml"], project)
    assert result.returncode == 0, result.stderr
    archive = project / "models" / "nlu-only.tar.gz"
    assert archive.is_file()

    from bot.model.loader import LoadedModel

    model = LoadedModel.load(archive)
    try:
        assert model.ensemble is None and model.nlu is not None
        assert set(model.domain.intents) >= {"greet", "order"}
        parsed = model.nlu.parse("can I get a pizza")
        assert parsed["intent"]["name"] == "order"
        assert [e["value"] for e in parsed["entities"]] == ["pizza"]
    finally:
        model.close()
    shell = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "-m", str(archive), "--quiet"], cwd=project, input="hello friend\n",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert '"name": "greet"' in shell.stdout


@pytest.mark.slow
def test_train_core_then_full_train_with_stories_flag(tmp_path: Path) -> None:
    project = _full_project(tmp_path / "p")
    result = _cli(["train", "core", "--stories", "data/stories.yml", "--fixed-model-name", "core"], project)
    assert result.returncode == 0, result.stderr
    assert "NLU none, core trained" in result.stdout
    result = _cli(["train", "--nlu", "data/nlu.yml", "--stories", "data/stories.yml", "--out", "out",
                   "--fixed-model-name", "both"], project)
    assert result.returncode == 0, result.stderr
    assert "NLU trained, core trained" in result.stdout and (project / "out" / "both.tar.gz").is_file()
    missing = _cli(["train", "--nlu", "nope.yml"], project)
    assert missing.returncode == 1 and "nope.yml" in missing.stderr


# --------------------------------------------------------------------------- test core / nlu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_test_core_with_endpoints_against_a_real_action_server(tmp_path: Path) -> None:
    project = _full_project(tmp_path / "p")
    (project / "actions").mkdir()
    (project / "actions" / "__init__.py").write_text(ACTIONS)
    assert _cli(["train", "--fixed-model-name", "m"], project).returncode == 0
    port = _free_port()
    (project / "endpoints.yml").write_text(f"action_endpoint:\n  url: http://127.0.0.1:{port}/webhook\n")
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{project}"}
    server = subprocess.Popen([sys.executable, "-m", "bot", "run", "actions", "--port", str(port)], cwd=project,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/actions", timeout=2) as r:
                    assert "action_take_order" in r.read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "action server did not start"
                time.sleep(0.3)
        ok = _cli(["test", "core", "--stories", "tests/test_stories.yml", "--endpoints", "endpoints.yml",
                   "--fail-on-prediction-errors"], project)
        assert ok.returncode == 0, ok.stderr
        assert "1/1 correct" in ok.stdout and "does not serve" not in ok.stderr and "did not answer" not in ok.stderr
        report = json.loads((project / "results" / "story_report.json").read_text())
        assert report["conversation_accuracy"]["correct"] == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # the server is gone: the stories still replay, with a warning naming the fix
    gone = _cli(["test", "core", "--stories", "tests/test_stories.yml", "--endpoints", "endpoints.yml"], project)
    assert gone.returncode == 0 and "did not answer" in gone.stderr and "run actions" in gone.stderr


@pytest.mark.slow
def test_test_core_fail_on_prediction_errors_exit_code(tmp_path: Path) -> None:
    project = _full_project(tmp_path / "p")
    (project / "tests" / "test_stories.yml").write_text(TEST_STORIES_OK + TEST_STORY_WRONG)
    assert _cli(["train", "--fixed-model-name", "m"], project).returncode == 0
    lenient = _cli(["test", "core", "--stories", "tests/test_stories.yml"], project)
    assert lenient.returncode == 0 and "1/2 correct" in lenient.stdout
    strict = _cli(["test", "core", "--stories", "tests/test_stories.yml", "--fail-on-prediction-errors",
                   "--out", "strict"], project)
    assert strict.returncode == 1 and "ordering gets a greeting" in strict.stdout
    failed = (project / "strict" / "failed_test_stories.yml").read_text()
    assert "predicted: action_listen" in failed or "predicted:" in failed
    both = _cli(["test", "--out", "both", "--no-plot"], project)  # Rasa's `rasa test`: core, then nlu
    assert both.returncode == 0, both.stderr
    assert (project / "both" / "story_report.json").is_file() and (project / "both" / "intent_report.json").is_file()
    assert not (project / "both" / "intent_confusion_matrix.png").exists()


def test_test_nlu_compares_configs_on_the_same_folds(tmp_path: Path) -> None:
    project = _nlu_project(tmp_path / "p")
    (project / "words.yml").write_text(CONFIG.replace("""  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 3
""", ""))
    result = _cli(["test", "nlu", "--cross-validation", "-f", "2", "--runs", "2", "--no-plot",
                   "--config", "config.yml", "words.yml"], project)
    assert result.returncode == 0, result.stderr
    assert "difference" in result.stdout and "words.yml" in result.stdout
    comparison = json.loads((project / "results" / "nlu_comparison.json").read_text())
    assert set(comparison) == {"config.yml", "words.yml"}
    assert all(len(v["fold_intent_accuracies"]) == 4 for v in comparison.values())  # 2 folds x 2 runs
    assert (project / "results" / "words" / "intent_report.json").is_file()


# --------------------------------------------------------------------------- data split / convert


def test_data_split_nlu_is_stratified_and_keeps_synonyms_in_training(tmp_path: Path) -> None:
    from bot.shared.training_data.nlu import load_nlu_data

    project = _nlu_project(tmp_path / "p")
    result = _cli(["data", "split", "nlu", "--training-fraction", "0.6", "--random-seed", "3"], project)
    assert result.returncode == 0, result.stderr
    train = load_nlu_data([project / "train_test_split" / "training_data.yml"])
    test = load_nlu_data([project / "train_test_split" / "test_data.yml"])
    assert train.number_of_examples_per_intent == {"greet": 3, "order": 3}
    assert test.number_of_examples_per_intent == {"greet": 2, "order": 2}
    assert {m.text for m in train.training_examples}.isdisjoint({m.text for m in test.training_examples})
    assert train.entity_synonyms == {"pizzas": "pizza"} and train.lookup_tables
    assert not test.entity_synonyms and not test.lookup_tables
    again = _cli(["data", "split", "nlu", "--training-fraction", "0.6", "--random-seed", "3", "--out", "again"],
                 project)
    assert again.returncode == 0
    assert (project / "again" / "test_data.yml").read_text() == (
        project / "train_test_split" / "test_data.yml").read_text()


def test_split_keeps_a_single_example_intent_in_training() -> None:
    from bot.data_tools.split import train_test_split
    from bot.shared.training_data.nlu import Message, TrainingData

    data = TrainingData([Message("only", {"intent": "rare"})] + [Message(f"x{i}", {"intent": "common"})
                                                                 for i in range(10)])
    result = train_test_split(data, 0.7, seed=0)
    assert result.train.number_of_examples_per_intent == {"rare": 1, "common": 7}
    assert result.test.number_of_examples_per_intent == {"common": 3}


MARKDOWN_NLU = """\
<!-- Rasa 1.x/2.x Markdown -->
## intent:greet
- hey
- hello there

## intent:order
- I want a [pizza](food)
- get me [NYC](city:New York) style [pizza](food)

## synonym:New York
- big apple

## regex:zipcode
- [0-9]{5}

## lookup:food
- pizza
- pasta
"""
JSON_NLU = {"rasa_nlu_data": {
    "common_examples": [
        {"text": "hi", "intent": "greet", "entities": []},
        {"text": "book a table in Berlin", "intent": "book",
         "entities": [{"start": 16, "end": 22, "value": "Berlin", "entity": "city"}]},
        {"text": "what is your name", "intent": "faq/ask_name"},
    ],
    "entity_synonyms": [{"value": "Berlin", "synonyms": ["berlin city"]}],
    "regex_features": [{"name": "zipcode", "pattern": "[0-9]{5}"}],
    "lookup_tables": [{"name": "city", "elements": ["Berlin", "Paris"]}],
}}


def test_data_convert_markdown_and_json_nlu_to_yaml_kefu_reads(tmp_path: Path) -> None:
    from bot.shared.training_data.nlu import load_nlu_data

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "nlu.md").write_text(MARKDOWN_NLU)
    (tmp_path / "old" / "intents.json").write_text(json.dumps(JSON_NLU))
    result = _cli(["data", "convert", "nlu", "-f", "yaml", "--data", "old", "--out", "new"], tmp_path)
    assert result.returncode == 0, result.stderr
    md = load_nlu_data([tmp_path / "new" / "nlu_converted.yml"])
    assert md.number_of_examples_per_intent == {"greet": 2, "order": 2}
    order = [m for m in md.training_examples if m.text.startswith("get me")][0]
    assert [(e["entity"], e["value"]) for e in order.entities] == [("city", "New York"), ("food", "pizza")]
    assert md.entity_synonyms["big apple"] == "New York" and md.entity_synonyms["nyc"] == "New York"
    assert md.regex_features == [{"name": "zipcode", "pattern": "[0-9]{5}"}]
    assert md.lookup_tables[0]["elements"] == ["pizza", "pasta"]

    js = load_nlu_data([tmp_path / "new" / "intents_converted.yml"])
    assert js.number_of_examples_per_intent == {"greet": 1, "book": 1, "faq": 1}
    book = [m for m in js.training_examples if m.intent == "book"][0]
    assert book.entities[0]["entity"] == "city" and book.text[16:22] == "Berlin"
    assert [m.intent_response_key for m in js.training_examples if m.intent == "faq"] == ["faq/ask_name"]
    assert js.entity_synonyms == {"berlin city": "Berlin"}
    back = _cli(["data", "convert", "nlu", "-f", "json", "--data", "new/nlu_converted.yml", "--out", "x.json"],
                tmp_path)
    assert back.returncode == 0 and len(json.loads((tmp_path / "x.json").read_text())
                                        ["rasa_nlu_data"]["common_examples"]) == 4
    core = _cli(["data", "convert", "core", "--data", "old"], tmp_path)
    assert core.returncode == 2 and "Rasa 2.8" in core.stderr


def test_convert_markdown_error_names_file_and_line(tmp_path: Path) -> None:
    from bot.data_tools.convert import read_markdown_nlu
    from bot.shared.exceptions import TrainingDataError

    with pytest.raises(TrainingDataError, match="nlu.md.*3|3.*nlu.md"):
        read_markdown_nlu("## intent:greet\n- hi\nnot an item\n", "nlu.md")


# --------------------------------------------------------------------------- visualize / interactive


def test_visualize_writes_a_self_contained_graph_naming_every_step(tmp_path: Path) -> None:
    project = _full_project(tmp_path / "p")
    result = _cli(["visualize", "--out", "viz/graph.html"], project)
    assert result.returncode == 0, result.stderr
    page = (project / "viz" / "graph.html").read_text()
    for name in ("greet", "utter_greet", "order", "action_take_order", "just greet", "greet then order"):
        assert name in page
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in page


def test_visualize_merges_shared_openings() -> None:
    from bot.visualize import build_graph

    paths = [("a", [("intent", "greet"), ("action", "utter_greet")]),
             ("b", [("intent", "greet"), ("action", "utter_greet"), ("intent", "bye"), ("action", "utter_bye")])]
    view = build_graph(paths, max_history=2)
    labels = sorted(label for kind, label in view.nodes.values() if kind != "terminal")
    assert labels == ["bye", "greet", "utter_bye", "utter_greet"]
    assert len(build_graph(paths, max_history=5).nodes) == 6


def test_interactive_without_a_model_says_so(tmp_path: Path) -> None:
    # Interactive learning itself: tests/workbench/test_interactive.py drives it through stdin.
    result = _cli(["interactive"], tmp_path)
    assert result.returncode != 0 and "model" in (result.stdout + result.stderr).lower()


# --------------------------------------------------------------------------- data suggest


@pytest.mark.slow
def test_data_suggest_prints_both_pipelines_and_writes_json(tmp_path: Path) -> None:
    project = _nlu_project(tmp_path / "p")
    result = _cli(["data", "suggest", "--folds", "2", "--out", "suggest.json"], project, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "yours (config.yml)" in result.stdout and "kefu" in result.stdout
    assert "Recommendation:" in result.stdout
    payload = json.loads((project / "suggest.json").read_text())
    assert len(payload["pipelines"]) == 2 and payload["folds"] == 2
    for figures in payload["pipelines"].values():
        assert len(figures["train_seconds"]) == 2 and 0.0 <= figures["intent_accuracy"] <= 1.0


def test_suggest_recommends_by_language_and_keeps_entity_components() -> None:
    from bot.nlu.suggest import recommended_pipeline
    from bot.shared.config import config_from_yaml
    from bot.shared.training_data.nlu import load_nlu_yaml

    english = load_nlu_yaml(NLU)
    label, rec = recommended_pipeline(config_from_yaml(CONFIG), english)
    names = [c["name"] for c in rec["pipeline"]]
    assert names[0] == "WhitespaceTokenizer" and "LogisticRegressionClassifier" in names
    assert names[-2:] == ["RegexEntityExtractor", "EntitySynonymMapper"] and "kefu" in label
    chinese = load_nlu_yaml('nlu:\n- intent: greet\n  examples: |\n    - 你好\n')
    _, rec = recommended_pipeline(config_from_yaml(CONFIG.replace("language: en", "language: zh")), chinese)
    assert rec["pipeline"][0]["name"] == "JiebaTokenizer"
    assert not any(c.get("model") == "all-MiniLM-L6-v2" for c in rec["pipeline"])


@pytest.mark.parametrize("own,other,expected", [
    ({"intent_accuracy": 0.70, "train_seconds_per_fold": 10.0}, {"intent_accuracy": 0.85, "train_seconds_per_fold": 1.0},
     "switch"),
    ({"intent_accuracy": 0.90, "train_seconds_per_fold": 1.0}, {"intent_accuracy": 0.80, "train_seconds_per_fold": 1.0},
     "keep your pipeline"),
    ({"intent_accuracy": 0.80, "entity_f1": 0.9}, {"intent_accuracy": 0.90, "entity_f1": 0.5}, "keep your entity"),
    ({"intent_accuracy": 0.80, "train_seconds_per_fold": 30.0}, {"intent_accuracy": 0.80, "train_seconds_per_fold": 3.0},
     "trains 10.0x faster"),
])
def test_suggest_recommendation_follows_the_figures(own: dict, other: dict, expected: str) -> None:
    from bot.nlu.suggest import recommendation

    assert expected in recommendation(own, other, "kefu fast")
