"""Issue #15 point 3: a shopper's identity comes from a trusted source only.

- the REST finding: ``{"sender": "demo-wechat-openid", "input_channel": "wechat", ...}`` gets
  nothing about the order (real REST channel, real app, the real order action);
- the widget's verified identity (``metadata["identity"]``, set by the socketio channel from a
  shop-signed token) lets the owner in, and nothing else that looks like it does;
- failed verifications count per order and per phone across conversations.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from actions.shop import get_shop
from actions.shop.attempts import VerificationLimiter, configure_limiter, get_limiter
from bot.server.app import create_app
from bot.shared.message import UserMessage
from connectors.rest import RestInput
from tests.actions.test_demo_actions import (  # noqa: F401 - fixtures and helpers
    domain, executor, run, shop, slots_of, tracker,
)
from tests.shop.conftest import seeded_db  # noqa: F401 - session fixture

ORDER = "E20261101001"  # owned by demo-wechat-openid's customer; phone 13812345678
PHONE = "13812345678"
TRACKING_WORDS = ("快递", "运输中", "已签收", "已付款", "Carrier")


def owner_id(shop_url: str) -> int:
    engine = create_engine(shop_url)
    with engine.connect() as c:
        cid = c.execute(text(f"select customer_id from orders where id='{ORDER}'")).scalar()
    engine.dispose()
    return int(cid)


class OrderActionAgent:
    """The engine's part, in small: the message as the tracker records it, then the order action.

    The tracker's latest input channel, sender and metadata are the ``UserMessage``'s, as
    ``MessageProcessor.log_message`` records them; the order id comes from the text.
    """

    def __init__(self, executor: Any, domain: dict[str, Any]) -> None:
        self.executor = executor
        self.domain = domain
        self.responses: list[dict[str, Any]] = []

    def is_ready(self) -> bool:
        return True

    async def handle_message(self, message: UserMessage) -> None:
        payload = tracker(message.text, slots={"order_id": ORDER, "order_request": "status"},
                          sender=message.sender_id, channel=message.input_channel, intent="order_status")
        payload["latest_message"]["metadata"] = message.metadata or {}
        payload["events"][0]["parse_data"] = payload["latest_message"]
        call = {"next_action": "action_order_request", "sender_id": message.sender_id, "tracker": payload,
                "domain": self.domain, "version": "3.6.0"}
        result = await self.executor.run(call)
        for response in result.responses:
            self.responses.append(response)
            await message.output_channel.send_response(
                message.sender_id, {"text": response.get("text") or response.get("response")})


async def post_rest(agent: OrderActionAgent, body: dict[str, Any]) -> list[dict[str, Any]]:
    app = create_app(agent, input_channels=[RestInput()])
    _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json=body)
    assert resp.status == 200, resp.text
    return resp.json


def reveals_order(replies: list[dict[str, Any]]) -> bool:
    said = " ".join(str(r.get("text")) for r in replies)
    return any(word in said for word in TRACKING_WORDS)


# ----------------------------------------------------------------------------- the REST finding
@pytest.mark.asyncio
async def test_rest_caller_posing_as_wechat_gets_no_order_details(executor, domain) -> None:
    agent = OrderActionAgent(executor, domain)
    replies = await post_rest(agent, {"sender": "demo-wechat-openid", "input_channel": "wechat",
                                      "message": f"订单{ORDER}到哪了"})
    assert not reveals_order(replies), replies
    assert [r.get("response") for r in agent.responses] == ["utter_not_verified"]


@pytest.mark.asyncio
async def test_rest_caller_cannot_smuggle_a_verified_identity_in_metadata(executor, domain, shop) -> None:
    identity = {"customer_id": owner_id(shop), "source": "widget_token", "verified": True}
    agent = OrderActionAgent(executor, domain)
    replies = await post_rest(agent, {"sender": "stranger", "message": f"订单{ORDER}到哪了",
                                      "metadata": {"identity": identity, "customer_id": owner_id(shop)}})
    assert not reveals_order(replies), replies


# ----------------------------------------------------------------------------- widget identity
def with_identity(payload: dict[str, Any], identity: Any) -> dict[str, Any]:
    payload["latest_message"]["metadata"] = {"identity": identity}
    payload["events"][0]["parse_data"] = payload["latest_message"]
    return payload


def test_widget_token_identity_of_the_owner_sees_the_order(executor, domain, shop) -> None:
    payload = tracker(ORDER, slots={"order_id": ORDER, "order_request": "status"}, sender="widget-session",
                      channel="socketio")
    with_identity(payload, {"customer_id": str(owner_id(shop)), "source": "widget_token", "verified": True})
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert ORDER in responses[0]["text"] and "商品" in responses[0]["text"]


@pytest.mark.parametrize("identity", [
    {"customer_id": "OWNER", "source": "widget_token", "verified": False},
    {"customer_id": "OWNER", "source": "client", "verified": True},
    {"customer_id": "OWNER"},
    {"customer_id": "not-a-number", "source": "widget_token", "verified": True},
    "OWNER",
])
def test_anything_but_a_verified_widget_identity_is_refused(executor, domain, shop, identity) -> None:
    owner = str(owner_id(shop))
    if isinstance(identity, dict):
        identity = {k: (owner if v == "OWNER" else v) for k, v in identity.items()}
    else:
        identity = owner
    payload = tracker(ORDER, slots={"order_id": ORDER, "order_request": "status"}, sender="widget-session",
                      channel="socketio")
    with_identity(payload, identity)
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert responses[0].get("response") == "utter_not_verified"


def test_widget_token_identity_of_another_customer_is_refused(executor, domain, shop) -> None:
    payload = tracker(ORDER, slots={"order_id": ORDER, "order_request": "status"}, sender="widget-session",
                      channel="socketio")
    with_identity(payload, {"customer_id": str(owner_id(shop) + 1), "source": "widget_token", "verified": True})
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert responses[0].get("response") == "utter_not_verified"


# ----------------------------------------------------------------------------- attempt limits
def last4(executor, domain, digits: str, sender: str):
    payload = tracker(digits, slots={"order_id": ORDER, "requested_slot": "phone_last4", "order_request": "status"},
                      sender=sender, active_loop="order_form")
    return run(executor, domain, "validate_order_form", payload)


def test_five_wrong_last4_from_five_conversations_lock_the_order(executor, domain) -> None:
    for i in range(5):
        events, responses = last4(executor, domain, "0000", f"stranger-{i}")
        assert slots_of(events).get("verified_order") is None
    # a sixth conversation, even with the right digits, is not verified (the form stops asking) ...
    events, responses = last4(executor, domain, PHONE[-4:], "stranger-6")
    assert slots_of(events).get("verified_order") is None
    assert "phone_last4" not in str(slots_of(events).get("requested_slot"))
    # ... and the order action says to come back later
    payload = tracker(ORDER, slots={"order_id": ORDER, "order_request": "status"}, sender="stranger-7")
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert "锁定" in responses[0]["text"]
    payload = tracker(ORDER, slots={"order_id": ORDER, "order_request": "status", "language": "en"}, sender="s8")
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert "Too many failed verification attempts" in responses[0]["text"]


def test_failures_on_one_phone_lock_its_other_orders_too(executor, domain, shop) -> None:
    engine = create_engine(shop)
    with engine.begin() as c:
        c.execute(text("update orders set ship_phone=:p where id='E20261120004'"), {"p": PHONE})
    engine.dispose()
    for i in range(5):
        last4(executor, domain, "0000", f"stranger-{i}")
    payload = tracker("5678", slots={"order_id": "E20261120004", "requested_slot": "phone_last4"},
                      sender="stranger-x", active_loop="order_form")
    events, _ = run(executor, domain, "validate_order_form", payload)
    assert slots_of(events).get("verified_order") is None
    payload = tracker("x", slots={"order_id": "E20261120004", "order_request": "status"}, sender="stranger-y")
    _events, responses = run(executor, domain, "action_order_request", payload)
    assert "锁定" in responses[0]["text"]


def test_a_success_resets_the_count(executor, domain) -> None:
    for i in range(4):
        last4(executor, domain, "0000", f"stranger-{i}")
    events, _ = last4(executor, domain, PHONE[-4:], "owner")
    assert slots_of(events)["verified_order"] == ORDER
    for i in range(4):
        last4(executor, domain, "0000", f"again-{i}")
    events, _ = last4(executor, domain, PHONE[-4:], "owner-2")
    assert slots_of(events)["verified_order"] == ORDER


def test_wrong_recipient_names_from_many_conversations_lock_the_phone(executor, domain) -> None:
    for i in range(5):
        payload = tracker("张三", slots={"phone": PHONE, "order_request": "status", "requested_slot": "recipient_name"},
                          sender=f"stranger-{i}", active_loop="order_form")
        run(executor, domain, "validate_order_form", payload)
    payload = tracker("whatever", slots={"phone": PHONE, "order_request": "status",
                                         "requested_slot": "recipient_name", "language": "en"},
                      sender="stranger-9", active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert not slots_of(events).get("verified_orders")
    assert "Too many failed verification attempts" in responses[-1]["text"]


def test_limiter_is_shared_through_the_shop_database(shop) -> None:
    """Two limiters over the same database (two workers) see one count."""
    from datetime import datetime, timezone

    from actions.shop.attempts import SqlAttemptStore

    now = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    a = VerificationLimiter(SqlAttemptStore(shop), max_failures=2)
    b = VerificationLimiter(SqlAttemptStore(shop), max_failures=2)

    async def go() -> None:
        assert not await a.failed(now=now, order_id=ORDER)
        assert await b.failed(now=now, order_id=ORDER)
        assert await a.locked(now=now, order_id=ORDER)
        await a.close(), await b.close()

    asyncio.run(go())


def test_get_limiter_follows_the_installed_shop(shop) -> None:
    configure_limiter(None)
    limiter = get_limiter()
    assert limiter.store.engine is get_shop().engine  # type: ignore[attr-defined]
    assert limiter.max_failures == 5


@pytest.mark.redis
def test_limiter_in_redis_is_shared_and_expires_with_the_window(redis_url: str) -> None:
    from datetime import datetime, timedelta, timezone

    from actions.shop.attempts import limiter_from_config

    now = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    config = {"type": "http", "url": "http://shop.invalid", "attempts_url": redis_url, "attempts_max": 2}

    async def go() -> None:
        a, b = limiter_from_config(config), limiter_from_config(config)  # two action servers
        assert not await a.failed(now=now, order_id=ORDER, phone=PHONE)
        assert await b.failed(now=now, phone=PHONE)
        assert await a.locked(now=now, phone=PHONE) and not await a.locked(now=now, order_id=ORDER)
        assert not await b.locked(now=now + timedelta(hours=1, seconds=1), phone=PHONE)  # the window passed
        await a.succeeded(phone=PHONE)
        assert not await b.locked(now=now, phone=PHONE)
        await a.close(), await b.close()

    asyncio.run(go())
