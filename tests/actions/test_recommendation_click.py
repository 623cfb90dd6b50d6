"""Recommendation cards carry a rec id; clicking a card records `recommendation_clicked`."""
from __future__ import annotations

import asyncio
import json

from rasa_sdk.executor import ActionExecutor  # noqa: F401 - fixture type

from bot.nlu.regex_interpreter import parse_intent_message
from bot.relay import forward_outbox
from bot.stores.event_broker import InProcessEventBroker
from actions.shop import get_shop
from actions.shop.ports import ShopOutboxPort
from tests.actions.test_demo_actions import OWNER, domain, executor, run, shop, slots_of, tracker  # noqa: F401
from tests.shop.conftest import seeded_db  # noqa: F401 - session fixture


def _shown(executor, domain):  # noqa: F811
    payload = tracker("推荐点装备", intent="ask_recommendation", sender=OWNER[1], channel=OWNER[0])
    events, responses = run(executor, domain, "action_recommend", payload)
    return slots_of(events)["last_shop_event"], responses[0]["attachment"]["payload"]["elements"]


def _click(executor, domain, button_payload: str):  # noqa: F811
    parsed = parse_intent_message(button_payload)
    payload = tracker(button_payload, intent=parsed["intent"]["name"], entities=parsed["entities"],
                      sender=OWNER[1], channel=OWNER[0])
    return run(executor, domain, "action_recommendation_clicked", payload)


def test_cards_carry_the_rec_id_and_position_of_the_shown_event(executor, domain) -> None:
    shown, cards = _shown(executor, domain)
    rec_id = shown["data"]["rec_id"]
    assert len(rec_id) == 12
    for position, card in enumerate(cards, start=1):
        payload = card["buttons"][0]["payload"]
        assert payload.startswith("/recommendation_clicked")
        data = json.loads(payload[len("/recommendation_clicked"):])
        assert data["rec_id"] == rec_id and data["rec_position"] == position
        assert data["product"] == shown["data"]["skus"][position - 1]


def test_click_records_event_with_customer_product_rec_and_position(executor, domain) -> None:
    shown, cards = _shown(executor, domain)
    events, responses = _click(executor, domain, cards[1]["buttons"][0]["payload"])
    clicked = slots_of(events)["last_shop_event"]
    assert clicked["event"] == "recommendation_clicked"
    assert clicked["customer_id"] == shown["customer_id"] is not None
    assert clicked["data"] == {"rec_id": shown["data"]["rec_id"], "product_id": shown["data"]["skus"][1], "position": 2}
    assert clicked["timestamp"] > 0
    assert "¥" in responses[0]["text"]  # the product's details


def test_click_reaches_the_broker_like_recommendation_shown(executor, domain) -> None:
    _, cards = _shown(executor, domain)
    _click(executor, domain, cards[0]["buttons"][0]["payload"])
    broker = InProcessEventBroker()
    received: list[dict] = []

    async def handler(event: dict) -> None:
        received.append(event)

    broker.subscribe(handler)
    asyncio.run(forward_outbox(broker, ShopOutboxPort(store=get_shop())))
    kinds = [e["event"] for e in received]
    assert kinds == ["recommendation_shown", "recommendation_clicked"]
    assert received[1]["data"]["position"] == 1


def test_click_without_rec_id_shows_product_but_records_nothing(executor, domain) -> None:
    _, cards = _shown(executor, domain)
    sku = json.loads(cards[0]["buttons"][0]["payload"][len("/recommendation_clicked"):])["product"]
    events, responses = _click(executor, domain, f'/recommendation_clicked{{"product": "{sku}", "rec_id": "x"}}')
    assert "last_shop_event" not in slots_of(events) and responses[0]["text"]


def test_click_on_unknown_product_gets_the_generic_answer(executor, domain) -> None:
    _, responses = _click(executor, domain, '/recommendation_clicked{"product": "NOPE", "rec_id": "0123456789ab", "rec_position": 1}')
    assert responses[0]["response"] == "utter_product_inquiry"
