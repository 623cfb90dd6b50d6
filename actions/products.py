"""Product questions answered from the catalogue: price, stock per size/colour, specs, fit, comparison.

`action_product_info` finds the product the shopper means (`actions/shop/products.py`),
then answers with a product card: the card's text says what was asked (price, stock of
the size/colour, materials), the attachment is the same generic template the
recommendation cards use. Two or three products named together, or "对比一下", get a
side-by-side comparison. Out of stock: alternatives in stock, and a button that
subscribes this conversation to a restock notice (`action_restock_subscribe`), which the
`restock_notice` journey sends when the merchant's stock update brings it back.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import conversation, identified_customer, language, now, t, unavailable
from actions.shop import ShopError, ShopStore, get_shop
from actions.shop.base import ProductView
from actions.shop.config import shop_config
from actions.shop.products import Match, ProductFinder, wants_comparison

logger = logging.getLogger(__name__)

FINDER_TTL_S = 60.0  # titles change rarely; stock is re-read for the products answered
_finder: dict[int, tuple[float, ProductFinder]] = {}

ASKS_PRICE = re.compile(r"多少钱|价格|价钱|几块|贵|price|how much|cost", re.I)
ASKS_STOCK = re.compile(r"有货|有没有|还有|库存|缺货|现货|断码|in stock|available|have .* in|sold out", re.I)
ASKS_SPECS = re.compile(r"材质|面料|材料|参数|配置|重|规格|防水|透气|鞋底|material|made of|spec|waterproof|weight", re.I)
BUDGET = re.compile(r"(\d{2,5})\s*(?:元|块)?\s*(?:以内|以下|之内|左右)|(?:under|below|less than|within)\s*¥?\s*(\d{2,5})", re.I)
LEVELS = {"入门": "入门", "新手": "入门", "beginner": "入门", "进阶": "进阶", "intermediate": "进阶",
          "专业": "专业", "比赛": "专业", "pro": "专业", "competition": "专业"}
NEED = re.compile(r"适合|推荐|哪款|哪个|which|recommend|suit|best for|fit", re.I)


async def finder(shop: ShopStore) -> ProductFinder:
    """The catalogue index, rebuilt at most once a minute per store."""
    key = id(shop)
    cached = _finder.get(key)
    if cached and time.monotonic() - cached[0] < FINDER_TTL_S:
        return cached[1]
    products = await shop.products()
    built = await asyncio.to_thread(ProductFinder, products)  # pinyin of every title: seconds on the first build
    _finder.clear()
    _finder[key] = (time.monotonic(), built)
    return built


def entity(tracker: Tracker, name: str) -> Optional[str]:
    for e in tracker.latest_message.get("entities") or []:
        if e.get("entity") == name and e.get("value"):
            return str(e["value"])
    return None


def page_sku(tracker: Tracker) -> Optional[str]:
    """The product page the widget is on: metadata `page` as the widget sends it (the page path,
    read with shop.yml `formats: product_page`) or `{"sku": ...}`. Public catalogue data, not identity."""
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    if not isinstance(metadata, dict):
        return None
    page = metadata.get("page")
    if isinstance(page, dict) and page.get("sku"):
        return str(page["sku"])[:48]
    if isinstance(page, str):
        return shop_config().sku_from_page(page[:512])
    return None


def colour_of(tracker: Tracker, text: str) -> Optional[str]:
    value = entity(tracker, "color") or None
    colours = shop_config().colours
    for zh, en in colours.items():
        if (value and value in (zh, en, zh.rstrip("色"))) or zh in text or re.search(rf"\b{re.escape(en)}\b", text, re.I):
            return zh
    return value


def size_for(product: ProductView, wanted: Optional[str]) -> Optional[str]:
    """The product's own spelling of the size the shopper gave ("42" → "42码")."""
    if not wanted:
        return None
    w = wanted.strip().upper().replace("码", "").replace("SIZE", "").strip()
    for s in product.sizes:
        if s.upper().replace("码", "") == w:
            return s
    return wanted


def size_of(tracker: Tracker, text: str) -> Optional[str]:
    value = entity(tracker, "size")
    if value:
        return value
    m = re.search(r"(\d{2}(?:\.5)?)\s*码|size\s*(\d{2}(?:\.5)?|XS|S|M|L|XL|XXL)\b|\b(XS|XL|XXL)\b", text, re.I)
    return next((g for g in m.groups() if g), None) if m else None


def shown_size(size: str, lang: str) -> str:
    return size.replace("码", "") if lang == "en" else size


