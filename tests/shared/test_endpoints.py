"""endpoints.yml: endpoint configs, ${ENV} expansion, embedded defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.shared.endpoints import EndpointConfig, Endpoints, endpoints_from_yaml, load_endpoints
from bot.shared.exceptions import ConfigError

YAML = """\
action_endpoint:
  url: "http://localhost:5055/webhook"
  token: ${KEFU_TEST_TOKEN}
tracker_store:
  type: SQL
  dialect: sqlite
  db: ${KEFU_TEST_DIR}/trackers.db
lock_store:
  type: redis
  url: localhost
  port: 6379
event_broker:
models:
  url: http://models/latest
  wait_time_between_pulls: 10
  headers:
    X-Key: k
custom_thing:
  url: http://x
"""


def test_endpoints_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_endpoints(None) == Endpoints()
    endpoints = load_endpoints(tmp_path / "endpoints.yml")
    assert endpoints.action_endpoint is None and endpoints.tracker_store is None


def test_endpoints_parsed_with_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEFU_TEST_TOKEN", "s3cret")
    monkeypatch.setenv("KEFU_TEST_DIR", "/data")
    path = tmp_path / "endpoints.yml"
    path.write_text(YAML, encoding="utf-8")
    ep = load_endpoints(path)
    assert ep.action_endpoint == EndpointConfig(
        url="http://localhost:5055/webhook", token="s3cret",
        filename=str(path), line=1,
    )
    assert ep.tracker_store.type == "SQL"
    assert ep.tracker_store.kwargs == {"dialect": "sqlite", "db": "/data/trackers.db"}
    assert ep.lock_store.get("port") == 6379 and ep.lock_store.url == "localhost"
    assert ep.event_broker is None
    assert ep.models.headers == {"X-Key": "k"}
    assert ep.models.kwargs["wait_time_between_pulls"] == 10
    assert isinstance(ep.extra["custom_thing"], EndpointConfig)
    assert ep.action_endpoint.combine_parameters() == {"token": "s3cret"}


def test_endpoints_missing_env_var_names_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_TEST_TOKEN", raising=False)
    monkeypatch.setenv("KEFU_TEST_DIR", "/d")
    with pytest.raises(ConfigError) as e:
        endpoints_from_yaml(YAML, "endpoints.yml")
    assert "endpoints.yml:3" in str(e.value) and "KEFU_TEST_TOKEN" in str(e.value)


def test_endpoints_store_type_alias() -> None:
    ep = endpoints_from_yaml("tracker_store:\n  store_type: redis\n  url: h\n")
    assert ep.tracker_store.type == "redis" and "store_type" not in ep.tracker_store.kwargs


def test_endpoints_invalid_shapes() -> None:
    with pytest.raises(ConfigError, match="must be a mapping") as e:
        endpoints_from_yaml("action_endpoint: http://x\n", "e.yml")
    assert "e.yml:1" in str(e.value)
    with pytest.raises(ConfigError, match="mapping"):
        endpoints_from_yaml("- a\n", "e.yml")


def test_endpoint_config_as_dict_roundtrip() -> None:
    cfg = EndpointConfig.from_dict({"url": "u", "type": "redis", "db": 1, "token_name": "t", "token": "x"})
    assert EndpointConfig.from_dict(cfg.as_dict()) == cfg
