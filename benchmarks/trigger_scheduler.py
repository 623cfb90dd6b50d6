"""Trigger scheduler throughput on Redis: enqueue rate, dispatch rate with 1 and 4 worker
processes, lateness (due -> dispatched) p50/p99 under load, memory per job.

Dispatch here is the queue path a scheduler worker runs per job (atomic Lua claim in
batches + acknowledgement), excluding channel I/O and the SQL store; a smaller
end-to-end figure through TriggerEngine (SQLite store, dry-run sender) is reported
beside it so nobody mistakes one for the other.

Usage: .venv/bin/python benchmarks/trigger_scheduler.py [--jobs 1000000] [--redis-url URL]
       [--lateness-rate 5000] [--lateness-seconds 20] [--engine-jobs 2000] [--out results/trigger_scheduler.json]
Without --redis-url a throwaway redis-server is started (tests/redis_server.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.triggers.queue import Job, RedisJobQueue  # noqa: E402

PREFIX = "bench:triggers"
CLAIM_BATCH = 500


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def job(i: int, due: float) -> Job:
    # The same shape TriggerEngine enqueues.
    instance = f"abandoned_cart:customer{i}:evt{i}"
    return Job(f"{instance}:0", due, {"instance": instance, "journey": "abandoned_cart", "step": 0,
                                      "customer": f"customer{i}", "first_due": due})


async def enqueue(url: str, n: int, due_of, chunk: int = 2000) -> float:
    q = RedisJobQueue(url, prefix=PREFIX)
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        await q.enqueue_many([job(i, due_of(i)) for i in range(lo, min(n, lo + chunk))])
    elapsed = time.perf_counter() - start
    await q.close()
    return elapsed


async def _drain_worker(url: str, stop_when_empty: bool, deadline: float, lateness: bool) -> tuple[int, list[float]]:
    q = RedisJobQueue(url, prefix=PREFIX)
    done, late = 0, []
    while time.time() < deadline:
        now = time.time()
        jobs = await q.claim(now, CLAIM_BATCH, 60.0)
        if not jobs:
            if stop_when_empty and (await q.size())["due"] == 0:
                break
            await asyncio.sleep(0.005)
            continue
        await q.ack_many([j.id for j in jobs])
        done += len(jobs)
        if lateness:
            t = time.time()
            late.extend(t - j.due for j in jobs)
    await q.close()
    return done, late


def _worker_process(url: str, stop_when_empty: bool, deadline: float, lateness: bool, out: "mp.Queue") -> None:
    out.put(asyncio.run(_drain_worker(url, stop_when_empty, deadline, lateness)))


def run_workers(url: str, workers: int, stop_when_empty: bool, deadline: float, lateness: bool) -> tuple[int, list[float], float]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker_process, args=(url, stop_when_empty, deadline, lateness, out)) for _ in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    return sum(r[0] for r in results), [x for r in results for x in r[1]], elapsed


async def used_memory(url: str) -> int:
    q = RedisJobQueue(url, prefix=PREFIX)
    info = await q.redis.info("memory")
    await q.close()
    return int(info["used_memory"])


async def flush(url: str) -> None:
    q = RedisJobQueue(url, prefix=PREFIX)
    await q.redis.delete(*q.keys)
    await q.close()


async def engine_dispatch(url: str, n: int) -> dict:
    """End to end through TriggerEngine: SQLite store, Redis queue, dry-run sender, 1 worker."""
    from bot.triggers.clock import TestClock
    from bot.triggers.engine import TriggerEngine
    from bot.triggers.events import BehaviourEvent
    from bot.triggers.journeys import load_triggers_text
    from bot.triggers.senders import DryRunSender
    from bot.triggers.store import SQLTriggerStore

    config = load_triggers_text("settings:\n  quiet_hours: {start: '00:00', end: '00:00'}\n  frequency_caps: {per_day: 100}\n"
                                "journeys:\n  j:\n    entry: {event: cart_item_added}\n    steps: [{delay: 1s, response: utter_x}]\n")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLTriggerStore(f"sqlite+aiosqlite:///{tmp}/t.db")
        queue = RedisJobQueue(url, prefix="bench:engine")
        clock = TestClock(time.time())
        engine = TriggerEngine(config, store, queue, DryRunSender(), clock)
        start = time.perf_counter()
        for lo in range(0, n, 500):
            await engine.submit([BehaviourEvent(f"e{i}", "cart_item_added", f"c{i}", clock.now())
                                 for i in range(lo, min(n, lo + 500))])
        ingest = time.perf_counter() - start
        clock.advance(2)
        start = time.perf_counter()
        sent = sum(1 for r in await engine.drain(limit=200) if r.outcome == "sent")
        dispatch = time.perf_counter() - start
        await queue.redis.delete(*queue.keys)
        await queue.close()
        await store.close()
    return {"jobs": n, "sent": sent, "ingest_events_per_s": round(n / ingest), "dispatch_jobs_per_s": round(sent / dispatch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--lateness-rate", type=int, default=5000, help="jobs per second coming due")
    parser.add_argument("--lateness-seconds", type=int, default=20)
    parser.add_argument("--engine-jobs", type=int, default=2000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    server = None
    url = args.redis_url
    if url is None:
        from tests.redis_server import RedisServer

        server = RedisServer().start()
        url = server.url
    try:
        asyncio.run(flush(url))
        results: dict = {"jobs": args.jobs, "claim_batch": CLAIM_BATCH, "cores": mp.cpu_count()}
        base = asyncio.run(used_memory(url))
        past = time.time() - 10
        elapsed = asyncio.run(enqueue(url, args.jobs, lambda i: past))
        results["enqueue_jobs_per_s"] = round(args.jobs / elapsed)
        results["memory_bytes_per_job"] = round((asyncio.run(used_memory(url)) - base) / args.jobs)
        print(f"enqueue: {args.jobs} jobs in {elapsed:.1f}s = {results['enqueue_jobs_per_s']}/s; "
              f"{results['memory_bytes_per_job']} B/job in Redis", flush=True)
        for workers in (1, 4):
            if workers == 4:
                asyncio.run(enqueue(url, args.jobs, lambda i: past))
            done, _, elapsed = run_workers(url, workers, True, time.time() + 600, False)
            results[f"dispatch_{workers}_workers_jobs_per_s"] = round(done / elapsed)
            print(f"dispatch with {workers} worker(s): {done} jobs in {elapsed:.1f}s = {done / elapsed:.0f}/s", flush=True)
        # Lateness: jobs come due at a steady rate while 4 workers poll.
        n = args.lateness_rate * args.lateness_seconds
        t0 = time.time() + 15
        asyncio.run(enqueue(url, n, lambda i: t0 + i / args.lateness_rate))
        done, late, _ = run_workers(url, 4, False, t0 + args.lateness_seconds + 5, True)
        results["lateness"] = {"jobs": done, "rate_per_s": args.lateness_rate, "workers": 4,
                               "p50_ms": round(pct(late, 50) * 1000, 1), "p99_ms": round(pct(late, 99) * 1000, 1),
                               "max_ms": round(max(late) * 1000, 1) if late else None}
        print(f"lateness at {args.lateness_rate}/s due, 4 workers: p50 {results['lateness']['p50_ms']} ms, "
              f"p99 {results['lateness']['p99_ms']} ms over {done} jobs", flush=True)
        if args.engine_jobs:
            results["engine_end_to_end"] = asyncio.run(engine_dispatch(url, args.engine_jobs))
            print(f"engine end to end (SQLite store, 1 worker): {results['engine_end_to_end']}", flush=True)
        asyncio.run(flush(url))
        print(json.dumps(results, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
