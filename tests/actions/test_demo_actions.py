"""The demo shop's custom actions, run the way an action server runs them.

Each test builds the action-server payload (`next_action`, `tracker`, `domain`)
by hand and sends it through rasa_sdk's ActionExecutor, over a private copy of
a small seeded shop (tests/shop/conftest.py), with the clock frozen.
"""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from rasa_sdk.executor import ActionExecutor
from ruamel.yaml import YAML
from sqlalchemy import create_engine, text

from actions import shop_data
from actions.shop import configure_shop
from actions.shop.base import ShopUnavailable
from actions.shop.sql import SqlShopStore
from tests.shop.conftest import NOW, seeded_db  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parents[2]
OWNER = ("wechat", "demo-wechat-openid")  # owns E20261101001 (phone 13812345678)


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    return YAML(typ="safe").load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def executor() -> ActionExecutor:
    ex = ActionExecutor()
    ex.register_package("actions")
    return ex


@pytest.fixture(autouse=True)
def shop(seeded_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    copy = tmp_path / "shop.db"
    shutil.copy(seeded_db, copy)
    url = f"sqlite:///{copy}"
    store = SqlShopStore(url)
    configure_shop(store)
    monkeypatch.setattr(shop_data, "now", lambda: NOW)
    yield url
    configure_shop(None)
    asyncio.run(store.close())


def tracker(text: str, *, slots: Optional[dict[str, Any]] = None, intent: str = "inform", sender: str = "shopper-1",
            channel: str = "rest", active_loop: Optional[str] = None, entities: Optional[list] = None) -> dict[str, Any]:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.98}, "entities": entities or []}
    all_slots = {"language": "zh", "order_id": None, "order_request": None, "requested_slot": None,
                 "verified_order": None, "phone_last4": None, "verify_attempts": None, "pending_change": None,
                 "return_reason": None, "phone": None, "recipient_name": None, "verified_orders": None,
                 "product": None}
    all_slots.update(slots or {})
    return {"sender_id": sender, "slots": all_slots, "latest_message": latest,
            "events": [{"event": "user", "text": text, "parse_data": latest, "input_channel": channel, "timestamp": 2.0}],
            "paused": False, "followup_action": None, "active_loop": {"name": active_loop} if active_loop else {},
            "latest_action_name": "action_listen", "latest_input_channel": channel}


def run(executor, domain, action: str, payload: dict[str, Any]):
    call = {"next_action": action, "sender_id": payload["sender_id"], "tracker": payload, "domain": domain, "version": "3.6.0"}
    result = asyncio.run(executor.run(call))
    return result.events, result.responses


def slots_of(events) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def ask(executor, domain, order_id: str, request: str, *, owner: bool = True, language: str = "zh", **slots):
    channel, sender = OWNER if owner else ("rest", "stranger")
    payload = tracker(order_id, slots={"order_id": order_id, "order_request": request, "language": language, **slots},
                      sender=sender, channel=channel)
    return run(executor, domain, "action_order_request", payload)


# Actions kefu itself provides (not custom rasa_sdk code).
BUILT_IN_ACTIONS = {"action_answer_faq"}


def test_executor_registers_every_domain_action(executor, domain) -> None:
    for name in domain["actions"]:
        if name in BUILT_IN_ACTIONS:
            continue
        assert name in executor.actions


def test_order_status_for_owner_gives_items_carrier_tracking_eta(executor, domain, shop) -> None:
    engine = create_engine(shop)
    with engine.begin() as c:  # make the owner's customer own a shipped order too
        owner = c.execute(text("select customer_id from channel_identities where external_id='demo-wechat-openid'")).scalar()
        c.execute(text("update orders set customer_id=:c where id='E20261120004'"), {"c": owner})
    engine.dispose()
    _, responses = ask(executor, domain, "E20261120004", "status")
    reply = responses[0]["text"]
    assert "运输中" in reply and "中通 78612188820419" in reply and "成都转运中心" in reply and "预计" in reply
    assert "13912345678" not in reply


