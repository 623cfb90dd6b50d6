"""Alerts through the server: the feature's task fires, the consoles of supervisors hear it, the lists are guarded.

A real agent (no model needed), the real handoff feature over a SQLite file, the alerts
feature from the table's contract; credentials are real JWTs (API) and real console
tokens (``bot/handoff/auth.py``). With a shared Redis store two workers evaluate, but
only the lease holder does: one alert, not two.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from bot.agent import Agent
from bot.alerts.config import parse_alerts
from bot.alerts.feature import AlertsFeature, alerts_feature
from bot.feature import FeatureContext, ProjectSettings
from bot.handoff import HandoffService
from bot.handoff.auth import issue_token
from bot.handoff.feature import HandoffFeature
from bot.server.app import create_app
from bot.shared.outputs import OutputRegistry
from bot.shared.yaml_io import read_yaml_file, to_plain
from tests.handoff.helpers import make_config

SECRET = secrets.token_urlsafe(48)
HANDOFF_PROJECT = Path(__file__).resolve().parents[1] / "handoff" / "data" / "project"
RULES = {"rules": [{"name": "queue_slow", "kind": "queue_wait", "max_wait_minutes": 5, "severity": "critical"}]}


def api_role(role: str) -> dict[str, str]:
    payload = {"user": {"username": f"{role}-1", "role": role}, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


def handoff_config(tmp_path: Path) -> Any:
    base = to_plain(read_yaml_file(HANDOFF_PROJECT / "config.yml"))["handoff"]
    return make_config(base, tmp_path / "handoff.db")


def console(config: Any, agent_id: str) -> dict[str, str]:
    token, _ = issue_token(config, config.agent(agent_id))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(tmp_path: Path) -> Any:
    config = handoff_config(tmp_path)
    service = HandoffService(config, profile_provider=None)
    alerts = AlertsFeature(parse_alerts(RULES))
    agent = Agent(action_package=None, project_root=tmp_path)
    app = create_app(agent, jwt_secret=SECRET, features=[HandoffFeature(service, owns_service=False), alerts])
    return app, service, alerts, config


async def get(app: Any, path: str, headers: dict[str, str] | None = None) -> Any:
    _, resp = await app.asgi_client.get(path, headers=headers or {})
    return resp


@pytest.mark.asyncio
async def test_alert_lists_refuse_strangers_401_and_other_roles_403(served):
    app, _, _, config = served
    assert (await get(app, "/alerts")).status == 401
    for role in ("agent", "trainer", "event_producer", "monitor"):
        refused = await get(app, "/alerts", api_role(role))
        assert refused.status == 403, role
        assert refused.json["details"] == {"scope": "handoff:supervise"}
    assert (await get(app, "/alerts", api_role("supervisor"))).status == 200
    assert (await get(app, "/handoff/api/alerts")).status == 401
    assert (await get(app, "/handoff/api/alerts", {"Authorization": "Bearer forged"})).status == 401
    assert (await get(app, "/handoff/api/alerts", console(config, "alice"))).status == 403  # an agent
    ok = await get(app, "/handoff/api/alerts", console(config, "sue"))  # a supervisor
    assert ok.status == 200 and ok.json["active"] == [] and ok.json["rules"][0]["name"] == "queue_slow"
    assert (await get(app, "/alerts?limit=0", api_role("supervisor"))).status == 400


@pytest.mark.asyncio
async def test_a_fired_alert_reaches_supervisors_consoles_and_the_lists(tmp_path):
    config = handoff_config(tmp_path)
    service = HandoffService(config, profile_provider=None)
    alerts = AlertsFeature(parse_alerts(RULES))
    agent = Agent(action_package=None, project_root=tmp_path)
    handoff = HandoffFeature(service, owns_service=False)
    context = FeatureContext(agent=agent, outputs=OutputRegistry(), settings=ProjectSettings(root=None),
                             peers={"handoff": handoff, "alerts": alerts})
    await handoff.start(context)
    await alerts.start(context)
    heard: list[dict[str, Any]] = []

    async def console_listener(event: dict[str, Any]) -> None:
        heard.append(event)

    service.subscribe(console_listener)
    try:
        await service.store.create({"conversation_id": "waiting", "reason": "request_human", "queue": "general",
                                    "created_at": time.time() - 6 * 60})
        fired = await alerts.evaluate_once()
        assert [(a["rule"], a["state"]) for a in fired] == [("queue_slow", "firing")]
        assert await alerts.evaluate_once() == []  # still waiting: no second notice
        alert_events = [e for e in heard if e.get("type") == "alert"]
        assert len(alert_events) == 1 and alert_events[0]["alert"]["severity"] == "critical"
        assert service.wants(config.agent("sue"), alert_events[0])  # supervisor
        assert service.wants(config.agent("root"), alert_events[0])  # admin
        assert not service.wants(config.agent("alice"), alert_events[0])  # agents do not get alerts
        listing = await alerts.listing()
        assert [a["rule"] for a in listing["active"]] == ["queue_slow"]
        assert listing["active"][0]["message"]["zh"].startswith("排队过久")
    finally:
        service.unsubscribe(console_listener)
        await alerts.stop()
        await handoff.stop()
        await service.close()
        await agent.close()


@pytest.mark.asyncio
async def test_two_workers_on_one_redis_give_one_alert(tmp_path, redis_url):
    rules = {"store": {"type": "redis", "url": redis_url}, **RULES}
    config = handoff_config(tmp_path)
    service = HandoffService(config, profile_provider=None)
    handoff = HandoffFeature(service, owns_service=False)
    agent = Agent(action_package=None, project_root=tmp_path)
    workers = [AlertsFeature(parse_alerts(rules)), AlertsFeature(parse_alerts(rules))]
    for worker in workers:
        await worker.start(FeatureContext(agent=agent, outputs=OutputRegistry(), settings=ProjectSettings(root=None),
                                          peers={"handoff": handoff}))
    try:
        await service.store.create({"conversation_id": "w", "reason": "request_human", "queue": "general",
                                    "created_at": time.time() - 10 * 60})
        first = [await w.evaluate_once() for w in workers]
        second = [await w.evaluate_once() for w in workers]
        assert [len(t) for t in first] == [1, 0]  # the first worker holds the lease
        assert [len(t) for t in second] == [0, 0]
        assert [a["rule"] for a in (await workers[1].listing())["active"]] == ["queue_slow"]  # shared state
    finally:
        for worker in workers:
            await worker.stop()
        await service.close()
        await agent.close()


def test_the_feature_is_built_from_alerts_yml_only(tmp_path):
    assert alerts_feature(ProjectSettings(root=tmp_path)) is None
    (tmp_path / "alerts.yml").write_text("rules:\n  - {name: q, kind: queue_wait, max_wait_minutes: 3}\n")
    feature = alerts_feature(ProjectSettings(root=tmp_path))
    assert feature is not None and feature.config.rules[0].name == "q"
    assert feature.hooks() == ()  # no rule counts messages
