"""Trigger scheduler throughput on Redis: enqueue rate, dispatch rate with 1 and 4 worker
processes, lateness (due -> dispatched) p50/p99 under load, memory per job.

Dispatch here is the queue path a scheduler worker runs per job (atomic Lua claim in
batches + acknowledgement), excluding channel I/O and the SQL store; a smaller
end-to-end figure through TriggerEngine (SQLite store, dry-run sender) is reported
beside it so nobody mistakes one for the other.

The *full path* (``--full-jobs``) is what a scheduler worker really does per claimed
batch: claim → snapshot read → guards → cap reservation → send (a no-op channel, so no
channel I/O) → one store commit → enqueue next/ack, with 1 and 4 worker processes, for
the SQLite store + SQL queue and the Redis store + Redis queue; plus lateness with 4
workers while jobs come due at ``--full-rate`` per second. Instances and jobs are seeded
directly (bulk), not through ``submit``. "Workers" are separate processes (as the server's
``--workers`` gives); ``4_tasks`` is the same four engines as tasks on one event loop, for
comparison. ``os.getloadavg()`` is recorded around each run: the figures depend on it.
``--profile N`` runs cProfile over one Redis worker dispatching N jobs and prints the top.

Usage: .venv/bin/python benchmarks/trigger_scheduler.py [--jobs 1000000] [--redis-url URL]
       [--lateness-rate 5000] [--lateness-seconds 20] [--engine-jobs 2000] [--out results/trigger_scheduler.json]
       [--full-jobs 20000] [--full-rate 2000] [--full-seconds 10] [--only-full] [--profile 10000]
Without --redis-url a throwaway redis-server is started (tests/redis_server.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _in_processes(target: Any, args: tuple, workers: int) -> tuple[list[Any], float]:
    """Run ``target(*args, out)`` in ``workers`` forked processes; (their results, wall seconds)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for _ in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return results, time.perf_counter() - start


def run_workers(url: str, workers: int, stop_when_empty: bool, deadline: float, lateness: bool) -> tuple[int, list[float], float]:
    results, elapsed = _in_processes(_worker_process, (url, stop_when_empty, deadline, lateness), workers)
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


FULL_CONFIG = ("settings:\n  quiet_hours: {start: '00:00', end: '00:00'}\n  frequency_caps: {per_day: 100, per_week: 500}\n"
               "journeys:\n  j:\n    entry: {event: cart_item_added}\n    steps: [{delay: 1s, response: utter_x}]\n")
FULL_BATCH = 200