def stock_line(product: ProductView, lang: str, size: Optional[str], colour: Optional[str]) -> tuple[str, int]:
    """What the stock of this size/colour is, and the units (0 when it does not exist or is sold out)."""
    cfg = shop_config()
    units = product.stock_of(size, colour)
    zh_what = f"{colour or ''}{size or ''}"
    en_what = " ".join(x for x in (cfg.colours.get(colour or "", colour), f"size {shown_size(size, 'en')}" if size else None) if x)
    if size and product.sizes and size not in product.sizes:
        return t(lang, f"这款没有{size}，可选尺码：{'、'.join(product.sizes)}。",
                 f"It doesn't come in size {shown_size(size, 'en')}; sizes: "
                 f"{', '.join(shown_size(x, 'en') for x in product.sizes)}."), 0
    if colour and product.colours and colour not in product.colours:
        return t(lang, f"这款没有{colour}，可选颜色：{'、'.join(product.colours)}。",
                 f"It doesn't come in {en_what}; colours: {', '.join(cfg.colours.get(c, c) for c in product.colours)}."), 0
    if units <= 0:
        return t(lang, f"{zh_what}暂时缺货。", f"{en_what + ' is' if en_what else 'It is'} out of stock right now."), 0
    if units < 10:
        return t(lang, f"{zh_what}仅剩 {units} 件。", f"{en_what + ': o' if en_what else 'O'}nly {units} left."), units
    return t(lang, f"{zh_what}有货（{units} 件）。", f"{en_what + ': i' if en_what else 'I'}n stock ({units})."), units


def in_stock_variants(product: ProductView, lang: str, colour: Optional[str]) -> str:
    """The sizes still in stock, when some are not (all in stock needs no list)."""
    if not product.variants:
        return ""
    relevant = [v for v in product.variants if colour is None or v.colour == colour]
    sizes = sorted({v.size for v in relevant if v.stock > 0},
                   key=lambda s: product.sizes.index(s) if s in product.sizes else 99)
    every = {v.size for v in relevant}
    if not sizes or len(sizes) == len(every):
        return ""
    return t(lang, f"有货尺码：{'、'.join(sizes)}。", f"Sizes in stock: {', '.join(shown_size(x, 'en') for x in sizes)}.")


def specs_line(product: ProductView, lang: str) -> str:
    attrs = product.attributes or {}
    parts = []
    if attrs.get("material"):
        parts.append(t(lang, f"材质：{attrs['material']}", f"material: {attrs['material']}"))
    if attrs.get("level"):
        parts.append(t(lang, f"定位：{attrs['level']}", f"level: {attrs['level']}"))
    for key, value in attrs.items():
        if key not in ("material", "level") and isinstance(value, (str, int, float)):
            parts.append(f"{key}: {value}")
    return ("；" if lang != "en" else "; ").join(parts)


def card(product: ProductView, lang: str, subtitle: str, buttons: list[dict[str, str]]) -> dict[str, Any]:
    return {"title": product.title(lang), "subtitle": subtitle, "image_url": product.images[0] if product.images else None,
            "sku": product.sku, "buttons": buttons}


def view_button(product: ProductView, lang: str) -> dict[str, str]:
    return {"title": t(lang, "看这款", "This one"), "payload": f'/product_inquiry{{"product_sku": "{product.sku}"}}'}


def restock_button(product: ProductView, lang: str, size: Optional[str], colour: Optional[str]) -> dict[str, str]:
    extra = "".join(f', "{k}": "{v}"' for k, v in (("size", size), ("color", colour)) if v)
    return {"title": t(lang, "到货通知我", "Notify me when back"),
            "payload": f'/restock_subscribe{{"product_sku": "{product.sku}"{extra}}}'}


