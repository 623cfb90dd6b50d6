"""What the metrics and alert counting add to each request and turn, and what a scrape costs.

Measures, one call at a time, on this machine:

- ``http``: the request middleware's work per request (the route label, a histogram
  observation) — in-process registry and prometheus-client's multiprocess mode;
- ``turn``: the three per-turn observations (NLU, policy, one action) via ``observe``;
- ``signal_memory`` / ``signal_redis``: the alerts hook recording one shopper message
  (memory; a real redis-server on 127.0.0.1 — one pipelined round trip);
- ``scrape``: ``GET /metrics`` rendering with 2 worker files in multiprocess mode, after
  every route and action label set has samples.

Per-call CPU time is what the figure costs; wall-clock medians/p95/p99 in microseconds.
Usage: .venv/bin/python benchmarks/observability_overhead.py [--n 20000] [--out benchmarks/results/observability_overhead.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6, 2)

    return {"n": len(samples), "median_us": round(statistics.median(ordered) * 1e6, 2), "p95_us": pct(0.95),
            "p99_us": pct(0.99)}


def child(mode: str, n: int) -> dict:
    """Runs in a fresh interpreter so PROMETHEUS_MULTIPROC_DIR takes effect at import."""
    from bot.shared import metrics as m

    routes = [f"/route/{i}" for i in range(40)]
    results: dict = {}
    samples = []
    for i in range(n):
        started = time.perf_counter()
        m.HTTP_REQUEST_SECONDS.labels(routes[i % 40], "GET", "api", "2xx").observe(0.003)
        samples.append(time.perf_counter() - started)
    results["http"] = summary(samples)

    async def nothing() -> int:
        return 1

    async def turns() -> list[float]:
        out = []
        for i in range(n):
            started = time.perf_counter()
            await m.observe(m.NLU_PARSE_SECONDS, nothing())
            await m.observe(m.POLICY_PREDICTION_SECONDS, nothing())
            await m.observe_action(f"action_{i % 30}", nothing())
            out.append(time.perf_counter() - started)
        return out

    results["turn"] = summary(asyncio.run(turns()))
    if mode == "multiprocess":
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        scrape = []
        for _ in range(200):
            started = time.perf_counter()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
            scrape.append(time.perf_counter() - started)
        results["scrape"] = {**summary(scrape), "bytes": len(body)}
    return results


async def signals(n: int, redis_url: str | None) -> dict[str, dict]:
    from bot.alerts.config import parse_alerts
    from bot.alerts.signals import MemorySignals, RedisSignals, SignalHook
    from bot.shared.events import UserUttered
    from bot.shared.tracker import DialogueStateTracker

    config = parse_alerts({"rules": [{"name": "c", "kind": "complaint_spike"},
                                     {"name": "e", "kind": "escalation_rate", "threshold": 0.3}]})
    tracker = DialogueStateTracker("bench")
    tracker.update(UserUttered("x", parse_data={"intent": {"name": "complaint"}, "sentiment": {"label": "negative"}}))
    out = {}
    stores = {"signal_memory": MemorySignals(1500)}
    if redis_url:
        from bot.stores._common import redis_client

        stores["signal_redis"] = RedisSignals(redis_client(redis_url), 1500)
    for name, store in stores.items():
        hook = SignalHook(config, store)
        samples = []
        for _ in range(n if name == "signal_memory" else min(n, 5000)):
            started = time.perf_counter()
            await hook.after_user_message(None, tracker, None)
            samples.append(time.perf_counter() - started)
        out[name] = summary(samples)
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "observability_overhead.json"))
    parser.add_argument("--child", choices=["single", "multiprocess"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n)))
        return
    results: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    for mode in ("single", "multiprocess"):
        env = {**os.environ}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as folder:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = folder
                for _ in range(2):  # a second "worker" whose file the scrape also reads
                    subprocess.run([sys.executable, __file__, "--child", "single", "--n", "1000"], env=env,
                                   check=True, capture_output=True)
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(args.n)], env=env,
                                  check=True, capture_output=True, text=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    from tests.redis_server import RedisServer, find_redis_server

    if find_redis_server():
        with RedisServer() as server:
            results.update(asyncio.run(signals(args.n, server.url)))
    else:
        results.update(asyncio.run(signals(args.n, None)))
    results["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
