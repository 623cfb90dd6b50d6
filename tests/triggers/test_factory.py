"""create_trigger_engine: endpoints.yml settings, missing triggers file, default routing."""
from __future__ import annotations

import pytest

from bot.shared.endpoints import EndpointConfig, Endpoints
from bot.triggers import create_trigger_engine, triggers_settings
from bot.triggers.queue import SQLJobQueue
from tests.triggers.conftest import TEST_TRIGGERS


def test_triggers_settings_from_endpoint_config():
    endpoints = Endpoints(extra={"triggers": EndpointConfig(url="redis://x:1/0", type="redis", kwargs={"file": "j.yml"})})
    assert triggers_settings(endpoints) == {"file": "j.yml", "url": "redis://x:1/0", "queue": "redis"}
    assert triggers_settings(Endpoints()) == {}


def test_create_trigger_engine_without_file_is_none(tmp_path):
    assert create_trigger_engine(None, tmp_path, settings={}) is None


@pytest.mark.asyncio
async def test_create_trigger_engine_embedded_defaults(tmp_path):
    (tmp_path / "triggers.yml").write_text(TEST_TRIGGERS, encoding="utf-8")
    engine = create_trigger_engine(None, tmp_path, settings={})
    assert isinstance(engine.queue, SQLJobQueue)
    assert engine.config.journey("abandoned_cart") is not None
    assert engine.sender.default == "agent"
    await engine.store.setup()
    assert (tmp_path / "triggers.db").exists()
    await engine.store.close()


@pytest.mark.asyncio
async def test_create_trigger_engine_routes_through_the_output_registry(tmp_path):
    from bot.shared.outputs import OutputRegistry
    from bot.triggers.senders import ChannelSender
    from connectors.rest import RestInput
    from connectors.socketio import SocketIOInput

    (tmp_path / "triggers.yml").write_text(TEST_TRIGGERS, encoding="utf-8")
    widget = SocketIOInput(session_persistence=True)
    outputs = OutputRegistry.from_channels([RestInput(), widget])
    engine = create_trigger_engine(None, tmp_path, settings={"default_channel": "socketio"}, outputs=outputs)
    assert isinstance(engine.sender, ChannelSender)
    assert engine.sender.outputs is outputs and engine.sender.default == "socketio"
    await engine.store.close()


@pytest.mark.asyncio
async def test_create_trigger_engine_redis_store_and_queue(tmp_path, redis_url):
    from bot.triggers.queue import RedisJobQueue
    from bot.triggers.redis_store import RedisTriggerStore

    (tmp_path / "triggers.yml").write_text(TEST_TRIGGERS, encoding="utf-8")
    engine = create_trigger_engine(None, tmp_path, settings={"store": "redis", "url": redis_url, "prefix": "t:f"})
    assert isinstance(engine.store, RedisTriggerStore) and isinstance(engine.queue, RedisJobQueue)
    assert engine.store.prefix == "t:f" and engine.queue.keys[0] == "{t:f}:due"
    from bot.triggers.events import BehaviourEvent

    await engine.submit([BehaviourEvent("e1", "cart_item_added", "c1", engine.clock.now())])
    assert await engine.store.redis.hexists("{t:f}:ev", "e1")
    assert (await engine.queue.size())["due"] == 1
    await engine.queue.close()
    await engine.store.close()
    # a redis:// store_url alone selects Redis for both (the queue follows the store)
    engine = create_trigger_engine(None, tmp_path, settings={"store_url": redis_url})
    assert isinstance(engine.store, RedisTriggerStore) and isinstance(engine.queue, RedisJobQueue)
    await engine.queue.close()
    await engine.store.close()


def test_create_trigger_engine_redis_store_with_sql_queue_is_an_error(tmp_path):
    from bot.shared.exceptions import ConfigError

    (tmp_path / "triggers.yml").write_text(TEST_TRIGGERS, encoding="utf-8")
    with pytest.raises(ConfigError, match="queue: redis"):
        create_trigger_engine(None, tmp_path, settings={"store": "redis", "queue": "sql"})
