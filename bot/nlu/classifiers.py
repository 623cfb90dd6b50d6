"""Intent classifiers besides DIET: logistic regression, keywords, fallback."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bot.nlu.base import (
    FEATURES, INTENT, INTENT_RANKING, Component, Features, PipelineContext, ranking_from_scores, softmax,
)
from bot.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)


def _l2_rows(m: Any) -> Any:
    m = sp.csr_matrix(m, dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).reshape(-1))
    return sp.diags(1.0 / np.maximum(norms, 1e-9)) @ m


def sentence_vector(message: Message, normalize: bool = False) -> tuple[Any, bool]:
    """All sentence features side by side (sparse), and whether any is non-zero.

    With ``normalize`` each featurizer's block is scaled to unit length (counts get
    log1p first), so a 512-d embedding and a 50 000-column n-gram count vector weigh
    the same in a linear model.
    """
    feats: list[Features] = message.get(FEATURES) or []
    if normalize:
        mats = []
        for f in feats:
            if f.sentence is None:
                continue
            block = sp.csr_matrix(f.sentence, dtype=np.float32)
            if f.kind == "sparse":
                block.data = np.log1p(np.abs(block.data))
            mats.append(_l2_rows(block))
    else:
        mats = [sp.csr_matrix(f.sentence) for f in feats if f.sentence is not None]
    if not mats:
        return sp.csr_matrix((1, 0), dtype=np.float32), False
    stacked = sp.hstack(mats, format="csr")
    return stacked, stacked.nnz > 0 and bool(np.any(stacked.data))


class LogisticRegressionClassifier(Component):
    """scikit-learn logistic regression on sentence features (class_weight balanced)."""

    name = "LogisticRegressionClassifier"
    defaults: dict[str, Any] = {
        "max_iter": 100,
        "solver": "lbfgs",
        "tol": 1e-4,
        "random_state": 42,
        "ranking_length": 10,
        "C": 1.0,
        # kefu: scale every featurizer's block to unit length before stacking
        "normalize_features": False,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.classes: list[str] = []
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        from sklearn.linear_model import LogisticRegression

        usable = [m for m in messages if m.intent]
        labels = sorted({m.intent for m in usable})
        if not labels:
            return
        if len(labels) == 1:
            self.classes = labels
            return
        norm = bool(self.config["normalize_features"])
        x = sp.vstack([sentence_vector(m, norm)[0] for m in usable], format="csr")
        y = [m.intent for m in usable]
        clf = LogisticRegression(
            max_iter=int(self.config["max_iter"]), solver=self.config["solver"], tol=float(self.config["tol"]),
            random_state=self.config["random_state"], class_weight="balanced", C=float(self.config["C"]),
        )
        from threadpoolctl import threadpool_limits

        # lbfgs on small data: BLAS threads only thrash, most of all on shared 2-core machines
        with threadpool_limits(1):
            clf.fit(x, y)
        self.classes = [str(c) for c in clf.classes_]
        self.coef = np.asarray(clf.coef_, dtype=np.float64)
        self.intercept = np.asarray(clf.intercept_, dtype=np.float64)

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        if len(self.classes) == 2:  # sklearn's binary case: one sigmoid for the second class
            p = 1.0 / (1.0 + np.exp(-scores[0]))
            return np.array([1.0 - p, p])
        return softmax(scores)

    def _scores(self, message: Message) -> tuple[np.ndarray, bool]:
        """Linear scores block by block, without stacking a sparse matrix (the hot path)."""
        assert self.coef is not None and self.intercept is not None
        normalize = bool(self.config["normalize_features"])
        scores = self.intercept.astype(np.float64).copy()
        offset = 0
        signal = False
        for f in message.get(FEATURES) or []:
            if f.sentence is None:
                continue
            m = f.sentence
            if sp.issparse(m):
                m = sp.csr_matrix(m)
                cols, vals = m.indices.astype(np.int64), m.data.astype(np.float64)
            else:
                arr = np.asarray(m, dtype=np.float64).reshape(-1)
                cols = np.flatnonzero(arr)
                vals = arr[cols]
            width = int(m.shape[1])
            if normalize:
                if f.kind == "sparse":
                    vals = np.log1p(np.abs(vals))
                vals = vals / max(float(np.linalg.norm(vals)), 1e-9)
            if len(vals) and np.any(vals):
                signal = True
                scores += self.coef[:, offset + cols] @ vals
            offset += width
        return scores, signal

    def process(self, message: Message) -> None:
        if not self.classes:
            return
        if self.coef is None:
            probs = np.ones(1)
            signal = sentence_vector(message)[1]
        else:
            scores, signal = self._scores(message)
            probs = self._probabilities(scores)
        if not signal:
            message.set(INTENT, {"name": None, "confidence": 0.0})
            message.set(INTENT_RANKING, [])
            return
        intent, ranking = ranking_from_scores(self.classes, probs, int(self.config["ranking_length"]))
        message.set(INTENT, intent)
        message.set(INTENT_RANKING, ranking)

    def persist(self, path: Path) -> None:
        (path / "classes.json").write_text(json.dumps(self.classes, ensure_ascii=False), encoding="utf-8")
        if self.coef is not None and self.intercept is not None:
            np.savez(path / "weights.npz", coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "LogisticRegressionClassifier":
        c = cls(config, context)
        c.classes = json.loads((path / "classes.json").read_text(encoding="utf-8"))
        if (path / "weights.npz").exists():
            with np.load(path / "weights.npz") as w:
                c.coef, c.intercept = w["coef"], w["intercept"]
        return c


def _keyword_regex(keyword: str, case_sensitive: bool) -> re.Pattern[str]:
    # \b fails between CJK characters (they are all \w): only guard ASCII word edges
    pattern = rf"(?<![A-Za-z0-9_]){re.escape(keyword)}(?![A-Za-z0-9_])"
    return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)


class KeywordIntentClassifier(Component):
    """An intent whose training example occurs in the message wins (Rasa semantics)."""

    name = "KeywordIntentClassifier"
    defaults: dict[str, Any] = {"case_sensitive": True}

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.intent_keyword_map: dict[str, str] = {}

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        ambiguous: set[str] = set()
        mapping: dict[str, str] = {}
        for m in training_data.intent_examples:
            key = m.text if self.config["case_sensitive"] else m.text.lower()
            if key in mapping and mapping[key] != m.intent:
                ambiguous.add(key)
                logger.warning(
                    "Keyword '%s' is an example of both '%s' and '%s'; KeywordIntentClassifier drops it.",
                    m.text, mapping[key], m.intent,
                )
            mapping[key] = m.intent  # type: ignore[assignment]
        self.intent_keyword_map = {k: v for k, v in mapping.items() if k not in ambiguous}

    def process(self, message: Message) -> None:
        # longest keyword first, so "cancel my order" beats "order"
        for keyword in sorted(self.intent_keyword_map, key=len, reverse=True):
            if _keyword_regex(keyword, self.config["case_sensitive"]).search(message.text):
                intent = {"name": self.intent_keyword_map[keyword], "confidence": 1.0}
                message.set(INTENT, intent)
                message.set(INTENT_RANKING, [dict(intent)])
                return
        if message.get(INTENT) is None:
            message.set(INTENT, {"name": None, "confidence": 0.0})

    def persist(self, path: Path) -> None:
        (path / "keywords.json").write_text(json.dumps(self.intent_keyword_map, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "KeywordIntentClassifier":
        c = cls(config, context)
        c.intent_keyword_map = json.loads((path / "keywords.json").read_text(encoding="utf-8"))
        return c


class FallbackClassifier(Component):
    """Predicts ``nlu_fallback`` when the top intent is unsure or ambiguous."""

    name = "FallbackClassifier"
    defaults: dict[str, Any] = {"threshold": 0.3, "ambiguity_threshold": 0.1}

    def _should_fallback(self, message: Message) -> bool:
        intent = message.get(INTENT) or {}
        if intent.get("name") == DEFAULT_NLU_FALLBACK_INTENT_NAME:
            return False
        if float(intent.get("confidence") or 0.0) < float(self.config["threshold"]):
            return True
        ranking = message.get(INTENT_RANKING) or []
        if len(ranking) < 2 or self.config.get("ambiguity_threshold") is None:
            return False
        gap = float(ranking[0]["confidence"]) - float(ranking[1]["confidence"])
        return gap < float(self.config["ambiguity_threshold"])

    def process(self, message: Message) -> None:
        if not self._should_fallback(message):
            return
        fallback = {"name": DEFAULT_NLU_FALLBACK_INTENT_NAME, "confidence": float(self.config["threshold"])}
        message.set(INTENT, fallback)
        ranking = list(message.get(INTENT_RANKING) or [])
        message.set(INTENT_RANKING, [dict(fallback)] + ranking)
