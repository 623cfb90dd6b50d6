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
from bot.shared.exceptions import ConfigError
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


def stratified_holdout(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit indices, validation indices): ``fraction`` of every class with ≥ 3 examples held out.

    Small classes stay entirely in the fit part so no intent disappears from training.
    """
    import random

    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    fit, val = [], []
    for label in sorted(by_label):
        idx = list(by_label[label])
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction)) if len(idx) >= 3 else 0
        k = min(k, len(idx) - 2) if k else 0
        val.extend(idx[:k])
        fit.extend(idx[k:])
    return sorted(fit), sorted(val)


def choose_threshold(confidences: np.ndarray, predicted: list[str], gold: list[str], oos: str) -> dict[str, Any]:
    """Confidence below which a prediction becomes ``oos``, maximising held-out accuracy.

    Accuracy over all held-out examples (oos counts as one more intent) is the figure a
    shop bot lives with; ties go to the lower threshold (fewer in-scope messages lost).
    """
    gold_arr = np.asarray(gold, dtype=object)
    pred_arr = np.asarray(predicted, dtype=object)
    best: dict[str, Any] = {"threshold": 0.0, "accuracy": -1.0}
    for t in np.round(np.arange(0.0, 0.96, 0.01), 2):
        pred = np.where(np.asarray(confidences) < t, oos, pred_arr)
        acc = float(np.mean(pred == gold_arr)) if len(gold_arr) else 0.0
        if acc > best["accuracy"] + 1e-12:
            best = {"threshold": float(t), "accuracy": round(acc, 4)}
    return best


class LogisticRegressionClassifier(Component):
    """scikit-learn logistic regression on sentence features (class_weight balanced).

    kefu options beyond Rasa's: ``normalize_features`` (unit-length block per
    featurizer), ``C`` as a list (chosen on a stratified held-out part of the
    training data, then refit on all of it, the candidates fitted on parallel
    threads), and ``out_of_scope_intent`` with ``out_of_scope_threshold`` (a
    float, or ``auto`` to pick it on the held-out part): a prediction whose
    confidence is below the threshold becomes the out-of-scope intent.
    """

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
        "class_weight": "balanced",
        "validation_fraction": 0.1,
        "out_of_scope_intent": None,
        "out_of_scope_threshold": None,
        "n_jobs": 2,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        grid = self.config["C"] if isinstance(self.config["C"], list) else [self.config["C"]]
        threshold = self.config["out_of_scope_threshold"]
        try:
            self.c_grid = [float(c) for c in grid]
            if not self.c_grid or min(self.c_grid) <= 0:
                raise ValueError("C must be positive")
            if threshold not in (None, "auto"):
                threshold = float(threshold)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"LogisticRegressionClassifier: invalid C {self.config['C']!r} or out_of_scope_threshold "
                f"{self.config['out_of_scope_threshold']!r} ({e}).",
                context.config_file,
                fix="Use a positive number or a list of them for C (e.g. [3, 10, 30]), "
                "and a number in [0, 1] or 'auto' for out_of_scope_threshold.",
            ) from e
        if threshold is not None and not self.config["out_of_scope_intent"]:
            raise ConfigError(
                "LogisticRegressionClassifier: out_of_scope_threshold needs out_of_scope_intent.",
                context.config_file,
                fix="Name the intent of your out-of-scope examples, e.g. out_of_scope_intent: out_of_scope.",
            )
        self.classes: list[str] = []
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None
        self.threshold: float | None = threshold if isinstance(threshold, float) else None
        #: what the held-out selection saw (persisted, for reports)
        self.selection: dict[str, Any] = {}

    def _fit(self, x: Any, y: list[str], C: float) -> Any:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        clf = LogisticRegression(
            max_iter=int(self.config["max_iter"]), solver=self.config["solver"], tol=float(self.config["tol"]),
            random_state=self.config["random_state"], class_weight=self.config["class_weight"], C=C,
        )
        # lbfgs on small data: BLAS threads only thrash, most of all on shared 2-core machines
        with threadpool_limits(1):
            clf.fit(x, y)
        return clf

    def _select(self, x: Any, y: list[str]) -> float:
        """Best C (and the auto threshold) on a stratified held-out part of the data."""
        from concurrent.futures import ThreadPoolExecutor

        fit_idx, val_idx = stratified_holdout(y, float(self.config["validation_fraction"]), int(self.config["random_state"] or 0))
        if not val_idx:
            logger.warning("Too little data to hold out a validation part; using C=%s.", self.c_grid[0])
            return self.c_grid[0]
        x_fit, x_val = x[fit_idx], x[val_idx]
        y_fit, y_val = [y[i] for i in fit_idx], [y[i] for i in val_idx]
        # scipy's lbfgs and the sparse products release the GIL for most of a fit
        with ThreadPoolExecutor(max(1, min(int(self.config["n_jobs"] or 1), len(self.c_grid)))) as pool:
            fitted = list(pool.map(lambda c: self._fit(x_fit, y_fit, c), self.c_grid))
        scores = {}
        probas = {}
        for C, clf in zip(self.c_grid, fitted):
            probas[C] = clf.predict_proba(x_val)
            pred = clf.classes_[np.argmax(probas[C], axis=1)]
            scores[C] = float(np.mean(pred == np.asarray(y_val, dtype=object)))
        best_C = max(self.c_grid, key=lambda c: (scores[c], -c))
        self.selection = {"validation_size": len(val_idx), "accuracy_by_C": scores, "C": best_C}
        if self.config["out_of_scope_threshold"] == "auto":
            oos = str(self.config["out_of_scope_intent"])
            proba = probas[best_C]
            classes = fitted[self.c_grid.index(best_C)].classes_
            chosen = choose_threshold(proba.max(axis=1), [str(c) for c in classes[proba.argmax(axis=1)]], y_val, oos)
            self.threshold = chosen["threshold"]
            self.selection["out_of_scope"] = chosen
            if oos not in y_val:
                logger.warning("No '%s' examples held out: the out-of-scope threshold only guards in-scope accuracy.", oos)
        logger.info("LogisticRegressionClassifier selection: %s", self.selection)
        return best_C

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
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
        need_selection = len(self.c_grid) > 1 or self.config["out_of_scope_threshold"] == "auto"
        C = self._select(x, y) if need_selection else self.c_grid[0]
        clf = self._fit(x, y, C)
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
                if m.format != "csr":
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
        oos = self.config["out_of_scope_intent"]
        if self.threshold is not None and intent["name"] != oos and intent["confidence"] < self.threshold:
            # the ranking keeps the model's own scores; only the decision changes
            intent = {"name": oos, "confidence": float(intent["confidence"])}
        message.set(INTENT, intent)
        message.set(INTENT_RANKING, ranking)

    def persist(self, path: Path) -> None:
        (path / "classes.json").write_text(json.dumps(self.classes, ensure_ascii=False), encoding="utf-8")
        if self.coef is not None and self.intercept is not None:
            np.savez(path / "weights.npz", coef=self.coef, intercept=self.intercept)
        if self.threshold is not None or self.selection:
            state = {"threshold": self.threshold, "selection": self.selection}
            (path / "selection.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "LogisticRegressionClassifier":
        c = cls(config, context)
        c.classes = json.loads((path / "classes.json").read_text(encoding="utf-8"))
        if (path / "weights.npz").exists():
            with np.load(path / "weights.npz") as w:
                c.coef, c.intercept = w["coef"], w["intercept"]
        if (path / "selection.json").exists():
            state = json.loads((path / "selection.json").read_text(encoding="utf-8"))
            c.threshold, c.selection = state.get("threshold"), state.get("selection") or {}
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


def is_fallback_classifier_prediction(prediction: dict[str, Any]) -> bool:
    """Whether a parse result's intent is FallbackClassifier's ``nlu_fallback``."""
    return (prediction.get(INTENT) or {}).get("name") == DEFAULT_NLU_FALLBACK_INTENT_NAME


def undo_fallback_prediction(prediction: dict[str, Any]) -> dict[str, Any]:
    """The parse result as it was before FallbackClassifier replaced its intent.

    Rasa's ``rasa test nlu`` scores intents this way (``rasa/nlu/classifiers/
    fallback_classifier.py``): the fallback is the ranking's first entry, so the intent
    becomes the ranking's second entry (with its own confidence) and the ranking drops
    its first. A ranking shorter than two is left as it is, as in Rasa.
    """
    ranking = prediction.get(INTENT_RANKING) or []
    if len(ranking) < 2:
        return prediction
    undone = dict(prediction)
    undone[INTENT] = dict(ranking[1])
    undone[INTENT_RANKING] = [dict(r) for r in ranking[1:]]
    return undone
