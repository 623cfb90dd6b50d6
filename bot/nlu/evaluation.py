"""NLU evaluation like ``rasa test nlu``: reports, errors and plots.

Two entry points share one core (``evaluate_messages``):
- ``run_nlu_evaluation(args)`` for ``python -m bot test nlu`` (a test file against
  the trained model, or k-fold cross-validation on the project's data);
- ``evaluate_nlu_yaml(nlu, yaml_text)`` for ``POST /model/test/intents``.

Reports follow Rasa's shape (sklearn's ``classification_report`` dict: per label
precision/recall/f1-score/support, ``accuracy``, ``macro avg``, ``weighted avg``).
Entities are scored per entity type on exact (start, end, entity) spans.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from bot.nlu.classifiers import is_fallback_classifier_prediction, undo_fallback_prediction
from bot.shared.exceptions import ConfigError, TrainingDataError
from bot.shared.training_data.nlu import KEY_SENTIMENT, Message, TrainingData

logger = logging.getLogger(__name__)

INTENT_REPORT = "intent_report.json"
ENTITY_REPORT = "entity_report.json"
SENTIMENT_REPORT = "sentiment_report.json"
INTENT_ERRORS = "intent_errors.json"
CONFUSION_PNG = "intent_confusion_matrix.png"
HISTOGRAM_PNG = "intent_histogram.png"
NO_ENTITY = "no_entity"


@dataclass
class IntentPrediction:
    text: str
    intent: str
    predicted: str | None
    confidence: float


@dataclass
class EvaluationResult:
    """Predictions of one evaluation run (or of all folds together)."""

    intents: list[IntentPrediction] = field(default_factory=list)
    #: (gold entities, predicted entities, text) per example
    entities: list[tuple[list[dict[str, Any]], list[dict[str, Any]], str]] = field(default_factory=list)
    #: (gold label, predicted label, text)
    sentiment: list[tuple[str, str, str]] = field(default_factory=list)
    fold_accuracies: list[float] = field(default_factory=list)

    def extend(self, other: "EvaluationResult") -> None:
        self.intents.extend(other.intents)
        self.entities.extend(other.entities)
        self.sentiment.extend(other.sentiment)


# --------------------------------------------------------------------------- core


def evaluate_messages(
    parse: Callable[[str], dict[str, Any]],
    examples: Iterable[Message],
    sentiment_examples: Iterable[Message] = (),
) -> EvaluationResult:
    """Parse every example and pair gold with predicted intent, entities and sentiment.

    As in Rasa's ``rasa test nlu`` (``get_eval_data``), a FallbackClassifier answer is
    undone before the intent is scored, so that ``nlu_fallback`` does not hide which
    intent the model predicted (``undo_fallback_prediction``).
    """
    result = EvaluationResult()
    for m in examples:
        parsed = parse(m.text)
        if m.intent:
            scored = undo_fallback_prediction(parsed) if is_fallback_classifier_prediction(parsed) else parsed
            intent = scored.get("intent") or {}
            result.intents.append(
                IntentPrediction(m.text, m.intent, intent.get("name"), float(intent.get("confidence") or 0.0))
            )
        result.entities.append((list(m.entities), list(parsed.get("entities") or []), m.text))
    for m in sentiment_examples:
        parsed = parse(m.text)
        predicted = (parsed.get("sentiment") or {}).get("label") or "neutral"
        result.sentiment.append((str(m.get(KEY_SENTIMENT)), str(predicted), m.text))
    return result


def _classification_report(gold: list[str], predicted: list[str]) -> dict[str, Any]:
    from sklearn.metrics import classification_report

    labels = sorted(set(gold) | {p for p in predicted if p is not None}, key=str)
    if not gold:
        return {}
    report = classification_report(
        gold, predicted, labels=labels, output_dict=True, zero_division=0,
    )
    if "accuracy" not in report:  # sklearn omits it when labels ⊂ classes differ
        report["accuracy"] = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    return report


def intent_report(result: EvaluationResult) -> dict[str, Any]:
    """Rasa's intent report, each label with ``confused_with`` (top wrong predictions)."""
    gold = [p.intent for p in result.intents]
    pred = [str(p.predicted) for p in result.intents]
    report = _classification_report(gold, pred)
    confused: dict[str, Counter[str]] = defaultdict(Counter)
    for g, p in zip(gold, pred):
        if g != p:
            confused[g][p] += 1
    for label, value in report.items():
        if isinstance(value, dict) and label not in ("macro avg", "weighted avg", "micro avg"):
            value["confused_with"] = dict(confused[label].most_common(3))
    return report


