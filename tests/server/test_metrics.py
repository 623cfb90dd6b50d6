"""``GET /metrics`` (issue #18 point 4): who may read it, and what it says after real requests.

The figures are read back from the exposition text with prometheus-client's own parser, so
a test fails when a label, a name or a count is wrong, not when the text changes shape.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.server.app import create_app
from bot.server.metrics import channel_label, _is_loopback, prepare_multiprocess_dir, SHARED_STATE_METRICS
from bot.shared import metrics as shared_metrics
from connectors.rest import RestInput

SECRET = secrets.token_urlsafe(48)
TOKEN = secrets.token_urlsafe(32)
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "kefu.json"


def role(name: str) -> dict[str, str]:
    payload = {"user": {"username": f"{name}-1", "role": name}, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


def samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    for s in samples(text):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


async def get(app: Any, path: str, **kwargs: Any) -> Any:
    _, resp = await app.asgi_client.get(path, **kwargs)
    return resp


@pytest.mark.asyncio
async def test_metrics_refuse_a_stranger_401_and_a_role_without_the_scope_403(agent):
    app = create_app(agent, jwt_secret=SECRET, auth_token=TOKEN)
    stranger = await get(app, "/metrics")
    assert stranger.status == 401 and stranger.json["reason"] == "NotAuthenticated"
    for wrong in ("agent", "supervisor", "trainer", "event_producer"):
        refused = await get(app, "/metrics", headers=role(wrong))
        assert refused.status == 403, wrong
        assert refused.json["details"] == {"scope": "metrics:read"}
    for allowed in (role("monitor"), {"Authorization": f"Bearer {TOKEN}"}):
        ok = await get(app, "/metrics", headers=allowed)
        assert ok.status == 200, ok.text
        assert ok.headers["content-type"].startswith("text/plain")


@pytest.mark.asyncio
async def test_request_latency_is_labelled_by_route_pattern_and_channel_never_the_raw_path(agent):
    app = create_app(agent, input_channels=[RestInput()], jwt_secret=SECRET)
    before = await get(app, "/metrics", headers=role("monitor"))
    base_version = value(before.text, "kefu_http_request_duration_seconds_count", route="/version",
                         channel="api", status="2xx") or 0
    base_rest = value(before.text, "kefu_http_request_duration_seconds_count", route="/webhooks/rest/webhook",
                      channel="rest", method="POST", status="2xx") or 0
    for _ in range(3):
        assert (await get(app, "/version")).status == 200
    _, sent = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "s1", "message": "hi"})
    assert sent.status == 200
    secret_path = f"/no-such-page-{secrets.token_hex(6)}"
    assert (await get(app, secret_path)).status == 404
    tracker = await get(app, "/conversations/alice-42/tracker", headers=role("monitor"))
    assert tracker.status == 403
    _, odd = await app.asgi_client.request("X-PURGE-ME", "/version")
    assert odd.status >= 400

    text = (await get(app, "/metrics", headers=role("monitor"))).text
    assert value(text, "kefu_http_request_duration_seconds_count", route="/version", channel="api",
                 method="GET", status="2xx") == base_version + 3
    assert value(text, "kefu_http_request_duration_seconds_count", route="/webhooks/rest/webhook",
                 channel="rest", method="POST", status="2xx") == base_rest + 1
    assert value(text, "kefu_http_request_duration_seconds_count", route="unmatched", status="4xx") >= 1
    assert value(text, "kefu_http_request_duration_seconds_count",
                 route="/conversations/<conversation_id:path>/tracker", status="4xx") >= 1
    assert secret_path not in text and "alice-42" not in text  # raw paths never become labels
    assert "X-PURGE-ME" not in text.upper() and value(text, "kefu_http_request_duration_seconds_count",
                                                      method="other") >= 1  # nor made-up methods


@pytest.mark.asyncio
async def test_metrics_report_the_worker_and_its_model(agent):
    app = create_app(agent, jwt_secret=SECRET)
    text = (await get(app, "/metrics", headers=role("monitor"))).text
    assert value(text, "kefu_worker_up") == 1
    assert value(text, "kefu_worker_model_ready") == 1
    assert value(text, "kefu_model_info", model_id="model-1") == 1
    assert value(text, "kefu_worker_resident_memory_bytes") > 10_000_000
    assert value(text, "kefu_event_loop_lag_seconds") is not None


def test_action_labels_are_bounded(monkeypatch):
    monkeypatch.setattr(shared_metrics, "_action_labels", set())  # this process's other tests keep theirs
    assert shared_metrics.action_label("action_check_order") == "action_check_order"
    assert shared_metrics.action_label("Hello there, 你好!") == "other"  # an end-to-end bot text
    names = [f"action_generated_{i}" for i in range(shared_metrics.MAX_ACTION_LABELS + 50)]
    labels = {shared_metrics.action_label(n) for n in names}
    assert "other" in labels and len(labels) <= shared_metrics.MAX_ACTION_LABELS + 1


@pytest.mark.asyncio
async def test_action_nlu_and_policy_latency_are_recorded_by_the_helpers():
    async def run() -> list[str]:
        return ["ok"]

    async def rejected() -> None:
        from bot.shared.exceptions import ActionExecutionRejection
        raise ActionExecutionRejection("action_form", "no")

    def count(name: str, **labels: str) -> float:
        from prometheus_client import REGISTRY
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_ok = count("kefu_action_duration_seconds_count", action="action_probe", outcome="ok")
    before_rej = count("kefu_action_duration_seconds_count", action="action_probe", outcome="rejected")
    assert await shared_metrics.observe_action("action_probe", run()) == ["ok"]
    with pytest.raises(Exception):
        await shared_metrics.observe_action("action_probe", rejected())
    assert count("kefu_action_duration_seconds_count", action="action_probe", outcome="ok") == before_ok + 1
    assert count("kefu_action_duration_seconds_count", action="action_probe", outcome="rejected") == before_rej + 1


def test_channel_label_and_loopback():
    assert channel_label("/webhooks/wechat/webhook") == "wechat"
    assert channel_label("/socket.io/") == "socketio"
    assert channel_label("/handoff/api/handoffs") == "console"
    assert channel_label("/model/parse") == "api"
    assert _is_loopback("127.0.0.1") and _is_loopback("::1")
    assert not _is_loopback("10.1.2.3") and not _is_loopback("")


def test_multiprocess_dir_is_fresh_for_several_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    try:
        assert prepare_multiprocess_dir(1) is None
        folder = prepare_multiprocess_dir(3, base=str(tmp_path))
        assert folder is not None and Path(folder).is_dir() and Path(folder).parent == tmp_path
        (Path(folder) / "histogram_123.db").write_bytes(b"stale")
        assert prepare_multiprocess_dir(3) == folder  # the operator's (here: the first call's) folder
        assert not list(Path(folder).glob("*.db"))  # a previous run's figures are not summed into this one
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process goes on with its own registry


def _dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    names = set()
    for expr in exprs:
        for name in re.findall(r"\b(kefu_[a-z_]+|process_[a-z_]+)\b", expr):
            names.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return names


@pytest.mark.asyncio
async def test_every_metric_the_grafana_dashboard_queries_exists(agent):
    app = create_app(agent, jwt_secret=SECRET)
    await get(app, "/version")
    text = (await get(app, "/metrics", headers=role("monitor"))).text
    exported = {family.name for family in text_string_to_metric_families(text)} | set(SHARED_STATE_METRICS)
    referenced = _dashboard_metric_names()
    missing = sorted(referenced - exported)
    assert not missing, f"docs/grafana/kefu.json queries metrics kefu does not export: {missing}"
    assert {"kefu_http_request_duration_seconds", "kefu_nlu_parse_duration_seconds",
            "kefu_action_duration_seconds", "kefu_handoff_queue_depth", "kefu_model_info"} <= referenced


@pytest.mark.asyncio
async def test_queue_depths_are_read_from_the_handoff_store_at_scrape_time(tmp_path):
    from bot.agent import Agent
    from bot.handoff import HandoffService
    from bot.handoff.feature import HandoffFeature
    from bot.shared.yaml_io import read_yaml_file, to_plain
    from tests.handoff.helpers import make_config

    project = Path(__file__).resolve().parents[1] / "handoff" / "data" / "project"
    config = make_config(to_plain(read_yaml_file(project / "config.yml"))["handoff"], tmp_path / "handoff.db",
                         auto_assign=False)
    service = HandoffService(config, profile_provider=None)
    agent = Agent(action_package=None, project_root=tmp_path)
    app = create_app(agent, jwt_secret=SECRET, features=[HandoffFeature(service, owns_service=False)])
    now = time.time()
    for conversation, queue, waited in (("a", "general", 30), ("b", "general", 400), ("c", "after_sales", 5)):
        await service.store.create({"conversation_id": conversation, "reason": "request_human", "queue": queue,
                                    "created_at": now - waited})
    await service.store.create({"conversation_id": "d", "reason": "complaint", "queue": "general",
                                "created_at": now - 999, "status": "assigned", "agent_id": "alice"})
    try:
        text = (await get(app, "/metrics", headers=role("monitor"))).text
        assert value(text, "kefu_handoff_queue_depth", queue="general") == 2  # the assigned one is not waiting
        assert value(text, "kefu_handoff_queue_depth", queue="after_sales") == 1
        assert value(text, "kefu_handoff_waiting") == 3
        assert 400 <= value(text, "kefu_handoff_oldest_wait_seconds", queue="general") < 460
        assert value(text, "kefu_metrics_source_up", source="handoff_queue") == 1
        assert value(text, "kefu_feature_healthy", feature="handoff") == 1
        assert "kefu_trigger_jobs" not in text  # no trigger engine in this server
    finally:
        await service.close()
        await agent.close()


@pytest.mark.asyncio
async def test_trigger_jobs_and_lag_come_from_the_scheduler_queue(tmp_path):
    """The real SQL job queue (SQLite file), read the way a scrape reads a running trigger engine's queue."""
    from types import SimpleNamespace

    from bot.server.features import FeatureSet
    from bot.server.metrics import shared_state_families
    from bot.stores.sql import create_async_sql_engine
    from bot.triggers.queue import Job, SQLJobQueue

    engine, _ = create_async_sql_engine(f"sqlite+aiosqlite:///{tmp_path / 'triggers.db'}")
    queue = SQLJobQueue(engine)
    now = time.time()
    for i, due in enumerate((now - 90, now - 30, now + 3600)):
        await queue.enqueue(Job(f"job-{i}", due))
    assert len(await queue.claim(now, 1, 60)) == 1  # the most overdue job is in flight
    triggers = SimpleNamespace(name="triggers", engine=SimpleNamespace(queue=queue))
    try:
        families = {f.name: f for f in await shared_state_families(FeatureSet([triggers]), now=now)}
        jobs = {s.labels["state"]: s.value for s in families["kefu_trigger_jobs"].samples}
        assert jobs == {"due": 2, "in_flight": 1}
        assert families["kefu_trigger_scheduler_lag_seconds"].samples[0].value == pytest.approx(30, abs=1)
        assert "kefu_handoff_waiting" not in families
    finally:
        await engine.dispose()


