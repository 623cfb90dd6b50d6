"""Order look-up by phone: verified by the channel identity or the recipient's full name."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine, text

from tests.actions.test_demo_actions import (  # noqa: F401 - fixtures and helpers
    OWNER, domain, executor, run, shop, slots_of, tracker,
)
from tests.shop.conftest import seeded_db  # noqa: F401 - session fixture

PHONE = "13812345678"  # the demo owner's phone: order E20261101001
NAME = "王小明"


@pytest.fixture()
def named(shop: str) -> str:  # noqa: F811
    """Give the owner's orders a recipient name and a second recent order on the same phone."""
    engine = create_engine(shop)
    with engine.begin() as c:
        cid = c.execute(text("select customer_id from orders where id='E20261101001'")).scalar()
        c.execute(text("update orders set ship_name=:n where customer_id=:c"), {"n": NAME, "c": cid})
        c.execute(text("update orders set customer_id=:c, ship_phone=:p, ship_name=:n where id='E20261120004'"),
                  {"c": cid, "p": PHONE, "n": NAME})
    engine.dispose()
    return shop


def form(text_: str, *, slots=None, requested="recipient_name", sender="stranger", channel="rest", intent="inform"):
    base = {"phone": PHONE, "order_request": "status", "requested_slot": requested}
    base.update(slots or {})
    return tracker(text_, slots=base, sender=sender, channel=channel, intent=intent, active_loop="order_form")


def test_validate_order_form_asks_recipient_name_for_a_phone(executor, domain, named) -> None:
    payload = form(f"手机号{PHONE}下的单", requested="order_id", intent="order_status")
    # set by action_extract_slots from the NLU's phone entity, so validated this turn
    payload["events"].append({"event": "slot", "name": "phone", "value": PHONE, "timestamp": 3.0})
    events, responses = run(executor, domain, "validate_order_form", payload)
    slots = slots_of(events)
    assert slots["phone"] == PHONE and slots["requested_slot"] == "recipient_name" and not responses


def test_validate_order_form_skips_the_name_when_identity_owns_the_phone(executor, domain, named) -> None:
    payload = form(PHONE, requested="order_id", sender=OWNER[1], channel=OWNER[0])
    events, _ = run(executor, domain, "validate_order_form", payload)
    assert slots_of(events)["requested_slot"] is None


@pytest.mark.parametrize("typed", [NAME, f"收货人是{NAME}", " 王 小明。"])
def test_recipient_full_name_verifies_the_phone_orders(executor, domain, named, typed) -> None:
    events, responses = run(executor, domain, "validate_order_form", form(typed))
    slots = slots_of(events)
    assert sorted(slots["verified_orders"]) == ["E20261101001", "E20261120004"]
    assert slots["requested_slot"] is None and not responses


@pytest.mark.parametrize("typed", ["王", "李小明"])
def test_surname_or_wrong_name_is_refused_the_same_way(executor, domain, named, typed) -> None:
    events, responses = run(executor, domain, "validate_order_form", form(typed))
    slots = slots_of(events)
    assert responses[0]["response"] == "utter_recipient_mismatch" and "verified_orders" not in slots
    assert slots["verify_attempts"] == 1 and slots["requested_slot"] == "recipient_name"


def test_unknown_phone_gets_the_same_reply_as_a_wrong_name(executor, domain, named) -> None:
    payload = form(NAME, slots={"phone": "13000000000"})
    _, responses = run(executor, domain, "validate_order_form", payload)
    assert responses[0]["response"] == "utter_recipient_mismatch"


def test_three_wrong_names_end_the_check(executor, domain, named) -> None:
    events, responses = run(executor, domain, "validate_order_form", form("张三", slots={"verify_attempts": 2}))
    assert responses[0]["response"] == "utter_verification_failed"
    assert slots_of(events)["requested_slot"] is None


@pytest.mark.parametrize("typed", ["1381234567", "138123456789", "手机 1381234 567"])
def test_malformed_phone_gets_a_polite_reply_and_the_form_asks_again(executor, domain, named, typed) -> None:
    payload = form(typed, requested="order_id", slots={"phone": None})
    events, responses = run(executor, domain, "validate_order_form", payload)
    slots = slots_of(events)
    assert responses[0]["response"] == "utter_invalid_phone"
    assert slots["phone"] is None and slots["requested_slot"] == "order_id"
    assert "order_id" not in slots  # not mistaken for an order id


