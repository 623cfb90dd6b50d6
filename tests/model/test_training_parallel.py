"""``python -m bot train`` trains the policies in a second process while the NLU pipeline
trains, when a TEDPolicy has enough to learn (bot.model.training.core_beside_nlu): the model
is the one a sequential training makes, the child's log lines reach this process's loggers,
and an error in the child stops the training here with its own type and message."""
from __future__ import annotations

import logging
import multiprocessing
import tarfile
from pathlib import Path

import pytest
import torch

from bot.model.training import CORE_BESIDE_NLU_MIN_WORK, train
from bot.shared.concurrency import usable_cores
from bot.shared.exceptions import TrainingDataError

EPOCHS = CORE_BESIDE_NLU_MIN_WORK // 2  # two stories: just enough work for a second process

PROJECT = {
    "config.yml": (
        "language: en\npipeline:\n  - name: WhitespaceTokenizer\n  - name: CountVectorsFeaturizer\n"
        "  - name: LogisticRegressionClassifier\npolicies:\n  - name: RulePolicy\n"
        f"  - name: TEDPolicy\n    max_history: 3\n    epochs: {EPOCHS}\n"
    ),
    "domain.yml": (
        'version: "3.1"\nintents:\n  - greet\n  - bye\n  - thanks\nresponses:\n'
        "  utter_greet:\n  - text: hello\n  utter_bye:\n  - text: bye\n  utter_welcome:\n  - text: welcome\n"
    ),
    "data/nlu.yml": (
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello there\n'
        "- intent: bye\n  examples: |\n    - bye\n    - see you\n"
        "- intent: thanks\n  examples: |\n    - thanks\n    - thank you\n"
    ),
    "data/stories.yml": (
        'version: "3.1"\nstories:\n- story: greet then bye\n  steps:\n  - intent: greet\n  - action: utter_greet\n'
        "  - intent: bye\n  - action: utter_bye\n"
        "- story: thanks\n  steps:\n  - intent: thanks\n  - action: utter_welcome\n"
    ),
}

pytestmark = pytest.mark.skipif(usable_cores() < 2, reason="one core: the policies train in this process")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _ted_weights(archive: Path) -> dict[str, torch.Tensor]:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("ted_model.pt"))
        handle = tar.extractfile(member)
        assert handle is not None
        return torch.load(handle, weights_only=True)


def test_policies_trained_beside_nlu_equal_a_sequential_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _write(tmp_path / "bot", PROJECT)
    with caplog.at_level(logging.INFO):
        beside = train(root=root, out=tmp_path / "beside", parallel=True)
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("bot.model.training", "Training the policies in a second process while the NLU pipeline trains.") in messages
    # the child's own lines, relayed to this process's loggers
    assert any(name == "bot.dialogue.policies.ted" and f"for {EPOCHS} epochs" in text for name, text in messages)
    assert beside.trained_nlu and beside.trained_core
    assert multiprocessing.active_children() == []

    caplog.clear()
    with caplog.at_level(logging.INFO):
        alone = train(root=root, out=tmp_path / "alone", parallel=False)
    assert not any("second process" in r.getMessage() for r in caplog.records)
    first, second = _ted_weights(beside.model_path), _ted_weights(alone.model_path)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_error_in_the_policy_process_stops_training_with_its_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = dict(PROJECT)
    files["data/rules.yml"] = (
        'version: "3.1"\nrules:\n- rule: greet back\n  steps:\n  - intent: greet\n  - action: utter_greet\n'
        "- rule: greet away\n  steps:\n  - intent: greet\n  - action: utter_bye\n"
    )
    root = _write(tmp_path / "bot", files)
    with caplog.at_level(logging.INFO), pytest.raises(TrainingDataError) as raised:
        train(root=root, out=tmp_path / "models", parallel=True)
    assert any("second process" in r.getMessage() for r in caplog.records)
    assert "greet back" in str(raised.value) and "greet away" in str(raised.value), str(raised.value)
    assert multiprocessing.active_children() == []
    assert not list((tmp_path / "models").glob("*.tar.gz"))
