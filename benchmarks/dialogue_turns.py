"""Dialogue-turn benchmark: latency and throughput of POST /webhooks/rest/webhook.

Starts the real server (``python -m bot run``) on 127.0.0.1 with the turnbot test
model (tests/data/projects/turnbot, NLU-less, RulePolicy + MemoizationPolicy) for
each configuration — SQLite tracker store or Redis tracker + lock store, with 1 or
2 worker processes — and drives N conversations concurrently with httpx. Every
turn is ``/count``, which runs the in-process rasa_sdk action ``action_count``:
it reads a slot, says ``Count <k>`` and sets the slot, so each reply also checks
that the tracker was stored and read back correctly (also across workers).

Options for a busy machine (issue #16 point 5):

* ``--actions inprocess http``: run the custom action in the server's process or
  over HTTP on a real ``python -m bot actions`` server (``action_endpoint``).
* ``--busy``: a bounded CPU-bound child process spins on one core for each
  measurement (its CPU share is reported); the load averages are recorded too.
* ``--profile DIR``: py-spy records the server worker during each measurement
  (speedscope JSON + a top-frames text summary per configuration).
* ``--first-reply``: starts the server again and measures the time from "the
  port accepts" to the first REST reply and, on another fresh start, to the first
  socket.io ``bot_uttered`` (python-socketio client).
* ``--tree LABEL=PATH``: also run the server from another checkout (e.g. a
  ``git worktree`` of the previous commit) so before/after are side by side in
  one run.
* ``--repeat N``: measure every configuration N times, the trees alternating
  (before, after, before, after, ...), and report the medians over the
  repetitions (``summary`` in the JSON): on a shared machine one run is noise.

Run from the repository root:

    .venv/bin/python benchmarks/dialogue_turns.py --conversations 10 --turns 5
    .venv/bin/python benchmarks/dialogue_turns.py -n 8 -t 25 --busy --actions inprocess http \
        --configs sqlite-1w redis-1w --first-reply --tree before=/tmp/kefu-before \
        --out benchmarks/results/dialogue_turns_busy.json

Results are printed and written to benchmarks/results/dialogue_turns.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.redis_server import RedisServer, find_redis_server, free_port  # noqa: E402

PROJECT = REPO_ROOT / "tests" / "data" / "projects" / "turnbot"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "dialogue_turns.json"
WEBHOOK = "/webhooks/rest/webhook"

logger = logging.getLogger("benchmarks.dialogue_turns")


@dataclass(frozen=True)
class BenchConfig:
    """One server setup to measure."""

    name: str
    store: str  # "sqlite" or "redis"
    workers: int


CONFIGS = {
    "sqlite-1w": BenchConfig("sqlite-1w", "sqlite", 1),
    "sqlite-2w": BenchConfig("sqlite-2w", "sqlite", 2),
    "redis-1w": BenchConfig("redis-1w", "redis", 1),
    "redis-2w": BenchConfig("redis-2w", "redis", 2),
}
ACTION_MODES = ("inprocess", "http")
PY_SPY = Path(sys.executable).with_name("py-spy")


@dataclass
class RunResult:
    config: str
    store: str
    workers: int
    conversations: int
    turns_per_conversation: int
    tree: str = "this"
    actions: str = "inprocess"
    busy: bool = False
    turns_ok: int = 0
    turns_failed: int = 0
    wrong_replies: int = 0
    timed_out: bool = False
    wall_s: float = 0.0
    turns_per_s: float = 0.0
    latency_median_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    server_start_s: float = 0.0
    competing_cpu_share: float | None = None
    # CPU time (user + system) the server's worker and the action server spent per turn: unlike
    # turns/s it hardly depends on how many other jobs share the machine
    server_cpu_ms_per_turn: float | None = None
    action_server_cpu_ms_per_turn: float | None = None
    load_average: list[float] | None = None
    profile: str | None = None
    profile_groups: dict[str, float] | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class FirstReply:
    tree: str
    channel: str  # "rest" or "socketio"
    store: str
    actions: str
    busy: bool
    port_open_s: float | None = None  # process start -> the port accepts (Sanic's manager binds it)
    ready_s: float | None = None  # process start -> a worker answers GET / (the server is ready)
    first_reply_s: float | None = None  # ready -> the first reply received
    reply: Any = None
    load_average: list[float] | None = None
    error: str | None = None


def summarise(results: list[RunResult]) -> list[dict[str, Any]]:
    """Medians over the repetitions of each (tree, config, actions, busy)."""
    groups: dict[tuple, list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.tree, r.config, r.actions, r.busy), []).append(r)
    out = []
    for (tree, config, actions, busy), runs in groups.items():
        ok = [r for r in runs if not r.errors and r.turns_ok]

        def med(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return round(statistics.median(present), 1) if present else None

        out.append({
            "tree": tree, "config": config, "actions": actions, "busy": busy, "repetitions": len(runs),
            "turns_per_s_median": med([r.turns_per_s for r in ok]),
            "turns_per_s_all": [r.turns_per_s for r in runs],
            "latency_median_ms_median": med([r.latency_median_ms for r in ok]),
            "latency_p99_ms_median": med([r.latency_p99_ms for r in ok]),
            "latency_p99_ms_all": [r.latency_p99_ms for r in runs],
            "server_cpu_ms_per_turn_median": med([r.server_cpu_ms_per_turn for r in ok]),
            "action_server_cpu_ms_per_turn_median": med([r.action_server_cpu_ms_per_turn for r in ok]),
            "competing_cpu_share_median": (round(statistics.median(
                [r.competing_cpu_share for r in runs if r.competing_cpu_share is not None]), 2)
                if any(r.competing_cpu_share is not None for r in runs) else None),
            "failed_or_wrong": sum(r.turns_failed + r.wrong_replies for r in runs),
        })
    return out


def print_summary(summary: list[dict[str, Any]]) -> None:
    header = (f"{'tree':<8} {'config':<10} {'actions':<9} {'reps':>4} {'turns/s':>8} {'median ms':>9} "
              f"{'p99 ms':>8} {'busy cpu':>8} {'cpu ms':>7} {'act ms':>7}  turns/s per repetition")
    print(header)
    print("-" * len(header))
    for g in summary:
        print(f"{g['tree']:<8} {g['config']:<10} {g['actions']:<9} {g['repetitions']:>4} "
              f"{g['turns_per_s_median'] if g['turns_per_s_median'] is not None else '-':>8} "
              f"{g['latency_median_ms_median'] if g['latency_median_ms_median'] is not None else '-':>9} "
              f"{g['latency_p99_ms_median'] if g['latency_p99_ms_median'] is not None else '-':>8} "
              f"{g['competing_cpu_share_median'] if g['competing_cpu_share_median'] is not None else '-':>8} "
              f"{g['server_cpu_ms_per_turn_median'] if g['server_cpu_ms_per_turn_median'] is not None else '-':>7} "
              f"{g['action_server_cpu_ms_per_turn_median'] if g['action_server_cpu_ms_per_turn_median'] is not None else '-':>7}  "
              f"{g['turns_per_s_all']}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (/proc/PID/stat), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from bot.version import __version__ as kefu_version
    except Exception:  # noqa: BLE001 - informational only
        kefu_version = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": load_average(),
        "kefu_version": kefu_version,
    }


def train_model(out_dir: Path) -> Path:
    from bot.model.training import train

    result = train(root=PROJECT, out=out_dir)
    if result.model_path is None:
        raise RuntimeError(f"Training {PROJECT} produced no model archive.")
    return result.model_path


def endpoints_yaml(store: str, work: Path, redis: RedisServer | None, action_url: str | None = None) -> str:
    if store == "sqlite":
        text = f"tracker_store:\n  type: sql\n  url: sqlite:///{work / 'trackers.db'}\n"
    else:
        assert redis is not None
        text = (
            f"tracker_store:\n  type: redis\n  url: {redis.host}\n  port: {redis.port}\n"
            f"lock_store:\n  type: redis\n  url: {redis.host}\n  port: {redis.port}\n"
        )
    if action_url:
        text += f"action_endpoint:\n  url: {action_url}\n"
    return text


# ---------------------------------------------------------------------------- competing process
SPIN_CODE = (
    "import os, sys, time\n"
    "cpu, seconds = int(sys.argv[1]), float(sys.argv[2])\n"
    "os.sched_setaffinity(0, {cpu})\n"
    "end = time.monotonic() + seconds\n"
    "while time.monotonic() < end:\n"
    "    sum(i * i for i in range(10000))\n"
)


class CompetingProcess:
    """A CPU-bound child pinned to one core, bounded in time (it exits on its own)."""

    def __init__(self, seconds: float) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.cpu = cpus[-1]
        self.process = subprocess.Popen([sys.executable, "-c", SPIN_CODE, str(self.cpu), str(seconds)])
        self._started = time.monotonic()
        self._ticks0 = self._cpu_ticks()

    def _cpu_ticks(self) -> int:
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            return 0

    def cpu_share(self) -> float:
        """Fraction of one core the child used since it started."""
        wall = time.monotonic() - self._started
        ticks = self._cpu_ticks() - self._ticks0
        return round(ticks / os.sysconf("SC_CLK_TCK") / wall, 2) if wall > 0 else 0.0

    def stop(self) -> float:
        share = self.cpu_share()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        return share


# ---------------------------------------------------------------------------- servers
def _child_env(tree: Path) -> dict[str, str]:
    return dict(os.environ, KEFU_LOG_LEVEL="WARNING", PYTHONPATH=str(tree))


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ActionServer:
    """``python -m bot actions`` for turnbot's actions package."""

    def __init__(self, tree: Path, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self._log = (work / "actions.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "--log-level", "WARNING", "actions", "--port", str(self.port),
             "--host", "127.0.0.1"],
            cwd=str(PROJECT), env=_child_env(tree), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"action server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url.replace("/webhook", "/health"), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"action server not ready within {timeout}s")

    def stop(self) -> None:
        _stop_group(self.process)
        self._log.close()


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=5)


