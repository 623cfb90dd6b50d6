"""Coupons, points, size advice and recommendations for the identified shopper."""
from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import conversation, day, identified_customer, language, money, now, t, unavailable
from actions.shop import ShopError, ShopStore, get_shop, rules, sizing
from actions.shop.recommend import Recommender

logger = logging.getLogger(__name__)

CATEGORY_WORDS = {  # shopper words → category code (zh and en)
    "跑鞋": "running_shoes", "running shoe": "running_shoes", "篮球鞋": "basketball_shoes", "basketball shoe": "basketball_shoes",
    "徒步鞋": "hiking_shoes", "登山鞋": "hiking_shoes", "hiking shoe": "hiking_shoes", "冲锋衣": "outdoor_jackets",
    "jacket": "outdoor_jackets", "瑜伽": "yoga", "yoga": "yoga", "健身服": "fitness_apparel", "泳": "swimming",
    "swim": "swimming", "骑行": "cycling", "cycling": "cycling", "t恤": "running_apparel", "短裤": "running_apparel",
    "tee": "running_apparel", "shorts": "running_apparel", "鞋": "running_shoes", "shoe": "running_shoes",
    "衣": "running_apparel", "shirt": "running_apparel",
}
WELCOME_TEMPLATE = "WELCOME20"
WELCOME_ISSUE_KEY = "journey:welcome:first_order_coupon"  # as actions.loyalty.ActionCouponWelcome
REFIT_SECONDS = 3600
REFIT_RETRY_SECONDS = 60  # after a failed background refit


def category_of(tracker: Tracker) -> Optional[str]:
    text = " ".join(str(v) for v in (tracker.get_slot("category"), tracker.get_slot("product"),
                                     tracker.latest_message.get("text")) if v).lower()
    return next((code for word, code in CATEGORY_WORDS.items() if word in text), None)


class ActionCoupons(Action):
    def name(self) -> str:
        return "action_coupons"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        try:
            customer = await identified_customer(tracker)
            if customer is None:
                dispatcher.utter_message(response="utter_coupon_info")
                return []
            shop = get_shop()
            welcome = None
            if not await shop.recent_orders(customer.id, limit=1):
                # a new customer asking about coupons gets the welcome coupon here; the same issue key as
                # the welcome journey's step, so chat and journey never give two
                welcome = await shop.issue_coupon(customer.id, WELCOME_TEMPLATE, issue_key=WELCOME_ISSUE_KEY,
                                                  issued_by="chat:action_coupons", now=now())
            coupons = await shop.coupons(customer.id)
        except ShopError as e:
            unavailable(dispatcher, tracker, "coupons", e)
            return []
        if welcome is not None and welcome.ok and welcome.new and welcome.coupon is not None:
            from actions.loyalty import coupon_text

            dispatcher.utter_message(text=t(lang, "新人礼已发放：", "Your welcome gift: ") +
                                     coupon_text(lang, welcome.coupon, welcome.template))
        current = now()
        m = re.search(r"(\d{2,6}(?:\.\d{1,2})?)\s*(?:元|块|yuan|rmb)?", tracker.latest_message.get("text") or "")
        cart = int(float(m.group(1)) * 100) if m else None
        live = [c for c in coupons if rules.coupon_usable(c, 10 ** 9, current).allowed or
                rules.coupon_usable(c, 10 ** 9, current).code == "coupon_below_threshold"]
        if not live:
            dispatcher.utter_message(text=t(lang, "您目前没有可用的优惠券。", "You have no usable coupons right now."))
            return []
        lines = []
        for c in live:
            title = c.title_en if lang == "en" else c.title_zh
            line = t(lang, f"· {title}，{day(lang, c.valid_until)}到期", f"· {title}, valid until {day(lang, c.valid_until)}")
            if cart is not None:
                ok = rules.coupon_usable(c, cart, current).allowed
                line += t(lang, "（本单可用）" if ok else "（本单金额不满足）", " (usable now)" if ok else " (cart too small)")
            lines.append(line)
        head = t(lang, f"您有 {len(live)} 张优惠券" + (f"，购物车 {money(cart)}：" if cart else "：") ,
                 f"You have {len(live)} coupon(s)" + (f"; for a {money(cart)} cart:" if cart else ":"))
        dispatcher.utter_message(text=head + "\n" + "\n".join(lines))
        return []


