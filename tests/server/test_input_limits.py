"""Issue #15 point 5 over HTTP: per-route body limits, JSON nesting, YAML bombs.

Through the real app factory; the YAML bomb goes to a real ``Agent`` (no model
loaded, as for a first training).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.agent import Agent
from bot.server.app import create_app
from connectors.rest import RestInput
from tests.shared.test_yaml_limits import billion_laughs


async def call(app: Any, method: str, path: str, **kwargs: Any) -> Any:
    _, resp = await getattr(app.asgi_client, method)(path, **kwargs)
    return resp


@pytest.mark.asyncio
async def test_json_body_100k_deep_is_400_naming_the_limit(agent):
    """The finding: a 100k-deep JSON body gave a 500 with a RecursionError."""
    body = b"[" * 100_000 + b"]" * 100_000
    resp = await call(create_app(agent), "post", "/conversations/c1/tracker/events",
                      content=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400, resp.text
    assert "deeper than 64 levels" in resp.json["message"]
    assert "Traceback" not in resp.text and "Recursion" not in resp.text


@pytest.mark.asyncio
async def test_json_body_at_the_depth_limit_is_accepted(agent):
    event = {"event": "slot", "name": "x", "value": json.loads("[" * 60 + "]" * 60)}
    resp = await call(create_app(agent), "post", "/conversations/c1/tracker/events", json=event)
    assert resp.status == 200, resp.text


def test_request_json_is_bounded_for_every_route(agent):
    """Routes reading ``request.json`` (console, features) get the same cap: a 400, not a 500."""
    app = create_app(agent)
    deep = b"[" * 100_000 + b"]" * 100_000
    seen = {}

    @app.post("/probe")
    async def probe(request):
        from sanic import response
        seen["json"] = request.json
        return response.json({})

    _, resp = app.test_client.post("/probe", content=deep, headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "json" not in seen


@pytest.mark.parametrize(
    ("path", "size", "limit"),
    [
        ("/model/parse", 100 * 1024, 64 * 1024),
        ("/webhooks/rest/webhook", 100 * 1024, 64 * 1024),
        ("/events", 2 * 1024 * 1024, 1024 * 1024 + 64 * 1024),
        ("/status", 2 * 1024 * 1024, 1024 * 1024),
    ],
)
def test_small_routes_refuse_large_bodies_on_a_real_http_server(agent, path, size, limit):
    app = create_app(agent, input_channels=[RestInput()])
    _, resp = app.test_client.post(path, content=b"{" + b" " * size + b"}",
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 413, resp.text
    assert f"size limit of {limit} bytes for {path}" in resp.json["message"]


def test_training_accepts_bodies_larger_than_the_small_routes(agent):
    app = create_app(agent)
    padding = "#" + " " * (200 * 1024) + "\n"
    body = (padding + "intents: [greet]\nnlu:\n- intent: greet\n  examples: |\n    - hi\n").encode()
    _, resp = app.test_client.post("/model/train", content=body,
                                   headers={"Content-Type": "application/x-yaml", "Accept": "application/json"})
    assert resp.status == 200, resp.text


@pytest.mark.asyncio
async def test_body_limit_is_enforced_from_the_declared_length_before_reading(agent):
    """A Content-Length over the route's limit is refused without waiting for the body."""
    import asyncio

    app = create_app(agent)
    port = 0
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        host, port = server.server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /model/parse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000\r\n\r\n{")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), timeout=5)  # no body sent: must not wait for it
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert b"65536" in head
        writer.close()
    finally:
        await server.before_stop()
        await server.close()
        await server.after_stop()


@pytest.fixture
def real_agent(tmp_path: Path):
    agent = Agent(project_root=tmp_path, action_package=None)
    yield agent


@pytest.mark.asyncio
async def test_train_alias_bomb_is_400_with_line_not_memory(real_agent):
    """The finding: a 550-byte YAML alias bomb to /model/train would exhaust memory."""
    bomb = billion_laughs().encode()
    assert len(bomb) <= 550
    resp = await call(create_app(real_agent), "post", "/model/train", content=bomb,
                      headers={"Content-Type": "application/x-yaml"})
    assert resp.status == 400, resp.text
    assert resp.json["message"].startswith("<request body>:")
    assert "alias" in resp.json["message"]
    await real_agent.close()


@pytest.mark.asyncio
async def test_train_bomb_inside_json_strings_is_refused_by_the_agent(real_agent):
    """JSON payloads carry YAML strings; the agent reads them within the same limits."""
    resp = await call(create_app(real_agent), "post", "/model/train",
                      json={"config": "pipeline: []", "nlu": billion_laughs()})
    assert resp.status == 400, resp.text
    assert "<request body: nlu>" in resp.json["message"]
    await real_agent.close()


class _ParsingProcessor:
    """The one part of a processor the evaluation route calls: a real parse callable."""

    @staticmethod
    def _parse_sync(text: str) -> dict:
        return {"text": text, "intent": {"name": "greet", "confidence": 1.0}, "entities": []}


@pytest.mark.asyncio
async def test_nlu_evaluation_yaml_is_read_within_the_http_limits(agent):
    """POST /model/test/intents takes Rasa YAML from the request: an alias bomb is a 400, good data answers."""
    agent.processor = _ParsingProcessor()
    app = create_app(agent)
    resp = await call(app, "post", "/model/test/intents", content=billion_laughs().encode(),
                      headers={"Content-Type": "application/x-yaml"})
    assert resp.status == 400, resp.text
    assert resp.json["message"].startswith("<request body>:") and "alias" in resp.json["message"]
    good = 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello\n    - hi there\n'
    resp = await call(app, "post", "/model/test/intents", content=good.encode(),
                      headers={"Content-Type": "application/x-yaml"})
    assert resp.status == 200, resp.text
    assert resp.json["intent_evaluation"]["accuracy"] == 1.0
