"""Agent API over HTTP (sanic-testing): login, roles, queues, audit, expiring tokens."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.handoff.helpers import RecordingBroker, password_for


@pytest.fixture
def stack(handoff_model: Path, config_factory: Any) -> Any:
    from bot.agent import Agent
    from bot.handoff import HandoffService
    from bot.handoff.feature import HandoffFeature
    from bot.server.app import create_app

    async def build() -> Any:
        agent = Agent(event_broker=RecordingBroker(), action_package=None)
        await agent.load_model(handoff_model)
        return agent

    agent = asyncio.run(build())
    from connectors.rest import RestInput


    async def no_profile(channel: Any, sender: str) -> None:
        return None

    service = HandoffService(config_factory(auto_assign=False), profile_provider=no_profile)
    app = create_app(agent, input_channels=[RestInput()], features=[HandoffFeature(service, owns_service=False)])
    return app, agent, service


def login(app: Any, agent_id: str) -> str:
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": agent_id, "password": password_for(agent_id)})
    assert res.status == 200, res.text
    return res.json["token"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_queue_visibility_claim_reply_resolve_and_audit(stack: Any) -> None:
    app, agent, service = stack
    _, res = app.test_client.post("/webhooks/rest/webhook", json={"sender": "u1", "message": "complaint"})
    assert res.status == 200 and "connecting you" in res.json[0]["text"]
    alice, bob, root = login(app, "alice"), login(app, "bob"), login(app, "root")
    _, res = app.test_client.get("/handoff/api/handoffs?status=queued", headers=auth(bob))
    assert res.json == []  # after_sales:en is not bob's queue
    _, res = app.test_client.get("/handoff/api/handoffs?status=queued", headers=auth(alice))
    [item] = res.json
    assert item["reason"] == "complaint" and item["position"] == 1
    hid = item["id"]
    _, res = app.test_client.get(f"/handoff/api/handoffs/{hid}", headers=auth(bob))
    assert res.status == 403
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/claim", headers=auth(alice))
    assert res.status == 200 and res.json["agent_id"] == "alice"
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/claim", headers=auth(root))
    assert res.status == 409  # already taken
    _, res = app.test_client.get(f"/handoff/api/handoffs/{hid}", headers=auth(alice))
    assert res.json["record"]["transcript"][0]["text"] == "complaint"
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/messages", headers=auth(alice),
                                  json={"canned": "sorry", "client_id": "k1"})
    assert res.json["text"] == "I'm sorry about that, let me check."
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/messages", headers=auth(alice),
                                  json={"product": {"title": "Trail runner X", "price": "¥499"}})
    assert res.status == 200
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/notes", headers=auth(alice), json={"text": "angry"})
    assert res.json["sender"] == "note"
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/tags", headers=auth(alice), json={"tags": ["refund"]})
    assert res.json["tags"] == ["refund"]
    _, res = app.test_client.get(f"/handoff/api/handoffs/{hid}/export", headers=auth(alice))
    assert res.json["handoff"]["conversation_id"] == "u1" and len(res.json["handoff"]["messages"]) == 3
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/resolve", headers=auth(alice))
    assert res.json["status"] == "resolved"
    _, res = app.test_client.get("/conversations/u1/tracker")
    events = res.json["events"]
    assert [e["event"] for e in events if e["event"] in ("pause", "resume")] == ["pause", "resume"]
    agent_msgs = [e for e in events if e["event"] == "bot" and (e.get("metadata") or {}).get("agent_id") == "alice"]
    assert len(agent_msgs) == 2 and agent_msgs[1]["data"]["custom"]["type"] == "product_card"
    _, res = app.test_client.get("/handoff/api/audit", headers=auth(alice))
    assert res.status == 403  # admins only
    _, res = app.test_client.get(f"/handoff/api/audit?handoff_id={hid}", headers=auth(root))
    actions = [(a["actor"], a["action"]) for a in res.json]
    assert ("alice", "transcript_view") in actions and ("alice", "transcript_export") in actions
    assert ("alice", "claim") in actions and ("alice", "resolve") in actions
    # ...and in the server's audit log, where an admin reads every transcript access of every route
    server_side = asyncio.run(app.ctx.audit.list(actor="alice"))
    assert {(r.action, r.via, r.target) for r in server_side} >= {
        ("handoff.transcript_view", "console", "u1"), ("handoff.transcript_export", "console", "u1")}


def test_api_rejects_bad_password_expired_and_forged_tokens(stack: Any) -> None:
    import jwt

    from bot.handoff.auth import issue_token

    app, _, service = stack
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "alice", "password": "nope"})
    assert res.status == 401
    expired, _ = issue_token(service.config, service.config.agent("alice"), now=0)
    _, res = app.test_client.get("/handoff/api/me", headers=auth(expired))
    assert res.status == 401 and "expired" in res.json["message"]
    forged = jwt.encode({"sub": "sue", "role": "supervisor", "exp": 2**33, "aud": "kefu-handoff"}, "x", algorithm="HS256")
    _, res = app.test_client.get("/handoff/api/agents", headers=auth(forged))
    assert res.status == 401
    _, res = app.test_client.get("/handoff/api/agents", headers=auth(login(app, "alice")))
    assert res.status == 403
    _, res = app.test_client.get("/handoff/api/agents", headers=auth(login(app, "sue")))
    assert {a["id"] for a in res.json} == {"alice", "bob", "sue", "root"}


def test_api_console_page_is_served(stack: Any) -> None:
    app, _, _ = stack
    _, res = app.test_client.get("/console")
    assert res.status == 200 and "kefu" in res.text.lower()
    _, res = app.test_client.get("/console/console.js")
    assert res.status == 200
    _, res = app.test_client.get("/console/../../../bot/agent.py")
    assert res.status == 404


def test_api_handoff_errors_use_the_server_error_body(stack: Any) -> None:
    app, _, _ = stack
    alice = login(app, "alice")
    _, res = app.test_client.post("/handoff/api/handoffs/no-such-id/claim", headers=auth(alice))
    assert res.status == 404
    assert res.json["status"] == "failure" and res.json["code"] == 404 and res.json["reason"] == "NotFound"
    assert res.json["message"] == "No handoff 'no-such-id'."
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "alice", "password": "nope"})
    assert res.json["reason"] == "NotAuthenticated" and res.json["message"] == "Wrong agent id or password."
