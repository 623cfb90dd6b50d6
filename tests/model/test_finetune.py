"""``python -m bot train --finetune [MODEL] --epoch-fraction F`` (Rasa's incremental
training): the new model starts from the previous one's weights, trains a fraction of the
epochs, keeps every old feature in its old column, and refuses the changes Rasa refuses
(anything in config.yml but ``epochs``, the domain but its responses, new or vanished labels)."""
from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.cli import build_parser
from bot.model.training import train
from bot.nlu.diet.batches import grow_sparse_weight
from bot.nlu.featurizers import extend_vocabulary
from bot.shared.exceptions import ConfigError

CONFIG = """language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: {diet_epochs}
    number_of_transformer_layers: 1
    transformer_size: {size}
    number_of_attention_heads: 2
    random_seed: 7
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
  - name: TEDPolicy
    max_history: 3
    epochs: 20
"""

DOMAIN = """version: "3.1"
intents:
  - greet
  - bye
  - order_status
responses:
  utter_greet:
  - text: hello
  utter_bye:
  - text: bye
  utter_order:
  - text: let me look
"""

NLU = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello there
    - good morning
    - hey
- intent: bye
  examples: |
    - bye
    - see you later
    - goodbye
    - talk to you soon
- intent: order_status
  examples: |
    - where is my order
    - has my parcel shipped
    - when will my package arrive
    - track my order
"""

STORIES = """version: "3.1"
stories:
- story: greet then bye
  steps:
  - intent: greet
  - action: utter_greet
  - intent: bye
  - action: utter_bye
- story: order
  steps:
  - intent: order_status
  - action: utter_order
"""

NEW_EXAMPLES = """- intent: greet
  examples: |
    - howdy partner
    - greetings friend