def _rest_credentials(work: Path) -> Path:
    path = work / "credentials.yml"
    if not path.exists():
        path.write_text("rest:\n", encoding="utf-8")
    return path


class Server:
    """``python -m bot run`` as a child process in its own process group."""

    def __init__(self, model: Path, endpoints: Path, workers: int, work: Path, tree: Path = REPO_ROOT,
                 credentials: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "bot", "--log-level", "WARNING", "run",
                "--model", str(model),
                "--endpoints", str(endpoints),
                "--credentials", str(credentials or _rest_credentials(work)),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--workers", str(workers),
                "--root", str(PROJECT),
            ],
            cwd=str(work),
            env=_child_env(tree),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_port(self, timeout: float) -> float:
        """Seconds from the process start until the port accepts a connection.

        Sanic's manager process binds the port before its worker has loaded anything,
        so this is not yet "ready"; see ``wait_serving``.
        """
        while time.monotonic() - self.started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
            if _port_accepts(self.port):
                return time.monotonic() - self.started
            await asyncio.sleep(0.01)
        raise RuntimeError(f"server port not open within {timeout}s:\n{self.tail()}")

    async def wait_serving(self, timeout: float) -> float:
        """Seconds from the process start until a worker answers ``GET /`` (the server is ready).

        ``GET /`` is what a load balancer's health check asks; it is answered once the
        worker's start listeners (agent load, warm-up) have finished.
        """
        async with httpx.AsyncClient(timeout=0.5) as client:
            while time.monotonic() - self.started < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
                try:
                    if (await client.get(self.url + "/")).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.HTTPError:
                    await asyncio.sleep(0.01)
        raise RuntimeError(f"server not serving within {timeout}s:\n{self.tail()}")

    async def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() - started < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
                try:
                    response = await client.post(self.url + WEBHOOK, json={"sender": "warmup", "message": "/count"})
                    if response.status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.tail()}")

    def worker_pid(self) -> int:
        """The Sanic worker serving requests (the newest descendant running Python)."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            children = []
        workers = [int(c) for c in children
                   if "multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
                   and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
        return max(workers) if workers else self.process.pid

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        _stop_group(self.process)
        self._log.close()


# ---------------------------------------------------------------------------- load
async def drive(url: str, conversations: int, turns: int, request_timeout: float,
                result: RunResult, latencies: list[float]) -> None:
    """N conversations at once; each sends its turns one after the other."""
    limits = httpx.Limits(max_connections=conversations, max_keepalive_connections=conversations)
    async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) as client:

        async def conversation(index: int) -> None:
            sender = f"bench-{result.config}-{result.actions}-{index}"
            for turn in range(1, turns + 1):
                started = time.perf_counter()
                try:
                    response = await client.post(WEBHOOK, json={"sender": sender, "message": "/count"})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    texts = [m.get("text") for m in response.json()]
                except (httpx.HTTPError, ValueError) as e:
                    result.turns_failed += 1
                    if len(result.errors) < 10:
                        result.errors.append(f"{sender} turn {turn}: {type(e).__name__}: {e}")
                    continue
                latencies.append(elapsed)
                result.turns_ok += 1
                if texts != [f"Count {turn}"]:
                    result.wrong_replies += 1
                    if len(result.errors) < 10:
                        result.errors.append(f"{sender} turn {turn}: expected 'Count {turn}', got {texts}")

        await asyncio.gather(*(conversation(i) for i in range(conversations)))


class Profiler:
    """py-spy recording one process while the load runs.

    ``gil`` mode (py-spy ``--gil``): only the thread holding the GIL is sampled, so the
    shares are of the worker's Python CPU time (idle waits in the loop's epoll or the
    aiosqlite and inference threads' queues are not counted; C work that releases the
    GIL, such as OpenSSL loading CA certificates, is not either). ``wall`` mode samples
    every thread py-spy sees as running, which shows that C work (and some idle noise).
    """

    def __init__(self, pid: int, out: Path, seconds: float, mode: str = "gil") -> None:
        self.out = out
        self.process = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
             *(["--gil"] if mode == "gil" else []),
             "--duration", str(int(seconds) + 1), "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# Where a turn's time goes: each sample counts for the first group with a frame on its stack.
PROFILE_BUCKETS = [
    ("action client: new httpx client + TLS context per call", ["create_default_context", "SSLContext", "BaseClient.__init__", "AsyncClient.__init__", "AsyncClient.__aexit__"]),
    ("action call over HTTP (request, JSON)", ["RemoteAction.run"]),
    ("action call in-process (rasa_sdk executor)", ["InProcessAction.run"]),
    ("tracker load (store read + JSON + replay)", ["MessageProcessor.get_tracker"]),
    ("tracker save (store write + JSON)", ["MessageProcessor.save_tracker"]),
    ("lock store", ["LockStore.lock", "lock_store.py"]),
    ("policy prediction", ["_predict_sync"]),
    ("parse (/intent regex, NLU)", ["parse_text", "_parse_sync", "ParseBatcher"]),
    ("slot extraction", ["_run_action_extract_slots"]),
    ("rest of the turn (events, responses)", ["MessageProcessor.", "Agent.handle_message"]),
    ("HTTP server (Sanic, request/response)", ["sanic/", "connectors/rest.py", "handle_request", "connection_task"]),
]


def profile_groups(raw: Path) -> dict[str, float]:
    """Share (%) of the samples of a py-spy ``raw`` file per group of ``PROFILE_BUCKETS``."""
    total, counts = 0, {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        name = "other (loop, threads, GC)"
        for label, keys in PROFILE_BUCKETS:
            if any(k in stack for k in keys):
                name = label
                break
        counts[name] = counts.get(name, 0) + int(count)
    return {k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}


def summarise_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares of the hottest frames of a py-spy ``raw`` (collapsed stacks) file."""
    total = 0
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "groups %:"]
    lines += [f"{share:6.1f}  {label}" for label, share in profile_groups(raw).items()]
    lines += ["", "inclusive % (frames on the stack):"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}  {frame}")
    lines += ["", "self % (frames at the top of the stack):"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}  {frame}")
    return "\n".join(lines) + "\n"


