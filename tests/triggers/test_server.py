"""POST /events and GET /triggers/report through the app factory and Sanic's ASGI client."""
from __future__ import annotations

import json

import pytest

from bot.server.app import create_app
from bot.feature import ProjectSettings
from bot.triggers.feature import TriggersFeature
from tests.triggers.conftest import make_engine

pytestmark = pytest.mark.asyncio


@pytest.fixture
def app_and_engine(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    app = create_app(agent=None, auth_token="secret",
                     features=[TriggersFeature(ProjectSettings(root=None), engine=engine)])
    return app, engine


def event(**overrides):
    body = {"id": "e1", "type": "cart_item_added", "customer_id": "c1", "properties": {"sku": "S1"}}
    body.update(overrides)
    return body


async def post(app, body, token="secret"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    _, res = await app.asgi_client.post("/events", content=data, headers=headers)
    return res


async def test_post_events_requires_auth(app_and_engine):
    app, engine = app_and_engine
    res = await post(app, event(), token=None)
    assert res.status == 401
    assert await engine.store.events_for("c1") == []


async def test_post_events_accepts_single_and_batch(app_and_engine, clock):
    app, engine = app_and_engine
    res = await post(app, event(timestamp=clock.now()))
    assert res.status == 202 and res.json["accepted"] == 1
    res = await post(app, {"events": [event(id="e2", type="product_viewed"), event(id="e3", type="order_paid")]})
    assert res.status == 202 and res.json["ids"] == ["e2", "e3"]
    assert [e.id for e in await engine.store.events_for("c1")] == ["e1", "e2", "e3"]
    # order_paid ended the cart journey that e1 started
    assert await engine.store.instances_for("c1", "abandoned_cart", status="active") == []


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (event(type="cart_abandoned"), 400, "unknown_event_type"),
        (event(customer_id=None), 400, "missing_customer"),
        (event(customer_id=""), 400, "missing_customer"),
        (event(timestamp=4_000_000_000), 400, "future_timestamp"),
        (event(properties={"blob": "x" * (1024 * 1024)}), 413, "payload_too_large"),
        (event(properties={"blob": "x" * 100_000}), 413, "event_too_large"),
        (b"{not json", 400, "invalid_json"),
        ({"events": [event(id="a"), event(id="a")]}, 409, "duplicate_event_id"),
    ],
)
async def test_post_events_bad_events_get_4xx_and_change_nothing(app_and_engine, body, status, reason):
    app, engine = app_and_engine
    res = await post(app, body)
    assert res.status == status, res.json
    assert res.json["reason"] == reason
    assert res.json["message"]
    assert await engine.store.events_for("c1") == []
    assert await engine.queue.size() == {"due": 0, "in_flight": 0}


async def test_post_events_bad_event_in_batch_rejects_whole_batch(app_and_engine):
    app, engine = app_and_engine
    res = await post(app, [event(id="ok"), event(id="bad", type="nope")])
    assert res.status == 400
    assert res.json["details"]["index"] == 1
    assert await engine.store.events_for("c1") == []


async def test_post_events_duplicate_id_is_409_and_not_processed_twice(app_and_engine):
    app, engine = app_and_engine
    assert (await post(app, event())).status == 202
    res = await post(app, event())
    assert res.status == 409 and res.json["reason"] == "duplicate_event_id"
    assert len(await engine.store.events_for("c1")) == 1
    assert len(await engine.store.instances_for("c1")) == 1


async def test_report_route_gives_sends_and_skips(app_and_engine, clock, sender):
    app, engine = app_and_engine
    await post(app, event(id="d1", type="order_delivered", timestamp=clock.now()))
    clock.advance(5)
    await engine.drain()
    _, res = await app.asgi_client.get("/triggers/report", headers={"Authorization": "Bearer secret"})
    assert res.status == 200
    assert res.json["journeys"]["delivered_survey"]["sends"] == 1
    _, res = await app.asgi_client.get("/triggers/report")
    assert res.status == 401


async def test_post_events_backdated_event_is_stored_but_starts_no_journey(app_and_engine, clock, sender):
    app, engine = app_and_engine
    res = await post(app, event(id="old", timestamp=clock.now() - 48 * 3600 + 1))
    assert res.status == 202
    (answer,) = res.json["events"]
    assert answer["id"] == "old" and answer["too_old"] is True and answer["not_started"] == ["abandoned_cart"]
    assert [e.id for e in await engine.store.events_for("c1")] == ["old"]
    clock.advance(5)
    await engine.drain()
    assert sender.delivered == [] and await engine.store.instances_for("c1") == []


def jwt_app(store, sql_queue, sender, clock):
    import secrets

    secret = secrets.token_urlsafe(32)  # generated per test, never a tracked secret
    engine = make_engine(store, sql_queue, sender, clock)
    app = create_app(agent=None, jwt_secret=secret,
                     features=[TriggersFeature(ProjectSettings(root=None), engine=engine)])
    return app, engine, secret


async def post_as(app, secret, role, scopes, body):
    import jwt

    token = jwt.encode({"user": {"username": f"test-{role}", "role": role}, "scopes": scopes}, secret,
                       algorithm="HS256")
    _, res = await app.asgi_client.post("/events", content=json.dumps(body),
                                        headers={"Content-Type": "application/json",
                                                 "Authorization": f"Bearer {token}"})
    return res


TRICK = {"channel": "wechat", "wechat_openid": "oVictim42", "timezone": "Pacific/Kiritimati"}


async def test_post_events_event_producer_cannot_set_channel_openid_time_zone_or_consent(store, sql_queue, sender,
                                                                                         clock):
    app, engine, secret = jwt_app(store, sql_queue, sender, clock)
    await engine.opt_out("c1", "chat")
    res = await post_as(app, secret, "event_producer", ["events:write"],
                        {"events": [event(id="p", type="order_delivered", profile=TRICK),
                                    event(id="s", type="subscribed")]})
    assert res.status == 202, res.json
    assert res.json["trusted"] is False
    assert res.json["ignored_fields"] == ["consent", "profile.channel", "profile.timezone", "profile.wechat_openid"]
    profile = await engine.store.get_profile("c1")
    assert profile["opted_out"] is True and not set(TRICK) & set(profile)


async def test_post_events_admin_is_a_trusted_producer(store, sql_queue, sender, clock):
    app, engine, secret = jwt_app(store, sql_queue, sender, clock)
    res = await post_as(app, secret, "admin", ["events:write", "events:trusted"],
                        event(id="p", type="order_delivered", profile=TRICK))
    assert res.status == 202, res.json
    assert res.json["trusted"] is True and res.json["ignored_fields"] == []
    assert (await engine.store.get_profile("c1"))["wechat_openid"] == "oVictim42"