"""


def _project(root: Path, diet_epochs: int = 40, size: int = 32, domain: str = DOMAIN,
             extra_nlu: str = "") -> Path:
    files = {
        "config.yml": CONFIG.format(diet_epochs=diet_epochs, size=size),
        "domain.yml": domain,
        "data/nlu.yml": NLU + extra_nlu,
        "data/stories.yml": STORIES,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _member_json(archive: Path, suffix: str) -> Any:
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.name.endswith(suffix))
        handle = tar.extractfile(names[0])
        assert handle is not None
        return json.loads(handle.read())


def _metadata(archive: Path) -> dict[str, Any]:
    return _member_json(archive, "metadata.json")


def _parse(archive: Path, texts: list[str]) -> list[str]:
    from bot.model.archive import unpack_archive
    from bot.nlu import NLUPipeline

    pipeline = NLUPipeline.load(unpack_archive(archive) / "nlu")
    return [pipeline.parse(t)["intent"]["name"] for t in texts]


def _examples(nlu: str) -> list[tuple[str, str]]:
    out, intent = [], ""
    for line in nlu.splitlines():
        if line.startswith("- intent: "):
            intent = line.split(": ", 1)[1]
        elif line.strip().startswith("- ") and intent:
            out.append((line.strip()[2:], intent))
    return out


def test_finetune_continues_from_the_previous_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _project(tmp_path / "bot")
    out = tmp_path / "models"
    base = train(root=root, out=out, fixed_model_name="base")
    assert base.model_path is not None
    words = "03_CountVectorsFeaturizer/vocabulary.json"
    old_vocab, old_lexical = (_member_json(base.model_path, f) for f in (words, "02_LexicalSyntacticFeaturizer/vocabulary.json"))

    _project(root, extra_nlu=NEW_EXAMPLES)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        tuned = train(root=root, out=out, fixed_model_name="tuned", finetune=True, epoch_fraction=0.05)
    assert tuned.model_path is not None and tuned.trained_nlu and tuned.trained_core
    messages = [r.getMessage() for r in caplog.records]
    assert "DIETClassifier fine-tunes the previous model for 2 of 40 epochs." in messages
    assert "TEDPolicy fine-tunes the previous model for 1 of 20 epochs." in messages
    meta = _metadata(tuned.model_path)
    assert meta["extra"]["finetuned_from"] == "base" and meta["extra"]["epoch_fraction"] == 0.05

    # every old feature keeps its column; the new words' n-grams come after them
    new_vocab = _member_json(tuned.model_path, words)
    assert all(new_vocab[g] == i for g, i in old_vocab.items())
    new_lexical = _member_json(tuned.model_path, "02_LexicalSyntacticFeaturizer/vocabulary.json")
    assert all(new_lexical[f] == i for f, i in old_lexical.items())
    assert "howdy" in new_vocab and new_vocab["howdy"] >= len(old_vocab)
    # two epochs from scratch do not separate three intents; two epochs on top of the base do
    old = _examples(NLU)
    assert _parse(tuned.model_path, [t for t, _ in old]) == [i for _, i in old]


def test_finetune_takes_a_model_path_and_only_epochs_may_change(tmp_path: Path) -> None:
    root = _project(tmp_path / "bot")
    base = train(root=root, out=tmp_path / "models", fixed_model_name="base")
    assert base.model_path is not None
    _project(root, diet_epochs=10)  # only the epochs changed: allowed
    tuned = train(root=root, out=tmp_path / "elsewhere", finetune=str(base.model_path), epoch_fraction=0.5)
    assert tuned.model_path is not None and tuned.model_path.parent == tmp_path / "elsewhere"
    assert _metadata(tuned.model_path)["extra"]["finetuned_from"] == "base"

    _project(root, size=64)
    with pytest.raises(ConfigError, match=r"'pipeline' changed \(entry 6, DIETClassifier\); only 'epochs' may change"):
        train(root=root, out=tmp_path / "models", finetune=True)


def test_finetune_refuses_new_labels(tmp_path: Path) -> None:
    root = _project(tmp_path / "bot")
    train(root=root, out=tmp_path / "models")
    domain = DOMAIN.replace("  - order_status\n", "  - order_status\n  - refund\n")
    refund = "- intent: refund\n  examples: |\n    - i want my money back\n    - refund please\n"
    _project(root, domain=domain, extra_nlu=refund)
    with pytest.raises(ConfigError, match="the domain's 'intents' changed; only responses may change"):
        train(root=root, out=tmp_path / "models", finetune=True)
    # the domain as it was, a new intent in the data: DIET, which learned the intents, refuses
    _project(root, extra_nlu=refund)
    with pytest.raises(ConfigError, match=r"DIETClassifier: the NLU data's labels changed \(new intents: refund\)"):
        train(root=root, out=tmp_path / "models", finetune=True, nlu_only=True)


def test_finetune_needs_a_model_and_a_positive_fraction(tmp_path: Path) -> None:
    root = _project(tmp_path / "bot")
    with pytest.raises(ConfigError, match="No model to fine-tune found"):
        train(root=root, out=tmp_path / "empty", finetune=True)
    with pytest.raises(ConfigError, match="--epoch-fraction must be above 0"):
        train(root=root, out=tmp_path / "empty", finetune=True, epoch_fraction=0)


def test_cli_accepts_rasas_finetune_flags() -> None:
    args = build_parser().parse_args(["train", "--finetune", "--epoch-fraction", "0.2"])
    assert args.finetune is True and args.epoch_fraction == 0.2
    args = build_parser().parse_args(["train", "--finetune", "models/base.tar.gz"])
    assert args.finetune == "models/base.tar.gz" and args.epoch_fraction == 1.0
    assert build_parser().parse_args(["train"]).finetune is None


def test_vocabulary_and_sparse_weight_grow_block_by_block() -> None:
    assert extend_vocabulary({"b": 0, "a": 1}, ["c", "a", "0"]) == {"b": 0, "a": 1, "0": 2, "c": 3}
    old = torch.arange(5 * 2, dtype=torch.float32).view(5, 2)  # blocks of 3 and 2 rows
    new = torch.full((8, 2), -1.0)  # blocks of 4 and 4 rows
    grown = grow_sparse_weight(old, new, [["A", 3], ["B", 2]], [["A", 4], ["B", 4]])
    assert torch.equal(grown[0:3], old[0:3]) and torch.equal(grown[4:6], old[3:5])
    assert torch.all(grown[3] == -1) and torch.all(grown[6:] == -1)


def test_cli_finetune_end_to_end(tmp_path: Path) -> None:
    """``python -m bot train --finetune --epoch-fraction F`` as a Rasa script runs it."""
    import os
    import subprocess
    import sys

    root = _project(tmp_path / "bot")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "train", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)

    train(root=root, out=root / "models", fixed_model_name="base")  # in-process: one start less
    _project(root, extra_nlu=NEW_EXAMPLES)
    tuned = cli("--finetune", "--epoch-fraction", "0.5", "--fixed-model-name", "tuned")
    assert tuned.returncode == 0, tuned.stderr
    assert "(NLU fine-tuned, core fine-tuned;" in tuned.stdout
    assert _metadata(root / "models" / "tuned.tar.gz")["extra"]["finetuned_from"] == "base"
    _project(root, size=64, extra_nlu=NEW_EXAMPLES)
    refused = cli("--finetune", "models/base.tar.gz")
    assert refused.returncode == 1
    assert "Cannot fine-tune: config.yml's 'pipeline' changed (entry 6, DIETClassifier)" in refused.stderr


def test_workbench_candidate_is_fine_tuned_from_the_active_model_or_trained_from_scratch(tmp_path: Path) -> None:
    """``workbench.finetune_epoch_fraction``: the trainers' retrain continues from the active
    workbench model; where Rasa's rules refuse (a new intent), it trains from scratch and says why."""
    from bot.workbench.config import GateConfig, WorkbenchConfig
    from bot.workbench.gate import train_candidate

    root = _project(tmp_path / "bot")
    models, gate = tmp_path / "models", GateConfig()
    first = train_candidate(root, models, gate)
    assert "finetuned_from" not in first and "finetune_refused" not in first
    base = Path(first["model_path"])

    _project(root, extra_nlu=NEW_EXAMPLES)
    tuned = train_candidate(root, models, gate, base, 0.5)
    assert tuned["finetuned_from"] == base.name and tuned["epoch_fraction"] == 0.5
    assert _metadata(Path(tuned["model_path"]))["extra"]["finetuned_from"] == _metadata(base)["model_id"]

    domain = DOMAIN.replace("  - order_status\n", "  - order_status\n  - refund\n")
    _project(root, domain=domain, extra_nlu="- intent: refund\n  examples: |\n    - refund please\n    - money back\n")
    fresh = train_candidate(root, models, gate, base, 0.5)
    assert "the domain's 'intents' changed" in fresh["finetune_refused"] and "finetuned_from" not in fresh
    assert "finetuned_from" not in _metadata(Path(fresh["model_path"]))["extra"]

    assert WorkbenchConfig.from_section({"finetune_epoch_fraction": 0.2}).finetune_epoch_fraction == 0.2
    assert WorkbenchConfig.from_section({}).finetune_epoch_fraction == 0.0
    with pytest.raises(ConfigError, match=r"workbench.finetune_epoch_fraction.*\[0.0, 1.0\]"):
        WorkbenchConfig.from_section({"finetune_epoch_fraction": 1.5})
