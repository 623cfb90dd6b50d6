"""Coupons issued in chat and by journeys, points redemption, membership tiers.

A journey step names one of the `action_coupon_*` actions (triggers.yml); each issues
its shop.yml template once per customer and journey step (issue key
`journey:<journey>:<step>`), so a retried or repeated send shows the same code. The
message carries the code and the terms. Redemption (`ShopStore.redeem_coupon`)
publishes `coupon_redeemed` with the journey and step, which the journeys count as
their conversion.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import day, identified_customer, language, now, t, unavailable
from actions.shop import ShopError, get_shop, rules
from actions.shop.base import CouponTemplateView, CouponView
from actions.shop.config import shop_config
from actions.shop.loyalty import membership

logger = logging.getLogger(__name__)


def coupon_text(lang: str, coupon: CouponView, template: Optional[CouponTemplateView]) -> str:
    """The code, what it is worth and its terms, in the shopper's language."""
    title = coupon.title_en if lang == "en" else coupon.title_zh
    terms = (template.terms_en if lang == "en" else template.terms_zh) if template else ""
    return t(lang, f"优惠券「{title}」，券码 {coupon.code}，{day(lang, coupon.valid_until)}前有效" + (f"（{terms}）" if terms else "") + "。",
             f"Coupon \"{title}\", code {coupon.code}, valid until {day(lang, coupon.valid_until)}" +
             (f" ({terms})" if terms else "") + ".")


def coupon_template_data(lang: str, coupon: CouponView, template: Optional[CouponTemplateView]) -> dict[str, str]:
    """The coupon as WeChat template fields: a step sent outside the 48-hour window goes out as the
    step's `template:`, and the engine (bot/triggers/senders.py) fills it from these, so the template
    carries the same code and terms as the in-window message (the coupon is issued before the send path
    is chosen)."""
    terms = (template.terms_en if lang == "en" else template.terms_zh) if template else ""
    return {"coupon_code": coupon.code, "coupon_title": coupon.title_en if lang == "en" else coupon.title_zh,
            "coupon_value": shop_config().money(coupon.amount_cents), "coupon_expiry": day(lang, coupon.valid_until),
            "coupon_terms": terms}


class JourneyCouponAction:
    """Issue `template` once per customer for `journey`/`step`, then say so with the code and terms.

    A mixin, not an Action: rasa_sdk registers every Action subclass, and this one has no name.
    """

    journey = ""
    step = ""
    template = ""

    def intro(self, lang: str, tracker: Tracker) -> str:
        return ""

    def without_customer(self, lang: str, tracker: Tracker) -> str:
        """What to say when the shop cannot tell who this is (no coupon can be issued)."""
        return self.intro(lang, tracker)

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        try:
            customer = await identified_customer(tracker)
            if customer is None:
                dispatcher.utter_message(text=self.without_customer(lang, tracker))
                return []
            result = await get_shop().issue_coupon(customer.id, self.template,
                                                   issue_key=f"journey:{self.journey}:{self.step}",
                                                   issued_by=f"journey:{self.journey}:{self.step}", now=now())
        except ShopError as e:
            unavailable(dispatcher, tracker, f"coupon for {self.journey}", e)
            return []
        if not result.ok or result.coupon is None:
            logger.error("Journey %s could not issue coupon template %s: %s", self.journey, self.template, result.code)
            dispatcher.utter_message(text=self.without_customer(lang, tracker))
            return []
        dispatcher.utter_message(text=self.intro(lang, tracker) + coupon_text(lang, result.coupon, result.template),
                                 custom={"coupon": {"code": result.coupon.code, "template": self.template,
                                                    "journey": self.journey, "step": self.step},
                                         "template_data": coupon_template_data(lang, result.coupon, result.template)})
        return []


class ActionCouponCartReminder(JourneyCouponAction, Action):
    journey, step, template = "abandoned_cart", "reminder", "CART10"

    def name(self) -> str:
        return "action_coupon_cart_reminder"

    def intro(self, lang: str, tracker: Tracker) -> str:
        product = tracker.get_slot("product") or t(lang, "心仪商品", "item")
        return t(lang, f"亲，您购物车里的{product}还在哦！送您一张", f"Your {product} is still in your cart! Here's a ")

    def without_customer(self, lang: str, tracker: Tracker) -> str:
        product = tracker.get_slot("product") or t(lang, "心仪商品", "item")
        return t(lang, f"亲，您购物车里的{product}还在等您哦～", f"Your {product} is still waiting in your cart.")


class ActionCouponBirthday(JourneyCouponAction, Action):
    journey, step, template = "birthday", "greeting", "BDAY30"

    def name(self) -> str:
        return "action_coupon_birthday"

    def intro(self, lang: str, tracker: Tracker) -> str:
        return t(lang, "生日快乐！🎂 送您一张", "Happy birthday! 🎂 Here's a ")

    def without_customer(self, lang: str, tracker: Tracker) -> str:
        return t(lang, "生日快乐！🎂 祝您运动快乐、身体健康～", "Happy birthday! 🎂 Stay active and healthy!")


