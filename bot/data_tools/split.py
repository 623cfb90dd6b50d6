"""``python -m bot data split nlu``: a stratified train/test split, as ``rasa data split nlu``.

Each intent (each retrieval intent's response key, for ``faq/ask_x`` examples) is split on its
own, so both parts keep the class balance; an intent with one example stays in the training
part. Synonyms, regexes and lookup tables go with the training part (Rasa does the same), so
``test_data.yml`` holds only examples. Written as Rasa 3 YAML: ``training_data.yml`` and
``test_data.yml`` in ``--out`` (default ``train_test_split/``).
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bot.shared.exceptions import ConfigError, TrainingDataError
from bot.shared.training_data.nlu import Message, TrainingData

TRAINING_FILE = "training_data.yml"
TEST_FILE = "test_data.yml"


@dataclass(frozen=True)
class SplitResult:
    train: TrainingData
    test: TrainingData


def _label(m: Message) -> str:
    return m.intent_response_key or m.intent or ""


def train_test_split(data: TrainingData, training_fraction: float = 0.8, seed: int | None = None) -> SplitResult:
    """Per label: shuffle, keep ``round(n * fraction)`` (at least one) for training, test on the rest."""
    if not 0.0 < training_fraction < 1.0:
        raise ConfigError(f"--training-fraction must be between 0 and 1 (exclusive), got {training_fraction}.",
                          fix="Pass e.g. --training-fraction 0.8.")
    if not data.training_examples:
        raise TrainingDataError("No NLU examples to split.", fix="Pass the NLU data with --nlu/-u PATH.")
    rng = random.Random(seed)
    by_label: dict[str, list[Message]] = defaultdict(list)
    for m in data.training_examples:
        by_label[_label(m)].append(m)
    train: list[Message] = []
    test: list[Message] = []
    for label in sorted(by_label):
        items = list(by_label[label])
        rng.shuffle(items)
        n_train = max(1, min(len(items), round(len(items) * training_fraction)))
        train.extend(items[:n_train])
        test.extend(items[n_train:])
    sentiment = list(data.sentiment_examples)
    rng.shuffle(sentiment)
    n_sentiment = round(len(sentiment) * training_fraction)
    return SplitResult(
        TrainingData(train, data.entity_synonyms, data.regex_features, data.lookup_tables, data.responses,
                     sentiment[:n_sentiment]),
        TrainingData(test, sentiment_examples=sentiment[n_sentiment:]),
    )


def split_nlu_files(
    paths: list[str | Path], out: str | Path, training_fraction: float = 0.8, seed: int | None = None,
) -> tuple[Path, Path, SplitResult]:
    from bot.shared.training_data.nlu import load_nlu_data

    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"NLU data not found: {', '.join(missing)}.", fix="Pass existing files/folders with -u PATH.")
    result = train_test_split(load_nlu_data(paths), training_fraction, seed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = out_dir / TRAINING_FILE, out_dir / TEST_FILE
    result.train.persist_yaml(train_path)
    result.test.persist_yaml(test_path)
    return train_path, test_path, result
