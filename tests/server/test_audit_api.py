"""Every read of a transcript over HTTP is in the audit log; admins read it with GET /audit."""
from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from bot.server.app import create_app
from bot.stores.audit import SQLAuditLog

SECRET = secrets.token_urlsafe(48)


def as_role(role: str, username: str) -> dict[str, str]:
    token = jwt.encode({"user": {"username": username, "role": role}, "exp": int(time.time()) + 600}, SECRET,
                       algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def app_with_audit(agent: Any, tmp_path: Path) -> tuple[Any, SQLAuditLog]:
    audit = SQLAuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    return create_app(agent, jwt_secret=SECRET, audit=audit), audit


@pytest.mark.asyncio
async def test_tracker_read_is_audited_and_admin_reads_it(agent, tmp_path):
    app, audit = app_with_audit(agent, tmp_path)
    _, resp = await app.asgi_client.get("/conversations/alice/tracker", headers=as_role("trainer", "tina"))
    assert resp.status == 200
    records = await audit.list(target="alice")
    assert len(records) == 1
    record = records[0]
    assert (record.actor, record.role, record.via, record.action) == ("tina", "trainer", "jwt", "tracker.read")
    assert record.detail["route"] == "GET /conversations/alice/tracker"
    assert abs(record.at - time.time()) < 60

    _, listed = await app.asgi_client.get("/audit?conversation_id=alice", headers=as_role("admin", "ops"))
    assert listed.status == 200
    assert [(r["actor"], r["target"]) for r in listed.json["records"]] == [("tina", "alice")]
    _, denied = await app.asgi_client.get("/audit", headers=as_role("trainer", "tina"))
    assert denied.status == 403 and "audit:read" in denied.json["message"]
    _, stranger = await app.asgi_client.get("/audit")
    assert stranger.status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/conversations/alice/predict", None),
    ("post", "/conversations/alice/execute", {"name": "utter_greet"}),
    ("post", "/conversations/alice/trigger_intent", {"name": "greet"}),
    ("post", "/conversations/alice/tracker/events", {"event": "slot", "name": "x", "value": 1}),
    ("put", "/conversations/alice/tracker/events", []),
    ("post", "/conversations/alice/messages", {"sender": "user", "text": "hi"}),
])
async def test_routes_answering_with_the_tracker_are_audited(agent, tmp_path, method, path, body):
    app, audit = app_with_audit(agent, tmp_path)
    kwargs = {"json": body} if body is not None else {}
    _, resp = await getattr(app.asgi_client, method)(path, headers=as_role("user", "alice"), **kwargs)
    assert resp.status == 200, resp.text
    (record,) = await audit.list()
    assert (record.actor, record.role, record.target, record.action) == ("alice", "user", "alice", "tracker.returned")


@pytest.mark.asyncio
async def test_refused_read_is_not_a_read(agent, tmp_path):
    app, audit = app_with_audit(agent, tmp_path)
    _, resp = await app.asgi_client.get("/conversations/bob/tracker", headers=as_role("user", "alice"))
    assert resp.status == 403
    assert await audit.list() == []


@pytest.mark.asyncio
async def test_audit_query_parameters_are_checked(agent, tmp_path):
    app, _ = app_with_audit(agent, tmp_path)
    admin = as_role("admin", "ops")
    _, bad_limit = await app.asgi_client.get("/audit?limit=0", headers=admin)
    assert bad_limit.status == 400 and bad_limit.json["details"]["parameter"] == "limit"
    _, bad_since = await app.asgi_client.get("/audit?since=yesterday", headers=admin)
    assert bad_since.status == 400


@pytest.mark.asyncio
async def test_server_keeps_the_audit_log_in_the_project_root_or_endpoints_url(agent, tmp_path):
    project = tmp_path / "shop"
    project.mkdir()
    (project / "endpoints.yml").write_text("")
    app = create_app(agent, jwt_secret=SECRET, project_root=project, features=[])
    await app.asgi_client.get("/conversations/alice/tracker", headers=as_role("admin", "ops"))
    assert (project / "audit.db").is_file()
    assert [r.target for r in await SQLAuditLog(f"sqlite:///{project / 'audit.db'}").list()] == ["alice"]

    elsewhere = tmp_path / "elsewhere.db"
    (project / "endpoints.yml").write_text(f"audit:\n  url: sqlite:///{elsewhere}\n")
    app = create_app(agent, jwt_secret=SECRET, project_root=project, features=[])
    await app.asgi_client.get("/conversations/bob/tracker", headers=as_role("admin", "ops"))
    assert [r.target for r in await SQLAuditLog(f"sqlite:///{elsewhere}").list()] == ["bob"]


@pytest.mark.asyncio
async def test_features_get_the_workers_audit_log(agent, tmp_path):
    from bot.feature import BaseFeature

    class Probe(BaseFeature):
        name = "probe"
        audit = None

        async def start(self, context):
            self.audit = context.audit

    probe = Probe()
    app, audit = app_with_audit(agent, tmp_path)
    app = create_app(agent, jwt_secret=SECRET, audit=audit, features=[probe])
    await app.asgi_client.get("/version")
    assert probe.audit is audit is app.ctx.audit
