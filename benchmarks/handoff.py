"""Handoff benchmark: N simultaneous escalations, M agents, all on 127.0.0.1.

Starts a real kefu server (REST channel + handoff API + websocket) on a free
port with the tests' handoff bot, opens one console websocket per agent, then
N shoppers say "human" at once over HTTP. Measures:
- escalation -> agent notification: from the shopper's POST to the
  ``handoff_assigned`` event reaching that agent's websocket;
- shopper -> agent relay: shopper POST to the ``message`` event on the websocket;
- agent -> shopper relay: agent POST /messages until the reply is in the tracker
  and pushed (the POST returns after the push).

    .venv/bin/python benchmarks/handoff.py --handoffs 200 --agents 20
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROJECT = ROOT / "tests" / "handoff" / "data" / "project"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


async def main(n: int, m: int) -> dict[str, Any]:
    import httpx
    import websockets

    from bot.agent import Agent
    from bot.handoff import HandoffConfig, install_handoff
    from bot.model.training import train
    from bot.server.app import create_app
    from connectors.rest import RestInput

    tmp = Path(tempfile.mkdtemp(prefix="kefu-handoff-bench-"))
    model = train(root=PROJECT, out=tmp / "models").model_path
    agents = [{"id": f"a{i}", "name": f"A{i}", "password": "pw", "skills": ["general", "after_sales"],
               "languages": ["en", "zh"], "max_concurrent": max(1, -(-n // m))} for i in range(m)]
    config = HandoffConfig.from_dict({"agents": agents, "store_url": f"sqlite+aiosqlite:///{tmp / 'handoff.db'}",
                                      "secret": "bench-secret-0123456789abcdef0123456789", "sentiment_threshold": -2.0})
    agent = Agent(action_package=None)
    await agent.load_model(model)
    app = create_app(agent, input_channels=[RestInput()])
    app.config.TOUCHUP = False

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    service = install_handoff(app, agent, config, profile_provider=no_profile)
    await service.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
    await server.startup()
    serve = asyncio.create_task(server.serve_forever())
    base = f"http://127.0.0.1:{port}"
    assigned_at: dict[str, float] = {}
    relayed_at: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=400)) as client:
        tokens = {}
        for spec in agents:
            r = await client.post("/handoff/api/login", json={"agent_id": spec["id"], "password": "pw"})
            tokens[spec["id"]] = r.json()["token"]
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/handoff/ws?token={tokens[a['id']]}",
                                            max_size=None) for a in agents]

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
        while len(assigned_at) < n and time.perf_counter() - t0 < 60:
            await asyncio.sleep(0.01)
        notify = [(assigned_at[s] - sent_at[s]) * 1000 for s in assigned_at]

        relay_sent: dict[str, float] = {}

        async def shopper_says(i: int) -> None:
            text = f"relay-{i}"
            relay_sent[text] = time.perf_counter()
            await client.post("/webhooks/rest/webhook", json={"sender": f"shopper-{i}", "message": text})

        await asyncio.gather(*(shopper_says(i) for i in range(n)))
        t1 = time.perf_counter()
        while len(relayed_at) < n and time.perf_counter() - t1 < 60:
            await asyncio.sleep(0.01)
        to_agent = [(relayed_at[t] - relay_sent[t]) * 1000 for t in relayed_at]

        rows = await service.store.list(("assigned",))
        to_shopper: list[float] = []

        async def reply(h: dict[str, Any]) -> None:
            start = time.perf_counter()
            r = await client.post(f"/handoff/api/handoffs/{h['id']}/messages",
                                  headers={"Authorization": f"Bearer {tokens[h['agent_id']]}"},
                                  json={"text": "hello from the agent", "client_id": f"b-{h['id']}"})
            if r.status_code == 200:
                to_shopper.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(reply(h) for h in rows))
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()
    server.close()
    await server.wait_closed()
    serve.cancel()
    await service.close()

    def stats(values: list[float]) -> dict[str, Any]:
        return {"count": len(values), "median_ms": round(statistics.median(values), 1) if values else None,
                "p99_ms": round(pct(values, 0.99), 1) if values else None}

    return {"handoffs": n, "agents": m, "escalation_wall_s": round(escalate_wall, 2),
            "escalation_to_agent_notification": stats(notify), "relay_shopper_to_agent": stats(to_agent),
            "relay_agent_to_shopper": stats(to_shopper)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--out", help="merge the figures into this JSON file under --label")
    parser.add_argument("--label", default="after", help="key for this run in --out (e.g. before/after)")
    args = parser.parse_args()
    result = asyncio.run(main(args.handoffs, args.agents))
    print(json.dumps(result, indent=2))
    if args.out:
        out = Path(args.out)
        data = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        data[args.label] = {**result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "cpu_count": __import__("os").cpu_count()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
