"""Issue #20 in chat: product questions, comparison, restock notices, journey coupons, points.

Actions run as the action server runs them (rasa_sdk's ActionExecutor with a hand-built
payload) over a private copy of a small seeded shop; every answer is checked against the
catalogue rows, not against fixed strings.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from rasa_sdk.executor import ActionExecutor
from ruamel.yaml import YAML
from sqlalchemy import create_engine, text

from actions import products as product_actions
from actions import shop_data
from actions.shop import configure_shop, coupon_template_views
from actions.shop.sql import SqlShopStore
from tests.shop.conftest import NOW, seeded_db  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parents[2]
OWNER = ("wechat", "demo-wechat-openid")  # customer of E20261101001


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    return YAML(typ="safe").load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def executor() -> ActionExecutor:
    ex = ActionExecutor()
    ex.register_package("actions")
    return ex


@pytest.fixture()
def store(seeded_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlShopStore]:  # noqa: F811
    copy = tmp_path / "shop.db"
    shutil.copy(seeded_db, copy)
    s = SqlShopStore(f"sqlite:///{copy}")
    s.sync_coupon_templates(coupon_template_views())
    configure_shop(s)
    product_actions._finder.clear()
    monkeypatch.setattr(shop_data, "now", lambda: NOW)
    yield s
    configure_shop(None)
    product_actions._finder.clear()
    asyncio.run(s.close())


def payload(message: str, *, intent: str = "product_inquiry", slots: Optional[dict[str, Any]] = None,
            entities: Optional[list] = None, metadata: Optional[dict] = None, sender: str = "shopper-1",
            channel: str = "rest", language: str = "zh") -> dict[str, Any]:
    latest = {"text": message, "intent": {"name": intent, "confidence": 0.98}, "entities": entities or [],
              "metadata": metadata or {}, "message_id": f"m-{abs(hash(message)) % 10 ** 8}"}
    all_slots = {"language": language, "product_sku": None, "shown_products": None, "product": None,
                 "verified_order": None, "verified_orders": None}
    all_slots.update(slots or {})
    return {"sender_id": sender, "slots": all_slots, "latest_message": latest,
            "events": [{"event": "user", "text": message, "parse_data": latest, "input_channel": channel,
                        "timestamp": 2.0, "message_id": latest["message_id"]}],
            "paused": False, "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen",
            "latest_input_channel": channel}


def run(executor, domain, action: str, tracker: dict[str, Any]):
    call = {"next_action": action, "sender_id": tracker["sender_id"], "tracker": tracker, "domain": domain,
            "version": "3.6.0"}
    result = asyncio.run(executor.run(call))
    return {e["name"]: e["value"] for e in result.events if e["event"] == "slot"}, result.responses


def products(store: SqlShopStore):
    return {p.sku: p for p in asyncio.run(store.products())}


def a_shoe(store: SqlShopStore, *, sold_out_size: bool = False):
    """A running shoe whose title is unique in the catalogue (optionally with a size sold out in a colour)."""
    catalogue = products(store)
    for p in catalogue.values():
        if p.category != "running_shoes" or not p.variants or p.stock <= 0:
            continue
        if sold_out_size:
            empty = [v for v in p.variants if v.stock == 0]
            if not empty or p.stock_of(empty[0].size) > 0:
                continue
        return p
    pytest.skip("the seeded shop has no such shoe")


def test_price_and_stock_of_a_size_from_a_full_title(store, executor, domain) -> None:
    shoe = a_shoe(store)
    size = next(v.size for v in shoe.variants if v.stock > 0)
    slots, responses = run(executor, domain, "action_product_info",
                           payload(f"那款{shoe.title_zh}多少钱，还有{size.replace('码', '')}码吗"))
    answer = responses[0]["text"]
    assert f"¥{shoe.price_cents / 100:.2f}" in answer
    assert f"{size}" in answer and f"{shoe.stock_of(size)} 件" in answer or f"仅剩 {shoe.stock_of(size)} 件" in answer
    assert slots["product_sku"] == shoe.sku
    card = responses[0]["attachment"]["payload"]["elements"][0]
    assert card["sku"] == shoe.sku and card["title"] == shoe.title_zh


def test_a_homophone_or_pinyin_finds_the_product(store, executor, domain) -> None:
    catalogue = products(store)
    shoe = catalogue["RUN-00002"] if "RUN-00002" in catalogue else a_shoe(store)
    from actions.shop.products import ProductFinder, pinyin

    finder = ProductFinder(catalogue.values())
    typed = pinyin(shoe.title_zh)  # what a shopper without a Chinese keyboard writes
    assert finder.search(typed)[0].product.sku == shoe.sku
    swapped = shoe.title_zh.replace("磐", "盘").replace("疾", "急")  # homophone typos
    assert finder.search(swapped)[0].product.sku == shoe.sku
    assert finder.search("今天天气真好") == []


def test_that_black_one_points_at_the_cards_just_shown(store, executor, domain) -> None:
    catalogue = products(store)
    black = [p for p in catalogue.values() if "黑色" in p.colours][:1]
    other = [p for p in catalogue.values() if "黑色" not in p.colours][:1]
    shown = [other[0].sku, black[0].sku]
    slots, responses = run(executor, domain, "action_product_info",
                           payload("那双黑色的多少钱", entities=[{"entity": "color", "value": "黑色"}],
                                   slots={"shown_products": shown}))
    assert slots["product_sku"] == black[0].sku
    assert black[0].title_zh in responses[0]["text"]


def test_the_widget_page_names_the_product_when_the_message_does_not(store, executor, domain) -> None:
    shoe = a_shoe(store)
    slots, responses = run(executor, domain, "action_product_info",
                           payload("这个是什么材质的", metadata={"page": {"sku": shoe.sku, "url": "https://shop/p"}}))
    assert slots["product_sku"] == shoe.sku
    assert shoe.attributes["material"] in responses[0]["text"]


def test_the_widgets_page_path_names_the_product(store, executor, domain) -> None:
    """The widget sends `metadata.page` = window.location.pathname; shop.yml `formats: product_page` reads the sku."""
    shoe = a_shoe(store)
    slots, responses = run(executor, domain, "action_product_info",
                           payload("这双多少钱", metadata={"page": f"/p/{shoe.sku}", "lang": "zh"}))
    assert slots["product_sku"] == shoe.sku and f"¥{shoe.price_cents / 100:.2f}" in responses[0]["text"]
    _, responses = run(executor, domain, "action_product_info", payload("这双多少钱", metadata={"page": "/cart"}))
    assert responses[0]["response"] == "utter_product_inquiry"


def test_out_of_stock_size_offers_alternatives_and_a_restock_button(store, executor, domain) -> None:
    shoe = a_shoe(store, sold_out_size=True)
    size = next(v.size for v in shoe.variants if v.stock == 0 and shoe.stock_of(v.size) == 0)
    slots, responses = run(executor, domain, "action_product_info", payload(f"{shoe.title_zh} {size}有货吗"))
    answer = responses[0]
    assert "缺货" in answer["text"]
    elements = answer["attachment"]["payload"]["elements"]
    restock = elements[0]["buttons"][0]["payload"]
    assert restock.startswith("/restock_subscribe") and shoe.sku in restock and size in restock
    catalogue = products(store)
    alternatives = [e["sku"] for e in elements[1:]]
    assert alternatives, "an in-stock alternative is offered"
    assert all(catalogue[s].category == shoe.category and catalogue[s].stock_of(size) > 0 for s in alternatives)

    # the button subscribes; a second click does not subscribe twice
    sub = payload(restock, intent="restock_subscribe",
                  entities=[{"entity": "product_sku", "value": shoe.sku}, {"entity": "size", "value": size}])
    _, first = run(executor, domain, "action_restock_subscribe", sub)
    _, second = run(executor, domain, "action_restock_subscribe", sub)
    assert "到货后我第一时间通知您" in first[0]["text"] and "已经登记过" in second[0]["text"]

    # the merchant's stock update publishes back_in_stock for this conversation, once
    colour = next(v.colour for v in shoe.variants if v.size == size)
    events = asyncio.run(store.set_stock(shoe.sku, 7, size=size, colour=colour, now=NOW))
    assert [(e["event"], e["sender_id"], e["data"]["size"]) for e in events] == [("back_in_stock", "shopper-1", size)]
    assert asyncio.run(store.set_stock(shoe.sku, 9, size=size, colour=colour, now=NOW)) == []


def test_compare_two_products_side_by_side(store, executor, domain) -> None:
    catalogue = list(products(store).values())
    a, b = catalogue[0], catalogue[1]
    slots, responses = run(executor, domain, "action_product_info", payload(f"帮我对比一下{a.title_zh}和{b.title_zh}"))
    table = responses[0]["custom"]["comparison"]
    assert table["skus"] == [a.sku, b.sku]
    price = next(r for r in table["rows"] if r["name"] == "价格")
    assert price["values"] == [f"¥{a.price_cents / 100:.2f}", f"¥{b.price_cents / 100:.2f}"]
    # "这两双" after cards were shown compares the shown ones
    _, responses = run(executor, domain, "action_product_info", payload("帮我对比一下这两双", slots={"shown_products": [b.sku, a.sku]}))
    assert responses[0]["custom"]["comparison"]["skus"] == [b.sku, a.sku]


def test_which_fits_my_need_filters_category_and_budget(store, executor, domain) -> None:
    slots, responses = run(executor, domain, "action_product_info", payload("500元以内适合新手的跑鞋有哪款"))
    catalogue = products(store)
    picked = slots["shown_products"]
    assert picked and all(catalogue[s].category == "running_shoes" and catalogue[s].price_cents <= 50000
                          and catalogue[s].stock > 0 for s in picked)


def test_an_unknown_product_gets_the_question_back(store, executor, domain) -> None:
    _, responses = run(executor, domain, "action_product_info", payload("你们家东西怎么样"))
    assert responses[0]["response"] == "utter_product_inquiry"


def test_journey_coupon_is_issued_once_per_customer_and_step_with_code_and_terms(store, executor, domain) -> None:
    tracker = payload("", intent="", sender=OWNER[1], channel=OWNER[0], slots={"product": "跑鞋"})
    _, first = run(executor, domain, "action_coupon_cart_reminder", tracker)
    _, again = run(executor, domain, "action_coupon_cart_reminder", tracker)
    code = first[0]["custom"]["coupon"]["code"]
    assert code in first[0]["text"] and "无门槛" in first[0]["text"]  # the code and shop.yml's terms
    assert again[0]["custom"]["coupon"]["code"] == code
    engine = create_engine(store.url)
    with engine.connect() as c:
        rows = c.execute(text("select issued_by from coupon_issues where coupon_code = :c"), {"c": code}).all()
    engine.dispose()
    assert rows == [("journey:abandoned_cart:reminder",)]
    # a stranger gets the reminder without a coupon
    _, stranger = run(executor, domain, "action_coupon_cart_reminder", payload("", intent="", sender="nobody"))
    assert "custom" not in stranger[0] or not stranger[0].get("custom")
    # redemption names the journey for its conversion
    result = asyncio.run(store.redeem_coupon(code, "E20261101001", now=NOW))
    assert result.ok and result.event["event"] == "coupon_redeemed"
    assert (result.event["data"]["journey"], result.event["data"]["step"]) == ("abandoned_cart", "reminder")


def test_points_earned_by_rule_then_redeemed_with_balance_check_and_ledger(store, executor, domain) -> None:
    from actions.shop import rules
    from actions.shop.config import shop_config
    from actions.shop.loyalty import award

    customer = asyncio.run(store.customer_by_identity(*OWNER))
    balance = lambda: rules.points_summary(asyncio.run(store.points(customer.id)), NOW).balance  # noqa: E731
    start = balance()
    # a purchase earns shop.yml's 1 point per yuan, once per order; a review its fixed points
    assert asyncio.run(award(store, shop_config(), customer.id, "purchase", ref="E-TEST-1", amount_cents=60_050, now=NOW)) == 600
    assert asyncio.run(award(store, shop_config(), customer.id, "purchase", ref="E-TEST-1", amount_cents=60_050, now=NOW)) == 0
    assert asyncio.run(award(store, shop_config(), customer.id, "review", ref="R-1", now=NOW)) == 20
    assert balance() == start + 620

    tracker = payload("我有多少积分", intent="points_inquiry", sender=OWNER[1], channel=OWNER[0])
    _, responses = run(executor, domain, "action_points", tracker)
    assert f"{start + 620} 积分" in responses[0]["text"] and "会员" in responses[0]["text"]
    assert any("PTS10" in b["payload"] for b in responses[0]["buttons"])

    redeem = payload('/redeem_points{"coupon_template": "PTS10"}', intent="redeem_points", sender=OWNER[1],
                     channel=OWNER[0], entities=[{"entity": "coupon_template", "value": "PTS10"}])
    _, responses = run(executor, domain, "action_redeem_points", redeem)
    assert "兑换成功" in responses[0]["text"] and balance() == start + 120
    code = re.search(r"券码 ([A-Z0-9]+)", responses[0]["text"]).group(1)
    assert any(c.code == code for c in asyncio.run(store.coupons(customer.id)))
    ledger = [e for e in asyncio.run(store.points(customer.id)) if e.reason == f"redeem:{code}"]
    assert [e.delta for e in ledger] == [-500]
    run(executor, domain, "action_redeem_points", redeem)  # the same message retried: no second spend
    assert balance() == start + 120

    if balance() < 2000:
        big = payload('/redeem_points{"coupon_template": "PTS50"}', intent="redeem_points", sender=OWNER[1],
                      channel=OWNER[0], entities=[{"entity": "coupon_template", "value": "PTS50"}])
        _, responses = run(executor, domain, "action_redeem_points", big)
        assert "积分不足" in responses[0]["text"] and str(balance()) in responses[0]["text"]
        assert balance() == start + 120


def test_top_tier_gets_priority_service_in_the_handoff_profile(store) -> None:
    from actions.shop.config import shop_config
    from actions.shop.loyalty import award
    from actions.shop.ports import ShopProfilePort

    port = ShopProfilePort(ROOT, store=store, vip_lifetime_value_cents=10 ** 12)  # spending alone is never VIP here
    before = asyncio.run(port.profile(*OWNER))
    assert before["tier"] != "gold" and before["vip"] is False
    customer = asyncio.run(store.customer_by_identity(*OWNER))
    asyncio.run(award(store, shop_config(), customer.id, "purchase", ref="big-order", amount_cents=600_000, now=NOW))
    after = asyncio.run(port.profile(*OWNER))
    assert after["tier"] == "gold" and after["priority_service"] is True and after["vip"] is True


def test_new_customer_gets_the_welcome_coupon_once_in_chat_or_by_the_journey(store, executor, domain) -> None:
    engine = create_engine(store.url)
    with engine.begin() as c:
        c.execute(text("insert into customers (id, name, phone, created_at) values (9001, '新客', '13900009001', '2026-11-23 01:00:00')"))
        c.execute(text("insert into channel_identities (customer_id, channel, external_id) values (9001, 'wechat', 'new-openid')"))
    engine.dispose()
    ask = payload("有优惠券吗", intent="coupon_inquiry", sender="new-openid", channel="wechat")
    _, first = run(executor, domain, "action_coupons", ask)
    code = re.search(r"券码 ([A-Z0-9]+)", first[0]["text"]).group(1)
    assert first[0]["text"].startswith("新人礼已发放") and "首单满99元可用" in first[0]["text"]
    assert "新人满99减20" in first[1]["text"]  # and it is listed with the shopper's coupons
    _, second = run(executor, domain, "action_coupons", ask)
    assert not any(r.get("text", "").startswith("新人礼") for r in second)
    _, journey = run(executor, domain, "action_coupon_welcome", payload("", intent="", sender="new-openid", channel="wechat"))
    assert journey[0]["custom"]["coupon"]["code"] == code  # the journey step shows the same coupon, not a second
    # a customer with orders gets no welcome coupon
    _, owner = run(executor, domain, "action_coupons", payload("有优惠券吗", intent="coupon_inquiry", sender=OWNER[1], channel=OWNER[0]))
    assert not any(r.get("text", "").startswith("新人礼") for r in owner)


def test_an_ambiguous_name_asks_which_one_and_the_button_answers(store, executor, domain) -> None:
    from actions.shop.products import ProductFinder

    catalogue = products(store)
    finder = ProductFinder(catalogue.values())
    # a model word + category shared by two brands ("磐石跑鞋"): find one such pair in this shop
    pair = None
    for p in catalogue.values():
        partial = p.title_zh[len(p.brand):-2]  # without brand and number
        found = finder.search(partial)
        if len(found) >= 2:
            pair = (partial, found)
            break
    if pair is None:
        pytest.skip("no ambiguous partial title in this shop")
    partial, found = pair
    slots, responses = run(executor, domain, "action_product_info", payload(f"{partial}多少钱"))
    assert responses[0]["text"].startswith("您问的是哪一款") and slots["shown_products"] == [m.product.sku for m in found]
    button = responses[0]["buttons"][1]
    assert button["payload"] == f'/product_inquiry{{"product_sku": "{found[1].product.sku}"}}'
    slots, responses = run(executor, domain, "action_product_info",
                           payload(button["payload"], entities=[{"entity": "product_sku", "value": found[1].product.sku}]))
    assert slots["product_sku"] == found[1].product.sku and found[1].product.title_zh in responses[0]["text"]