class ActionProductInfo(Action):
    def name(self) -> str:
        return "action_product_info"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        text = tracker.latest_message.get("text") or ""
        shop = get_shop()
        try:
            index = await finder(shop)
            # ~10 ms of CPU on the demo's 360 products (benchmarks/shop_products.py): off the event loop
            matches = await asyncio.to_thread(self.resolve, index, tracker, text)
            if not matches:
                return await self.fit_need(dispatcher, tracker, index, text, lang)
            fresh = {p.sku: p for p in await shop.products([m.product.sku for m in matches])}
            products = [fresh[m.product.sku] for m in matches if m.product.sku in fresh]
        except ShopError as e:
            unavailable(dispatcher, tracker, "product question", e)
            return []
        if not products:
            dispatcher.utter_message(response="utter_product_inquiry")
            return []
        if len(products) >= 2 and wants_comparison(text):
            return self.compare(dispatcher, products[:3], lang)
        if len(products) >= 2:
            return self.which_one(dispatcher, products, lang)
        return await self.answer(dispatcher, tracker, index, products[0], text, lang)

    def resolve(self, index: ProductFinder, tracker: Tracker, text: str) -> list[Match]:
        sku = entity(tracker, "product_sku")
        if sku and sku in index.by_sku:
            return [Match(index.by_sku[sku], 1.0, "sku")]
        found = index.search(text)
        if found and not (len(found) == 1 and wants_comparison(text)):
            return found
        shown = tracker.get_slot("shown_products") or []
        context = index.from_context(text, shown=[str(s) for s in shown] if isinstance(shown, list) else [],
                                     card=tracker.get_slot("product_sku"), page=page_sku(tracker),
                                     colour=colour_of(tracker, text))
        if found and wants_comparison(text):  # "compare X with the one you showed me"
            return found + [m for m in context if m.product.sku != found[0].product.sku][:2]
        return context

    async def answer(self, dispatcher: CollectingDispatcher, tracker: Tracker, index: ProductFinder,
                     product: ProductView, text: str, lang: str) -> list[dict[str, Any]]:
        cfg = shop_config()
        size = size_for(product, size_of(tracker, text))
        colour = colour_of(tracker, text)
        if colour and colour not in product.colours and not product.colours:
            colour = None
        stock_text, units = stock_line(product, lang, size, colour)
        lines = [t(lang, f"{product.title(lang)}：{cfg.money(product.price_cents)}。",
                   f"{product.title(lang)}: {cfg.money(product.price_cents)}.")]
        lines.append(stock_text)
        if units <= 0 or not (size or colour):
            more = in_stock_variants(product, lang, colour)
            if more:
                lines.append(more)
        specs = specs_line(product, lang)
        if specs and (ASKS_SPECS.search(text) or not (ASKS_PRICE.search(text) or ASKS_STOCK.search(text))):
            lines.append(specs + ("。" if lang != "en" else "."))
        if product.colours and not colour:
            lines.append(t(lang, f"颜色：{'、'.join(product.colours)}。",
                           f"Colours: {', '.join(cfg.colours.get(c, c) for c in product.colours)}."))
        buttons: list[dict[str, str]] = []
        shown = [product.sku]
        if units <= 0:
            buttons.append(restock_button(product, lang, size, colour))
            alternatives = self.alternatives(index, product, size)
            if alternatives:
                lines.append(t(lang, "同类有货的还有：", "In stock and similar:") + " " +
                             ("、" if lang != "en" else ", ").join(
                                 f"{a.title(lang)}（{cfg.money(a.price_cents)}）" if lang != "en"
                                 else f"{a.title(lang)} ({cfg.money(a.price_cents)})" for a in alternatives))
                shown += [a.sku for a in alternatives]
        elements = [card(product, lang, f"{cfg.money(product.price_cents)} · {stock_text}", buttons)]
        if units <= 0:
            elements += [card(a, lang, cfg.money(a.price_cents), [view_button(a, lang)])
                         for a in self.alternatives(index, product, size)]
        dispatcher.utter_message(text="".join(lines) if lang != "en" else " ".join(lines),
                                 attachment={"type": "template", "payload": {"template_type": "generic",
                                                                             "elements": elements}})
        logger.debug("Answered product %s in conversation %s", product.sku, conversation(tracker))
        return [SlotSet("product_sku", product.sku), SlotSet("shown_products", shown)]

    @staticmethod
    def alternatives(index: ProductFinder, product: ProductView, size: Optional[str], k: int = 2) -> list[ProductView]:
        """Same category, in stock (in the size asked for, if any), nearest in price."""
        same = [p for p in index.products if p.category == product.category and p.sku != product.sku
                and p.stock_of(size_for(p, size) if size else None) > 0]
        same.sort(key=lambda p: (abs(p.price_cents - product.price_cents), p.sku))
        return same[:k]

    def compare(self, dispatcher: CollectingDispatcher, products: list[ProductView], lang: str) -> list[dict[str, Any]]:
        cfg = shop_config()
        rows = [
            (t(lang, "价格", "Price"), [cfg.money(p.price_cents) for p in products]),
            (t(lang, "库存", "Stock"), [str(p.stock) for p in products]),
            (t(lang, "材质", "Material"), [str(p.attributes.get("material", "-")) for p in products]),
            (t(lang, "定位", "Level"), [str(p.attributes.get("level", "-")) for p in products]),
            (t(lang, "颜色", "Colours"), [("/".join(p.colours) if lang != "en" else "/".join(cfg.colours.get(c, c) for c in p.colours)) or "-"
                                        for p in products]),
            (t(lang, "尺码", "Sizes"), [f"{p.sizes[0]}–{p.sizes[-1]}" if len(p.sizes) > 1 else (p.sizes[0] if p.sizes else "-")
                                      for p in products]),
        ]
        header = " | ".join([t(lang, "对比", "Compare")] + [p.title(lang) for p in products])
        table = "\n".join(" | ".join([name] + values) for name, values in rows)
        cheapest = min(products, key=lambda p: p.price_cents)
        summary = t(lang, f"最实惠的是{cheapest.title(lang)}。", f"{cheapest.title(lang)} is the most affordable.")
        dispatcher.utter_message(
            text=f"{header}\n{table}\n{summary}",
            custom={"comparison": {"skus": [p.sku for p in products], "columns": [p.title(lang) for p in products],
                                   "rows": [{"name": n, "values": v} for n, v in rows]}})
        return [SlotSet("shown_products", [p.sku for p in products]), SlotSet("product_sku", None)]

    def which_one(self, dispatcher: CollectingDispatcher, products: list[ProductView], lang: str) -> list[dict[str, Any]]:
        cfg = shop_config()
        dispatcher.utter_message(
            text=t(lang, "您问的是哪一款？", "Which one do you mean?") + "\n" + "\n".join(
                f"{i}. {p.title(lang)} {cfg.money(p.price_cents)}" for i, p in enumerate(products, start=1)),
            buttons=[view_button(p, lang) | {"title": p.title(lang)} for p in products])
        return [SlotSet("shown_products", [p.sku for p in products])]

    async def fit_need(self, dispatcher: CollectingDispatcher, tracker: Tracker, index: ProductFinder, text: str,
                       lang: str) -> list[dict[str, Any]]:
        """No product named: pick products that fit the need (category, budget, level) from the catalogue."""
        cfg = shop_config()
        lowered = text.lower()
        category = None
        wanted_words = [entity(tracker, "category"), entity(tracker, "product")]
        for c in cfg.categories:
            words = [c.name.zh, c.name.en.lower(), *[w.lower() for w in c.words]]
            if any(w and w in lowered for w in words) or any(v and v in words for v in wanted_words):
                category = c.code
                break
        m = BUDGET.search(text)
        budget = int(next(g for g in m.groups() if g)) * 100 if m else None
        level = next((v for k, v in LEVELS.items() if k in lowered), None)
        if category is None and budget is None and level is None:
            dispatcher.utter_message(response="utter_product_inquiry")
            return []
        pool = [p for p in index.products if p.stock > 0 and (category is None or p.category == category)
                and (budget is None or p.price_cents <= budget)]
        pool.sort(key=lambda p: (level is not None and p.attributes.get("level") != level, -p.stock, p.price_cents))
        picks = pool[:3]
        if not picks:
            dispatcher.utter_message(text=t(lang, "暂时没有符合条件的有货商品，换个预算或品类试试？",
                                            "Nothing in stock fits that right now. Try another budget or category?"))
            return []
        lines = [f"· {p.title(lang)} {cfg.money(p.price_cents)}" + (f"（{p.attributes.get('level')}）" if lang != "en"
                 and p.attributes.get("level") else "") for p in picks]
        dispatcher.utter_message(
            text=t(lang, "按您的需求，这几款比较合适：", "These fit what you're after:") + "\n" + "\n".join(lines),
            attachment={"type": "template", "payload": {"template_type": "generic", "elements": [
                card(p, lang, cfg.money(p.price_cents), [view_button(p, lang)]) for p in picks]}})
        return [SlotSet("shown_products", [p.sku for p in picks])]


