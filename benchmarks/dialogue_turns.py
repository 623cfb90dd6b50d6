"""Dialogue-turn benchmark: latency and throughput of POST /webhooks/rest/webhook.

Starts the real server (``python -m bot run``) on 127.0.0.1 with the turnbot test
model (tests/data/projects/turnbot, NLU-less, RulePolicy + MemoizationPolicy) for
each configuration — SQLite tracker store or Redis tracker + lock store, with 1 or
2 worker processes — and drives N conversations concurrently with httpx. Every
turn is ``/count``, which runs the in-process rasa_sdk action ``action_count``:
it reads a slot, says ``Count <k>`` and sets the slot, so each reply also checks
that the tracker was stored and read back correctly (also across workers).

Run from the repository root:

    .venv/bin/python benchmarks/dialogue_turns.py --conversations 10 --turns 5

Results are printed and written to benchmarks/results/dialogue_turns.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
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


@dataclass
class RunResult:
    config: str
    store: str
    workers: int
    conversations: int
    turns_per_conversation: int
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
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


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
        load = os.getloadavg()
    except OSError:
        load = None
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
        "load_average_at_start": load,
        "kefu_version": kefu_version,
    }


def train_model(out_dir: Path) -> Path:
    from bot.model.training import train

    result = train(root=PROJECT, out=out_dir)
    if result.model_path is None:
        raise RuntimeError(f"Training {PROJECT} produced no model archive.")
    return result.model_path


def endpoints_yaml(store: str, work: Path, redis: RedisServer | None) -> str:
    if store == "sqlite":
        return f"tracker_store:\n  type: sql\n  url: sqlite:///{work / 'trackers.db'}\n"
    assert redis is not None
    return (
        f"tracker_store:\n  type: redis\n  url: {redis.host}\n  port: {redis.port}\n"
        f"lock_store:\n  type: redis\n  url: {redis.host}\n  port: {redis.port}\n"
    )


class Server:
    """``python -m bot run`` as a child process in its own process group."""

    def __init__(self, model: Path, endpoints: Path, workers: int, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        self._log = self.log_path.open("wb")
        env = dict(os.environ, KEFU_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO_ROOT))
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "bot", "--log-level", "WARNING", "run",
                "--model", str(model),
                "--endpoints", str(endpoints),
                "--credentials", str(work / "no-credentials.yml"),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--workers", str(workers),
                "--root", str(PROJECT),
            ],
            cwd=str(work),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

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

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        self._log.close()


async def drive(url: str, conversations: int, turns: int, request_timeout: float,
                result: RunResult, latencies: list[float]) -> None:
    """N conversations at once; each sends its turns one after the other."""
    limits = httpx.Limits(max_connections=conversations, max_keepalive_connections=conversations)
    async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) as client:

        async def conversation(index: int) -> None:
            sender = f"bench-{result.config}-{index}"
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


async def run_config(config: BenchConfig, model: Path, args: argparse.Namespace,
                     redis: RedisServer | None) -> RunResult:
    result = RunResult(config.name, config.store, config.workers, args.conversations, args.turns)
    with tempfile.TemporaryDirectory(prefix=f"kefu-bench-{config.name}-") as tmp:
        work = Path(tmp)
        if redis is not None:
            redis.flushall()
        endpoints = work / "endpoints.yml"
        endpoints.write_text(endpoints_yaml(config.store, work, redis), encoding="utf-8")
        server = Server(model, endpoints, config.workers, work)
        try:
            result.server_start_s = round(await server.wait_ready(args.start_timeout), 2)
            latencies: list[float] = []
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    drive(server.url, args.conversations, args.turns, args.request_timeout, result, latencies),
                    timeout=args.time_limit,
                )
            except asyncio.TimeoutError:
                result.timed_out = True
            result.wall_s = round(time.perf_counter() - started, 3)
            if latencies:
                result.latency_median_ms = round(statistics.median(latencies) * 1000, 1)
                result.latency_p99_ms = round(percentile(latencies, 99) * 1000, 1)
                result.latency_max_ms = round(max(latencies) * 1000, 1)
            result.turns_per_s = round(result.turns_ok / result.wall_s, 1) if result.wall_s else 0.0
        except RuntimeError as e:
            result.errors.append(str(e))
        finally:
            server.stop()
    return result


def print_table(results: list[RunResult]) -> None:
    header = f"{'config':<11} {'turns ok':>8} {'failed':>6} {'wrong':>5} {'median ms':>9} {'p99 ms':>8} {'turns/s':>8} {'start s':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.config:<11} {r.turns_ok:>8} {r.turns_failed:>6} {r.wrong_replies:>5} "
            f"{r.latency_median_ms if r.latency_median_ms is not None else '-':>9} "
            f"{r.latency_p99_ms if r.latency_p99_ms is not None else '-':>8} {r.turns_per_s:>8} {r.server_start_s:>7}"
        )
        for error in r.errors[:3]:
            print(f"    ! {error[:300]}")


async def main_async(args: argparse.Namespace) -> int:
    configs = [CONFIGS[name] for name in args.configs]
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="kefu-bench-model-") as model_dir:
        model = Path(args.model) if args.model else train_model(Path(model_dir))
        redis: RedisServer | None = None
        if any(c.store == "redis" for c in configs):
            if find_redis_server() is None:
                print("redis-server not found; skipping the Redis configurations.", file=sys.stderr)
                configs = [c for c in configs if c.store != "redis"]
            else:
                redis = RedisServer().start()
        results = []
        try:
            for config in configs:
                print(f"== {config.name}: {args.conversations} conversations x {args.turns} turns", flush=True)
                results.append(await run_config(config, model, args, redis))
        finally:
            if redis is not None:
                redis.stop()
    print_table(results)
    report = {
        "benchmark": "dialogue_turns",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "parameters": {
            "conversations": args.conversations,
            "turns_per_conversation": args.turns,
            "message": "/count (in-process rasa_sdk custom action setting a slot)",
            "time_limit_s": args.time_limit,
            "request_timeout_s": args.request_timeout,
            "latency": "client-side, per POST /webhooks/rest/webhook; percentiles by nearest rank",
        },
        "results": [asdict(r) for r in results],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if all(r.turns_failed == 0 and r.wrong_replies == 0 and not r.timed_out for r in results) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", "-n", type=int, default=10, help="concurrent conversations (default 10)")
    parser.add_argument("--turns", "-t", type=int, default=5, help="turns per conversation (default 5)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--model", default=None, help="model archive (default: train turnbot into a temp folder)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per configuration (default 120)")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    if args.conversations < 1 or args.turns < 1:
        parser.error("--conversations and --turns must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