async def run_config(config: BenchConfig, model: Path, args: argparse.Namespace,
                     redis: RedisServer | None, tree: tuple[str, Path], actions: str) -> RunResult:
    label, tree_path = tree
    result = RunResult(config.name, config.store, config.workers, args.conversations, args.turns,
                       tree=label, actions=actions, busy=args.busy)
    with tempfile.TemporaryDirectory(prefix=f"kefu-bench-{config.name}-") as tmp:
        work = Path(tmp)
        if redis is not None:
            redis.flushall()
        action_server = ActionServer(tree_path, work) if actions == "http" else None
        server = None
        competing = None
        try:
            if action_server is not None:
                action_server.wait_ready(args.start_timeout)
            endpoints = work / "endpoints.yml"
            endpoints.write_text(endpoints_yaml(config.store, work, redis, action_server and action_server.url),
                                 encoding="utf-8")
            server = Server(model, endpoints, config.workers, work, tree_path)
            result.server_start_s = round(await server.wait_ready(args.start_timeout), 2)
            if args.busy:
                competing = CompetingProcess(args.time_limit + 30)
                await asyncio.sleep(0.5)  # let it take its core
            profiler = None
            if args.profile and PY_SPY.exists():
                raw = Path(args.profile) / f"{label}-{config.name}-{actions}.txt"
                raw.parent.mkdir(parents=True, exist_ok=True)
                profiler = Profiler(server.worker_pid(), raw, args.time_limit, args.profile_mode)
                await asyncio.sleep(1.0)  # py-spy attaches
            latencies: list[float] = []
            worker = server.worker_pid()
            cpu_before = (process_cpu_seconds(worker),
                          process_cpu_seconds(action_server.process.pid) if action_server is not None else None)
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    drive(server.url, args.conversations, args.turns, args.request_timeout, result, latencies),
                    timeout=args.time_limit,
                )
            except asyncio.TimeoutError:
                result.timed_out = True
            result.wall_s = round(time.perf_counter() - started, 3)
            cpu_after = (process_cpu_seconds(worker),
                         process_cpu_seconds(action_server.process.pid) if action_server is not None else None)
            if result.turns_ok:
                if cpu_before[0] is not None and cpu_after[0] is not None:
                    result.server_cpu_ms_per_turn = round(1000 * (cpu_after[0] - cpu_before[0]) / result.turns_ok, 2)
                if cpu_before[1] is not None and cpu_after[1] is not None:
                    result.action_server_cpu_ms_per_turn = round(
                        1000 * (cpu_after[1] - cpu_before[1]) / result.turns_ok, 2)
            result.load_average = load_average()
            if profiler is not None:
                profiler.stop()
                if profiler.out.exists():
                    summary = profiler.out.with_suffix(".top.txt")
                    summary.write_text(summarise_profile(profiler.out), encoding="utf-8")
                    result.profile = str(summary)
                    result.profile_groups = profile_groups(profiler.out)
            if latencies:
                result.latency_median_ms = round(statistics.median(latencies) * 1000, 1)
                result.latency_p99_ms = round(percentile(latencies, 99) * 1000, 1)
                result.latency_max_ms = round(max(latencies) * 1000, 1)
            result.turns_per_s = round(result.turns_ok / result.wall_s, 1) if result.wall_s else 0.0
        except RuntimeError as e:
            result.errors.append(str(e))
        finally:
            if competing is not None:
                result.competing_cpu_share = competing.stop()
            if server is not None:
                server.stop()
            if action_server is not None:
                action_server.stop()
    return result


