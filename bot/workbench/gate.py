"""Retrain behind a gate: a candidate model never sees the held-out examples, and is compared
with the active model on exactly those examples (per-intent F1, accuracy, confusions).

The held-out set is chosen by a hash of each example's text, so it is the same for every
model the workbench trains: an example held out today was held out from the active model
too, and a newly annotated message lands in it with the configured probability. A model
trained elsewhere (``python -m bot train``) saw everything; the report says so
(``active_saw_holdout``), since its figures on the held-out set are then too kind.
Blocking and heavy: run on the agent's heavy-jobs thread.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ruamel.yaml.scalarstring import LiteralScalarString

from bot.shared.training_data.nlu import replace_entities
from bot.workbench import yaml_edit
from bot.workbench.annotate import text_key
from bot.workbench.config import GateConfig

logger = logging.getLogger(__name__)


def is_held_out(text: str, share: float) -> bool:
    """The same answer for the same text (normalized) in every process, model and day."""
    digest = hashlib.sha1(("holdout:" + text_key(text)).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 10_000 < share * 10_000


def split_examples(examples: list[Any], share: float) -> tuple[list[Any], list[Any]]:
    train, held = [], []
    for m in examples:
        (held if is_held_out(m.text, share) else train).append(m)
    return train, held


def write_training_nlu(nlu_files: list[Path], target: Path, share: float) -> int:
    """Copies of the NLU files without held-out examples; returns how many were left out."""
    from io import StringIO

    target.mkdir(parents=True, exist_ok=True)
    dropped = 0
    for n, path in enumerate(nlu_files):
        data = yaml_edit.load(path.read_text(encoding="utf-8"), path)
        for item in (data.get("nlu") or []) if hasattr(data, "get") else []:
            examples = item.get("examples") if hasattr(item, "get") else None
            if not isinstance(examples, str) or "intent" not in item:
                continue
            kept = []
            for line in examples.splitlines():
                body = line.strip()[2:] if line.strip().startswith("- ") else None
                if body is not None and is_held_out(replace_entities(body), share):
                    dropped += 1
                    continue
                kept.append(line)
            if not any(line.strip() for line in kept):  # keep at least one example per intent
                kept = examples.splitlines()[:1]
                dropped -= 1
            item["examples"] = LiteralScalarString("\n".join(kept) + "\n")
        out = StringIO()
        yaml_edit._yaml().dump(data, out)
        (target / f"{n:03d}_{path.name}").write_text(out.getvalue(), encoding="utf-8")
    return dropped


def train_candidate(root: Path, models_dir: Path, gate: GateConfig, base: Path | None = None,
                    epoch_fraction: float = 0.0) -> dict[str, Any]:
    """Train on the project's data minus the held-out examples; returns the archive and counts.

    With ``base`` (the active model, trained by the workbench on the same split) and an
    ``epoch_fraction`` above 0 the candidate is fine-tuned from it (``train --finetune``);
    where fine-tuning is refused (a new intent, a changed config) it trains from scratch
    and says why (``finetune_refused``).
    """
    from bot.model.training import train
    from bot.shared.exceptions import ConfigError
    from bot.shared.importer import ProjectImporter

    importer = ProjectImporter.from_paths(root)
    work = Path(tempfile.mkdtemp(prefix="kefu-wb-nlu-"))
    try:
        dropped = write_training_nlu(importer.nlu_files, work, gate.holdout)
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"root": root, "nlu": [work], "stories": importer.story_files or None,
                                  "out": models_dir}
        how: dict[str, Any] = {}
        if base is not None and epoch_fraction > 0:
            try:
                result = train(**kwargs, finetune=base, epoch_fraction=epoch_fraction)
                how = {"finetuned_from": base.name, "epoch_fraction": epoch_fraction}
            except ConfigError as e:
                logger.warning("Workbench: cannot fine-tune %s (%s); training from scratch.", base.name, e)
                how = {"finetune_refused": str(e)[:500]}
                result = train(**kwargs)
        else:
            result = train(**kwargs)
        return {"model_path": str(result.model_path), "held_out_examples": dropped,
                "train_s": round(time.perf_counter() - started, 2),
                "trained_nlu": result.trained_nlu, "trained_core": result.trained_core, **how}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def held_out_messages(root: Path, share: float) -> list[Any]:
    from bot.shared.importer import ProjectImporter

    data = ProjectImporter.from_paths(root).get_nlu_data()
    _, held = split_examples([m for m in data.training_examples if m.intent], share)
    return held


def evaluate_archive(archive: Path, messages: list[Any]) -> dict[str, Any]:
    """Intent report of one archive's NLU on ``messages`` (Rasa's report + confused_with)."""
    from bot.model.archive import unpack_archive
    from bot.nlu import NLUPipeline
    from bot.nlu.evaluation import evaluate_messages, intent_report

    unpacked = unpack_archive(archive)
    try:
        pipeline = NLUPipeline.load(unpacked / "nlu")
        result = evaluate_messages(pipeline.parse, messages)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    report = intent_report(result)
    pairs = Counter((p.intent, str(p.predicted)) for p in result.intents if p.intent != p.predicted)
    return {"report": report, "accuracy": float(report.get("accuracy", 0.0)) if report else 0.0,
            "confusions": {f"{g} -> {p}": n for (g, p), n in pairs.items()},
            "predictions": [{"text": p.text, "intent": p.intent, "predicted": p.predicted} for p in result.intents]}


def _per_intent(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {k: v for k, v in report.items()
            if isinstance(v, dict) and k not in ("macro avg", "weighted avg", "micro avg")}


def compare(candidate: dict[str, Any], active: dict[str, Any] | None, gate: GateConfig) -> dict[str, Any]:
    """Per-intent F1 deltas, accuracy delta, changed confusions and the gate's verdict."""
    cand = _per_intent(candidate["report"])
    act = _per_intent(active["report"]) if active else {}
    intents = []
    regressions = []
    for name in sorted(set(cand) | set(act)):
        c, a = cand.get(name, {}), act.get(name, {})
        support = int(c.get("support") or a.get("support") or 0)
        f1_c, f1_a = float(c.get("f1-score", 0.0)), float(a.get("f1-score", 0.0)) if active else None
        delta = None if f1_a is None else round(f1_c - f1_a, 4)
        row = {"intent": name, "support": support, "f1_active": None if f1_a is None else round(f1_a, 4),
               "f1_candidate": round(f1_c, 4), "delta": delta}
        intents.append(row)
        if delta is not None and support >= gate.min_support and delta < -gate.max_f1_drop:
            regressions.append({"intent": name, "delta": delta, "limit": -gate.max_f1_drop})
    accuracy_delta = None
    if active:
        accuracy_delta = round(candidate["accuracy"] - active["accuracy"], 4)
        if accuracy_delta < -gate.max_accuracy_drop:
            regressions.append({"intent": "(overall accuracy)", "delta": accuracy_delta,
                                "limit": -gate.max_accuracy_drop})
    old = (active or {}).get("confusions", {})
    new = candidate.get("confusions", {})
    changed = [{"pair": k, "active": old.get(k, 0), "candidate": new.get(k, 0)}
               for k in sorted(set(old) | set(new)) if old.get(k, 0) != new.get(k, 0)]
    changed.sort(key=lambda r: -abs(r["candidate"] - r["active"]))
    intents.sort(key=lambda r: (r["delta"] if r["delta"] is not None else 0.0, r["intent"]))
    return {
        "passed": not regressions,
        "regressions": regressions,
        "accuracy": {"active": None if not active else round(active["accuracy"], 4),
                     "candidate": round(candidate["accuracy"], 4), "delta": accuracy_delta},
        "intents": intents,
        "confusions_changed": changed[:50],
        "thresholds": {"max_f1_drop": gate.max_f1_drop, "max_accuracy_drop": gate.max_accuracy_drop,
                       "min_support": gate.min_support, "holdout": gate.holdout},
    }


