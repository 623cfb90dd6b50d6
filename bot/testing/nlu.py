"""``python -m bot test nlu``: Rasa's options on top of ``bot/nlu/evaluation.py``.

- ``--nlu FILE...`` against the trained model (default: ``tests/nlu`` or ``test_data/``;
  without either, the project's training data, as ``rasa test nlu`` defaults to ``data/``);
- ``--cross-validation --folds N --runs R`` on the project's NLU data, no model needed;
- ``--cross-validation --config A.yml B.yml``: every config on the same folds, compared
  (the table ``data suggest`` prints).

Reports keep Rasa's file names (``intent_report.json``, ``intent_errors.json``, ...).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bot.nlu.evaluation import (
    EvaluationResult,
    evaluate_messages,
    summary,
    write_reports,
)
from bot.shared.exceptions import ConfigError, TrainingDataError
from bot.shared.training_data.nlu import KEY_SENTIMENT, TrainingData

logger = logging.getLogger(__name__)

INTENT_SUCCESSES = "intent_successes.json"
COMPARISON_REPORT = "nlu_comparison.json"


@dataclass
class CrossValidation:
    """Pooled predictions of every fold (and run) of one config, with each fold's train time."""

    label: str
    result: EvaluationResult
    train_seconds: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def figures(self) -> dict[str, Any]:
        out = summary(self.result)
        # the median: the first fold also pays for loading encoders (once per process)
        out["train_seconds_per_fold"] = statistics.median(self.train_seconds) if self.train_seconds else None
        return out


