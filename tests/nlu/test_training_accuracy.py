"""Issue #16 point 3: with a project's own config, DIET (and the ResponseSelector) read the
project's training examples back correctly (≥ 99 %), on Rasa's example bots and on the
projects under tests/data. Slow: each trains the project's own pipeline (DIET 50–100 epochs).

Not here: moodbot (its config trains DIET for 1 epoch on spaCy vectors, a smoke-test config),
pizzabot and turnbot (Core-only, no NLU data). A text written under two intents (responseselectorbot
has "good afternoon" as greet and as goodbye) cannot be right both times and is not counted."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from bot.shared.yaml_io import read_yaml_file, to_plain
from tests.conftest import RASA_EXAMPLES, require_shared

OWN_PROJECTS = Path(__file__).resolve().parent.parent / "data" / "projects"
TESTS_NLU = Path(__file__).resolve().parent.parent / "data" / "nlu"
EXAMPLES = RASA_EXAMPLES / "examples"


def _without(*names: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    def edit(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in pipeline if c.get("name") not in names]
    return edit


# (project folder, whether it lives in ../shared, pipeline edit): Duckling needs a server
PROJECTS = [
    pytest.param(EXAMPLES / "concertbot", True, None, id="concertbot"),
    pytest.param(EXAMPLES / "formbot", True, _without("DucklingEntityExtractor"), id="formbot"),
    pytest.param(EXAMPLES / "rules", True, _without("DucklingEntityExtractor"), id="rules"),
    pytest.param(EXAMPLES / "knowledgebasebot", True, None, id="knowledgebasebot"),
    pytest.param(EXAMPLES / "responseselectorbot", True, None, id="responseselectorbot"),
    pytest.param(EXAMPLES / "reminderbot", True, _without("SpacyNLP", "SpacyEntityExtractor",
                                                          "DucklingEntityExtractor"), id="reminderbot"),
    pytest.param(RASA_EXAMPLES / "initial_project_rasa_3.6.21", True, None, id="initial_project"),
    pytest.param(OWN_PROJECTS / "shopbot", False, None, id="shopbot"),
    pytest.param(TESTS_NLU / "tinyshop", False, None, id="tinyshop"),
    # tests/data/nlu/nlu.yml (bilingual) with Rasa's default pipeline for zh (JiebaTokenizer)
    pytest.param(TESTS_NLU, False, "default-zh", id="nlu-default-zh"),
]


def training_accuracy(root: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | str | None
                      ) -> dict[str, Any]:
    """Train the project's own NLU pipeline; parse every training example back."""
    from bot.nlu import NLUPipeline
    from bot.shared.importer import ProjectImporter
    from bot.shared.training_data.nlu import load_nlu_data

    config: Any
    if edit == "default-zh":
        config = {"language": "zh", "pipeline": None}
        data = load_nlu_data(root / "nlu.yml")
    else:
        importer = ProjectImporter.from_paths(root)
        config = importer.get_config()
        raw = to_plain(read_yaml_file(root / "config.yml"))
        pipeline = raw.get("pipeline")
        if pipeline and callable(edit):
            config = {"language": raw.get("language") or "en", "pipeline": edit(pipeline)}
        data = importer.get_nlu_data()
    intents_of: dict[str, set[str]] = {}
    for example in data.training_examples:
        intents_of.setdefault(example.text, set()).add(str(example.intent))
    nlu = NLUPipeline.from_config(config)  # no root: nothing is written into the project
    # Rasa's example configs leave DIET unseeded; one fixed seed makes CI repeatable. Unseeded,
    # responseselectorbot's "don't like that" (deny) was read as mood_unhappy in 1 of 4 full-suite runs.
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    nlu.train(data)
    intents = right = keys = right_keys = 0
    wrong: list[tuple[str, str, str]] = []
    for example in data.training_examples:
        if not example.intent or len(intents_of[example.text]) > 1:
            continue
        parsed = nlu.parse(example.text)
        ranking = parsed.get("intent_ranking") or [parsed["intent"]]
        # the intent the classifier chose (a FallbackClassifier may stand in front of it)
        chosen = next((r["name"] for r in ranking if r["name"] != "nlu_fallback"), parsed["intent"]["name"])
        intents += 1
        if chosen == example.intent:
            right += 1
        else:
            wrong.append((example.text, example.intent, str(chosen)))
        key = example.intent_response_key
        if key and key != example.intent:
            keys += 1
            selected = (parsed.get("response_selector") or {})
            got = [v["response"]["intent_response_key"] for k, v in selected.items() if k != "all_retrieval_intents"]
            right_keys += key in got
    return {"examples": intents, "accuracy": right / max(intents, 1), "wrong": wrong,
            "retrieval_examples": keys, "retrieval_accuracy": right_keys / keys if keys else None}


@pytest.mark.slow
@pytest.mark.parametrize(("root", "shared", "edit"), PROJECTS)
def test_own_pipeline_reads_its_training_examples(root: Path, shared: bool, edit: Any) -> None:
    if shared:
        require_shared(RASA_EXAMPLES)
    result = training_accuracy(root, edit)
    assert result["examples"] > 0
    assert result["accuracy"] >= 0.99, result["wrong"]
    if result["retrieval_examples"]:
        assert result["retrieval_accuracy"] >= 0.99