def _span_key(entity: dict[str, Any]) -> tuple[int, int, str]:
    return int(entity.get("start", -1)), int(entity.get("end", -1)), str(entity.get("entity"))


def entity_report(result: EvaluationResult) -> dict[str, Any]:
    """Per entity type precision/recall/F1 on exact spans, plus micro/macro/weighted averages."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for gold, predicted, _ in result.entities:
        gold_keys = {_span_key(e) for e in gold}
        pred_keys = {_span_key(e) for e in predicted}  # several extractors may agree: count once
        for key in gold_keys & pred_keys:
            tp[key[2]] += 1
        for key in pred_keys - gold_keys:
            fp[key[2]] += 1
        for key in gold_keys - pred_keys:
            fn[key[2]] += 1
    labels = sorted(set(tp) | set(fp) | set(fn))
    report: dict[str, Any] = {}

    def prf(t: int, f_p: int, f_n: int) -> tuple[float, float, float]:
        precision = t / (t + f_p) if t + f_p else 0.0
        recall = t / (t + f_n) if t + f_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    for label in labels:
        p, r, f = prf(tp[label], fp[label], fn[label])
        report[label] = {"precision": p, "recall": r, "f1-score": f, "support": tp[label] + fn[label]}
    if not labels:
        return report
    support = sum(v["support"] for v in report.values())
    p, r, f = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    report["micro avg"] = {"precision": p, "recall": r, "f1-score": f, "support": support}
    per = [report[label] for label in labels]
    report["macro avg"] = {
        k: sum(v[k] for v in per) / len(per) for k in ("precision", "recall", "f1-score")
    } | {"support": support}
    report["weighted avg"] = {
        k: (sum(v[k] * v["support"] for v in per) / support if support else 0.0)
        for k in ("precision", "recall", "f1-score")
    } | {"support": support}
    return report


def sentiment_report(result: EvaluationResult) -> dict[str, Any]:
    return _classification_report([g for g, _, _ in result.sentiment], [p for _, p, _ in result.sentiment])


def intent_errors(result: EvaluationResult) -> list[dict[str, Any]]:
    """Rasa's ``intent_errors.json`` entries, least confident first."""
    errors = [
        {"text": p.text, "intent": p.intent, "intent_prediction": {"name": p.predicted, "confidence": p.confidence}}
        for p in result.intents
        if p.intent != p.predicted
    ]
    return sorted(errors, key=lambda e: e["intent_prediction"]["confidence"])


def summary(result: EvaluationResult) -> dict[str, Any]:
    """Headline figures: intent accuracy and macro/weighted F1, entity micro F1, sentiment accuracy."""
    ir = intent_report(result)
    er = entity_report(result)
    sr = sentiment_report(result)
    out = {
        "intent_accuracy": ir.get("accuracy"),
        "intent_macro_f1": (ir.get("macro avg") or {}).get("f1-score"),
        "intent_weighted_f1": (ir.get("weighted avg") or {}).get("f1-score"),
        "entity_f1": (er.get("micro avg") or {}).get("f1-score"),
        "sentiment_accuracy": sr.get("accuracy"),
        "num_intent_examples": len(result.intents),
        "num_sentiment_examples": len(result.sentiment),
    }
    if result.fold_accuracies:
        out["fold_intent_accuracies"] = result.fold_accuracies
    return out


# --------------------------------------------------------------------------- plots