def test_phone_with_separators_and_country_code_is_accepted(executor, domain, named) -> None:
    payload = form("+86 138-1234-5678", requested="order_id", slots={"phone": None})
    events, _ = run(executor, domain, "validate_order_form", payload)
    assert slots_of(events)["phone"] == PHONE


def lookup(executor, domain, *, sender="stranger", channel="rest", language="zh", request="status", **slots):
    payload = tracker("", slots={"phone": PHONE, "order_request": request, "language": language, **slots},
                      sender=sender, channel=channel)
    return run(executor, domain, "action_order_request", payload)


def test_several_orders_become_buttons_with_masked_phone(executor, domain, named, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    verified = {"recipient_name": NAME, "verified_orders": ["E20261101001", "E20261120004"]}
    _, responses = lookup(executor, domain, **verified)
    reply = responses[0]
    assert [b["payload"] for b in reply["buttons"]] == [
        '/order_status{"order_id": "E20261120004"}', '/order_status{"order_id": "E20261101001"}']
    assert "138****5678" in reply["text"] and PHONE not in reply["text"]
    assert PHONE not in caplog.text and NAME not in caplog.text


def test_button_intent_follows_the_request(executor, domain, named) -> None:
    verified = {"recipient_name": NAME, "verified_orders": ["E20261101001", "E20261120004"]}
    _, responses = lookup(executor, domain, request="return", language="en", **verified)
    assert responses[0]["buttons"][0]["payload"] == '/return_request{"order_id": "E20261120004"}'
    assert "recent orders on 138****5678" in responses[0]["text"]


def test_one_order_goes_straight_to_the_status(executor, domain, named) -> None:
    engine = create_engine(named)
    with engine.begin() as c:
        c.execute(text("update orders set ship_name='李雷' where id='E20261120004'"))
    engine.dispose()
    verified = {"recipient_name": NAME, "verified_orders": ["E20261101001"]}
    events, responses = lookup(executor, domain, **verified)
    assert responses[0]["text"].startswith("订单 E20261101001：已签收") and "buttons" not in responses[0] or not responses[0]["buttons"]
    assert slots_of(events)["phone"] is None


def test_channel_identity_owning_the_phone_needs_no_name(executor, domain, named) -> None:
    _, responses = lookup(executor, domain, sender=OWNER[1], channel=OWNER[0])
    assert len(responses[0]["buttons"]) == 2


def test_unverified_phone_lookup_reveals_nothing(executor, domain, named) -> None:
    events, responses = lookup(executor, domain)
    assert [r.get("response") for r in responses] == ["utter_not_verified_phone"]
    assert slots_of(events)["phone"] is None


def test_name_verified_for_other_orders_does_not_widen(executor, domain, named) -> None:
    # verified_orders only from this check: an order not in it is not shown even if the name matches
    _, responses = lookup(executor, domain, recipient_name=NAME, verified_orders=["E20261101001"])
    assert "E20261120004" not in str(responses)


def test_clicked_button_order_needs_no_phone_digits(executor, domain, named) -> None:
    payload = tracker('/order_status{"order_id": "E20261120004"}', sender="stranger", active_loop="order_form",
                      slots={"order_id": "E20261120004", "verified_orders": ["E20261101001", "E20261120004"]})
    events, _ = run(executor, domain, "validate_order_form", payload)
    assert slots_of(events)["requested_slot"] is None


def test_cancel_by_phone_with_one_order_keeps_the_order_for_confirmation(executor, domain, named) -> None:
    engine = create_engine(named)
    with engine.begin() as c:
        c.execute(text("update orders set ship_phone=:p, ship_name=:n where id='E20261122005'"), {"p": "13700001111", "n": "韩梅梅"})
    engine.dispose()
    payload = tracker("", slots={"phone": "13700001111", "order_request": "cancel", "recipient_name": "韩梅梅",
                                 "verified_orders": ["E20261122005"]}, sender="stranger")
    events, responses = run(executor, domain, "action_order_request", payload)
    slots = slots_of(events)
    assert slots["order_id"] == "E20261122005" and slots["pending_change"] is True
    assert "确认要取消订单 E20261122005" in responses[0]["text"]