class NoopSender:
    """A channel that accepts everything instantly; remembers when each customer's send happened."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}

    async def check(self, outgoing):  # noqa: ANN001
        return None

    async def send(self, outgoing) -> str:  # noqa: ANN001
        self.sent_at.setdefault(outgoing.customer_id, time.time())
        return "noop"


def _open(kind: str, target: str):
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.redis_store import RedisTriggerStore
    from bot.triggers.store import SQLTriggerStore

    if kind == "redis":
        return RedisTriggerStore(target, prefix="bench:full"), RedisJobQueue(target, prefix="bench:full")
    store = SQLTriggerStore(f"sqlite+aiosqlite:///{target}")
    return store, SQLJobQueue(store.engine)


async def _seed(kind: str, target: str, n: int, due_of) -> None:
    """n journey instances + their first-step jobs, written in bulk."""
    import sqlalchemy as sa

    from bot.triggers.store import Instance, instances_t

    store, queue = _open(kind, target)
    await store.setup()
    for lo in range(0, n, 2000):
        rows = [Instance(f"j:c{i}:e{i}", f"c{i}", "j", due_of(i) - 1, f"c{i}", {"id": f"e{i}", "properties": {}},
                         {"step_1": "default"}) for i in range(lo, min(n, lo + 2000))]
        if kind == "redis":
            async with store.redis.pipeline(transaction=False) as pipe:
                for inst in rows:
                    body = json.dumps({"customer_id": inst.customer_id, "journey": "j", "entered_at": inst.entered_at,
                                       "sender_id": inst.sender_id, "entry": inst.entry, "variants": inst.variants})
                    await store._create_instance(keys=[], args=[store.prefix, inst.id, inst.customer_id,
                                                                inst.entered_at, body], client=pipe)
                await pipe.execute()
        else:
            async with store.engine.begin() as conn:
                await conn.execute(sa.insert(instances_t), [
                    {"id": i.id, "customer_id": i.customer_id, "journey": "j", "entered_at": i.entered_at,
                     "status": "active", "reason": None, "body": i.body()} for i in rows])
        await queue.enqueue_many([Job(f"{i.id}:0", due_of(int(i.customer_id[1:])), {
            "instance": i.id, "journey": "j", "step": 0, "customer": i.customer_id,
            "first_due": due_of(int(i.customer_id[1:]))}) for i in rows])
    await queue.close()
    await store.close()


async def _full_worker(kind: str, target: str, deadline: float, stop_when_empty: bool) -> tuple[int, dict[str, float]]:
    from bot.triggers.clock import SystemClock
    from bot.triggers.engine import TriggerEngine
    from bot.triggers.journeys import load_triggers_text

    store, queue = _open(kind, target)
    sender = NoopSender()
    engine = TriggerEngine(load_triggers_text(FULL_CONFIG), store, queue, sender, SystemClock(), send_concurrency=1)
    sent = 0
    while time.time() < deadline:
        results = await engine.run_due(FULL_BATCH)
        sent += sum(1 for r in results if r.outcome == "sent")
        if not results:
            if stop_when_empty and sum((await queue.size()).values()) == 0:
                break
            await asyncio.sleep(0.005)
    await queue.close()
    await store.close()
    return sent, sender.sent_at


def _full_process(kind: str, target: str, deadline: float, stop_when_empty: bool, out: "mp.Queue") -> None:
    out.put(asyncio.run(_full_worker(kind, target, deadline, stop_when_empty)))


async def _full_tasks(kind: str, target: str, tasks: int, deadline: float) -> int:
    results = await asyncio.gather(*(_full_worker(kind, target, deadline, True) for _ in range(tasks)))
    return sum(r[0] for r in results)


def run_full_tasks(kind: str, target: str, tasks: int, deadline: float) -> tuple[int, float]:
    """``tasks`` engines as tasks on one event loop in one process (what ``workers`` is not)."""
    start = time.perf_counter()
    sent = asyncio.run(_full_tasks(kind, target, tasks, deadline))
    return sent, time.perf_counter() - start


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def profile(url: str, n: int, top: int = 25) -> None:
    """cProfile of one Redis worker dispatching ``n`` seeded jobs (prints the top by own time)."""
    import cProfile
    import pstats

    asyncio.run(_reset("redis", url))
    past = time.time() - 10
    asyncio.run(_seed("redis", url, n, lambda i: past))
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    sent, _ = asyncio.run(_full_worker("redis", url, time.time() + 300, True))
    prof.disable()
    elapsed = time.perf_counter() - start
    print(f"profiled: {sent} sends in {elapsed:.1f}s = {sent / elapsed:.0f}/s (cProfile overhead included), "
          f"load {loadavg()}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    asyncio.run(_reset("redis", url))


def run_full(kind: str, target: str, workers: int, deadline: float, stop_when_empty: bool) -> tuple[int, dict[str, float], float]:
    results, elapsed = _in_processes(_full_process, (kind, target, deadline, stop_when_empty), workers)
    sent_at: dict[str, float] = {}
    for _, times in results:
        sent_at.update(times)
    return sum(r[0] for r in results), sent_at, elapsed


async def _reset(kind: str, target: str) -> None:
    if kind == "redis":
        store, queue = _open(kind, target)
        keys = [k async for k in store.redis.scan_iter(match=store.key_builder.pattern("*"), count=10000)]
        for lo in range(0, len(keys), 1000):
            await store.redis.delete(*keys[lo:lo + 1000])
        await store.close()
        await queue.close()
    else:
        Path(target).unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(target + suffix).unlink(missing_ok=True)


def full_path(url: str, n: int, rate: int, seconds: int) -> dict:
    """Full dispatch path per backend: throughput with 1 and 4 workers, lateness under load."""
    out: dict = {"batch": FULL_BATCH, "channel": "no-op (no channel I/O)", "workers": "processes",
                 "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, target in (("sqlite", f"{tmp}/full.db"), ("redis", url)):
            res: dict = {}
            for workers, mode in ((1, "workers"), (4, "workers"), (4, "tasks")):
                asyncio.run(_reset(kind, target))
                past = time.time() - 10
                asyncio.run(_seed(kind, target, n, lambda i: past))
                load = loadavg()
                if mode == "workers":
                    sent, _, elapsed = run_full(kind, target, workers, time.time() + 300, True)
                else:
                    sent, elapsed = run_full_tasks(kind, target, workers, time.time() + 300)
                res[f"{workers}_{mode}_jobs_per_s"] = round(sent / elapsed)
                res[f"{workers}_{mode}_sent"] = sent
                res[f"{workers}_{mode}_loadavg"] = load
                print(f"full path {kind}, {workers} {mode}: {sent} sends in {elapsed:.1f}s = {sent / elapsed:.0f}/s "
                      f"(load {load})", flush=True)
            asyncio.run(_reset(kind, target))
            total = rate * seconds
            t0 = time.time() + 10
            asyncio.run(_seed(kind, target, total, lambda i: t0 + i / rate))
            sent, sent_at, _ = run_full(kind, target, 4, t0 + seconds + 10, False)
            late = [sent_at[f"c{i}"] - (t0 + i / rate) for i in range(total) if f"c{i}" in sent_at]
            res["lateness_4_workers"] = {"rate_per_s": rate, "jobs": total, "sent": sent, "loadavg": loadavg(),
                                         "p50_ms": round(pct(late, 50) * 1000, 1), "p99_ms": round(pct(late, 99) * 1000, 1),
                                         "max_ms": round(max(late) * 1000, 1) if late else None}
            print(f"full path {kind}, lateness at {rate}/s with 4 workers: {res['lateness_4_workers']}", flush=True)
            asyncio.run(_reset(kind, target))
            out[kind] = res
    out["loadavg_end"] = loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--lateness-rate", type=int, default=5000, help="jobs per second coming due")
    parser.add_argument("--lateness-seconds", type=int, default=20)
    parser.add_argument("--engine-jobs", type=int, default=2000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--full-jobs", type=int, default=20000, help="jobs per full-path throughput run (0: skip)")
    parser.add_argument("--full-rate", type=int, default=2000, help="jobs/s coming due in the full-path lateness run")
    parser.add_argument("--full-seconds", type=int, default=10)
    parser.add_argument("--only-full", action="store_true", help="skip the queue-only runs")
    parser.add_argument("--profile", type=int, default=0, help="only cProfile one Redis worker over N jobs")
    args = parser.parse_args()

    server = None
    url = args.redis_url
    if url is None:
        from tests.redis_server import RedisServer

        server = RedisServer().start()
        url = server.url
    try:
        if args.profile:
            profile(url, args.profile)
            return
        if args.only_full:
            results = {"cores": mp.cpu_count(), "full_path": full_path(url, args.full_jobs, args.full_rate, args.full_seconds)}
            print(json.dumps(results, indent=2))
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            return
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
        if args.full_jobs:
            results["full_path"] = full_path(url, args.full_jobs, args.full_rate, args.full_seconds)
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
