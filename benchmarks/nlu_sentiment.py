"""Sentiment benchmark: kefu's shipped default SentimentClassifier vs the lexicon baseline.

Sets:
- ``heldout``: bot/nlu/data/sentiment_heldout.yml (hand-written zh/en shop messages,
  3 classes, never used for training);
- ``online_shopping_10_cats`` and ``sentiment_waimai_10k`` test splits from
  ../shared/benchmarks (eval only: read here at run time, never copied or trained on).
  They are binary (0 negative / 1 positive); reported two ways: ``accuracy_3class``
  (a ``neutral`` prediction counts as wrong) and ``accuracy_sign`` (sign of the score).

    .venv/bin/python benchmarks/nlu_sentiment.py

Results: benchmarks/results/nlu_sentiment.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

BENCH_DATA = REPO_ROOT.parent / "shared" / "benchmarks"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "nlu_sentiment.json"
BINARY_SETS = ("sentiment_online_shopping_10_cats", "sentiment_waimai_10k")


def read_binary(path: Path) -> list[tuple[str, str]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            text, _, label = line.rstrip("\n").rpartition("\t")
            if text.strip():
                rows.append((text, "positive" if label.strip() == "1" else "negative"))
    return rows


def score(predictions: list[dict[str, Any]], gold: list[str], binary: bool) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    labels = [p["label"] for p in predictions]
    out: dict[str, Any] = {
        "n": len(gold),
        "accuracy_3class": round(sum(p == g for p, g in zip(labels, gold)) / len(gold), 4),
        "macro_f1": round(f1_score(gold, labels, average="macro", zero_division=0), 4),
        "predicted_distribution": {k: labels.count(k) for k in ("negative", "neutral", "positive")},
    }
    if binary:
        sign = ["positive" if p["score"] >= 0 else "negative" for p in predictions]
        out["accuracy_sign"] = round(sum(p == g for p, g in zip(sign, gold)) / len(gold), 4)
    return out


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bot.nlu.base import PipelineContext
    from bot.nlu.sentiment import HELDOUT_DATA_FILE, SentimentClassifier, score_sentiment
    from bot.shared.training_data.nlu import TrainingData, load_nlu_data

    started = time.perf_counter()
    model = SentimentClassifier({}, PipelineContext())
    model.train(TrainingData(), [])
    train_s = time.perf_counter() - started
    held = load_nlu_data(HELDOUT_DATA_FILE).sentiment_examples
    sets: dict[str, list[tuple[str, str]]] = {"heldout": [(m.text, str(m.get("sentiment"))) for m in held]}
    for name in BINARY_SETS:
        path = BENCH_DATA / name / "test.tsv"
        if path.exists():
            sets[name] = read_binary(path)
    results: dict[str, Any] = {
        "model": "SentimentClassifier (shipped default data, char 1-3-grams + lexicon + USE, LogReg C=4)",
        "train_examples": len(model.default_examples()),
        "train_seconds": round(train_s, 2),
        "sets": {},
    }
    for name, rows in sets.items():
        texts = [t for t, _ in rows]
        gold = [g for _, g in rows]
        t0 = time.perf_counter()
        preds = []
        for i in range(0, len(texts), 256):
            preds.extend(model.predict(texts[i : i + 256]))
        elapsed = time.perf_counter() - t0
        binary = name != "heldout"
        results["sets"][name] = {
            "kefu": score(preds, gold, binary),
            "lexicon_baseline": score([score_sentiment(t) for t in texts], gold, binary),
            "predict_ms_per_text": round(1000 * elapsed / len(texts), 3),
        }
        print(name, json.dumps(results["sets"][name], ensure_ascii=False), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
