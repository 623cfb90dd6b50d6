"""DIET's training loop alone on Banking77, in a process of its own: time or profile.

``benchmarks/diet_step_ab.py`` compares two versions inside one process; what a version
costs on its own (oneDNN's kernel cache, the allocator) needs a fresh process per run.
This featurises Banking77 ``--per-class`` examples per intent through Rasa's default
pipeline (cached under ``--cache``), trains DIET's ``_fit`` for ``--epochs`` after a
one-epoch warm-up, and prints wall and CPU seconds per example and epoch, or a profile:

    .venv/bin/python benchmarks/diet_fit_profile.py --per-class 65 --epochs 10 --batch-size ramp
    .venv/bin/python benchmarks/diet_fit_profile.py --epochs 2 --batch-size 160 --profile torch

``--batch-size ramp`` is the project's own setting (Rasa's default 64 -> 256 over the epochs);
a number fixes it. ``ONEDNN_VERBOSE=all`` in the environment shows oneDNN's kernel builds
(``create:cache_miss``) beside its runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=65)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", default="160", help="a number, or 'ramp' for the config's own")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=["torch", "python"], help="print a profile of the epochs")
    parser.add_argument("--cache", type=Path, default=Path("/tmp"), help="folder for the featurised data")
    args = parser.parse_args(argv)
    if args.batch_size != "ramp" and not args.batch_size.isdigit():
        parser.error(f"--batch-size: a number or 'ramp', not {args.batch_size!r}")
    os.environ["KEFU_TORCH_THREADS"] = str(args.threads)
    import torch

    import diet_step_ab
    from bot.nlu import diet
    from bot.nlu.torch_runtime import EpochThreads

    torch.set_num_threads(args.threads)
    data = diet_step_ab.featurised_cached(args.per_class, args.cache)
    fixed_size = {} if args.batch_size == "ramp" else {"batch_size": [int(args.batch_size)] * 2}
    classifier = diet_step_ab.new_classifier(diet, data, 0, epochs=args.epochs, **fixed_size)
    arrays = [dict(a) for a in data["arrays"]]
    threads = EpochThreads(args.threads, False)

    def fit(epochs: int | None = None) -> None:
        classifier._fit(arrays, data["intent_ids"], data["tags"], threads, epochs=epochs)

    fit(1)  # warm-up: imports, allocator, the first kernels
    wall, cpu = time.perf_counter(), time.process_time()
    if args.profile == "torch":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    elif args.profile == "python":
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(fit)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    else:
        fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(arrays) * args.epochs
    print(json.dumps({"examples": len(arrays), "epochs": args.epochs, "batch_size": args.batch_size,
                      "threads": args.threads, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "ms_per_example_epoch": round(1000 * wall / n, 3), "load_1m": os.getloadavg()[0],
                      "profiled": bool(args.profile)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