# action_points (balance, tier, redemption) lives in actions/loyalty.py.


class ActionSizeAdvice(Action):
    def name(self) -> str:
        return "action_size_advice"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        measurements = sizing.parse_measurements(tracker.latest_message.get("text") or "")
        category = category_of(tracker) or ("running_shoes" if measurements.foot_cm else "running_apparel")
        advice = sizing.advise(category, measurements)
        if advice is None:
            dispatcher.utter_message(response="utter_size_advice")
            return []
        dispatcher.utter_message(text=t(lang, f"建议选 {advice.size}：{advice.reason_zh}",
                                        f"I'd take {advice.size.replace('码', '')}: {advice.reason_en}"))
        return []


_model: Optional[tuple[float, int, Recommender]] = None
_model_lock = asyncio.Lock()
_refit: Optional[asyncio.Task[None]] = None


async def _fit(shop: ShopStore) -> Recommender:
    products = await shop.products()
    baskets = await shop.baskets()
    return await asyncio.to_thread(lambda: Recommender(products).fit(baskets))


async def recommender(shop: ShopStore) -> Recommender:
    """The fitted model: fitted once per process and store, then refitted every REFIT_SECONDS.

    Only the first call waits for a fit (about a second on 20 000 orders). When the
    model is older than REFIT_SECONDS, the current one keeps answering while a new one
    is fitted in the background, so no shopper waits for a refit; `invalidate_recommender`
    (after an import, in tests) forces the next call to fit afresh.
    """
    global _model, _refit
    model = _model
    if model is not None and model[1] == id(shop):
        if time.monotonic() - model[0] > REFIT_SECONDS and (_refit is None or _refit.done()
                                                               or _refit.get_loop() is not asyncio.get_running_loop()):
            _refit = asyncio.get_running_loop().create_task(_refit_in_background(shop), name="kefu-recommender-refit")
        return model[2]
    async with _model_lock:
        if _model is None or _model[1] != id(shop):
            _model = (time.monotonic(), id(shop), await _fit(shop))
        return _model[2]


async def _refit_in_background(shop: ShopStore) -> None:
    global _model
    try:
        fitted = await _fit(shop)
    except ShopError as e:  # keep serving the current model; try again in REFIT_RETRY_SECONDS
        logger.warning("Recommender refit failed, keeping the current model: %s", e)
        if _model is not None and _model[1] == id(shop):
            _model = (time.monotonic() - REFIT_SECONDS + REFIT_RETRY_SECONDS, _model[1], _model[2])
        return
    if _model is not None and _model[1] == id(shop):
        _model = (time.monotonic(), id(shop), fitted)


def invalidate_recommender() -> None:
    """Forget the fitted model (the shop's order history or catalogue changed wholesale)."""
    global _model
    _model = None


class ActionRecommend(Action):
    """Product cards (image, title, price, button) with a text fallback; `recommendation_shown` recorded.

    Each list of cards gets a recommendation id (`rec_id`). A card's button sends
    `/recommendation_clicked{"product": SKU, "rec_id": ..., "rec_position": N}`, so a
    click comes back as an ordinary message on every channel and
    `action_recommendation_clicked` records it on the same path (shop outbox → event
    broker). Cards carry no web links, so no click-tracking redirect route is needed;
    a channel that adds links should point them at a button payload as well.
    """

    def name(self) -> str:
        return "action_recommend"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        shop = get_shop()
        try:
            customer = await identified_customer(tracker)
            history = [s for b in await shop.baskets(customer.id) for s in b.skus] if customer else []
            model = await recommender(shop)
            wanted = category_of(tracker)
            recs = model.recommend(history, k=30)
            if wanted:
                recs = [r for r in recs if model.products[r.sku].category == wanted] or recs
            recs = recs[:3]
            if not recs:
                dispatcher.utter_message(response="utter_recommendation")
                return []
            rec_id = uuid.uuid4().hex[:12]
            event = await shop.record_event("recommendation_shown", sender_id=tracker.sender_id,
                                            customer_id=customer.id if customer else None,
                                            payload={"rec_id": rec_id, "skus": [r.sku for r in recs]}, now=now())
        except ShopError as e:
            unavailable(dispatcher, tracker, "recommendation", e)
            return []
        elements, lines = [], []
        for position, r in enumerate(recs, start=1):
            p = model.products[r.sku]
            reason = _reason(r, model, lang)
            elements.append({"title": p.title(lang), "subtitle": f"{money(p.price_cents)} · {reason}",
                             "image_url": p.images[0] if p.images else None,
                             "buttons": [{"title": t(lang, "看看", "View"), "payload": click_payload(p.sku, rec_id, position)}]})
            lines.append(f"· {p.title(lang)} {money(p.price_cents)}（{reason}）" if lang != "en" else f"· {p.title(lang)} {money(p.price_cents)} ({reason})")
        intro = t(lang, "为您推荐：", "You might like:")
        dispatcher.utter_message(text=intro + "\n" + "\n".join(lines),
                                 attachment={"type": "template", "payload": {"template_type": "generic", "elements": elements}})
        logger.debug("Recommended %s in conversation %s", [r.sku for r in recs], conversation(tracker))
        return [SlotSet("last_shop_event", event)]


