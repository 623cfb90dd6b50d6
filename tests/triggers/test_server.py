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
