"""DIET training CPU seconds, an older commit's bot/nlu/diet.py against this tree's DIET, one run.

The machine kefu is developed on is shared (load 4-15 on 2 cores), so wall time and even
a single CPU-seconds figure measure the neighbours; this script trains the same featurised
data with both versions of ``DIETClassifier._fit`` interleaved in one process, one torch
thread, and reports each run's CPU seconds (``time.process_time``) and the load average.

    .venv/bin/python benchmarks/diet_step_ab.py --base e039f8d --per-class 6 --epochs 20 \\
        --rounds 3 --out benchmarks/results/diet_step_ab.json

Featurisation: Banking77's training split, ``--per-class`` examples per intent (the
subset nlu_intent.py draws), through Rasa's default pipeline up to DIET.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class _Captured(Exception):
    pass


def featurised(per_class: int) -> dict[str, Any]:
    """The arrays DIET's ``_fit`` receives for Banking77 ``per_class``/class."""
    import nlu_intent as ni

    from bot.nlu import diet
    from bot.nlu.pipeline import NLUPipeline

    got: dict[str, Any] = {}
    original = diet.DIETClassifier._fit

    def capture(self: Any, arrays: Any, intent_ids: Any, tags: Any, threads: Any = None, epochs: Any = None) -> None:
        got.update(arrays=arrays, intent_ids=intent_ids, tags=tags, dims=self.dims, intents=self.intents,
                   tag_sets=self.tag_sets, config=dict(self.config))
        raise _Captured

    spec = ni.DATASETS["banking77"]
    rows = ni.subset(ni.read_tsv(ni.BENCH_DATA / spec["folder"] / "train.tsv"), per_class)
    pipeline = NLUPipeline.from_config(ni.pipeline_config("rasa", spec["language"]))
    diet.DIETClassifier._fit = capture
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.train(ni.training_data(rows))
    except _Captured:
        pass
    finally:
        diet.DIETClassifier._fit = original
    return got


def featurised_cached(per_class: int, folder: Path = Path("/tmp")) -> dict[str, Any]:
    """``featurised(per_class)``, pickled under ``folder`` after the first time (the other
    DIET benchmarks' runs each start a fresh process)."""
    import pickle

    cached = folder / f"kefu_diet_banking77_{per_class}.pkl"
    if cached.exists():
        return pickle.loads(cached.read_bytes())
    data = featurised(per_class)
    cached.write_bytes(pickle.dumps(data))
    return data


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def new_classifier(module: Any, data: dict[str, Any], seed: int, **config: Any) -> Any:
    """A DIETClassifier of ``module`` over the ``featurised`` data, its model freshly
    initialised from ``seed``; ``config`` overrides the captured config (``epochs=`` ...)."""
    import numpy as np
    import torch

    c = object.__new__(module.DIETClassifier)
    c.config = {**data["config"], **config}
    c.dims, c.intents, c.tag_sets = data["dims"], data["intents"], data["tag_sets"]
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    c.model = module.DIETModel(c.dims, len(c.intents), c.tag_sets, c.config)
    return c


def fit_cpu_seconds(module: Any, data: dict[str, Any], epochs: int, seed: int) -> float:
    c = new_classifier(module, data, seed, epochs=epochs)
    started = time.process_time()
    c._fit([dict(a) for a in data["arrays"]], data["intent_ids"], data["tags"], module.EpochThreads(1, False))
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="commit whose bot/nlu/diet.py is the 'before'")
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ["KEFU_TORCH_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    shown = subprocess.run(["git", "show", f"{args.base}:bot/nlu/diet.py"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        parser.error(f"--base {args.base}: no single-file bot/nlu/diet.py there (DIET is a package since "
                     "the split of 2026-12-08); compare later versions with diet_fit_profile.py in each checkout")
    data = featurised(args.per_class)
    from bot.nlu.diet import classifier, model
    from bot.nlu import torch_runtime

    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "diet_base.py"
        base_path.write_text(shown.stdout, encoding="utf-8")
        after = SimpleNamespace(DIETClassifier=classifier.DIETClassifier, DIETModel=model.DIETModel,
                                EpochThreads=torch_runtime.EpochThreads)
        modules = {"before": load_module(base_path, "diet_base"), "after": after}
        fit_cpu_seconds(modules["after"], data, 2, 0)  # warm-up: allocator, kernels, imports
        runs: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                cpu = fit_cpu_seconds(modules[name], data, args.epochs, r)
                runs.append({"code": name, "round": r, "cpu_s": round(cpu, 2), "load_1m": os.getloadavg()[0]})
                print(json.dumps(runs[-1]), flush=True)
    n = len(data["arrays"])
    summary = {}
    for name in ("before", "after"):
        cpu = [x["cpu_s"] for x in runs if x["code"] == name]
        summary[name] = {"cpu_s": cpu, "median_cpu_s": round(statistics.median(cpu), 2),
                         "ms_per_example_epoch": round(1000 * statistics.median(cpu) / (n * args.epochs), 3)}
    result = {"command": "python benchmarks/diet_step_ab.py " + " ".join(argv or sys.argv[1:]),
              "base": args.base, "examples": n, "epochs": args.epochs, "threads": 1,
              "runs": runs, "summary": summary}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