def story_results(archive: Path, stories: list[Path]) -> dict[str, Any]:
    """``test core`` of one archive on the project's test stories: which stories pass."""
    import asyncio

    from bot.testing.runner import evaluate_core

    out = Path(tempfile.mkdtemp(prefix="kefu-wb-core-"))
    try:
        result = asyncio.run(evaluate_core(archive, list(stories), out, errors=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    accuracy = result.conversation_accuracy or {}
    return {"correct": int(accuracy.get("correct", 0)), "total": int(accuracy.get("total", 0)),
            "failed": sorted(str(s) for s in result.failed_stories), "action_accuracy": round(float(result.accuracy), 4)}


def compare_stories(root: Path, candidate: Path, active: Path | None) -> dict[str, Any] | None:
    """Both models on the test stories (tests/ as ``test core`` finds them); None without any."""
    from bot.shared.importer import ProjectImporter

    stories = ProjectImporter.from_paths(root).test_story_files()
    if not stories:
        return None
    cand = story_results(candidate, stories)
    act = story_results(active, stories) if active is not None else None
    newly_failing = sorted(set(cand["failed"]) - set(act["failed"])) if act else []
    return {"files": [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in stories],
            "candidate": cand, "active": act, "newly_failing": newly_failing}


def kb_report(archive: Path, queries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``test kb`` figures of one archive's knowledge base on ``queries`` (None: no KB in it)."""
    from bot.knowledge.evaluate import evaluate
    from bot.model.loader import LoadedModel

    model = LoadedModel.load(archive)
    try:
        holder = model.knowledge
        if holder is None:
            return None
        report = evaluate(getattr(holder, "current", holder), queries)
    finally:
        if model.knowledge is not None and hasattr(model.knowledge, "stop_watching"):
            model.knowledge.stop_watching()
        model.close()
    return {k: report.get(k) for k in ("queries", "recall@1", "recall@3", "mrr", "answer_rate", "answer_wrong_rate")}


def compare_kb(root: Path, candidate: Path, active: Path | None, gate: GateConfig) -> dict[str, Any] | None:
    """Both knowledge bases on ``gate.kb_queries`` (as ``test kb --queries``); None when not configured."""
    if not gate.kb_queries:
        return None
    from bot.knowledge.evaluate import load_queries

    queries = load_queries(root / gate.kb_queries)
    cand = kb_report(candidate, queries)
    act = kb_report(active, queries) if active is not None else None
    delta = None
    if cand and act and cand.get("recall@1") is not None and act.get("recall@1") is not None:
        delta = round(cand["recall@1"] - act["recall@1"], 4)
    return {"queries": gate.kb_queries, "candidate": cand, "active": act, "recall@1_delta": delta}


def gate_candidate(root: Path, candidate: Path, active: Path | None, gate: GateConfig,
                   active_saw_holdout: bool = False) -> dict[str, Any]:
    """Evaluate both archives on the same held-out examples and test stories, and compare them."""
    messages = held_out_messages(root, gate.holdout)
    started = time.perf_counter()
    cand = evaluate_archive(candidate, messages)
    has_active = active is not None and Path(active).exists()
    act = evaluate_archive(active, messages) if has_active else None
    comparison = compare(cand, act, gate)
    stories = compare_stories(root, candidate, active if has_active else None)
    comparison["stories"] = stories
    if stories and len(stories["newly_failing"]) > gate.max_new_story_failures:
        comparison["regressions"].append({"intent": "(test stories)", "delta": -len(stories["newly_failing"]),
                                          "limit": -gate.max_new_story_failures,
                                          "stories": stories["newly_failing"][:20]})
        comparison["passed"] = False
    kb = compare_kb(root, candidate, active if has_active else None, gate)
    comparison["kb"] = kb
    if kb and kb["recall@1_delta"] is not None and kb["recall@1_delta"] < -gate.max_kb_recall_drop:
        comparison["regressions"].append({"intent": "(knowledge base recall@1)", "delta": kb["recall@1_delta"],
                                          "limit": -gate.max_kb_recall_drop})
        comparison["passed"] = False
    comparison.update({"held_out": len(messages), "active_saw_holdout": bool(act and active_saw_holdout),
                       "evaluate_s": round(time.perf_counter() - started, 2),
                       "candidate_model": Path(candidate).name,
                       "active_model": Path(active).name if act else None})
    return comparison
