"""Many concurrent widget sessions through nginx over 1, 2 and 3 kefu workers (scripts/cluster.py).

One cluster of ``--workers`` processes is started once (PostgreSQL trackers, Redis locks,
broker and outbox, the demo model). For each worker count k, the sessions' clients bind
loopback source addresses that nginx's ip_hash maps to the first k workers only, so k workers
serve while the others idle (their background loops cost little; starting a cluster per k
would triple the run on this machine). Each session does what the widget does —
``session_request``, then ``user_uttered`` with a message id, waiting for the reply and a
think time before the next. Turn latency = emit -> first ``bot_uttered`` of that turn.

    nice -n 5 .venv/bin/python benchmarks/cluster_load.py --sessions 2000 --duration 60

JSON in benchmarks/results/cluster_scaling.json (with the load average beside the figures).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scripts.cluster import Cluster  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "cluster_scaling.json"
MESSAGES = ["你好", "有什么跑鞋推荐", "运费多少", "hello", "谢谢"]


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sent = 0
        self.connected = 0
        self.errors: dict[str, int] = {}
        self.workers: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def session(url: str, address: str, stats: Stats, start_delay: float, stop_at: float, think: float,
                  measure_from: float) -> None:
    import aiohttp
    import socketio

    await asyncio.sleep(start_delay)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
    sio = socketio.AsyncClient(reconnection=False, http_session=http)
    replies: asyncio.Queue[float] = asyncio.Queue()
    confirmed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @sio.on("bot_uttered")
    async def on_reply(data: Any) -> None:
        replies.put_nowait(time.perf_counter())

    @sio.on("session_confirm")
    async def on_confirm(data: Any) -> None:
        if not confirmed.done():
            confirmed.set_result(data)

    try:
        await sio.connect(url, transports=["websocket"], wait_timeout=60)
        await sio.emit("session_request", {"session_id": None})
        data = await asyncio.wait_for(confirmed, 60)
        session_id = data["session_id"] if isinstance(data, dict) else data
        stats.connected += 1
        await asyncio.sleep(random.uniform(0, think))
        while time.monotonic() < stop_at:
            while not replies.empty():
                replies.get_nowait()
            started = time.perf_counter()
            await sio.emit("user_uttered", {"message": random.choice(MESSAGES), "session_id": session_id,
                                            "message_id": uuid.uuid4().hex})
            measured = time.monotonic() >= measure_from
            stats.sent += measured
            try:
                at = await asyncio.wait_for(replies.get(), 30)
                if measured:
                    stats.latencies.append(at - started)
            except asyncio.TimeoutError:
                stats.error("no reply in 30 s")
            await asyncio.sleep(think * random.uniform(0.5, 1.5))
    except Exception as e:  # noqa: BLE001 - counted
        stats.error(f"{type(e).__name__}")
    finally:
        try:
            await sio.disconnect()
        except Exception:  # noqa: BLE001
            pass
        await http.close()


async def run(cluster: Cluster, addresses: list[str], sessions: int, ramp: float, duration: float,
              think: float) -> dict[str, Any]:
    stats = Stats()
    started = time.monotonic()
    measure_from = started + ramp
    stop_at = measure_from + duration
    load_before = os.getloadavg()
    await asyncio.gather(*(session(cluster.url, addresses[i % len(addresses)], stats, ramp * i / sessions,
                                   stop_at, think, measure_from) for i in range(sessions)))
    lat = sorted(stats.latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    return {
        "sessions": sessions, "connected": stats.connected, "measured_s": duration, "think_s": think,
        "sent": stats.sent, "answered": len(lat),
        "turns_per_s": round(len(lat) / duration, 1),
        "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "errors": stats.errors,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="the cluster's workers; runs use 1..N of them")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--ramp", type=float, default=40.0, help="seconds over which sessions connect")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds after the ramp")
    parser.add_argument("--think", type=float, default=20.0, help="mean seconds between a reply and the next message")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="kefu-load-") as state:
        with Cluster(state, workers=args.workers,
                     endpoints_extra={"handoff": {"max_consecutive_fallbacks": 0, "max_unanswered": 0}}) as cluster:
            by_worker = cluster.source_addresses()
            for k in range(1, args.workers + 1):
                names = [w.name for w in cluster.workers[:k]]
                addresses = [by_worker[n] for n in names]
                result = {"workers": k, **asyncio.run(run(cluster, addresses, args.sessions, args.ramp,
                                                           args.duration, args.think))}
                print(json.dumps(result), flush=True)
                runs.append(result)
    out = {
        "command": "python benchmarks/cluster_load.py " + " ".join(sys.argv[1:]),
        "runs": runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "note": "one 2-core machine runs nginx, PostgreSQL, Redis, the action server, every worker "
                            "and the load generator, shared with other engineers' jobs"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