def cross_validate_timed(
    label: str,
    project_config: Any,
    data: TrainingData,
    folds: int,
    runs: int = 1,
    root_dir: str | Path | None = None,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> CrossValidation:
    """k-fold cross-validation (``runs`` times with seeds seed, seed+1, ...), timing each fold's training.

    The folds are ``bot.nlu.evaluation``'s stratified ones, so two configs given the same
    seed are trained and tested on exactly the same examples.
    """
    from bot.nlu.evaluation import _stratified_folds, _subset
    from bot.nlu.pipeline import NLUPipeline

    if folds < 2:
        raise ConfigError("Cross-validation needs at least 2 folds.", fix="Pass --folds 2 or more.")
    examples = list(data.training_examples)
    if not examples:
        raise TrainingDataError("No NLU training examples to cross-validate.", fix="Add intents to the NLU data.")
    sentiment = list(data.sentiment_examples)
    out = CrossValidation(label, EvaluationResult())
    for run in range(runs):
        example_folds = _stratified_folds([m.intent or "" for m in examples], folds, seed + run)
        sentiment_folds = _stratified_folds([str(m.get(KEY_SENTIMENT)) for m in sentiment], folds, seed + run)
        for k in range(folds):
            train = [m for m, f in zip(examples, example_folds) if f != k]
            test = [m for m, f in zip(examples, example_folds) if f == k]
            train_s = [m for m, f in zip(sentiment, sentiment_folds) if f != k]
            test_s = [m for m, f in zip(sentiment, sentiment_folds) if f == k]
            pipeline = NLUPipeline.from_config(project_config, root_dir=root_dir)
            started = time.perf_counter()
            pipeline.train(_subset(data, train, train_s))
            out.train_seconds.append(time.perf_counter() - started)
            fold = evaluate_messages(pipeline.parse, test, test_s)
            accuracy = sum(p.intent == p.predicted for p in fold.intents) / len(fold.intents) if fold.intents else 0.0
            out.result.fold_accuracies.append(accuracy)
            out.result.extend(fold)
            if progress:
                progress(f"{label}: run {run + 1}/{runs} fold {k + 1}/{folds}: intent accuracy "
                         f"{100 * accuracy:.1f}% (trained in {out.train_seconds[-1]:.1f}s)")
    return out


def pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "n/a"


def comparison_table(runs: list[CrossValidation]) -> str:
    """One row per config (intent accuracy, macro F1, entity F1, train s/fold), then the
    difference of each later config from the first."""
    header = f"{'pipeline':<34} {'intent acc':>10} {'macro F1':>9} {'entity F1':>9} {'train s/fold (median)':>22}"
    lines = [header, "-" * len(header)]
    for cv in runs:
        f = cv.figures
        if cv.error:
            lines.append(f"{cv.label[:34]:<34} failed: {cv.error}")
            continue
        lines.append(f"{cv.label[:34]:<34} {pct(f['intent_accuracy']):>10} {pct(f['intent_macro_f1']):>9} "
                     f"{pct(f['entity_f1']):>9} {f['train_seconds_per_fold'] or 0:>22.1f}")
    base = runs[0].figures if runs and not runs[0].error else None
    for cv in runs[1:]:
        if base is None or cv.error:
            continue
        f = cv.figures

        def diff(key: str) -> str:
            a, b = base.get(key), f.get(key)
            return f"{100 * (b - a):+.2f} pt" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "n/a"

        t0, t1 = base["train_seconds_per_fold"] or 0.0, f["train_seconds_per_fold"] or 0.0
        ratio = f"{t1 / t0:.2f}x" if t0 > 0 else "n/a"
        lines.append(f"{'difference':<34} {diff('intent_accuracy'):>10} "
                     f"{diff('intent_macro_f1'):>9} {diff('entity_f1'):>9} {ratio:>22}")
    return "\n".join(lines)


def _nlu_data_for(args: argparse.Namespace, config: str | None) -> tuple[Any, TrainingData]:
    """(project config, NLU data) of ``--config``/``--nlu``/``--root``; no domain needed."""
    from bot.model.training import _project_importers

    root = Path(getattr(args, "root", ".") or ".")
    importer, nlu_importer = _project_importers(root, config, getattr(args, "domain", None), None,
                                                getattr(args, "nlu", None), None, nlu_only=True)
    return importer.get_config(), nlu_importer.get_nlu_data()


def _write_successes(result: EvaluationResult, out_dir: Path) -> None:
    hits = [{"text": p.text, "intent": p.intent, "intent_prediction": {"name": p.predicted, "confidence": p.confidence}}
            for p in result.intents if p.intent == p.predicted]
    (out_dir / INTENT_SUCCESSES).write_text(json.dumps(hits, ensure_ascii=False, indent=2), encoding="utf-8")


def _write(result: EvaluationResult, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    figures = write_reports(result, out_dir, plots=not getattr(args, "no_plot", False))
    if getattr(args, "no_errors", False):
        (out_dir / "intent_errors.json").unlink(missing_ok=True)
    if getattr(args, "successes", False):
        _write_successes(result, out_dir)
    return figures


def _print_figures(title: str, figures: dict[str, Any], out_dir: Path) -> None:
    print(title)
    print(f"  intent accuracy: {pct(figures['intent_accuracy'])}  macro F1: {pct(figures['intent_macro_f1'])}"
          f"  weighted F1: {pct(figures['intent_weighted_f1'])}  ({figures['num_intent_examples']} examples)")
    print(f"  entity F1 (exact spans, micro): {pct(figures['entity_f1'])}")
    if figures.get("num_sentiment_examples"):
        print(f"  sentiment accuracy: {pct(figures['sentiment_accuracy'])}  "
              f"({figures['num_sentiment_examples']} examples)")
    if figures.get("fold_intent_accuracies"):
        print("  per fold: " + ", ".join(pct(a) for a in figures["fold_intent_accuracies"]))
    print(f"  reports in {out_dir}/")


def run_cross_validation(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    configs = list(args.config or [None])
    folds, runs = int(args.folds), int(getattr(args, "runs", 1) or 1)
    root = Path(getattr(args, "root", ".") or ".")
    results: list[CrossValidation] = []
    for config in configs:
        project_config, data = _nlu_data_for(args, config)
        label = str(config or project_config.filename or "config.yml")
        started = time.perf_counter()
        cv = cross_validate_timed(label, project_config, data, folds, runs, root_dir=root,
                                  progress=lambda line: logger.info(line))
        target = out_dir if len(configs) == 1 else out_dir / Path(label).stem
        figures = _write(cv.result, args, target)
        _print_figures(f"{label}: {folds}-fold cross-validation x {runs} run(s) "
                       f"({time.perf_counter() - started:.0f}s)", figures, target)
        results.append(cv)
    if len(results) > 1:
        print(comparison_table(results))
        (out_dir / COMPARISON_REPORT).write_text(
            json.dumps({cv.label: cv.figures for cv in results}, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def _default_test_paths(root: Path) -> list[Path]:
    return [p for p in (root / "tests" / "nlu", root / "test_data") if p.exists()]


def run_nlu_tests(args: argparse.Namespace) -> int:
    """``test nlu``: cross-validation, or the model against test data."""
    if getattr(args, "cross_validation", False):
        return run_cross_validation(args)
    from bot.model.archive import resolve_model_path
    from bot.model.loader import LoadedModel
    from bot.shared.training_data.nlu import load_nlu_data

    root = Path(getattr(args, "root", ".") or ".")
    note = ""
    if args.nlu:
        data = load_nlu_data(args.nlu)
    elif _default_test_paths(root):
        data = load_nlu_data(_default_test_paths(root))
    else:  # Rasa's default `--nlu data`: the training data (measures fit, not generalisation)
        _, data = _nlu_data_for(args, None)
        note = " on its own training data (pass --nlu FILE or --cross-validation to measure generalisation)"
    model_arg = args.model
    if model_arg == "models" and str(root) != ".":
        model_arg = str(root / "models")
    model = LoadedModel.load(resolve_model_path(model_arg))
    try:
        if model.nlu is None:
            raise ConfigError("The model has no NLU pipeline.", str(model.path),
                              fix="Train it with NLU data (`python -m bot train nlu`).")
        result = evaluate_messages(model.nlu.parse, data.training_examples, data.sentiment_examples)
    finally:
        model.close()
    out_dir = Path(args.out)
    figures = _write(result, args, out_dir)
    _print_figures(f"NLU evaluation of {model.path.name}{note}", figures, out_dir)
    return 0