# ---------------------------------------------------------------------------- first reply
async def _first_socketio_reply(url: str, timeout: float) -> Any:
    import socketio  # imported before the clock starts (see measure_first_reply): the client's import is not the server's time

    sio = socketio.AsyncClient(reconnection=False)
    loop = asyncio.get_running_loop()
    confirmed: asyncio.Future = loop.create_future()
    reply: asyncio.Future = loop.create_future()

    @sio.on("session_confirm")
    async def session_confirm(data: Any) -> None:
        if not confirmed.done():
            confirmed.set_result(data)

    @sio.on("bot_uttered")
    async def bot_uttered(data: Any) -> None:
        if not reply.done():
            reply.set_result(data)

    await sio.connect(url, transports=["websocket"], wait_timeout=timeout)
    try:
        await sio.emit("session_request", {"session_id": "first-reply"})
        session_id = await asyncio.wait_for(confirmed, timeout)
        if isinstance(session_id, dict):
            session_id = session_id.get("session_id", session_id)
        await sio.emit("user_uttered", {"message": "/count", "session_id": session_id, "message_id": "m1"})
        return await asyncio.wait_for(reply, timeout)
    finally:
        await sio.disconnect()


async def measure_first_reply(model: Path, args: argparse.Namespace, redis: RedisServer | None,
                              tree: tuple[str, Path], channel: str, store: str, actions: str) -> FirstReply:
    """Fresh server; time from "the port accepts" to the first reply on ``channel``."""
    label, tree_path = tree
    result = FirstReply(label, channel, store, actions, args.busy)
    with tempfile.TemporaryDirectory(prefix="kefu-bench-first-") as tmp:
        work = Path(tmp)
        if redis is not None:
            redis.flushall()
        credentials = work / "credentials.yml"
        credentials.write_text("rest:\nsocketio:\n  session_persistence: true\n", encoding="utf-8")
        action_server = ActionServer(tree_path, work) if actions == "http" else None
        server = None
        competing = CompetingProcess(args.start_timeout + 30) if args.busy else None
        try:
            if action_server is not None:
                action_server.wait_ready(args.start_timeout)
            endpoints = work / "endpoints.yml"
            endpoints.write_text(endpoints_yaml(store, work, redis, action_server and action_server.url),
                                 encoding="utf-8")
            server = Server(model, endpoints, 1, work, tree_path, credentials=credentials)
            # the client is made before the clock starts: its own set-up (an SSL context, python-socketio's
            # import, which took 1.7 s of the first of three measurements on a loaded machine) is not the server's
            if channel == "socketio":
                import socketio  # noqa: F401
            async with httpx.AsyncClient(timeout=args.start_timeout) as client:
                result.port_open_s = round(await server.wait_port(args.start_timeout), 3)
                result.ready_s = round(await server.wait_serving(args.start_timeout), 3)
                ready = time.perf_counter()
                if channel == "rest":
                    response = await client.post(server.url + WEBHOOK, json={"sender": "first", "message": "/count"})
                    response.raise_for_status()
                    result.reply = response.json()
                else:
                    result.reply = await _first_socketio_reply(server.url, args.start_timeout)
                result.first_reply_s = round(time.perf_counter() - ready, 3)
            result.load_average = load_average()
        except Exception as e:  # noqa: BLE001 - reported, not raised
            result.error = f"{type(e).__name__}: {e}"[:500] + ("\n" + server.tail(800) if server else "")
        finally:
            if competing is not None:
                competing.stop()
            if server is not None:
                server.stop()
            if action_server is not None:
                action_server.stop()
    return result