class ActionRestockSubscribe(Action):
    """The "notify me" button: remember the conversation; the `restock_notice` journey sends the notice."""

    def name(self) -> str:
        return "action_restock_subscribe"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        sku = entity(tracker, "product_sku") or tracker.get_slot("product_sku")
        shop = get_shop()
        try:
            found = await shop.products([sku]) if sku else []
            if not found:
                dispatcher.utter_message(response="utter_product_inquiry")
                return []
            product = found[0]
            size = size_for(product, entity(tracker, "size"))
            colour = entity(tracker, "color")
            customer = await identified_customer(tracker)
            new = await shop.subscribe_restock(product.sku, size=size, colour=colour, sender_id=tracker.sender_id,
                                               customer_id=customer.id if customer else None, now=now())
        except ShopError as e:
            unavailable(dispatcher, tracker, "restock subscription", e)
            return []
        shown_colour = shop_config().colours.get(colour or "", colour) if lang == "en" else colour
        what = " ".join(x for x in (product.title(lang), shown_colour, size) if x)
        if new:
            dispatcher.utter_message(text=t(lang, f"好的，{what} 到货后我第一时间通知您。",
                                            f"Done: I'll message you as soon as {what} is back in stock."))
        else:
            dispatcher.utter_message(text=t(lang, f"您已经登记过 {what} 的到货提醒啦，到货会通知您。",
                                            f"You're already on the list for {what}; I'll tell you when it's back."))
        return [SlotSet("product_sku", product.sku)]
