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