def test_order_status_answers_in_english(executor, domain) -> None:
    _, responses = ask(executor, domain, "E20261101001", "status", language="en")
    reply = responses[0]["text"]
    assert reply.startswith("Order E20261101001 is delivered") and "SF Express" in reply
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in reply.replace(reply[reply.find("Items"):reply.find(".", reply.find("Items"))], ""))


def test_unverified_shopper_gets_nothing(executor, domain) -> None:
    events, responses = ask(executor, domain, "E20261101001", "status", owner=False)
    assert [r.get("response") for r in responses] == ["utter_not_verified"]
    assert slots_of(events)["order_id"] is None


def test_shopper_verified_by_phone_digits_sees_the_order(executor, domain) -> None:
    _, responses = ask(executor, domain, "E20261101001", "status", owner=False, verified_order="E20261101001")
    assert "E20261101001" in responses[0]["text"]


def test_form_asks_phone_digits_only_when_not_owner(executor, domain) -> None:
    stranger = tracker("E20261101001", slots={"order_id": "E20261101001", "requested_slot": "order_id"},
                       sender="stranger", active_loop="order_form")
    events, _ = run(executor, domain, "validate_order_form", stranger)
    # The validator picks the next slot: the phone digits (a phone look-up's slots are left out).
    assert slots_of(events)["requested_slot"] == "phone_last4"
    owner = tracker("E20261101001", slots={"order_id": "E20261101001", "requested_slot": "order_id"},
                    sender=OWNER[1], channel=OWNER[0], active_loop="order_form")
    events, _ = run(executor, domain, "validate_order_form", owner)
    assert "requested_slot" in slots_of(events) and slots_of(events)["requested_slot"] is None