def test_a_dead_workers_gauges_leave_the_scrape(tmp_path):
    """A worker killed with -9 left its per-worker gauge files; the next worker to start drops them."""
    import subprocess
    import sys

    from bot.server.metrics import forget_dead_workers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = os.getpid()
    for pid in (gone.pid, alive):
        (tmp_path / f"gauge_liveall_{pid}.db").write_bytes(b"")
    (tmp_path / f"histogram_{gone.pid}.db").write_bytes(b"")  # counts stay: they happened
    assert forget_dead_workers(str(tmp_path)) == [gone.pid]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_liveall_{alive}.db", f"histogram_{gone.pid}.db"])


@pytest.fixture(scope="module")
def ready_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.model.training import train

    project = Path(__file__).resolve().parent / "data" / "ready_project"
    return train(root=project, out=tmp_path_factory.mktemp("ready-model")).model_path


@pytest.mark.asyncio
async def test_a_real_turn_records_parse_prediction_and_action_latency_and_alert_signals(ready_model, tmp_path):
    from prometheus_client import REGISTRY

    from bot.agent import Agent
    from bot.alerts.config import parse_alerts
    from bot.alerts.feature import AlertsFeature

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    agent = Agent(action_package=None, project_root=tmp_path)
    await agent.load_model(ready_model)
    alerts = AlertsFeature(parse_alerts({"rules": [{"name": "esc", "kind": "escalation_rate", "threshold": 0.5}]}))
    app = create_app(agent, input_channels=[RestInput()], jwt_secret=SECRET, features=[alerts])
    before = {"parse": count("kefu_nlu_parse_duration_seconds_count"),
              "predict": count("kefu_policy_prediction_duration_seconds_count"),
              "utter": count("kefu_action_duration_seconds_count", action="utter_greet", outcome="ok"),
              "listen": count("kefu_action_duration_seconds_count", action="action_listen", outcome="ok")}
    for sender in ("shopper-1", "shopper-2", "shopper-1"):
        _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "/greet"})
        assert resp.status == 200 and resp.json[0]["text"] == "Hello!"
    assert count("kefu_nlu_parse_duration_seconds_count") == before["parse"] + 3
    assert count("kefu_policy_prediction_duration_seconds_count") >= before["predict"] + 6  # utter, then listen
    assert count("kefu_action_duration_seconds_count", action="utter_greet", outcome="ok") == before["utter"] + 3
    assert count("kefu_action_duration_seconds_count", action="action_listen", outcome="ok") >= before["listen"] + 3
    now = time.time()
    assert await alerts.signals.conversations(now - 120, now + 60) == 2  # the hook saw two conversations
    await agent.close()


def test_without_credentials_metrics_answer_loopback_clients_only(agent):
    """Development (no token, no JWT secret): a real HTTP client on 127.0.0.1 is served; the ASGI
    client's peer ("mockserver") is no loopback address and is refused like any remote peer."""
    app = create_app(agent)
    _, local = app.test_client.get("/metrics")
    assert local.status == 200 and "kefu_worker_up" in local.text
    app = create_app(agent)
    _, remote = asyncio.run(app.asgi_client.get("/metrics"))
    assert remote.status == 401 and "loopback clients only" in remote.json["message"]
