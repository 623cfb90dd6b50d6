"""String columns that PostgreSQL enforces and SQLite ignores: over-long input is a clear 400, on both.

Each test runs on a real SQLite file and on a real PostgreSQL server. A value at the
limit is stored and read back (so the limit is the column's, not a guess); one past it
is refused with a message naming the field and the limit, and nothing is stored.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.shared.exceptions import InvalidRequest
from bot.stores.limits import ValueTooLong, check_length
from tests.handoff.conftest import config_factory, handoff_config_dict, handoff_model  # noqa: F401 (fixtures)
from bot.triggers.clock import TestClock
from tests.triggers.conftest import RecordingSender, make_engine

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if kind == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / name}"


# --- the events API ---------------------------------------------------------------------


async def _post(app: Any, body: Any) -> Any:
    _, res = await app.asgi_client.post("/events", content=json.dumps(body), headers={
        "Content-Type": "application/json", "Authorization": "Bearer secret"})
    return res


@pytest.mark.asyncio
async def test_events_api_refuses_a_customer_id_over_the_column(kind: str, request: pytest.FixtureRequest,
                                                                tmp_path: Path) -> None:
    from bot.feature import ProjectSettings
    from bot.server.app import create_app
    from bot.triggers.events import MAX_ID_LENGTH
    from bot.triggers.feature import TriggersFeature
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.store import SQLTriggerStore
    from tests.triggers.conftest import local_ts

    store = SQLTriggerStore(url_for(kind, request, tmp_path, "triggers.db"))
    await store.setup()
    try:
        engine = make_engine(store, SQLJobQueue(store.engine), RecordingSender(), TestClock(local_ts(2026, 11, 20, 10, 0)))
        app = create_app(agent=None, auth_token="secret",
                         features=[TriggersFeature(ProjectSettings(root=None), engine=engine)])
        longest = "c" * MAX_ID_LENGTH
        res = await _post(app, {"id": "e1", "type": "product_viewed", "customer_id": longest + "x"})
        assert res.status == 400, res.json
        assert res.json["reason"] == "field_too_long"
        assert "'customer_id'" in res.json["message"] and f"limit is {MAX_ID_LENGTH}" in res.json["message"]
        assert await store.events_for(longest + "x") == []

        res = await _post(app, {"id": "i" * MAX_ID_LENGTH, "type": "product_viewed", "customer_id": longest})
        assert res.status == 202, res.json  # at the limit: stored (PostgreSQL would refuse one more)
        assert [e.customer_id for e in await store.events_for(longest)] == [longest]
        res = await _post(app, {"id": "i" * (MAX_ID_LENGTH + 1), "type": "product_viewed", "customer_id": "c2"})
        assert res.status == 400 and f"limit is {MAX_ID_LENGTH}" in res.json["message"]
    finally:
        await store.close()


def test_broker_events_from_long_conversation_ids_fit_the_columns() -> None:
    from bot.triggers.events import MAX_ID_LENGTH, from_broker_message

    sender = "s" * 120  # fits a customer id; "intent-<sender>-<ts>" does not fit an event id
    body = {"event": "user", "sender_id": sender, "timestamp": 1.5, "parse_data": {"intent": {"name": "greet"}}}
    event = from_broker_message(body)
    assert event is not None and event.customer_id == sender
    assert len(event.id) <= MAX_ID_LENGTH and event.id.startswith("sha1-")
    assert from_broker_message(dict(body)).id == event.id  # stable: a redelivery is still deduplicated
    assert from_broker_message({**body, "sender_id": "s" * 200}) is None  # no customer id can hold it


# --- the tracker store ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tracker_store_refuses_an_over_long_conversation_id_or_intent(kind: str, request: pytest.FixtureRequest,
                                                                           tmp_path: Path) -> None:
    from bot.shared.tracker import DialogueStateTracker
    from bot.shared.events import UserUttered
    from bot.stores.tracker_store import SQLTrackerStore

    store = SQLTrackerStore(url=url_for(kind, request, tmp_path, "tracker.db"))
    try:
        longest = "u" * 255
        ok = DialogueStateTracker(longest)
        ok.update(UserUttered("hi", intent={"name": "greet", "confidence": 1.0}))
        await store.save(ok)
        assert [e.text for e in (await store.retrieve(longest)).events if isinstance(e, UserUttered)] == ["hi"]

        too_long = DialogueStateTracker(longest + "u")
        too_long.update(UserUttered("hi", intent={"name": "greet", "confidence": 1.0}))
        with pytest.raises(InvalidRequest) as caught:  # the API answers InvalidRequest with 400
            await store.save(too_long)
        assert "'conversation id' is 256 characters long; the limit is 255" in str(caught.value)
        assert await store.keys() == [longest]

        odd = DialogueStateTracker("u2")
        odd.update(UserUttered("hi", intent={"name": "i" * 256, "confidence": 1.0}))
        with pytest.raises(ValueTooLong) as caught:
            await store.save(odd)
        assert caught.value.field == "intent name" and caught.value.limit == 255
        assert await store.keys() == [longest]  # nothing of u2 was stored
    finally:
        await store.close()


# --- the audit log ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_audit_records_over_long_values_clipped_not_lost(kind: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    from bot.stores.audit import SQLAuditLog

    url = url_for(kind, request, tmp_path, "audit.db")
    audit = SQLAuditLog(url)
    try:
        who = SimpleNamespace(subject="a" * 300, role="r" * 70, via="v" * 40)
        returned = await audit.record(who, "tracker.read", "t" * 300, address="x" * 80)
        assert returned.id is not None  # stored (PostgreSQL refused it before: the record was lost)
        [stored] = await audit.list()
        assert len(stored.actor) == 255 and stored.actor.endswith("…") and stored.actor.startswith("aaa")
        assert len(stored.target) == 255 and len(stored.role) == 64 and len(stored.via) == 32
        assert len(stored.address) == 64
    finally:
        await audit.close()


# --- the agent console (handoff API) ----------------------------------------------------


@pytest.fixture
def handoff_stack(kind: str, request: pytest.FixtureRequest, tmp_path: Path, handoff_model: Path,  # noqa: F811
                  config_factory: Any) -> Any:  # noqa: F811
    from bot.agent import Agent
    from bot.handoff import HandoffService
    from bot.handoff.feature import HandoffFeature
    from bot.server.app import create_app
    from connectors.rest import RestInput
    from tests.handoff.helpers import RecordingBroker

    async def build() -> Any:
        agent = Agent(event_broker=RecordingBroker(), action_package=None)
        await agent.load_model(handoff_model)
        return agent

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    overrides = {"store_url": request.getfixturevalue("postgres_url")} if kind == "postgres" else {}
    service = HandoffService(config_factory(auto_assign=False, **overrides), profile_provider=no_profile)
    app = create_app(asyncio.run(build()), input_channels=[RestInput()],
                     features=[HandoffFeature(service, owns_service=False)])
    return app, service


@pytest.mark.slow
def test_agent_console_refuses_over_long_client_ids_and_transfer_targets(handoff_stack: Any) -> None:
    from tests.handoff.helpers import password_for

    app, service = handoff_stack
    _, res = app.test_client.post("/webhooks/rest/webhook", json={"sender": "u1", "message": "complaint"})
    assert res.status == 200
    _, res = app.test_client.post("/handoff/api/login", json={"agent_id": "alice", "password": password_for("alice")})
    headers = {"Authorization": f"Bearer {res.json['token']}"}
    _, res = app.test_client.get("/handoff/api/handoffs?status=queued", headers=headers)
    hid = res.json[0]["id"]
    assert app.test_client.post(f"/handoff/api/handoffs/{hid}/claim", headers=headers)[1].status == 200

    url = f"/handoff/api/handoffs/{hid}/messages"
    _, res = app.test_client.post(url, headers=headers, json={"text": "hello", "client_id": "k" * 129})
    assert res.status == 400, res.text
    assert "'client_id' is 129 characters long; the limit is 128" in res.json["message"]
    _, res = app.test_client.post(url, headers=headers, json={"text": "hello", "client_id": "k" * 128})
    assert res.status == 200, res.text
    _, res = app.test_client.post(url, headers=headers, json={"text": "again", "client_id": "k" * 128})
    assert res.json["text"] == "hello"  # the same client id: stored once, the first row returned

    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/transfer", headers=headers,
                                  json={"skill": "s" * 200, "language": "en"})
    assert res.status == 400 and "'skill'" in res.json["message"] and "limit is 119" in res.json["message"]
    _, res = app.test_client.post(f"/handoff/api/handoffs/{hid}/transfer", headers=headers,
                                  json={"skill": "after_sales", "language": "english-please"})
    assert res.status == 400 and "'language'" in res.json["message"] and "limit is 8" in res.json["message"]
    _, res = app.test_client.get(f"/handoff/api/handoffs/{hid}", headers=headers)
    assert res.json["status"] == "assigned" and res.json["agent_id"] == "alice"  # nothing changed


def test_check_length_counts_characters_not_bytes() -> None:
    check_length("客" * 128, "customer_id", 128)  # 128 characters (384 bytes): PostgreSQL counts characters too
    with pytest.raises(ValueTooLong) as caught:
        check_length("客" * 129, "customer_id", 128, "event[3]")
    assert str(caught.value).startswith("event[3]: 'customer_id' is 129 characters long; the limit is 128.")
