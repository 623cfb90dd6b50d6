"""Widget benchmark: many concurrent socket.io sessions exchanging messages with kefu.

Starts a kefu server (one Sanic worker, the socketio channel with
``session_persistence``, the shopbot test model: KeywordIntentClassifier +
RulePolicy) in a subprocess on 127.0.0.1, then opens N python-socketio clients
(websocket transport, like kefu's widget). Each client does what the widget
does - ``session_request``, then ``user_uttered`` with a message id - and
waits for the bot's reply before its next message (after ``--think`` seconds).
Round trip = emit of ``user_uttered`` -> first ``bot_uttered`` of that turn.

Run from the repository root:

    .venv/bin/python benchmarks/widget_sessions.py --clients 500 --duration 60

Prints a JSON summary (delivered replies, median/p99 round trip, errors) and
writes it to benchmarks/results/widget_sessions.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PROJECT = REPO_ROOT / "tests" / "data" / "projects" / "shopbot"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "widget_sessions.json"
MESSAGES = ["hi", "running shoes", "/rate", "buy"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ server side
def serve(model: str, port: int) -> None:
    """The server process: kefu's app with the socketio channel, one worker."""
    from bot.agent import Agent
    from bot.server.app import create_app
    from connectors.socketio import SocketIOInput

    logging.basicConfig(level=logging.WARNING)
    channel = SocketIOInput.from_credentials({"session_persistence": True})
    app = create_app(None, input_channels=[channel], name="kefu_widget_bench")

    @app.before_server_start
    async def load(app: Any) -> None:
        agent = Agent(project_root=PROJECT, action_package=None)
        await agent.load_model(model)
        app.ctx.agent = agent

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


# ------------------------------------------------------------------------ client side
class Stats:
    def __init__(self) -> None:
        self.round_trips: list[float] = []
        self.sent = 0
        self.errors: dict[str, int] = {}
        self.connected = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def run_client(
    url: str, stop_at: float, think: float, stats: Stats, start_delay: float, turns: int | None = None
) -> None:
    import socketio

    await asyncio.sleep(start_delay)
    sio = socketio.AsyncClient(reconnection=False)
    reply: asyncio.Queue = asyncio.Queue()
    confirmed: asyncio.Future = asyncio.get_running_loop().create_future()

    @sio.on("bot_uttered")
    async def bot_uttered(data: Any) -> None:
        reply.put_nowait((time.perf_counter(), data))

    def on_ack(ack: Any = None) -> None:
        if isinstance(ack, dict) and ack.get("status") == "error":
            reply.put_nowait((None, ack))

    @sio.on("session_confirm")
    async def session_confirm(data: Any) -> None:
        if not confirmed.done():
            confirmed.set_result(data)

    try:
        await sio.connect(url, transports=["websocket"], wait_timeout=30)
        await sio.emit("session_request", {"session_id": uuid.uuid4().hex})
        session_id = await asyncio.wait_for(confirmed, 30)
    except Exception as e:  # noqa: BLE001 - counted, not raised
        stats.error(f"connect: {type(e).__name__}")
        return
    stats.connected += 1
    try:
        while time.monotonic() < stop_at and (turns is None or stats.sent < turns):
            while not reply.empty():
                reply.get_nowait()  # extra messages of the previous turn
            started = time.perf_counter()
            await sio.emit(
                "user_uttered",
                {"message": random.choice(MESSAGES), "session_id": session_id,
                 "message_id": uuid.uuid4().hex},
                callback=on_ack,
            )
            stats.sent += 1
            try:
                received_at, data = await asyncio.wait_for(reply.get(), 10)
                if received_at is None:
                    stats.error(f"error ack: {data.get('error')}")
                else:
                    stats.round_trips.append(received_at - started)
            except asyncio.TimeoutError:
                stats.error("reply timeout (10 s)")
            await asyncio.sleep(think * random.uniform(0.5, 1.5))
    except Exception as e:  # noqa: BLE001
        stats.error(f"session: {type(e).__name__}")
    finally:
        await sio.disconnect()


async def warm_up(url: str) -> None:
    """One conversation turn before measuring: the first turn of a process loads lazily."""
    await run_client(url, time.monotonic() + 60, 0.0, Stats(), 0.0, turns=1)


async def drive(url: str, clients: int, duration: float, think: float, ramp: float) -> dict[str, Any]:
    await warm_up(url)
    stats = Stats()
    started = time.monotonic()
    stop_at = started + ramp + duration
    await asyncio.gather(
        *(run_client(url, stop_at, think, stats, ramp * i / clients) for i in range(clients))
    )
    elapsed = time.monotonic() - started
    rt = sorted(stats.round_trips)

    def pct(p: float) -> float | None:
        return round(rt[min(len(rt) - 1, int(p * len(rt)))] * 1000, 1) if rt else None

    return {
        "clients": clients,
        "connected": stats.connected,
        "duration_s": round(elapsed, 1),
        "think_s": think,
        "sent": stats.sent,
        "delivered": len(rt),
        "replies_per_s": round(len(rt) / elapsed, 1) if elapsed else None,
        "median_ms": round(statistics.median(rt) * 1000, 1) if rt else None,
        "p99_ms": pct(0.99),
        "max_ms": round(rt[-1] * 1000, 1) if rt else None,
        "errors": stats.errors,
    }


def wait_for_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"kefu did not start on port {port} within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic after ramp-up")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a reply and the next message")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which clients connect")
    parser.add_argument("--serve", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    from bot.model.training import train

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # engineio's ping tasks at exit
    with tempfile.TemporaryDirectory() as tmp:
        model = train(root=PROJECT, out=tmp).model_path
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(model), str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)},
        )
        try:
            wait_for_port(port)
            result = asyncio.run(
                drive(f"http://127.0.0.1:{port}", args.clients, args.duration, args.think, args.ramp)
            )
        finally:
            server.terminate()
            server.wait(10)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
