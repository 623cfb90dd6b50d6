"""Training data problems give warnings that name the file and line."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bot.nlu.pipeline import NLUPipeline
from bot.shared.exceptions import TrainingDataError
from bot.shared.training_data.nlu import TrainingDataWarning, load_nlu_data


def _load(tmp_path: Path, body: str) -> tuple[object, list[str]]:
    path = tmp_path / "nlu.yml"
    path.write_text('version: "3.1"\nnlu:\n' + body, encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_nlu_data(path)
    return data, [str(w.message) for w in caught if issubclass(w.category, TrainingDataWarning)]


def test_warns_intent_with_one_example(tmp_path: Path) -> None:
    _, messages = _load(tmp_path, "- intent: lonely\n  examples: |\n    - only me\n"
                                  "- intent: ok\n  examples: |\n    - a\n    - b\n")
    hits = [m for m in messages if "lonely" in m]
    assert hits and f"{tmp_path / 'nlu.yml'}:5:" in hits[0] and "only 1 training example" in hits[0]


def test_warns_duplicate_example_under_two_intents(tmp_path: Path) -> None:
    _, messages = _load(tmp_path, "- intent: a\n  examples: |\n    - 在吗\n    - x\n"
                                  "- intent: b\n  examples: |\n    - 在吗\n    - y\n")
    hits = [m for m in messages if "appears under intent" in m]
    assert hits, messages
    assert f"{tmp_path / 'nlu.yml'}:9:" in hits[0] and "nlu.yml:5)" in hits[0]
    assert "'a'" in hits[0] and "'b'" in hits[0]


def test_warns_entity_annotation_with_whitespace(tmp_path: Path) -> None:
    _, messages = _load(tmp_path, "- intent: a\n  examples: |\n    - buy [ shoes](product)\n    - x\n")
    hits = [m for m in messages if "does not match its text" in m]
    assert hits and "nlu.yml:5:" in hits[0]


def test_broken_entity_annotation_is_an_error_with_line(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text('nlu:\n- intent: a\n  examples: |\n    - ok\n    - buy [shoes](product\n', encoding="utf-8")
    with pytest.raises(TrainingDataError) as info:
        load_nlu_data(path)
    assert "nlu.yml:5" in str(info.value)


def test_warns_entity_annotation_not_matching_tokens(tmp_path: Path) -> None:
    data, _ = _load(tmp_path, "- intent: a\n  examples: |\n    - I live in [Berlin](city)er\n    - x y\n")
    pipeline = NLUPipeline.from_config({"language": "en", "pipeline": [{"name": "WhitespaceTokenizer"}]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.components[0].train(data, list(data.training_examples))
    hits = [str(w.message) for w in caught if "does not match" in str(w.message)]
    assert hits and "nlu.yml:5:" in hits[0] and "Berliner" in hits[0]
