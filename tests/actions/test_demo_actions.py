"""The demo shop's custom actions, run the way an action server runs them.

Each test builds the action-server payload (`next_action`, `tracker`, `domain`)
by hand and sends it through rasa_sdk's ActionExecutor, so what is checked is
exactly what Rasa or kefu would receive over `POST /webhook`.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

import pytest
from rasa_sdk.executor import ActionExecutor
from ruamel.yaml import YAML

from actions import shop_data

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = datetime.fromisoformat(
    json.loads((ROOT / "actions/data/demo_orders.json").read_text(encoding="utf-8"))["reference_time"]
)


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    """The project's real domain.yml as the dict the action server receives."""
    return YAML(typ="safe").load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def executor() -> ActionExecutor:
    ex = ActionExecutor()
    ex.register_package("actions")
    return ex


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Freeze the shop clock at the demo file's reference time."""
    monkeypatch.setattr(shop_data, "now", lambda: REFERENCE)
    return REFERENCE


def tracker(
    text: str,
    *,
    slots: Optional[dict[str, Any]] = None,
    entities: Optional[list[dict[str, Any]]] = None,
    intent: str = "inform",
    slot_events: Optional[dict[str, Any]] = None,
    active_loop: Optional[str] = None,
) -> dict[str, Any]:
    """A tracker payload as Rasa serialises it for the action server."""
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.98},
        "intent_ranking": [{"name": intent, "confidence": 0.98}],
        "entities": entities or [],
    }
    events: list[dict[str, Any]] = [
        {"event": "action", "name": "action_listen", "timestamp": 1.0},
        {"event": "user", "text": text, "parse_data": latest, "timestamp": 2.0},
    ]
    for name, value in (slot_events or {}).items():
        events.append({"event": "slot", "name": name, "value": value, "timestamp": 3.0})
    all_slots = {"language": "zh", "order_id": None, "order_request": None, "requested_slot": None}
    all_slots.update(slots or {})
    all_slots.update(slot_events or {})
    return {
        "sender_id": "shopper-1",
        "slots": all_slots,
        "latest_message": latest,
        "events": events,
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": active_loop} if active_loop else {},
        "latest_action_name": "action_listen",
        "latest_event_time": 3.0,
    }


def run(executor: ActionExecutor, domain: dict[str, Any], action: str, payload: dict[str, Any]):
    call = {"next_action": action, "sender_id": "shopper-1", "tracker": payload, "domain": domain, "version": "3.6.0"}
    result = asyncio.run(executor.run(call))
    return result.events, result.responses


def slot_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def order_request(executor, domain, order_id: str, request: str, language: str = "zh"):
    payload = tracker(
        order_id,
        slots={"order_id": order_id, "order_request": request, "language": language},
        active_loop=None,
    )
    events, responses = run(executor, domain, "action_order_request", payload)
    assert len(responses) == 1
    return responses[0], events


# --- registration -----------------------------------------------------------

def test_executor_registers_the_demo_actions_named_in_the_domain(executor, domain) -> None:
    for name in ("validate_order_form", "action_order_request"):
        assert name in executor.actions
        assert name in domain["actions"]


# --- validate_order_form ----------------------------------------------------

def test_validate_order_form_normalises_entity_value_to_upper_case(executor, domain) -> None:
    payload = tracker(
        "e20261108002",
        entities=[{"entity": "order_id", "value": "e20261108002", "start": 0, "end": 12}],
        slot_events={"order_id": "e20261108002"},
        slots={"requested_slot": "order_id"},
        active_loop="order_form",
    )
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert slot_events(events) == {"order_id": "E20261108002"}
    assert responses == []


