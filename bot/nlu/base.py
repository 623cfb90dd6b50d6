"""Component contract shared by every NLU pipeline component.

Kept deliberately small (no graph engine): a component is built from its
config dict, learns in ``train``, annotates a ``Message`` in ``process`` and
saves/loads its own files in a folder the pipeline gives it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)

TOKENS = "tokens"
FEATURES = "features"
INTENT = "intent"
INTENT_RANKING = "intent_ranking"
ENTITIES = "entities"


@dataclass(frozen=True)
class Token:
    """A token with character offsets into the message text."""

    text: str
    start: int
    end: int
    lemma: str | None = None

    @property
    def norm(self) -> str:
        return self.lemma or self.text


@dataclass(frozen=True)
class Features:
    """Features one featurizer added to a message.

    ``sequence`` has one row per token, ``sentence`` one row; either may be
    None. Sparse featurizers use ``scipy.sparse.csr_matrix``, dense ones numpy.
    """

    kind: str  # "sparse" | "dense"
    origin: str
    sequence: Any = None
    sentence: Any = None


@dataclass
class PipelineContext:
    """What components may need beyond their own config."""

    language: str = "en"
    root_dir: Path | None = None
    config_file: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Component:
    """Base class; subclasses set ``name`` and ``defaults`` (every allowed option)."""

    name: ClassVar[str] = "Component"
    defaults: ClassVar[dict[str, Any]] = {}
    #: options accepted for Rasa compatibility but without effect in kefu (a value other than
    #: the default is reported with file:line when the pipeline is built)
    ignored_options: ClassVar[frozenset[str]] = frozenset()
    #: what kefu does instead, for an ignored option whose default is not Rasa's behaviour
    ignored_option_notes: ClassVar[dict[str, str]] = {}
    #: whether the component reads a ``featurizers:`` list (names checked against the pipeline)
    selects_featurizers: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        self.config = {**self.defaults, **{k: v for k, v in config.items() if k != "name"}}
        self.context = context

    @property
    def feature_origin(self) -> str:
        """The name a featurizer's features carry (``Features.origin``): its ``alias`` when
        the config gives one, else its component name. A DIETClassifier's ``featurizers``
        option lists these names, as Rasa's ``FEATURIZER_CLASS_ALIAS`` does."""
        alias = self.config.get("alias")
        return str(alias) if alias else self.name

    @property
    def selected_featurizers(self) -> list[str]:
        """The names a ``featurizers:`` option lists (one name alone is a list of one);
        empty: every featurizer's features."""
        listed = self.config.get("featurizers") or []
        return [str(n) for n in (listed if isinstance(listed, list) else [listed])]

    # ---- lifecycle
    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        """Learn from the data; featurizers/tokenizers also annotate ``messages``."""

    def process(self, message: Message) -> None:
        """Annotate a message at inference time."""

    def finetune_from(self, base: "Component", epoch_fraction: float) -> None:
        """Make the next ``train`` continue from ``base``, this component as the model being
        fine-tuned has it (``train --finetune``, Rasa's incremental training).

        By default nothing is carried over and ``train`` learns from the data as usual
        (tokenizers, rule-based and quick classifiers). Featurizers keep their old columns and
        append new ones; DIETClassifier keeps its weights and trains ``epoch_fraction`` of
        its epochs.
        """

    def persist(self, path: Path) -> None:
        """Write learned state into ``path`` (an existing, empty folder)."""

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "Component":
        return cls(config, context)


def add_features(message: Message, features: Features) -> None:
    message.data.setdefault(FEATURES, []).append(features)


def tokens_of(message: Message) -> list[Token]:
    return message.data.get(TOKENS) or []


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=-1, keepdims=True)


def ranking_from_scores(
    names: list[str], probs: np.ndarray, ranking_length: int = 10
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(intent, intent_ranking) in Rasa's shape, best first."""
    order = np.argsort(-probs, kind="stable")
    ranking = [{"name": names[i], "confidence": float(probs[i])} for i in order]
    if ranking_length and ranking_length > 0:
        ranking = ranking[:ranking_length]
    intent = dict(ranking[0]) if ranking else {"name": None, "confidence": 0.0}
    return intent, ranking