# ---------------------------------------------------------------------------- report
def _first_reply_groups(first: list[FirstReply]) -> dict[tuple[str, str], list[float]]:
    groups: dict[tuple[str, str], list[float]] = {}
    for f in first:
        groups.setdefault((f.tree, f.channel), [])
        if f.first_reply_s is not None:
            groups[(f.tree, f.channel)].append(f.first_reply_s)
    return groups


def print_table(results: list[RunResult]) -> None:
    header = (f"{'tree':<8} {'config':<10} {'actions':<9} {'ok':>4} {'fail':>4} {'wrong':>5} {'median ms':>9} "
              f"{'p99 ms':>8} {'turns/s':>8} {'busy cpu':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.tree:<8} {r.config:<10} {r.actions:<9} {r.turns_ok:>4} {r.turns_failed:>4} {r.wrong_replies:>5} "
            f"{r.latency_median_ms if r.latency_median_ms is not None else '-':>9} "
            f"{r.latency_p99_ms if r.latency_p99_ms is not None else '-':>8} {r.turns_per_s:>8} "
            f"{r.competing_cpu_share if r.competing_cpu_share is not None else '-':>8}"
        )
        for error in r.errors[:3]:
            print(f"    ! {error[:300]}")


def parse_tree(value: str) -> tuple[str, Path]:
    label, sep, path = value.partition("=")
    if not sep or not label or not (Path(path) / "bot" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(
            f"--tree wants LABEL=PATH to a kefu checkout (with bot/__init__.py), got {value!r}. "
            "Fix: e.g. `git worktree add /tmp/kefu-before e8e1f10` and `--tree before=/tmp/kefu-before`."
        )
    return label, Path(path).resolve()


async def main_async(args: argparse.Namespace) -> int:
    configs = [CONFIGS[name] for name in args.configs]
    trees = [*args.tree, ("this", REPO_ROOT)]
    info = machine_info()
    results: list[RunResult] = []
    first: list[FirstReply] = []
    with tempfile.TemporaryDirectory(prefix="kefu-bench-model-") as model_dir:
        model = Path(args.model) if args.model else train_model(Path(model_dir))
        redis: RedisServer | None = None
        if any(c.store == "redis" for c in configs):
            if find_redis_server() is None:
                print("redis-server not found; skipping the Redis configurations.", file=sys.stderr)
                configs = [c for c in configs if c.store != "redis"]
            else:
                redis = RedisServer().start()
        try:
            for config in configs:
                for actions in args.actions:
                    for repetition in range(args.repeat):
                        for tree in trees:  # before/after next to each other, under the same conditions
                            print(f"== {tree[0]} {config.name} actions={actions}{' busy' if args.busy else ''}: "
                                  f"{args.conversations} conversations x {args.turns} turns "
                                  f"(repetition {repetition + 1}/{args.repeat})", flush=True)
                            results.append(await run_config(config, model, args, redis, tree, actions))
            if args.first_reply:
                for repetition in range(args.repeat):
                    for channel in ("rest", "socketio"):
                        for tree in trees:
                            print(f"== first reply: {tree[0]} {channel} ({repetition + 1}/{args.repeat})", flush=True)
                            first.append(await measure_first_reply(
                                model, args, redis, tree, channel, configs[0].store, args.actions[-1]))
        finally:
            if redis is not None:
                redis.stop()
    print_table(results)
    summary = summarise(results)
    if args.repeat > 1:
        print()
        print_summary(summary)
    for f in first:
        print(f"first reply {f.tree:<8} {f.channel:<8} port {f.port_open_s}s, ready {f.ready_s}s -> reply "
              f"{f.first_reply_s}s"
              + (f"  ! {f.error}" if f.error else ""))
    report = {
        "benchmark": "dialogue_turns",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "benchmarks/dialogue_turns.py " + " ".join(sys.argv[1:]),
        "machine": info,
        "load_average_at_end": load_average(),
        "parameters": {
            "conversations": args.conversations,
            "turns_per_conversation": args.turns,
            "message": "/count (rasa_sdk custom action setting a slot; in-process or over HTTP)",
            "busy": args.busy,
            "competing_process": "python spinning on one pinned core for each measurement" if args.busy else None,
            "trees": {label: str(path) for label, path in trees},
            "time_limit_s": args.time_limit,
            "request_timeout_s": args.request_timeout,
            "latency": "client-side, per POST /webhooks/rest/webhook; percentiles by nearest rank",
            "first_reply": "first_reply_s: seconds from the server being ready (a worker answers GET /) to the "
                           "first reply (REST response; socket.io: connect + session_request + user_uttered -> "
                           "bot_uttered); port_open_s and ready_s count from the process start",
        },
        "summary": summary,
        "results": [asdict(r) for r in results],
        "first_reply": [asdict(f) for f in first],
        "first_reply_median_s": {
            f"{tree}/{channel}": round(statistics.median(values), 3)
            for (tree, channel), values in _first_reply_groups(first).items() if values
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    ok = all(r.turns_failed == 0 and r.wrong_replies == 0 and not r.timed_out for r in results)
    return 0 if ok and not any(f.error for f in first) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", "-n", type=int, default=10, help="concurrent conversations (default 10)")
    parser.add_argument("--turns", "-t", type=int, default=5, help="turns per conversation (default 5)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--actions", nargs="+", default=["inprocess"], choices=ACTION_MODES,
                        help="where the custom action runs: in the server or over HTTP on `python -m bot actions`")
    parser.add_argument("--busy", action="store_true",
                        help="a CPU-bound child process spins on one core during each measurement")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="py-spy the server worker during each measurement; collapsed stacks + a top-frames "
                             "summary per configuration in DIR")
    parser.add_argument("--profile-mode", choices=("gil", "wall"), default="gil",
                        help="gil: sample the GIL holder (Python CPU time; default); wall: every running thread")
    parser.add_argument("--first-reply", action="store_true",
                        help="also measure the first REST and socket.io reply after a fresh start")
    parser.add_argument("--tree", action="append", type=parse_tree, default=[], metavar="LABEL=PATH",
                        help="also run the servers from another checkout (before/after side by side)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each configuration N times, trees alternating; medians in the summary")
    parser.add_argument("--model", default=None, help="model archive (default: train turnbot into a temp folder)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per configuration (default 120)")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.turns < 1:
        parser.error("--conversations and --turns must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
