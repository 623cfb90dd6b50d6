"""Handoff benchmark: N simultaneous escalations, M agents, all on 127.0.0.1.

Two processes, so the load generator's own HTTP/websocket work never shares
the server's event loop (an earlier in-process version spent ~9 s of the
server's CPU on the clients' connection-pool checks):

- the **server** (``--serve``, started by this script as a subprocess): a real
  kefu app (REST channel + handoff API + console websocket) on a free port,
  the tests' handoff bot, SQLite handoff store; with ``--profile`` it runs under
  cProfile and writes the top functions next to the results;
- the **load generator** (this process): one console websocket per agent,
  then N shoppers say "human" at once over HTTP.

Measured (all clocks in the load process):
- escalation -> agent notification: shopper's POST to the ``handoff_assigned``
  event reaching that agent's websocket;
- shopper -> agent relay: shopper POST to the ``message`` event on the websocket;
- agent -> shopper relay: agent ``POST /messages`` round trip; it returns after
  the reply is stored, appended to the tracker and pushed on the shopper's
  channel (REST shoppers have no push channel, so "pushed" is a no-op here).

``os.getloadavg()`` is recorded at start and end: on a shared machine the
figures only compare across runs with similar load.

    .venv/bin/python benchmarks/handoff.py --handoffs 200 --agents 20 \
        --out benchmarks/results/handoff.json --label after
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROJECT = ROOT / "tests" / "handoff" / "data" / "project"
SECRET = os.environ.setdefault("KEFU_BENCH_SECRET", secrets.token_hex(32))  # the server process inherits both
PASSWORD = os.environ.setdefault("KEFU_BENCH_AGENT_PASSWORD", secrets.token_urlsafe(16))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def _password_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)  # cheap: logins aren't measured


def agent_specs(n: int, m: int) -> list[dict[str, Any]]:
    password_hash = _password_hash()
    return [{"id": f"a{i}", "name": f"A{i}", "password_hash": password_hash, "skills": ["general", "after_sales"],
             "languages": ["en", "zh"], "max_concurrent": max(1, -(-n // m))} for i in range(m)]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------- server process
async def serve(model: str, db: str, port: int, n: int, m: int, stats_path: str, profile_path: str | None) -> None:
    """The kefu server alone in this process until SIGTERM; then CPU time (and profile) to files."""
    import cProfile
    import pstats

    from bot.agent import Agent
    from bot.handoff import HandoffConfig, HandoffService
    from bot.handoff.feature import HandoffFeature
    from bot.server.app import create_app
    from connectors.rest import RestInput

    config = HandoffConfig.from_dict({"agents": agent_specs(n, m), "store_url": f"sqlite+aiosqlite:///{db}",
                                      "secret": SECRET, "sentiment_threshold": -2.0})
    agent = Agent(action_package=None)
    await agent.load_model(model)

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    service = HandoffService(config, profile_provider=no_profile)
    app = create_app(agent, input_channels=[RestInput()], features=[HandoffFeature(service, owns_service=False)])
    app.config.TOUCHUP = False
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
    await server.startup()
    await server.before_start()  # the server's life cycle: starts the handoff feature
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # thread_time: the event loop's own CPU; on a loaded machine wall time mostly shows waiting for a core
    profiler = cProfile.Profile(time.thread_time) if profile_path else None
    cpu0 = _cpu_s()
    if profiler is not None:
        profiler.enable()
    serving = asyncio.create_task(server.serve_forever())
    print("READY", flush=True)
    await stop.wait()
    if profiler is not None:
        profiler.disable()
    cpu = _cpu_s() - cpu0
    server.close()
    serving.cancel()
    await service.close()
    Path(stats_path).write_text(json.dumps({"server_cpu_s": round(cpu, 2)}), encoding="utf-8")
    if profiler is not None and profile_path:
        with open(profile_path, "w", encoding="utf-8") as f:
            stats = pstats.Stats(profiler, stream=f)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)


# ---------------------------------------------------------------------- load process
async def load(port: int, n: int, m: int) -> dict[str, Any]:
    import httpx
    import websockets

    agents = agent_specs(n, m)
    base = f"http://127.0.0.1:{port}"
    assigned_at: dict[str, float] = {}
    relayed_at: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=400)) as client:
        tokens = {}
        for spec in agents:
            r = await client.post("/handoff/api/login", json={"agent_id": spec["id"], "password": PASSWORD})
            tokens[spec["id"]] = r.json()["token"]
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/handoff/ws", max_size=None) for a in agents]
        for ws, a in zip(sockets, agents):  # the token goes in the first message, never in the URL
            await ws.send(json.dumps({"type": "auth", "token": tokens[a["id"]]}))

        async def listen(ws: Any, agent_id: str) -> None:
            async for raw in ws:
                event = json.loads(raw)
                now = time.perf_counter()
                if event["type"] == "handoff_assigned" and event.get("agent_id") == agent_id:
                    assigned_at.setdefault(event["handoff"]["conversation_id"], now)
                elif event["type"] == "message" and event["message"]["sender"] == "user" and event.get("agent_id") == agent_id:
                    relayed_at.setdefault(event["message"]["text"], now)

        for ws in sockets:
            await ws.recv()  # hello, before the listeners own recv()
        listeners = [asyncio.create_task(listen(ws, a["id"])) for ws, a in zip(sockets, agents)]
        sent_at: dict[str, float] = {}

        async def shopper(i: int) -> None:
            sender = f"shopper-{i}"
            sent_at[sender] = time.perf_counter()
            await client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "human"})

        t0 = time.perf_counter()
        await asyncio.gather(*(shopper(i) for i in range(n)))
        escalate_wall = time.perf_counter() - t0
        while len(assigned_at) < n and time.perf_counter() - t0 < 120:
            await asyncio.sleep(0.01)
        notify = [(assigned_at[s] - sent_at[s]) * 1000 for s in assigned_at]

        relay_sent: dict[str, float] = {}

        async def shopper_says(i: int) -> None:
            text = f"relay-{i}"
            relay_sent[text] = time.perf_counter()
            await client.post("/webhooks/rest/webhook", json={"sender": f"shopper-{i}", "message": text})

        await asyncio.gather(*(shopper_says(i) for i in range(n)))
        t1 = time.perf_counter()
        while len(relayed_at) < n and time.perf_counter() - t1 < 120:
            await asyncio.sleep(0.01)
        to_agent = [(relayed_at[t] - relay_sent[t]) * 1000 for t in relayed_at]

        to_shopper: list[float] = []
        mine: list[tuple[str, str]] = []
        for spec in agents:
            r = await client.get("/handoff/api/handoffs", params={"status": "mine"},
                                 headers={"Authorization": f"Bearer {tokens[spec['id']]}"})
            mine += [(h["id"], spec["id"]) for h in r.json()]

        async def reply(handoff_id: str, agent_id: str) -> None:
            start = time.perf_counter()
            r = await client.post(f"/handoff/api/handoffs/{handoff_id}/messages",
                                  headers={"Authorization": f"Bearer {tokens[agent_id]}"},
                                  json={"text": "hello from the agent", "client_id": f"b-{handoff_id}"})
            if r.status_code == 200:
                to_shopper.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(reply(h, a) for h, a in mine))
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()

    def stats(values: list[float]) -> dict[str, Any]:
        return {"count": len(values), "median_ms": round(statistics.median(values), 1) if values else None,
                "p99_ms": round(pct(values, 0.99), 1) if values else None}

    return {"handoffs": n, "agents": m, "escalation_wall_s": round(escalate_wall, 2),
            "escalation_to_agent_notification": stats(notify), "relay_shopper_to_agent": stats(to_agent),
            "relay_agent_to_shopper": stats(to_shopper)}


def run(n: int, m: int, profile_path: str | None = None) -> dict[str, Any]:
    """Train the tiny bot, start the server process, drive it from this one, stop it."""
    from bot.model.training import train

    tmp = Path(tempfile.mkdtemp(prefix="kefu-handoff-bench-"))
    model = train(root=PROJECT, out=tmp / "models").model_path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stats_path = tmp / "server.json"
    cmd = [sys.executable, __file__, "--serve", "--model", str(model), "--db", str(tmp / "handoff.db"),
           "--port", str(port), "--handoffs", str(n), "--agents", str(m), "--stats", str(stats_path)]
    if profile_path:
        cmd += ["--profile", profile_path]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.strip() == "READY":
                break
        else:
            raise RuntimeError(f"The benchmark server exited early (code {server.wait()}).")
        load_start = os.getloadavg()
        cpu0 = _cpu_s()
        result = asyncio.run(load(port, n, m))
        result["load_generator_cpu_s"] = round(_cpu_s() - cpu0, 2)
        result["load_average_at_start"] = [round(x, 2) for x in load_start]
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    if stats_path.is_file():
        result.update(json.loads(stats_path.read_text(encoding="utf-8")))
    result["processes"] = "server and load generator in separate processes"
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--out", help="merge the figures into this JSON file under --label")
    parser.add_argument("--label", default="after", help="key for this run in --out (e.g. before/after)")
    parser.add_argument("--note", help="a note stored with this run in --out")
    parser.add_argument("--profile", help="run the server under cProfile; write its top functions here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.model, args.db, args.port, args.handoffs, args.agents, args.stats, args.profile))
        sys.exit(0)
    result = run(args.handoffs, args.agents, args.profile)
    print(json.dumps(result, indent=2))
    if args.out:
        out = Path(args.out)
        data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        entry = {**result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count()}
        if args.note:
            entry["note"] = args.note
        data[args.label] = entry
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