class ActionCouponWelcome(JourneyCouponAction, Action):
    journey, step, template = "welcome", "first_order_coupon", "WELCOME20"

    def name(self) -> str:
        return "action_coupon_welcome"

    def intro(self, lang: str, tracker: Tracker) -> str:
        return t(lang, "欢迎加入！新人礼已到账：", "Welcome aboard! Your welcome gift: ")

    def without_customer(self, lang: str, tracker: Tracker) -> str:
        return t(lang, "欢迎加入！有任何问题随时问我～", "Welcome aboard! Ask me anything, any time.")


def redeem_buttons(lang: str) -> list[dict[str, str]]:
    cfg = shop_config()
    return [{"title": t(lang, f"{tpl.points_cost}积分换{tpl.title.zh}", f"{tpl.title.en} for {tpl.points_cost} pts"),
             "payload": f'/redeem_points{{"coupon_template": "{tpl.code}"}}'}
            for tpl in cfg.coupon_templates.values() if tpl.points_cost]


class ActionMembership(Action):
    """Points balance, tier, what the next tier needs, and the coupons points buy."""

    def name(self) -> str:
        return "action_points"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        cfg = shop_config()
        try:
            customer = await identified_customer(tracker)
            if customer is None:
                dispatcher.utter_message(response="utter_points_info")
                return []
            entries = await get_shop().points(customer.id)
        except ShopError as e:
            unavailable(dispatcher, tracker, "points", e)
            return []
        summary = rules.points_summary(entries, now())
        member = membership(cfg, entries)
        text = t(lang, f"您是{member.tier.name.zh}，当前 {summary.balance} 积分。",
                 f"You're a {member.tier.name.en} member with {summary.balance} points.")
        if summary.expiring and summary.next_expiry:
            text += t(lang, f"其中 {summary.expiring} 积分将于{day(lang, summary.next_expiry)}过期。",
                      f" {summary.expiring} of them expire on {day(lang, summary.next_expiry)}.")
        if member.tier.benefits.zh:
            text += t(lang, f"会员权益：{member.tier.benefits.zh}。", f" Benefits: {member.tier.benefits.en}.")
        if member.next_tier:
            text += t(lang, f"再累计 {member.points_to_next} 积分升级为{member.next_tier.name.zh}。",
                      f" {member.points_to_next} more points to {member.next_tier.name.en}.")
        buttons = redeem_buttons(lang)
        if buttons:
            text += t(lang, "积分可兑换优惠券：", " Points buy coupons:")
        dispatcher.utter_message(text=text, buttons=buttons)
        return []


class ActionRedeemPoints(Action):
    """Spend points on a coupon template (balance checked in the shop's transaction; ledger entry kept)."""

    def name(self) -> str:
        return "action_redeem_points"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        template = next((str(e.get("value")) for e in tracker.latest_message.get("entities") or []
                         if e.get("entity") == "coupon_template"), None)
        cfg = shop_config()
        if template is None:
            m = re.search(r"(\d+)\s*(?:元|块|yuan)", tracker.latest_message.get("text") or "")
            wanted = int(m.group(1)) * 100 if m else None
            template = next((c.code for c in cfg.coupon_templates.values()
                             if c.points_cost and (wanted is None or c.amount_cents == wanted)), None)
        if template is None:
            dispatcher.utter_message(text=t(lang, "目前没有可用积分兑换的优惠券。", "No coupons can be bought with points right now."))
            return []
        try:
            customer = await identified_customer(tracker)
            if customer is None:
                dispatcher.utter_message(response="utter_points_info")
                return []
            key = f"points:{template}:{tracker.sender_id}:{turn_id(tracker)}"
            result = await get_shop().redeem_points(customer.id, template, issue_key=key[:96], now=now())
        except ShopError as e:
            unavailable(dispatcher, tracker, "points redemption", e)
            return []
        if result.code == "insufficient_points":
            cost = result.template.points_cost if result.template else 0
            dispatcher.utter_message(text=t(lang, f"积分不足：兑换需要 {cost} 积分，您现有 {result.balance} 积分。",
                                            f"Not enough points: it takes {cost}, you have {result.balance}."))
            return []
        if not result.ok or result.coupon is None:
            dispatcher.utter_message(text=t(lang, "这张券不能用积分兑换。", "That coupon can't be bought with points."))
            return []
        dispatcher.utter_message(text=t(lang, "兑换成功！", "Done! ") + coupon_text(lang, result.coupon, result.template) +
                                 t(lang, f"剩余 {result.balance} 积分。", f" {result.balance} points left."))
        return []


def turn_id(tracker: Tracker) -> str:
    """This user message's id (message_id, else its timestamp): one redemption per message, however often it runs."""
    latest = tracker.latest_message or {}
    if latest.get("message_id"):
        return str(latest["message_id"])
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            return str(event.get("message_id") or event.get("timestamp") or "")
    return ""
