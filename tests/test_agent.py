"""Agent: trackers survive a restart (SQLite, Redis) and a model hot swap."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from bot.agent import Agent
from bot.model.training import train
from bot.shared.events import BotUttered, UserUttered
from tests.redis_server import RedisServer, find_redis_server, redis_skipped

PROJECT = Path(__file__).resolve().parent / "data" / "projects" / "turnbot"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = train(root=PROJECT, out=tmp_path_factory.mktemp("turnbot-models"))
    assert result.model_path is not None
    return result.model_path


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if redis_skipped():
        pytest.skip("KEFU_SKIP_REDIS is set")
    if find_redis_server() is None:
        pytest.fail("redis-server is not installed. Install it (apt-get install -y redis-server) or set KEFU_SKIP_REDIS=1.")
    with RedisServer() as server:
        yield server


def _texts(replies: list[dict] | None) -> list[str]:
    return [r.get("text") for r in replies or []]


def _write_endpoints(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


async def _converse_restart_and_check(model_path: Path, endpoints: Path) -> None:
    agent = await Agent.create(model_path, endpoints, project_root=PROJECT)
    try:
        assert _texts(await agent.handle_text('/set_name{"name": "Eve"}', "keep1")) == ["Nice to meet you, Eve."]
        assert _texts(await agent.handle_text("/count", "keep1")) == ["Count 1"]
    finally:
        await agent.close()

    restarted = await Agent.create(model_path, endpoints, project_root=PROJECT)
    try:
        tracker = await restarted.get_tracker("keep1")
        assert tracker.get_slot("name") == "Eve"
        assert tracker.get_slot("order_count") == 1.0
        assert [e.text for e in tracker.events if isinstance(e, UserUttered)] == ['/set_name{"name": "Eve"}', "/count"]
        # the conversation goes on where it stopped, without a new session
        assert _texts(await restarted.handle_text("/count", "keep1")) == ["Count 2"]
        assert _texts(await restarted.handle_text("/greet", "keep1")) == ["Hello Eve!"]
        tracker = await restarted.get_tracker("keep1")
        assert [e.text for e in tracker.events if isinstance(e, BotUttered)] == [
            "Nice to meet you, Eve.", "Count 1", "Count 2", "Hello Eve!"
        ]
    finally:
        await restarted.close()


@pytest.mark.asyncio
async def test_agent_tracker_survives_restart_with_sqlite_store(model_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "trackers.db"
    endpoints = _write_endpoints(tmp_path / "endpoints.yml", f"tracker_store:\n  type: sql\n  url: sqlite:///{db}\n")
    await _converse_restart_and_check(model_path, endpoints)
    assert db.is_file() and db.stat().st_size > 0


@pytest.mark.redis
@pytest.mark.asyncio
async def test_agent_tracker_survives_restart_with_redis_store(
    model_path: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.flushall()
    endpoints = _write_endpoints(
        tmp_path / "endpoints.yml",
        f"tracker_store:\n  type: redis\n  url: {redis_server.host}\n  port: {redis_server.port}\n"
        f"lock_store:\n  type: redis\n  url: {redis_server.host}\n  port: {redis_server.port}\n",
    )
    await _converse_restart_and_check(model_path, endpoints)


@pytest.mark.asyncio
async def test_agent_hot_swap_keeps_conversations(model_path: Path, tmp_path: Path) -> None:
    project2 = tmp_path / "turnbot2"
    shutil.copytree(PROJECT, project2, ignore=shutil.ignore_patterns("__pycache__", "models"))
    domain = project2 / "domain.yml"
    domain.write_text(domain.read_text(encoding="utf-8").replace('"Hello {name}!"', '"Hi again, {name}!"'), encoding="utf-8")
    new_model = train(root=project2, out=tmp_path / "models2").model_path
    assert new_model is not None

    agent = Agent(project_root=PROJECT)
    await agent.load_model(model_path)
    try:
        old_id = agent.model_id
        await agent.handle_text('/set_name{"name": "Flo"}', "swap1")
        assert _texts(await agent.handle_text("/count", "swap1")) == ["Count 1"]
        assert _texts(await agent.handle_text("/greet", "swap1")) == ["Hello Flo!"]

        await agent.load_model(new_model)
        assert agent.model_id != old_id
        assert _texts(await agent.handle_text("/greet", "swap1")) == ["Hi again, Flo!"]
        assert _texts(await agent.handle_text("/count", "swap1")) == ["Count 2"]
        tracker = await agent.get_tracker("swap1")
        assert [e.text for e in tracker.events if isinstance(e, UserUttered)] == [
            '/set_name{"name": "Flo"}', "/count", "/greet", "/greet", "/count"
        ]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_agent_without_model_raises_model_not_found() -> None:
    from bot.shared.exceptions import ModelNotFound

    agent = Agent(project_root=PROJECT)
    try:
        with pytest.raises(ModelNotFound):
            await agent.handle_text("/greet", "nomodel")
    finally:
        await agent.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_agent_redis_lock_serialises_one_conversation(model_path: Path, redis_server: RedisServer) -> None:
    import asyncio
    import sys

    from bot.stores.lock_store import RedisLockStore

    redis_server.flushall()
    agent = Agent(lock_store=RedisLockStore(redis_server.host, port=redis_server.port), project_root=PROJECT)
    await agent.load_model(model_path)
    try:
        runs = sys.modules["actions.actions"].SLOW_RUNS
        runs.clear()
        await asyncio.gather(*(agent.handle_text(f'/slow{{"name": "{i}"}}', "rlock1") for i in range(3)))
        spans = sorted((enter, leave) for sender, enter, leave in runs if sender == "rlock1")
        assert len(spans) == 3
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "runs of one conversation overlapped"
        tracker = await agent.get_tracker("rlock1")
        kinds = [type(e).__name__ for e in tracker.events if isinstance(e, (UserUttered, BotUttered))]
        assert kinds == ["UserUttered", "BotUttered", "BotUttered"] * 3
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_agent_warm_up_leaves_no_conversation_and_changes_none(model_path: Path, tmp_path: Path) -> None:
    from bot.dialogue.processor import WARM_UP_SENDER_ID

    endpoints = _write_endpoints(tmp_path / "endpoints.yml",
                                 f"tracker_store:\n  type: sql\n  url: sqlite:///{tmp_path / 'trackers.db'}\n")
    agent = await Agent.create(model_path, endpoints, project_root=PROJECT)  # load_model warms the processor
    try:
        assert _texts(await agent.handle_text("/count", "warm1")) == ["Count 1"]
        before = (await agent.get_tracker("warm1")).current_state()
        timings = await agent.warm_up()
        assert "stores" in timings
        assert set(await agent.processor.warm_up()) == {"nlu", "policies", "responses"}  # safe to call twice
        assert await agent.tracker_store.keys() == ["warm1"]
        assert await agent.tracker_store.retrieve(WARM_UP_SENDER_ID) is None
        assert (await agent.get_tracker("warm1")).current_state() == before
        assert _texts(await agent.handle_text("/count", "warm1")) == ["Count 2"]
        assert _texts(await agent.handle_text("/count", "warm2")) == ["Count 1"]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_server_start_warms_the_agent_up(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.server.app import create_app
    from connectors.rest import RestInput

    calls: list[str] = []
    original = Agent.warm_up

    async def counting_warm_up(self: Agent) -> dict[str, float]:
        calls.append(self.model_id or "")
        return await original(self)

    monkeypatch.setattr(Agent, "warm_up", counting_warm_up)

    async def factory() -> Agent:
        return await Agent.create(model_path, None, project_root=PROJECT)

    app = create_app(None, [RestInput()], agent_factory=factory, project_root=PROJECT, features=[])
    _, response = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "s1", "message": "/count"})
    assert response.status == 200 and [m["text"] for m in response.json] == ["Count 1"]
    assert len(calls) == 1 and calls[0]