def _plot_confusion(result: EvaluationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    gold = [p.intent for p in result.intents]
    pred = [str(p.predicted) for p in result.intents]
    labels = sorted(set(gold) | set(pred))
    matrix = confusion_matrix(gold, pred, labels=labels)
    size = max(6.0, 0.35 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    if len(labels) <= 40:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xlabel("Predicted intent")
    ax.set_ylabel("True intent")
    ax.set_title("Intent confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_histogram(result: EvaluationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hits = [p.confidence for p in result.intents if p.intent == p.predicted]
    misses = [p.confidence for p in result.intents if p.intent != p.predicted]
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = [i / 20 for i in range(21)]
    ax.hist([hits, misses], bins=bins, label=["correct", "wrong"], color=["#2a9d8f", "#e76f51"], stacked=True)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Number of examples")
    ax.set_title("Intent prediction confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(result: EvaluationResult, out_dir: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write every report file into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, data: Any) -> None:
        (out / name).write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")

    dump(INTENT_REPORT, intent_report(result))
    dump(ENTITY_REPORT, entity_report(result))
    dump(SENTIMENT_REPORT, sentiment_report(result))
    dump(INTENT_ERRORS, intent_errors(result))
    if plots and result.intents:
        _plot_confusion(result, out / CONFUSION_PNG)
        _plot_histogram(result, out / HISTOGRAM_PNG)
    return summary(result)


# --------------------------------------------------------------------------- cross-validation


def _stratified_folds(labels: list[str], folds: int, seed: int = 42) -> list[int]:
    """Fold index per item, each label spread round-robin over the folds."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    assignment = [0] * len(labels)
    offset = 0
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        for j, i in enumerate(items):
            assignment[i] = (offset + j) % folds
        offset += len(items)
    return assignment


def _subset(data: TrainingData, examples: list[Message], sentiment: list[Message]) -> TrainingData:
    return TrainingData(
        examples, data.entity_synonyms, data.regex_features, data.lookup_tables, data.responses, sentiment,
    )


def cross_validate(
    project_config: Any, data: TrainingData, folds: int = 5, root_dir: str | Path | None = None, seed: int = 42,
) -> EvaluationResult:
    """Train on k-1 folds, evaluate on the held-out fold, for every fold; predictions pooled."""
    from bot.nlu.pipeline import NLUPipeline

    if folds < 2:
        raise ConfigError("Cross-validation needs at least 2 folds.", fix="Pass --folds 2 or more.")
    examples = list(data.training_examples)
    if not examples:
        raise TrainingDataError("No NLU training examples to cross-validate.", fix="Add intents under nlu_data/.")
    example_folds = _stratified_folds([m.intent or "" for m in examples], folds, seed)
    sentiment = list(data.sentiment_examples)
    sentiment_folds = _stratified_folds([str(m.get(KEY_SENTIMENT)) for m in sentiment], folds, seed)
    pooled = EvaluationResult()
    for k in range(folds):
        started = time.perf_counter()
        train = [m for m, f in zip(examples, example_folds) if f != k]
        test = [m for m, f in zip(examples, example_folds) if f == k]
        train_s = [m for m, f in zip(sentiment, sentiment_folds) if f != k]
        test_s = [m for m, f in zip(sentiment, sentiment_folds) if f == k]
        pipeline = NLUPipeline.from_config(project_config, root_dir=root_dir)
        pipeline.train(_subset(data, train, train_s))
        fold = evaluate_messages(pipeline.parse, test, test_s)
        accuracy = (
            sum(p.intent == p.predicted for p in fold.intents) / len(fold.intents) if fold.intents else 0.0
        )
        pooled.fold_accuracies.append(accuracy)
        pooled.extend(fold)
        logger.info("Fold %d/%d: intent accuracy %.4f (%.1fs)", k + 1, folds, accuracy, time.perf_counter() - started)
    return pooled


# --------------------------------------------------------------------------- entry points


def evaluate_nlu_yaml(nlu: Any, yaml_text: str, filename: str = "<request body>") -> dict[str, Any]:
    """What ``POST /model/test/intents`` returns for Rasa YAML test data (sync; run it off the loop).

    ``nlu`` is a trained ``NLUPipeline`` (anything with ``parse(text) -> dict``) or a
    ``parse(text) -> dict`` callable (e.g. the processor's, so ``/intent`` texts work too).
    The shape follows Rasa's HTTP API: ``intent_evaluation``, ``entity_evaluation``,
    plus kefu's ``sentiment_evaluation``; each with ``report``, ``accuracy``/``f1_score``/``precision``.
    """
    from bot.shared.training_data.nlu import load_nlu_yaml

    data = load_nlu_yaml(yaml_text, filename)
    if not data.training_examples and not data.sentiment_examples:
        raise TrainingDataError(
            "The test data holds no NLU examples.", filename,
            fix="Send Rasa YAML with an 'nlu:' section of intents and examples.",
        )
    parse = nlu.parse if hasattr(nlu, "parse") else nlu
    result = evaluate_messages(parse, data.training_examples, data.sentiment_examples)
    return evaluation_payload(result)


def evaluation_payload(result: EvaluationResult) -> dict[str, Any]:
    """Rasa's ``/model/test/intents`` body for one evaluation result."""
    ir = intent_report(result)
    er = entity_report(result)
    sr = sentiment_report(result)

    def headline(report: dict[str, Any], avg: str = "weighted avg") -> dict[str, Any]:
        block = report.get(avg) or {}
        return {
            "precision": block.get("precision"),
            "f1_score": block.get("f1-score"),
            "accuracy": report.get("accuracy"),
        }

    return {
        "intent_evaluation": {
            "report": ir,
            **headline(ir),
            "predictions": [
                {"text": p.text, "intent": p.intent, "predicted": p.predicted, "confidence": p.confidence}
                for p in result.intents
            ],
            "errors": intent_errors(result),
        },
        "entity_evaluation": {"report": er, **headline(er, "micro avg")},
        "sentiment_evaluation": {"report": sr, **headline(sr)},
        "response_selection_evaluation": None,
    }


def _print_summary(title: str, figures: dict[str, Any], out_dir: Path) -> None:
    def pct(v: Any) -> str:
        return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"

    print(f"{title}")
    print(f"  intent accuracy: {pct(figures['intent_accuracy'])}  macro F1: {pct(figures['intent_macro_f1'])}"
          f"  weighted F1: {pct(figures['intent_weighted_f1'])}  ({figures['num_intent_examples']} examples)")
    print(f"  entity F1 (exact spans, micro): {pct(figures['entity_f1'])}")
    print(f"  sentiment accuracy: {pct(figures['sentiment_accuracy'])}  ({figures['num_sentiment_examples']} examples)")
    if figures.get("fold_intent_accuracies"):
        print("  per fold: " + ", ".join(pct(a) for a in figures["fold_intent_accuracies"]))
    print(f"  reports in {out_dir}/")


def run_nlu_evaluation(args: argparse.Namespace) -> int:
    """``python -m bot test nlu``: ``--nlu FILE`` against the model, or ``--cross-validation``."""
    from bot.shared.training_data.nlu import load_nlu_data

    out_dir = Path(args.out)
    root = Path(getattr(args, "root", ".") or ".")
    if getattr(args, "cross_validation", False):
        from bot.shared.importer import ProjectImporter

        importer = ProjectImporter.from_paths(root, getattr(args, "config", None))
        data = load_nlu_data(args.nlu) if args.nlu else importer.get_nlu_data()
        started = time.perf_counter()
        result = cross_validate(importer.get_config(), data, int(args.folds), root_dir=root)
        figures = write_reports(result, out_dir)
        _print_summary(f"{args.folds}-fold cross-validation ({time.perf_counter() - started:.0f}s)", figures, out_dir)
        return 0

    from bot.model.archive import resolve_model_path
    from bot.model.loader import LoadedModel

    test_paths = args.nlu or [p for p in (root / "tests" / "nlu", root / "test_data") if p.exists()]
    if not test_paths:
        raise ConfigError(
            "No NLU test data given.", fix="Pass --nlu FILE, or --cross-validation to use the training data.",
        )
    data = load_nlu_data(test_paths)
    model = LoadedModel.load(resolve_model_path(args.model))
    try:
        if model.nlu is None:
            raise ConfigError("The model has no NLU pipeline.", str(model.path), fix="Train it with NLU data.")
        result = evaluate_messages(model.nlu.parse, data.training_examples, data.sentiment_examples)
    finally:
        model.close()
    figures = write_reports(result, out_dir)
    _print_summary(f"NLU evaluation of {model.path.name}", figures, out_dir)
    return 0