def click_payload(sku: str, rec_id: str, position: int) -> str:
    """The card button's payload: which card of which recommendation was clicked."""
    return f'/recommendation_clicked{{"product": "{sku}", "rec_id": "{rec_id}", "rec_position": {position}}}'


_REC_ID_RE = re.compile(r"[0-9a-f]{12}")


class ActionRecommendationClicked(Action):
    """A product card was clicked: record `recommendation_clicked`, then show the product."""

    def name(self) -> str:
        return "action_recommendation_clicked"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        entities = {e.get("entity"): e.get("value") for e in tracker.latest_message.get("entities") or []}
        sku = str(entities.get("product") or tracker.get_slot("product") or "")
        rec_id = str(entities.get("rec_id") or "")
        try:
            position = int(entities.get("rec_position"))
        except (TypeError, ValueError):
            position = 0
        shop = get_shop()
        try:
            found = await shop.products([sku]) if sku else []
            if not found:
                dispatcher.utter_message(response="utter_product_inquiry")
                return []
            product = found[0]
            event = None
            if _REC_ID_RE.fullmatch(rec_id) and 1 <= position <= 50:
                customer = await identified_customer(tracker)
                event = await shop.record_event(
                    "recommendation_clicked", sender_id=tracker.sender_id,
                    customer_id=customer.id if customer else None,
                    payload={"rec_id": rec_id, "product_id": product.sku, "position": position}, now=now())
            else:
                logger.info("Card click without a valid recommendation id in conversation %s", conversation(tracker))
        except ShopError as e:
            unavailable(dispatcher, tracker, "recommendation click", e)
            return []
        dispatcher.utter_message(text=product_text(product, lang), image=product.images[0] if product.images else None)
        return [SlotSet("product", product.sku)] + ([SlotSet("last_shop_event", event)] if event else [])


def product_text(product: Any, lang: str) -> str:
    """Title, price, sizes and stock of one product."""
    sizes = "、".join(product.sizes) if lang != "en" else ", ".join(s.replace("码", "") for s in product.sizes)
    if product.stock <= 0:
        stock = t(lang, "暂时缺货，可以登记到货提醒。", "Out of stock right now; ask for a restock notice.")
    elif product.stock < 10:
        stock = t(lang, f"仅剩 {product.stock} 件。", f"Only {product.stock} left.")
    else:
        stock = t(lang, "有货。", "In stock.")
    return t(lang, f"{product.title(lang)}，{money(product.price_cents)}。" + (f"尺码：{sizes}。" if sizes else "") + stock,
             f"{product.title(lang)}, {money(product.price_cents)}." + (f" Sizes: {sizes}." if sizes else "") + f" {stock}")


def _reason(r: Any, model: Recommender, lang: str) -> str:
    if r.reason == "co_purchase" and r.because_sku in model.products:
        because = model.products[r.because_sku].title(lang)
        return t(lang, f"买了{because}的顾客常搭配", f"often bought with {because}")
    if r.reason == "affinity":
        return t(lang, "符合您常买的品类", "matches what you usually buy")
    return t(lang, "近期热销", "popular right now")
