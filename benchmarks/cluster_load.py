"""2 000 concurrent widget sessions over 1, 2 and 3 kefu workers (scripts/cluster.py), at fixed
offered rates, with the CPU each process spent per turn.

One cluster of ``--workers`` processes is started once (PostgreSQL trackers, Redis locks,
broker and outbox, the demo model). For each worker count k, ``--sessions`` socket.io clients
connect through nginx from loopback source addresses that nginx's ip_hash maps to the first k
workers only (the others idle; their background loops are measured too), each does
``session_request`` and stays connected. Then, for each rate of ``--rates``, an open-loop
dispatcher offers turns at that rate (Poisson arrivals) for ``--step`` seconds, each to a
random session that has no turn outstanding: ``user_uttered`` with a message id; turn latency
= emit -> the first ``bot_uttered`` whose ``reply_to`` is that id (30 s limit). The rate does
not depend on how fast the cluster answers, so a rate below saturation shows the latency of an
unloaded cluster and a rate above it shows the most the machine answers. Between steps the
outstanding turns drain.

CPU: the CPU time (user + system, /proc) of every process - each worker's process group, nginx,
redis-server, PostgreSQL (postmaster and backends), the action server, and this load generator
- is read at the start and end of each step; CPU-seconds per answered turn per component is the
cost the projection for real cores is computed from (see ``projection`` in the JSON and
docs/deploy.md). The machine's busy time (/proc/stat) is read too, so what other jobs took
during the step is on record beside the load average.

    flock /work/bench.lock nice -n 5 .venv/bin/python benchmarks/cluster_load.py \\
        --sessions 2000 --rates 4,12,40 --step 30

JSON in benchmarks/results/cluster_scaling.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scripts.cluster import Cluster  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "cluster_scaling.json"
MESSAGES = ["你好", "有什么跑鞋推荐", "运费多少", "hello", "谢谢"]
REPLY_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A worker is one Python process (one event loop; NLU in a helper thread): it can use about one
# core. The projection keeps it below full use so queueing stays short (p99 within ~2x p50).
TARGET_UTILISATION = 0.7


# ----------------------------------------------------------------------------- CPU accounting
def _stats() -> list[tuple[int, int, int, float]]:
    """(pid, ppid, pgrp, cpu seconds) of every process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        out.append((int(entry), int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK))
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def _postmaster_pid(cluster: Cluster) -> Optional[int]:
    assert cluster.postgres is not None
    pid_file = Path(cluster.postgres.directory) / "data" / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far per component of the cluster, this generator and the machine."""
    procs = _stats()
    by_group: dict[int, float] = {}
    children: dict[int, list[tuple[int, float]]] = {}
    own: dict[int, float] = {}
    for pid, ppid, pgrp, cpu in procs:
        by_group[pgrp] = by_group.get(pgrp, 0.0) + cpu
        children.setdefault(ppid, []).append((pid, cpu))
        own[pid] = cpu
    snap: dict[str, float] = {}
    for process in (*cluster.workers, cluster.nginx, cluster.actions):
        if process is not None and process.pid is not None:
            snap[process.name] = by_group.get(process.pid, 0.0)
    if cluster.redis is not None and cluster.redis.process is not None:
        snap["redis"] = own.get(cluster.redis.process.pid, 0.0)
    postmaster = _postmaster_pid(cluster)
    if postmaster is not None:
        snap["postgres"] = own.get(postmaster, 0.0) + sum(cpu for _, cpu in children.get(postmaster, []))
    times = os.times()
    snap["load_generator"] = times.user + times.system
    busy, total = _machine_busy()
    snap["machine_busy"], snap["machine_total"] = busy, total
    return snap


# ----------------------------------------------------------------------------- sessions
class Session:
    """One widget: a socket.io client with a confirmed session; at most one turn outstanding."""

    def __init__(self, url: str, address: str) -> None:
        self.url, self.address = url, address
        self.http: Any = None
        self.sio: Any = None
        self.session_id: Optional[str] = None
        self.waiting: dict[str, asyncio.Future[float]] = {}

    async def connect(self) -> None:
        import aiohttp
        import socketio

        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(self.address, 0)))
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.http)
        confirmed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        @self.sio.on("bot_uttered")
        async def on_reply(data: Any) -> None:
            future = self.waiting.get((data or {}).get("reply_to") or "")
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

        @self.sio.on("session_confirm")
        async def on_confirm(data: Any) -> None:
            if not confirmed.done():
                confirmed.set_result(data)

        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=60)
        await self.sio.emit("session_request", {"session_id": None})
        data = await asyncio.wait_for(confirmed, 60)
        self.session_id = data["session_id"] if isinstance(data, dict) else data

    async def turn(self) -> float:
        """Seconds from emit to the first reply naming this message; TimeoutError after 30 s."""
        message_id = uuid.uuid4().hex
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = future
        try:
            started = time.perf_counter()
            await self.sio.emit("user_uttered", {"message": random.choice(MESSAGES), "session_id": self.session_id,
                                                 "message_id": message_id})
            return await asyncio.wait_for(future, REPLY_TIMEOUT_S) - started
        finally:
            self.waiting.pop(message_id, None)

    async def close(self) -> None:
        try:
            await self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass
        if self.http is not None:
            await self.http.close()


def _pct(values: list[float], p: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)


async def offer(sessions: list[Session], rate: float, duration: float, cluster: Cluster,
                active: list[str]) -> dict[str, Any]:
    """Offer turns at ``rate``/s for ``duration`` s; then let outstanding turns finish."""
    idle = list(sessions)
    random.shuffle(idle)
    latencies: list[float] = []
    answered_in_step = 0
    errors: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    skipped = 0
    load_before = os.getloadavg()
    cpu_before = cpu_snapshot(cluster)
    started = time.monotonic()
    end = started + duration

    async def one(session: Session) -> None:
        nonlocal answered_in_step
        try:
            latency = await session.turn()
            latencies.append(latency)
            if time.monotonic() <= end:
                answered_in_step += 1
        except asyncio.TimeoutError:
            errors["no reply in 30 s"] = errors.get("no reply in 30 s", 0) + 1
        except Exception as e:  # noqa: BLE001 - counted
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        finally:
            idle.append(session)

    at = started
    while rate > 0:
        at += random.expovariate(rate)
        if at >= end:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if not idle:
            skipped += 1
            continue
        session = idle.pop(random.randrange(len(idle)))
        tasks.append(asyncio.ensure_future(one(session)))
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu_after = cpu_snapshot(cluster)
    wall = time.monotonic() - started
    load_after = os.getloadavg()
    outstanding_at_end = sum(1 for t in tasks if not t.done())
    if tasks:
        await asyncio.wait(tasks, timeout=REPLY_TIMEOUT_S + 5)
    cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after
           if k not in ("machine_busy", "machine_total")}
    machine_busy_cores = (cpu_after["machine_busy"] - cpu_before["machine_busy"]) / wall
    ours = sum(cpu.values()) / wall
    served = answered_in_step or 1  # rate 0: CPU per turn is meaningless, cpu_s is the idle cost
    worker_cpu = sum(cpu.get(name, 0.0) for name in active)
    shared = sum(cpu.get(name, 0.0) for name in ("nginx", "redis", "postgres", "actions"))
    return {
        "offered_per_s": rate, "step_s": round(wall, 1), "turns_offered": len(tasks) + skipped,
        "turns_sent": len(tasks), "skipped_no_idle_session": skipped,
        "answered": len(latencies), "answered_in_step": answered_in_step,
        "answered_per_s": round(answered_in_step / wall, 2),
        "outstanding_at_step_end": outstanding_at_end,
        "p50_ms": _pct(latencies, 0.5), "p95_ms": _pct(latencies, 0.95), "p99_ms": _pct(latencies, 0.99),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "errors": errors,
        "cpu_s": cpu,
        "cpu_ms_per_turn": {k: round(v * 1000 / served, 1) for k, v in cpu.items()} if answered_in_step else None,
        "active_workers_cpu_ms_per_turn": round(worker_cpu * 1000 / served, 1) if answered_in_step else None,
        "shared_services_cpu_ms_per_turn": round(shared * 1000 / served, 1) if answered_in_step else None,
        "worker_cores_busy": {name: round(value / wall, 3) for name, value in cpu.items() if name.startswith("worker")},
        "machine_cores_busy": round(machine_busy_cores, 2),
        "other_jobs_cores_busy": round(max(0.0, machine_busy_cores - ours), 2),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


async def run_worker_count(cluster: Cluster, addresses: list[str], active: list[str], sessions: int,
                           rates: list[float], step: float, connect_concurrency: int) -> dict[str, Any]:
    clients = [Session(cluster.url, addresses[i % len(addresses)]) for i in range(sessions)]
    gate = asyncio.Semaphore(connect_concurrency)
    failures: dict[str, int] = {}

    async def connect(client: Session) -> bool:
        async with gate:
            try:
                await client.connect()
                return True
            except Exception as e:  # noqa: BLE001 - counted
                failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
                return False

    started = time.monotonic()
    ok = await asyncio.gather(*(connect(c) for c in clients))
    connect_s = time.monotonic() - started
    connected = [c for c, good in zip(clients, ok) if good]
    steps = []
    try:
        for rate in rates:
            result = await offer(connected, rate, step, cluster, active)
            result["still_connected"] = sum(1 for c in connected if c.sio.connected)
            print(json.dumps({"workers": len(active), **result}), flush=True)
            steps.append(result)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {"workers": len(active), "sessions": sessions, "connected": len(connected),
            "connect_s": round(connect_s, 1), "connect_failures": failures, "steps": steps}


def _below_saturation(step: dict[str, Any]) -> bool:
    return (step["offered_per_s"] > 0 and not step["errors"] and step["answered_in_step"] >= 20
            and step["outstanding_at_step_end"] <= max(2, 0.05 * step["turns_sent"]))


def projection(runs: list[dict[str, Any]], sessions: int) -> dict[str, Any]:
    """Turns/s and cores for real machines, from the CPU cost measured below saturation.

    Per step, a process's CPU beyond its idle cost (the rate-0 step of the same worker count,
    sessions connected) is divided by the turns answered. A worker that serves no session still
    works per turn: socket.io's Redis manager sends every emit to every worker (``c_f``, the
    fan-out); the serving workers together spend ``c_a + k * c_f`` per turn."""
    fanout, serving, shared = [], [], {name: [] for name in ("nginx", "redis", "postgres", "actions")}
    holding = []
    for run in runs:
        idle = next((s for s in run["steps"] if s["offered_per_s"] == 0), None)
        if idle is None:
            continue
        base = {name: cpu / idle["step_s"] for name, cpu in idle["cpu_s"].items()}
        active = [f"worker{i + 1}" for i in range(run["workers"])]
        others = [n for n in base if n.startswith("worker") and n not in active]
        if others and run["connected"]:
            holding.append((sum(base[n] for n in active) - len(active) * statistics.mean(base[n] for n in others))
                           * 1000 / run["connected"])
        for step in filter(_below_saturation, run["steps"]):
            t, n = step["step_s"], step["answered_in_step"]
            extra = {name: (cpu - base.get(name, 0.0) * t) * 1000 / n for name, cpu in step["cpu_s"].items()}
            fanout.extend(extra[name] for name in others)
            serving.append((run["workers"], sum(extra[name] for name in active)))
            for name in shared:
                shared[name].append(extra.get(name, 0.0))
    if not serving:
        return {"error": "no step below saturation with an idle (rate 0) step before it: use --rates 0,<low>,..."}
    c_f = max(0.0, statistics.median(fanout)) if fanout else 0.0
    c_a = statistics.median(total - k * c_f for k, total in serving)
    c_s = {name: round(max(0.0, statistics.median(v)), 2) for name, v in shared.items() if v}
    shared_ms = sum(c_s.values())
    hold = max(0.0, statistics.median(holding)) if holding else 0.0  # cores per 1000 sessions
    measured_workers = max(len([n for n in run["steps"][0]["cpu_s"] if n.startswith("worker")]) for run in runs)
    table = []
    for workers in (1, 2, 3, 4, 8, 16, 32):
        budget = max(0.0, workers * TARGET_UTILISATION - hold * sessions / 1000)
        low = budget * 1000 / (c_a + workers * c_f)  # c_f is fan-out: every worker pays it for every turn
        high = budget * 1000 / (c_a + measured_workers * c_f)  # c_f is shared work split between workers
        table.append({"workers_on_own_cores": workers, "turns_per_s_if_fanout": round(low, 1),
                      "turns_per_s_if_shared_work": round(high, 1),
                      "shared_service_cores": round(max(low, high) * shared_ms / 1000 / TARGET_UTILISATION, 2),
                      "sessions_at_one_turn_per_30_s": [int(min(low, high) * 30), int(max(low, high) * 30)]})
    return {
        "method": ("Idle cost b (cores) per process from the rate-0 step of the same worker count (sessions "
                   "connected, no turns). In each step below saturation (offered > 0, no errors, <= 5 % of turns "
                   "outstanding at the step's end, >= 20 turns), a process's CPU per turn = (cpu_s - b * step_s) "
                   "/ answered_in_step. c_f = median per-turn CPU of the workers that serve no session (socket.io's "
                   "Redis manager publishes every emit to every worker); the serving workers together spend "
                   "c_a + k * c_f, so c_a = median(serving - k * c_f). Holding sessions (engine.io pings) costs h "
                   "cores per 1000 sessions (serving worker's idle cost beyond an idle worker's, k = 1 and 2). "
                   f"A worker is one Python process and can use one core; at {TARGET_UTILISATION:.0%} of it (short "
                   f"queues) N workers on N dedicated cores answer T = (N * {TARGET_UTILISATION} - h * sessions / "
                   "1000) * 1000 / (c_a + N * c_f) turns/s; PostgreSQL, Redis, nginx and the action server need "
                   f"T * c_s / 1000 / {TARGET_UTILISATION} cores of their own. What a worker that serves no "
                   "session spends per turn is partly socket.io's fan-out (paid by every worker: "
                   "turns_per_s_if_fanout, T = ... / (c_a + N * c_f)) and partly its share of the event broker's consumer-group "
                   "work (split between workers: turns_per_s_if_shared_work, T = ... / (c_a + M * c_f), M = the workers "
                   "measured); the truth lies between. The load generator's CPU is excluded (it runs on the "
                   "shoppers' devices in production)."),
        "steps_used": len(serving),
        "c_a_serving_worker_cpu_ms_per_turn": round(c_a, 2),
        "c_f_fanout_cpu_ms_per_turn_per_worker": round(c_f, 2),
        "c_s_shared_services_cpu_ms_per_turn": c_s,
        "h_cores_per_1000_sessions": round(hold, 4),
        "sessions": sessions,
        "ceiling_turns_per_s_if_all_fanout": round(TARGET_UTILISATION * 1000 / c_f, 0) if c_f > 0 else None,
        "workers_measured": measured_workers,
        "table": table,
        "caveat": ("CPU per turn measured on a shared 2-core machine (contention makes it higher than on idle "
                   "cores: the projection errs on the safe side); PostgreSQL here runs without fsync (tests' "
                   "server), so a production database costs more per turn; the demo model and messages — a project "
                   "with more custom actions or a bigger model costs more per turn. The fan-out term c_f sets a "
                   "ceiling (u / c_f) however many workers are added."),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="the cluster's workers; runs use 1..N of them")
    parser.add_argument("--sessions", type=int, default=2000, help="concurrent widget sessions per worker count")
    parser.add_argument("--rates", default="0,4,12,40",
                        help="offered turns/s, one step each (comma-separated; 0 measures the idle cost)")
    parser.add_argument("--step", type=float, default=30.0, help="seconds per offered rate")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="sessions connecting at once")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or any(r < 0 for r in rates):
        parser.error("--rates: numbers >= 0, e.g. 0,4,12,40 (0: sessions connected, no turns)")
    runs = []
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kefu-load-") as state:
        with Cluster(state, workers=args.workers,
                     endpoints_extra={"handoff": {"max_consecutive_fallbacks": 0, "max_unanswered": 0}}) as cluster:
            by_worker = cluster.source_addresses()
            for k in range(1, args.workers + 1):
                names = [w.name for w in cluster.workers[:k]]
                result = asyncio.run(run_worker_count(cluster, [by_worker[n] for n in names], names,
                                                      args.sessions, rates, args.step, args.connect_concurrency))
                runs.append(result)
    out = {
        "command": "python benchmarks/cluster_load.py " + " ".join(sys.argv[1:]),
        "design": ("Per worker count: N sessions connected and held; per rate: open-loop Poisson turns at a "
                   "fixed offered rate for step_s, latency = emit -> first bot_uttered with reply_to = the "
                   "message id; CPU from /proc per process group at the step's start and end."),
        "runs": runs,
        "projection": projection(runs, args.sessions),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "one 2-core machine runs nginx, PostgreSQL, Redis, the action server, every worker "
                            "and the load generator, shared with other engineers' jobs (other_jobs_cores_busy)"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
