"""SQL stores on a SQLite file and on PostgreSQL: turn latency, job-claim throughput, start cost.

For each backend (a SQLite file in WAL mode; a throwaway PostgreSQL started like the tests do,
tests/postgres_server.py, fsync off — so the figures are the stores' and the driver's cost,
not a disk's):

- tracker turn: ``retrieve`` + append one turn (user, action, bot, listen) + ``save``, one
  conversation at a time (latency), then ``--workers`` store objects (separate engines, as
  separate processes would have) saving distinct conversations at once (turns/s);
- trigger job queue: ``--jobs`` due jobs claimed in batches of 50 and acknowledged by 1, 2
  and 4 workers at once (jobs/s; each job must be claimed exactly once — checked);
- start cost: a store's first use on a database already at the newest revision (the
  Alembic version check every worker pays once).

Run it niced on a shared machine; the load average is recorded. Bounded: about a minute.
Usage: .venv/bin/python benchmarks/sql_stores.py [--turns 300] [--jobs 2000] [--workers 4] [--out benchmarks/results/sql_stores.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.shared.events import ActionExecuted, BotUttered, UserUttered  # noqa: E402
from bot.shared.slots import TextSlot  # noqa: E402
from bot.stores.tracker_store import SQLTrackerStore  # noqa: E402
from bot.triggers.queue import Job, SQLJobQueue  # noqa: E402
from bot.triggers.store import SQLTriggerStore  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

DOMAIN = SimpleNamespace(slots=[TextSlot("name", mappings=[])])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99)}


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


async def one_turn(store: SQLTrackerStore, sender: str, t: float) -> None:
    tracker = await store.get_or_create_tracker(sender)
    for event in (UserUttered("我的订单到哪了", {"name": "order_status", "confidence": 0.9}, timestamp=t),
                  ActionExecuted("utter_order", timestamp=t + 0.1),
                  BotUttered("正在查询", timestamp=t + 0.2), ActionExecuted("action_listen", timestamp=t + 0.3)):
        tracker.update(event)
    await store.save(tracker)


async def tracker_figures(url: str, turns: int, workers: int) -> dict[str, Any]:
    store = SQLTrackerStore(DOMAIN, url=url)
    await one_turn(store, "warm-up", 1.0)
    latencies = []
    for i in range(turns):
        start = time.perf_counter()
        await one_turn(store, f"c{i % 50}", 10.0 + i)  # 50 conversations growing to ~6 turns each
        latencies.append((time.perf_counter() - start) * 1000)
    stores = [SQLTrackerStore(DOMAIN, url=url) for _ in range(workers)]
    for s in stores:
        await s.keys()  # schema check and a pooled connection, outside the timing

    async def worker(w: int) -> None:
        for i in range(turns // workers):
            await one_turn(stores[w], f"w{w}-{i % 25}", 100.0 + i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - start
    for s in [store, *stores]:
        await s.close()
    return {"one_at_a_time": summary(latencies),
            "concurrent": {"workers": workers, "turns": workers * (turns // workers),
                           "turns_per_s": round(workers * (turns // workers) / elapsed, 1)}}


async def queue_figures(url: str, jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workers in (1, 2, 4):
        stores = [SQLTriggerStore(url) for _ in range(workers)]
        for s in stores:
            await s.setup()
        queues = [SQLJobQueue(s.engine) for s in stores]
        await queues[0].cancel([f"j{i}" for i in range(jobs)])
        await queues[0].enqueue_many([Job(f"j{i}", due=float(i % 100)) for i in range(jobs)])
        seen: list[str] = []

        async def work(w: int) -> None:
            while True:
                batch = await queues[w].claim(now=1000.0, limit=50, lease_s=600.0)
                if not batch:
                    return
                seen.extend(j.id for j in batch)
                await queues[w].ack_many([j.id for j in batch])

        start = time.perf_counter()
        await asyncio.gather(*(work(w) for w in range(workers)))
        elapsed = time.perf_counter() - start
        if sorted(seen) != sorted(f"j{i}" for i in range(jobs)):
            raise SystemExit(f"{workers} workers claimed {len(seen)} jobs for {jobs} ({len(set(seen))} distinct)")
        out[f"{workers}_workers"] = {"jobs": jobs, "jobs_per_s": round(jobs / elapsed, 1)}
        for s in stores:
            await s.close()
    return out


async def start_cost(url: str, rounds: int = 20) -> dict[str, float]:
    ms = []
    for _ in range(rounds):
        store = SQLTriggerStore(url)
        start = time.perf_counter()
        await store.setup()
        ms.append((time.perf_counter() - start) * 1000)
        await store.close()
    return summary(ms)


async def backend(url: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"tracker_turn": await tracker_figures(url, args.turns, args.workers),
            "trigger_queue": await queue_figures(url, args.jobs),
            "first_use_on_current_schema": await start_cost(url)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sql_stores.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {
        "command": "nice -n 10 .venv/bin/python benchmarks/sql_stores.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": load_average()},
        "note": "PostgreSQL runs on this machine with fsync off (as in the tests); SQLite is a WAL file in /tmp "
                "with synchronous=NORMAL. Figures compare the stores and drivers, not disks.",
    }
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = asyncio.run(backend(f"sqlite:///{Path(tmp) / 'kefu.db'}", args))
    with PostgresServer() as server:
        version = server._run("postgres", "--version").stdout.strip()
        result["postgresql"] = asyncio.run(backend(server.create_database("bench"), args))
        result["postgresql"]["server"] = version
    result["machine"]["load_after"] = load_average()
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
