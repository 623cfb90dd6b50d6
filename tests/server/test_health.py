"""Liveness and readiness (issue #21 point 5) with a real model, a real redis-server and a real action server.

Readiness must fail (503) before a model is loaded and while Redis is down — here a
redis-server this test starts and then stops — and come back when it is up again;
neither probe needs a credential and neither leaks a URL, host or exception text.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.agent import Agent
from bot.server.app import create_app
from bot.server.routes import health as health_routes
from bot.shared.endpoints import load_endpoints
from bot.stores.lock_store import RedisLockStore
from bot.stores.tracker_store import RedisTrackerStore
from tests.redis_server import RedisServer, find_redis_server, free_port, redis_skipped

PROJECT = Path(__file__).resolve().parent / "data" / "ready_project"
needs_redis = pytest.mark.skipif(find_redis_server() is None or redis_skipped(),
                                 reason="needs redis-server (apt-get install -y redis-server)")


@pytest.fixture(scope="module")
def ready_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.model.training import train

    return train(root=PROJECT, out=tmp_path_factory.mktemp("ready-model")).model_path


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_routes, "READY_CACHE_S", 0.0)  # each probe below must check again


async def probe(app: Any, path: str) -> Any:
    _, resp = await app.asgi_client.get(path)
    return resp


def assert_leaks_nothing(resp: Any, *secrets: str) -> None:
    text = resp.text
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked in {text}"


@pytest.mark.asyncio
async def test_live_answers_without_a_model_and_ready_says_no_model(tmp_path):
    agent = Agent(action_package=None, project_root=tmp_path)  # a worker whose model is not loaded yet
    app = create_app(agent, auth_token="t" * 32, features=[])
    live = await probe(app, "/health/live")
    assert live.status == 200 and live.json["status"] == "ok"
    ready = await probe(app, "/health/ready")
    assert ready.status == 503
    assert ready.json["status"] == "not_ready"
    assert ready.json["checks"]["model"] == {"ok": False}
    assert ready.json["checks"]["tracker_store"]["ok"] is True  # the stores answer; only the model is missing
    await agent.close()


@pytest.mark.asyncio
async def test_ready_without_an_agent_is_503_not_an_error():
    app = create_app(None, auth_token="t" * 32, features=[])
    ready = await probe(app, "/health/ready")
    assert ready.status == 503 and ready.json["checks"]["model"] == {"ok": False}


@pytest.mark.asyncio
async def test_root_and_status_keep_rasas_meanings(tmp_path, ready_model):
    agent = Agent(action_package=None, project_root=tmp_path)
    await agent.load_model(ready_model)
    app = create_app(agent, auth_token="t" * 32, features=[])
    assert (await probe(app, "/")).text.startswith("Hello from kefu")
    assert (await probe(app, "/status")).status == 401  # the model's details stay behind status:read
    ready = await probe(app, "/health/ready")
    assert ready.status == 200, ready.text
    assert_leaks_nothing(ready, str(ready_model), ready_model.name, agent.model_id or "")
    await agent.close()


@needs_redis
@pytest.mark.asyncio
async def test_ready_fails_while_redis_is_down_and_recovers(tmp_path, ready_model):
    server = RedisServer().start()
    port = server.port
    url = f"redis://127.0.0.1:{port}/0"
    agent = Agent(tracker_store=RedisTrackerStore(host=url, socket_timeout=1.0),
                  lock_store=RedisLockStore(host=url, socket_timeout=1.0), action_package=None,
                  project_root=tmp_path)
    await agent.load_model(ready_model)
    app = create_app(agent, auth_token="t" * 32, features=[])
    try:
        up = await probe(app, "/health/ready")
        assert up.status == 200, up.text
        assert up.json["checks"]["tracker_store"] == {"ok": True, "kind": "redis", "ms": up.json["checks"]["tracker_store"]["ms"]}
        assert up.json["checks"]["lock_store"]["ok"] is True and up.json["checks"]["lock_store"]["kind"] == "redis"

        server.stop()
        down = await probe(app, "/health/ready")
        assert down.status == 503, down.text
        assert down.json["checks"]["model"] == {"ok": True}
        assert down.json["checks"]["tracker_store"]["ok"] is False
        assert down.json["checks"]["lock_store"]["ok"] is False
        assert_leaks_nothing(down, str(port), "127.0.0.1", "redis://", "Connection refused")
        live = await probe(app, "/health/live")
        assert live.status == 200  # the process is up: a load balancer must not restart it for Redis

        server = RedisServer(port=port).start()
        back = await probe(app, "/health/ready")
        assert back.status == 200, back.text
    finally:
        server.stop()
        await agent.close()


@pytest.mark.asyncio
async def test_ready_checks_the_action_server_when_one_is_configured(tmp_path, ready_model):
    from aiohttp import web

    port = free_port()

    async def health(request: Any) -> Any:
        return web.json_response({"status": "ok"})

    action_server = web.Application()
    action_server.router.add_get("/health", health)
    runner = web.AppRunner(action_server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    (tmp_path / "endpoints.yml").write_text(f"action_endpoint:\n  url: http://127.0.0.1:{port}/webhook\n")
    agent = Agent(endpoints=load_endpoints(tmp_path / "endpoints.yml"), action_package=None, project_root=tmp_path)
    await agent.load_model(ready_model)
    app = create_app(agent, auth_token="t" * 32, features=[])
    try:
        up = await probe(app, "/health/ready")
        assert up.status == 200, up.text
        assert up.json["checks"]["action_server"]["ok"] is True
        await runner.cleanup()  # the action server goes away
        down = await probe(app, "/health/ready")
        assert down.status == 503, down.text
        assert down.json["checks"]["action_server"]["ok"] is False
        assert_leaks_nothing(down, str(port), "/webhook")
    finally:
        await runner.cleanup()
        await agent.close()


@pytest.mark.asyncio
async def test_a_feature_reporting_unhealthy_makes_the_worker_not_ready(agent):
    from bot.feature import BaseFeature, FeatureHealth

    class Broken(BaseFeature):
        name = "broken"

        def health(self) -> FeatureHealth:
            return FeatureHealth(ok=False, detail={"secret": "redis://:hunter2@db"})

    app = create_app(agent, auth_token="t" * 32, features=[Broken()])
    ready = await probe(app, "/health/ready")
    assert ready.status == 503
    assert ready.json["checks"]["feature:broken"] == {"ok": False}
    assert_leaks_nothing(ready, "hunter2")
    assert json.loads(ready.text)["checks"]["model"] == {"ok": True}


@pytest.mark.asyncio
async def test_worker_name_only_when_the_operator_sets_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KEFU_WORKER_NAME", raising=False)
    plain = await probe(create_app(None, auth_token="t" * 32, features=[], name="kefu_unnamed"), "/health/ready")
    assert "X-Kefu-Worker" not in plain.headers and "worker" not in plain.json  # nothing about the topology
    monkeypatch.setenv("KEFU_WORKER_NAME", "worker7")
    app = create_app(None, auth_token="t" * 32, features=[], name="kefu_named")
    ready, live = await probe(app, "/health/ready"), await probe(app, "/health/live")
    assert ready.json["worker"] == "worker7"
    assert ready.headers["X-Kefu-Worker"] == live.headers["X-Kefu-Worker"] == "worker7"