@pytest.mark.parametrize(
    "text",
    ["e2026 1101 001", "订单号是 E 2026 1101 001 谢谢", "Ｅ２０２６１１０１００１"],
)
def test_validate_order_form_extracts_spaced_or_full_width_ids_the_nlu_missed(executor, domain, text) -> None:
    payload = tracker(text, slots={"requested_slot": "order_id"}, active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert slot_events(events)["order_id"] == "E20261101001"
    assert responses == []


@pytest.mark.parametrize("text", ["E123", "e2026110100", "20261101001"])
def test_validate_order_form_rejects_malformed_ids_with_invalid_response(executor, domain, text) -> None:
    payload = tracker(text, slots={"requested_slot": "order_id"}, active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert slot_events(events) == {"order_id": None}
    assert [r.get("response") for r in responses] == ["utter_invalid_order_id"]


def test_validate_order_form_rejects_malformed_entity_value(executor, domain) -> None:
    payload = tracker(
        "E2026110100x",
        slot_events={"order_id": "E2026110100x"},
        slots={"requested_slot": "order_id"},
        active_loop="order_form",
    )
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert slot_events(events) == {"order_id": None}
    assert responses[0]["response"] == "utter_invalid_order_id"


def test_validate_order_form_leaves_unrelated_messages_to_the_form(executor, domain) -> None:
    payload = tracker("你是机器人吗", intent="bot_challenge", slots={"requested_slot": "order_id"}, active_loop="order_form")
    events, responses = run(executor, domain, "validate_order_form", payload)
    assert "order_id" not in slot_events(events)
    assert responses == []


# --- action_order_request ---------------------------------------------------

def test_order_request_resets_order_slots(executor, domain) -> None:
    _, events = order_request(executor, domain, "E20261101001", "status")
    assert slot_events(events) == {"order_id": None, "order_request": None}


def test_order_request_status_of_shipped_order_names_carrier_and_latest_event(executor, domain) -> None:
    reply, _ = order_request(executor, domain, "E20261120004", "status")
    assert "中通" in reply["text"] and "78612188820419" in reply["text"]
    assert "成都转运中心" in reply["text"]


def test_order_request_answers_in_english_when_language_is_en(executor, domain) -> None:
    reply, _ = order_request(executor, domain, "E20261101001", "status", language="en")
    assert reply["text"].startswith("Order E20261101001 was delivered")
    assert "SF Express" in reply["text"]
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in reply["text"])


def test_order_request_defaults_to_chinese_without_language_slot(executor, domain) -> None:
    payload = tracker("E20261122005", slots={"order_id": "E20261122005", "order_request": "status", "language": None})
    _, responses = run(executor, domain, "action_order_request", payload)
    assert "已付款" in responses[0]["text"]


def test_order_request_cancel_allowed_only_before_shipment(executor, domain) -> None:
    paid, _ = order_request(executor, domain, "E20261122005", "cancel")
    shipped, _ = order_request(executor, domain, "E20261119009", "cancel")
    assert "可以取消" in paid["text"] and "¥428.00" in paid["text"]
    assert "无法直接取消" in shipped["text"]


def test_order_request_change_address_allowed_only_before_shipment(executor, domain) -> None:
    paid, _ = order_request(executor, domain, "E20261122005", "change_address", language="en")
    delivered, _ = order_request(executor, domain, "E20261117003", "change_address", language="en")
    assert "can still be changed" in paid["text"]
    assert "can no longer be changed" in delivered["text"]


def test_order_request_return_within_seven_days_of_delivery(executor, domain) -> None:
    recent, _ = order_request(executor, domain, "E20261117003", "return")  # delivered 3 days ago
    older, _ = order_request(executor, domain, "E20261108002", "return")  # delivered 11 days ago
    assert "还在 7 天退货期内" in recent["text"] and "还剩 4 天" in recent["text"]
    assert "已超过 7 天退货期" in older["text"]


def test_order_request_exchange_within_fifteen_days_of_delivery(executor, domain) -> None:
    inside, _ = order_request(executor, domain, "E20261108002", "exchange", language="en")
    outside, _ = order_request(executor, domain, "E20261101001", "exchange", language="en")
    assert "within the 15-day exchange window" in inside["text"]
    assert "past the 15-day exchange window" in outside["text"]


def test_order_request_return_window_follows_the_clock(executor, domain, monkeypatch) -> None:
    monkeypatch.setattr(shop_data, "now", lambda: REFERENCE + timedelta(days=5))
    shop_data._demo_orders.cache_clear()
    reply, _ = order_request(executor, domain, "E20261117003", "return")
    # The demo data moves with the clock: still delivered three days ago.
    assert "还剩 4 天" in reply["text"]


def test_order_request_refund_states(executor, domain) -> None:
    done, _ = order_request(executor, domain, "E20261105006", "refund")
    pending, _ = order_request(executor, domain, "E20261110007", "refund")
    none, _ = order_request(executor, domain, "E20261120004", "refund")
    assert "¥1299.00 已于" in done["text"]
    assert "¥459.00 正在处理中" in pending["text"]
    assert "没有退款记录" in none["text"]


def test_order_request_return_with_refund_in_progress_is_not_duplicated(executor, domain) -> None:
    reply, _ = order_request(executor, domain, "E20261110007", "return")
    assert "不需要重复申请" in reply["text"]


def test_order_request_unknown_order_is_answered_politely(executor, domain) -> None:
    reply, events = order_request(executor, domain, "E99999999999", "status", language="en")
    assert "couldn't find order E99999999999" in reply["text"]
    assert slot_events(events) == {"order_id": None, "order_request": None}


def test_order_request_data_layer_failure_uses_failure_response(executor, domain, monkeypatch) -> None:
    async def broken(order_id: str):
        raise shop_data.ShopDataError("database down")

    monkeypatch.setattr(shop_data, "find_order", broken)
    reply, events = order_request(executor, domain, "E20261101001", "status")
    assert reply["response"] == "utter_order_request_failed"
    assert slot_events(events) == {"order_id": None, "order_request": None}


# --- shop_data --------------------------------------------------------------

def test_find_order_is_case_and_space_insensitive() -> None:
    order = asyncio.run(shop_data.find_order(" e2026 1117 003 "))
    assert order is not None and order.order_id == "E20261117003"
    assert order.total == shop_data.Decimal("857.00")


def test_load_orders_shifts_timestamps_to_today() -> None:
    path = ROOT / "actions/data/demo_orders.json"
    base = shop_data.load_orders(path, REFERENCE.date())
    later = shop_data.load_orders(path, REFERENCE.date() + timedelta(days=10))
    a, b = base["E20261101001"], later["E20261101001"]
    assert b.delivered_at - a.delivered_at == timedelta(days=10)
    assert b.events[-1].time - a.events[-1].time == timedelta(days=10)


def test_demo_orders_are_realistic_and_valid() -> None:
    orders = shop_data.load_orders(ROOT / "actions/data/demo_orders.json", REFERENCE.date())
    assert len(orders) >= 10
    assert {o.status for o in orders.values()} == set(shop_data.ORDER_STATUSES)
    assert {o.carrier for o in orders.values() if o.carrier} == {"顺丰", "中通"}
    for order in orders.values():
        assert "****" in order.phone_masked
        assert order.lines
        if order.status in ("shipped", "delivered"):
            assert order.tracking_number and order.events and order.shipped_at
        if order.status == "delivered":
            assert order.delivered_at is not None


def test_load_orders_malformed_file_names_file_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "orders.json"
    bad.write_text(json.dumps({"reference_time": "2026-11-23T10:00:00+08:00", "orders": [{"order_id": "X1"}]}))
    with pytest.raises(shop_data.ShopDataError, match="orders.json.*E \\+ 11 digits"):
        shop_data.load_orders(bad, REFERENCE.date())