@pytest.mark.parametrize("text,expected", [("5678", "verified"), ("手机尾号1111", "mismatch"), ("56", "invalid")])
def test_validate_phone_last4(executor, domain, text, expected) -> None:
    payload = tracker(text, slots={"order_id": "E20261101001", "requested_slot": "phone_last4"},
                      sender="stranger", active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    slots = slots_of(events)
    if expected == "verified":
        assert slots["verified_order"] == "E20261101001" and slots["requested_slot"] is None
    elif expected == "mismatch":
        assert responses[0]["response"] == "utter_phone_mismatch" and slots["verify_attempts"] == 1
    else:
        assert responses[0]["response"] == "utter_invalid_phone_last4"


def test_three_wrong_phone_checks_end_the_form(executor, domain) -> None:
    payload = tracker("0000", slots={"order_id": "E20261101001", "requested_slot": "phone_last4", "verify_attempts": 2},
                      sender="stranger", active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert responses[0]["response"] == "utter_verification_failed"
    assert slots_of(events)["requested_slot"] is None


def test_cancel_asks_confirmation_then_cancels_and_emits_event(executor, domain, shop) -> None:
    verified = {"verified_order": "E20261122005"}
    events, responses = ask(executor, domain, "E20261122005", "cancel", owner=False, **verified)
    assert slots_of(events) == {"pending_change": True} and responses[0]["buttons"][0]["payload"] == "/affirm"
    payload = tracker("确认取消", intent="affirm", sender="stranger", slots={
        "order_id": "E20261122005", "order_request": "cancel", "pending_change": True, **verified})
    events, responses = run(executor, domain, "action_apply_order_change", payload)
    assert "已取消" in responses[0]["text"] and "¥428.00" in responses[0]["text"]
    assert slots_of(events)["last_shop_event"]["event"] == "order_cancelled"
    engine = create_engine(shop)
    with engine.connect() as c:
        assert c.execute(text("select status from orders where id='E20261122005'")).scalar() == "cancelled"
        assert c.execute(text("select count(*) from outbox where event='order_cancelled'")).scalar() == 1
    engine.dispose()


def test_shipped_order_cannot_be_cancelled(executor, domain) -> None:
    events, responses = ask(executor, domain, "E20261119009", "cancel", owner=False, verified_order="E20261119009")
    assert "无法取消" in responses[0]["text"] and slots_of(events)["pending_change"] is None


def test_declined_cancel_changes_nothing(executor, domain, shop) -> None:
    payload = tracker("不了", intent="deny", sender="stranger", slots={
        "order_id": "E20261122005", "order_request": "cancel", "pending_change": True, "verified_order": "E20261122005"})
    _, responses = run(executor, domain, "action_apply_order_change", payload)
    assert "没有做任何更改" in responses[0]["text"]
    engine = create_engine(shop)
    with engine.connect() as c:
        assert c.execute(text("select status from orders where id='E20261122005'")).scalar() == "paid"
    engine.dispose()


def test_return_captures_reason_and_tells_next_step(executor, domain, shop) -> None:
    v = {"verified_order": "E20261117003"}
    events, responses = ask(executor, domain, "E20261117003", "return", owner=False, **v)
    assert "还剩 4 天" in responses[0]["text"] and len(responses[0]["buttons"]) == 4
    payload = tracker('/inform{"return_reason": "size"}', sender="stranger", slots={
        "order_id": "E20261117003", "order_request": "return", "pending_change": True, "return_reason": "size", **v})
    events, responses = run(executor, domain, "action_apply_order_change", payload)
    assert "退货申请已提交" in responses[0]["text"] and "下一步" in responses[0]["text"]
    assert slots_of(events)["last_shop_event"]["data"]["reason"] == "尺码不合适"


def test_return_outside_window_is_refused(executor, domain) -> None:
    _, responses = ask(executor, domain, "E20261108002", "return", language="en", owner=False, verified_order="E20261108002")
    assert "past the 7-day window" in responses[0]["text"]


def test_refund_status(executor, domain) -> None:
    _, done = ask(executor, domain, "E20261105006", "refund", owner=False, verified_order="E20261105006")
    _, none = ask(executor, domain, "E20261120004", "refund", owner=False, verified_order="E20261120004")
    assert "¥1299.00 已于" in done[0]["text"] and "没有退款记录" in none[0]["text"]


def test_unknown_order_offers_recent_orders_as_buttons(executor, domain) -> None:
    _, responses = ask(executor, domain, "E99999999999", "status")
    assert [b["payload"] for b in responses[0]["buttons"]] == ['/order_status{"order_id": "E20261101001"}']
    _, responses = ask(executor, domain, "E99999999999", "status", owner=False, language="en")
    assert "couldn't find order E99999999999" in responses[0]["text"]


def test_data_layer_down_gets_polite_reply_and_changes_nothing(executor, domain, monkeypatch) -> None:
    async def broken(*args, **kwargs):
        raise ShopUnavailable("database down")

    monkeypatch.setattr(SqlShopStore, "find_order", broken)
    events, responses = ask(executor, domain, "E20261122005", "cancel", owner=False, verified_order="E20261122005")
    assert [r.get("response") for r in responses] == ["utter_shop_unavailable"]
    assert slots_of(events)["order_id"] is None


def test_points_and_coupons_for_identified_shopper(executor, domain) -> None:
    payload = tracker("我有多少积分", intent="points_inquiry", sender=OWNER[1], channel=OWNER[0])
    _, responses = run(executor, domain, "action_points", payload)
    assert "积分" in responses[0]["text"]
    payload = tracker("有没有券", intent="coupon_inquiry", sender="stranger")
    _, responses = run(executor, domain, "action_coupons", payload)
    assert responses[0]["response"] == "utter_coupon_info"


def test_size_advice_gives_size_and_reason(executor, domain) -> None:
    payload = tracker("跑鞋，脚长26厘米穿多大", intent="size_advice")
    _, responses = run(executor, domain, "action_size_advice", payload)
    assert responses[0]["text"].startswith("建议选 42码") and "大半码" in responses[0]["text"]


def test_recommend_renders_cards_with_reasons_and_text_fallback(executor, domain, shop) -> None:
    payload = tracker("推荐点装备", intent="ask_recommendation", sender=OWNER[1], channel=OWNER[0])
    events, responses = run(executor, domain, "action_recommend", payload)
    cards = responses[0]["attachment"]["payload"]["elements"]
    assert 1 <= len(cards) <= 3 and all(c["image_url"] and c["buttons"] for c in cards)
    assert responses[0]["text"].startswith("为您推荐")
    assert slots_of(events)["last_shop_event"]["event"] == "recommendation_shown"
