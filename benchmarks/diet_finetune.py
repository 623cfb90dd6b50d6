"""Fine-tuning (``train --finetune --epoch-fraction F``) against training from scratch, on
Rasa's default pipeline and a benchmark intent dataset.

A bot is trained on ``--base-per-class`` examples per intent; then ``--added-per-class``
more per intent arrive (as a trainer adds examples to known intents). The new data is
trained twice, side by side in one run: fine-tuned from the first model for ``F`` of its
epochs, and from scratch (all epochs). Each model is scored on the dataset's test split as
``rasa test nlu`` scores it (a FallbackClassifier answer undone).

    python benchmarks/diet_finetune.py --dataset banking77 --base-per-class 60 \\
        --added-per-class 5 --epoch-fraction 0.2

Results: benchmarks/results/diet_finetune.json (wall and CPU seconds, load average,
accuracy per model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.nlu_intent import (  # noqa: E402
    BENCH_DATA, DATASETS, _cpu_seconds, metrics, pipeline_config, read_tsv, subset, training_data,
)

RESULTS = Path(__file__).resolve().parent / "results" / "diet_finetune.json"


def _train(rows: list[tuple[str, str]], language: str, base: Path | None = None,
           fraction: float = 1.0) -> tuple[Any, dict[str, Any]]:
    from bot.nlu.pipeline import NLUPipeline

    pipeline = NLUPipeline.from_config(pipeline_config("rasa", language))
    previous = NLUPipeline.load(base) if base is not None else None
    load_before = os.getloadavg()[0]
    started, cpu = time.perf_counter(), _cpu_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.train(training_data(rows), previous, fraction)
    return pipeline, {
        "train_examples": len(rows),
        "train_seconds": round(time.perf_counter() - started, 1),
        "train_cpu_seconds": round(_cpu_seconds() - cpu, 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _score(pipeline: Any, test_rows: list[tuple[str, str]]) -> dict[str, Any]:
    from bot.nlu.classifiers import is_fallback_classifier_prediction, undo_fallback_prediction

    predicted = []
    for text, _ in test_rows:
        result = pipeline.parse(text)
        if is_fallback_classifier_prediction(result):
            result = undo_fallback_prediction(result)
        predicted.append(result["intent"]["name"])
    return metrics([label for _, label in test_rows], predicted, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="banking77", choices=sorted(DATASETS))
    parser.add_argument("--base-per-class", type=int, default=60)
    parser.add_argument("--added-per-class", type=int, default=5)
    parser.add_argument("--epoch-fraction", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    spec = DATASETS[args.dataset]
    folder = BENCH_DATA / spec["folder"]
    everything = subset(read_tsv(folder / "train.tsv"), args.base_per_class + args.added_per_class)
    seen: dict[str, int] = {}
    base_rows, added_rows = [], []
    for row in everything:  # the first base-per-class examples of each intent, then the rest
        seen[row[1]] = seen.get(row[1], 0) + 1
        (base_rows if seen[row[1]] <= args.base_per_class else added_rows).append(row)
    test_rows = read_tsv(folder / "test.tsv")
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pipeline, runs["base"] = _train(base_rows, spec["language"])
        runs["base"].update(_score(pipeline, test_rows))
        pipeline.persist(Path(tmp) / "nlu")
        print("base", runs["base"], flush=True)
        pipeline, runs["finetuned"] = _train(everything, spec["language"], Path(tmp) / "nlu", args.epoch_fraction)
        runs["finetuned"].update(_score(pipeline, test_rows), epoch_fraction=args.epoch_fraction)
        print("finetuned", runs["finetuned"], flush=True)
    pipeline, runs["scratch"] = _train(everything, spec["language"])
    runs["scratch"].update(_score(pipeline, test_rows))
    print("scratch", runs["scratch"], flush=True)
    runs["finetune_over_scratch_time"] = round(runs["finetuned"]["train_seconds"] / runs["scratch"]["train_seconds"], 3)
    result = {
        "command": "python benchmarks/diet_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "dataset": args.dataset, "pipeline": "Rasa's default (DIETClassifier, 100 epochs)",
        "base_per_class": args.base_per_class, "added_per_class": args.added_per_class,
        "test_examples": len(test_rows), "runs": runs,
        "machine": {"cpus": os.cpu_count(), "note": "shared 2-core machine: see load_average_1m"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print("written", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
