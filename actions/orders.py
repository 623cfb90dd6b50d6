"""Order look-up and after-sales actions over the shop data layer.

`action_order_request` answers what the order form collected (`order_request`:
status, cancel, change_address, return, exchange, refund) once the shopper is
verified. Changes are two-step: this action checks the rules and asks (confirm
the cancel, the new address, the return reason) and sets `pending_change`;
`action_apply_order_change` then makes the change in one data-layer transaction,
which also writes the behaviour event to the shop outbox, and returns the event
to the bot as the `last_shop_event` slot. Replies follow the `language` slot.

Without an order id the form may have collected a phone instead: the shopper's
recent orders on it are offered as buttons (one order: answered straight away),
but only once the phone look-up is verified (`rules.phone_lookup_orders`).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    STATUS_TEXT,
    carrier,
    conversation,
    day,
    identified_customer,
    identity_customer,
    items,
    language,
    locked_text,
    moment,
    money,
    now,
    owns_order,
    t,
    unavailable,
    verified_orders,
)
from actions.shop import ShopError, get_shop, mask_address, mask_phone
from actions.shop import rules
from actions.shop.attempts import get_limiter
from actions.shop.base import OrderView

logger = logging.getLogger(__name__)

REQUESTS = ("status", "cancel", "change_address", "return", "exchange", "refund")
# The intent a "which order?" button triggers for each request (payload `/intent{"order_id": ...}`).
REQUEST_INTENTS = {"status": "order_status", "cancel": "cancel_order", "change_address": "change_address",
                   "return": "return_request", "exchange": "exchange_request", "refund": "refund_status"}
REASONS = (("size", "尺码不合适", "wrong size"), ("quality", "质量问题", "quality problem"),
           ("dislike", "不喜欢/与描述不符", "not as expected"), ("other", "其他原因", "other reason"))


def _reset() -> list[dict[str, Any]]:
    return [SlotSet(name, None) for name in
            ("order_id", "order_request", "phone_last4", "pending_change", "return_reason", "verify_attempts",
             "phone", "recipient_name")]


class ActionOrderRequest(Action):
    """Looks the order up, checks verification and the rules, answers or asks to confirm."""

    def name(self) -> str:
        return "action_order_request"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        order_id = tracker.get_slot("order_id")
        request = tracker.get_slot("order_request")
        request = request if request in REQUESTS else "status"
        if not order_id:
            if tracker.get_slot("phone"):
                return await self._by_phone(dispatcher, tracker, lang, request)
            dispatcher.utter_message(response="utter_order_request_failed")
            return _reset()
        try:
            order = await get_shop().find_order(order_id)
            if order is None:
                await _offer_recent_orders(dispatcher, tracker, lang, order_id)
                return _reset()
            if not await owns_order(tracker, order):
                logger.info("Unverified request for an order in conversation %s refused", conversation(tracker))
                if await get_limiter().locked(now=now(), order_id=order.id, phone=order.ship_phone):
                    dispatcher.utter_message(text=locked_text(lang))
                else:
                    dispatcher.utter_message(response="utter_not_verified")
                return _reset()
        except ShopError as e:
            unavailable(dispatcher, tracker, f"order {request}", e)
            return _reset()
        return answer(dispatcher, order, request, lang)

    async def _by_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, request: str
    ) -> list[dict[str, Any]]:
        """Verified phone look-up: one order → answered; several → buttons; unverified → nothing."""
        phone = str(tracker.get_slot("phone"))
        shop = get_shop()
        current = now()
        verified = set(verified_orders(tracker))
        try:
            owner = await identity_customer(tracker)
            owns_phone = owner is not None and rules.normalise_phone(owner.phone) == phone
            if not owns_phone and not (tracker.get_slot("recipient_name") and verified):
                logger.info("Unverified phone look-up (%s) refused in conversation %s", mask_phone(phone), conversation(tracker))
                dispatcher.utter_message(response="utter_not_verified_phone")
                return _reset()
            if owns_phone:
                owner_id = owner.id

                def rule(rows: list[OrderView]) -> list[OrderView]:
                    return rules.phone_lookup_orders(rows, now=current, customer_id=owner_id)
            else:
                recipient = tracker.get_slot("recipient_name")

                def rule(rows: list[OrderView]) -> list[OrderView]:
                    return [o for o in rules.phone_lookup_orders(rows, now=current, recipient=recipient) if o.id in verified]
            # The rule runs on light rows (no lines or tracking); full views only for the ≤ 5 shown.
            shown = await shop.orders_by_phone(phone, since=current - rules.PHONE_LOOKUP_WINDOW, limit=20, keep=rule)
        except ShopError as e:
            unavailable(dispatcher, tracker, f"phone look-up for {request}", e)
            return _reset()
        if not shown:
            dispatcher.utter_message(text=t(
                lang, f"手机号 {mask_phone(phone)} 近 {rules.PHONE_LOOKUP_WINDOW.days} 天没有查到订单。可以提供订单号，或回复“人工”让客服帮您查。",
                f"I found no orders on {mask_phone(phone)} in the last {rules.PHONE_LOOKUP_WINDOW.days} days. "
                "Please give the order number, or type 'agent' and a colleague will look."))
            return _reset()
        logger.info("Phone look-up (%s) found %d order(s) in conversation %s", mask_phone(phone), len(shown), conversation(tracker))
        if len(shown) == 1:
            # the one order becomes the form's order, so a confirmation that follows applies to it
            return [SlotSet("phone", None), SlotSet("recipient_name", None), SlotSet("order_id", shown[0].id)] + answer(
                dispatcher, shown[0], request, lang)
        intent = REQUEST_INTENTS.get(request, "order_status")
        dispatcher.utter_message(
            text=t(lang, f"手机号 {mask_phone(phone)} 最近有 {len(shown)} 个订单，您要查哪一个？",
                   f"There are {len(shown)} recent orders on {mask_phone(phone)}. Which one?"),
            buttons=[{"title": f"{o.id} {day(lang, o.created_at)} {money(o.total_cents)} {_first_item(o, lang)}",
                      "payload": f'/{intent}{{"order_id": "{o.id}"}}'} for o in shown])
        return _reset()


def _first_item(order: OrderView, lang: str) -> str:
    if not order.lines:
        return ""
    line = order.lines[0]
    title = line.title_en if lang == "en" else line.title_zh
    more = len(order.lines) - 1
    return title + (t(lang, f" 等{more + 1}件", f" +{more}") if more else "")


def answer(dispatcher: CollectingDispatcher, order: OrderView, request: str, lang: str) -> list[dict[str, Any]]:
    """The verified shopper's request on `order`: the answer, or the question before a change."""
    current = now()
    if request == "status":
        dispatcher.utter_message(text=status_text(order, lang))
    elif request == "refund":
        dispatcher.utter_message(text=refund_text(order, lang))
    elif request in ("cancel", "change_address"):
        decision = rules.can_cancel(order) if request == "cancel" else rules.can_change_address(order)
        if not decision.allowed:
            dispatcher.utter_message(text=refusal_text(order, decision.code, lang, request))
            return _reset()
        if request == "cancel":
            dispatcher.utter_message(
                text=t(lang, f"确认要取消订单 {order.id} 吗？商品：{items(lang, order)}，"
                             f"取消后 {money(order.total_cents)} 原路退回，优惠券退还。",
                       f"Cancel order {order.id} ({items(lang, order)})? {money(order.total_cents)} goes back "
                       "to your payment method and any coupon is returned."),
                buttons=[{"title": t(lang, "确认取消", "Yes, cancel"), "payload": "/affirm"},
                         {"title": t(lang, "不取消了", "No, keep it"), "payload": "/deny"}])
        else:
            dispatcher.utter_message(text=t(
                lang, f"订单 {order.id} 还没发货，可以改地址（当前：{mask_address(order.ship_address)}）。请直接发送新的收货地址。",
                f"Order {order.id} hasn't shipped, so the address can change (now: {mask_address(order.ship_address)}). "
                "Please send the new delivery address."))
        return [SlotSet("pending_change", True)]
    else:  # return | exchange
        decision = rules.can_request_after_sale(order, request, current)
        if not decision.allowed:
            dispatcher.utter_message(text=refusal_text(order, decision.code, lang, request))
            return _reset()
        word = t(lang, "退货" if request == "return" else "换货", request)
        dispatcher.utter_message(
            text=t(lang, f"订单 {order.id} 可以申请{word}（还剩 {decision.days_left} 天）。请问{word}原因是？",
                   f"Order {order.id} can be sent back for {word} ({decision.days_left} day(s) left). What is the reason?"),
            buttons=[{"title": t(lang, zh, en), "payload": f'/inform{{"return_reason": "{code}"}}'}
                     for code, zh, en in REASONS])
        return [SlotSet("pending_change", True)]
    return _reset()


class ActionApplyOrderChange(Action):
    """Makes the confirmed change (one transaction + outbox event), or drops it on 'no'."""

    def name(self) -> str:
        return "action_apply_order_change"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        lang = language(tracker)
        order_id = tracker.get_slot("order_id")
        request = tracker.get_slot("order_request")
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if not tracker.get_slot("pending_change") or not order_id or request not in REQUESTS:
            dispatcher.utter_message(response="utter_anything_else")
            return _reset()
        if intent == "deny":
            dispatcher.utter_message(text=t(lang, f"好的，订单 {order_id} 没有做任何更改。", f"OK, order {order_id} is unchanged."))
            return _reset()
        text = (tracker.latest_message.get("text") or "").strip()
        shop = get_shop()
        try:
            order = await shop.find_order(order_id)
            if order is None or not await owns_order(tracker, order):
                dispatcher.utter_message(response="utter_not_verified")
                return _reset()
            if request == "cancel":
                if intent != "affirm":
                    dispatcher.utter_message(text=t(lang, "没有确认，订单保持不变。", "Not confirmed; the order is unchanged."))
                    return _reset()
                result = await shop.cancel_order(order_id, sender_id=tracker.sender_id, now=now())
            elif request == "change_address":
                if len(text) < 8 or text.startswith("/"):
                    dispatcher.utter_message(text=t(lang, "地址好像不完整，请发送省市区、街道和门牌号。",
                                                    "That address looks incomplete: please send city, street and number."))
                    return []  # still pending: the next message is the address
                result = await shop.change_address(order_id, text, sender_id=tracker.sender_id, now=now())
            else:
                code = tracker.get_slot("return_reason")
                reason = next((zh for c, zh, _en in REASONS if c == code), None) or text[:200] or "未说明"
                result = await shop.request_after_sale(order_id, request, reason, sender_id=tracker.sender_id, now=now())
        except ShopError as e:
            unavailable(dispatcher, tracker, f"apply {request}", e)  # one transaction: nothing half-changed
            return _reset()
        if not result.ok:
            dispatcher.utter_message(text=refusal_text(result.order or order, result.code, lang, request))
            return _reset()
        dispatcher.utter_message(text=_done_text(request, result.order or order, lang, result.event or {}))
        logger.info("%s for order in conversation %s", (result.event or {}).get("event"), conversation(tracker))
        return _reset() + [SlotSet("last_shop_event", result.event)]


def _done_text(request: str, order: OrderView, lang: str, event: dict[str, Any]) -> str:
    oid = order.id
    if request == "cancel":
        refund = event.get("data", {}).get("refund_cents", 0)
        return t(lang, f"订单 {oid} 已取消。" + (f"{money(refund)} 将在 1–3 个工作日内原路退回。" if refund else "") + "库存和优惠券已恢复。",
                 f"Order {oid} is cancelled." + (f" {money(refund)} returns to your payment method within 1–3 working days." if refund else "")
                 + " Any coupon is back in your account.")
    if request == "change_address":
        return t(lang, f"订单 {oid} 的收货地址已改为：{mask_address(order.ship_address)}。",
                 f"Order {oid} will now go to: {mask_address(order.ship_address)}.")
    record = event.get("data", {}).get("after_sale_id")
    if request == "return":
        refund = event.get("data", {}).get("refund_cents", 0)
        return t(lang, f"退货申请已提交（售后单号 R{record}）。下一步：3 天内把商品连同吊牌寄回，填写运单号后，"
                       f"我们收到货 1–3 个工作日内退款 {money(refund)}。",
                 f"Return request R{record} is filed. Next step: send the items back with their tags within 3 days and "
                 f"enter the tracking number; {money(refund)} is refunded 1–3 working days after they arrive.")
    return t(lang, f"换货申请已提交（售后单号 R{record}）。下一步：在订单页选择新的尺码或颜色，3 天内寄回原商品，收到后马上发出新的。",
             f"Exchange request R{record} is filed. Next step: choose the new size or colour on the order page and send "
             "the item back within 3 days; the new one ships as soon as it arrives.")


async def _offer_recent_orders(dispatcher: CollectingDispatcher, tracker: Tracker, lang: str, order_id: str) -> None:
    """Unknown id: the shopper's recent orders as buttons when we know who they are."""
    customer = await identified_customer(tracker)
    recent = await get_shop().recent_orders(customer.id, limit=4) if customer else []
    if not recent:
        dispatcher.utter_message(text=t(
            lang, f"抱歉，没有查到订单 {order_id}。麻烦核对一下订单号（E 加 11 位数字），或者回复“人工”让客服帮您查。",
            f"Sorry, I couldn't find order {order_id}. Please check the number (E followed by 11 digits), "
            "or type 'agent' and a colleague will look it up."))
        return
    dispatcher.utter_message(
        text=t(lang, f"没有查到订单 {order_id}。您最近的订单是这些，要查哪一个？", f"I couldn't find order {order_id}. "
               "Here are your recent orders: which one?"),
        buttons=[{"title": f"{o.id} {day(lang, o.created_at)} {money(o.total_cents)}",
                  "payload": f'/order_status{{"order_id": "{o.id}"}}'} for o in recent])


def status_text(order: OrderView, lang: str) -> str:
    zh_status, en_status = STATUS_TEXT.get(order.status, (order.status, order.status))
    parts = [t(lang, f"订单 {order.id}：{zh_status}。商品：{items(lang, order)}。",
               f"Order {order.id} is {en_status}. Items: {items(lang, order)}.")]
    if order.tracking_number:
        parts.append(t(lang, f"快递：{carrier(lang, order.carrier)} {order.tracking_number}。",
                       f" Carrier: {carrier(lang, order.carrier)}, tracking number {order.tracking_number}."))
    latest = order.latest_event
    if latest:
        parts.append(t(lang, f"最新物流：{moment(lang, latest.time)} {latest.text_zh}。",
                       f" Latest update: {moment(lang, latest.time)} {latest.text_en}."))
    if order.status == "shipped" and order.eta:
        parts.append(t(lang, f"预计{day(lang, order.eta)}送达。", f" Expected delivery: {day(lang, order.eta)}."))
    elif order.status == "paid":
        parts.append(t(lang, "预计 48 小时内发货。", " It ships within 48 hours."))
    elif order.status == "delivered" and order.delivered_at:
        parts.append(t(lang, f"签收时间：{day(lang, order.delivered_at)}。", f" Delivered on {day(lang, order.delivered_at)}."))
    return "".join(parts)


def refund_text(order: OrderView, lang: str) -> str:
    refund = order.refund
    if refund is None:
        return t(lang, f"订单 {order.id} 目前没有退款记录。如需退货退款，签收后 7 天内可以申请。",
                 f"There is no refund on order {order.id}. To get your money back, request a return within 7 days of delivery.")
    if refund.status == "completed" and refund.completed_at:
        return t(lang, f"订单 {order.id}：退款 {money(refund.amount_cents)} 已于{day(lang, refund.completed_at)}退回原支付账户。",
                 f"Order {order.id}: the refund of {money(refund.amount_cents)} was paid back on {day(lang, refund.completed_at)}.")
    return t(lang, f"订单 {order.id}：退款 {money(refund.amount_cents)} 正在处理中（{day(lang, refund.requested_at)}申请），1–3 个工作日到账。",
             f"Order {order.id}: the refund of {money(refund.amount_cents)} requested on {day(lang, refund.requested_at)} "
             "is being processed and arrives within 1–3 working days.")


def refusal_text(order: OrderView, code: str, lang: str, request: str) -> str:
    """Why a change is not possible, and what the shopper can do instead."""
    oid = order.id
    zh_word = {"cancel": "取消", "change_address": "修改地址", "return": "退货", "exchange": "换货"}.get(request, "处理")
    en_word = {"cancel": "cancelled", "change_address": "re-addressed", "return": "returned", "exchange": "exchanged"}.get(request, "changed")
    days = rules.after_sale_window(request).days if request in ("return", "exchange") else 7
    texts = {
        "already_shipped": (f"订单 {oid} 已经发货（{carrier(lang, order.carrier)} {order.tracking_number or ''}），无法{zh_word}了。"
                            "可以拒收快递，或签收后 7 天内申请退货；也可以回复“人工”请客服联系快递拦截。",
                            f"Order {oid} has already shipped ({carrier(lang, order.carrier)} {order.tracking_number or ''}), so it can't be "
                            f"{en_word}. You can refuse the parcel or return it within 7 days of delivery; type 'agent' to ask us to intercept it."),
        "already_delivered": (f"订单 {oid} 已签收，无法{zh_word}；签收后 7 天内可以申请退货。",
                              f"Order {oid} was delivered, so it can't be {en_word}; you can return it within 7 days of delivery."),
        "already_cancelled": (f"订单 {oid} 已取消，不需要{zh_word}。", f"Order {oid} is cancelled; nothing to do."),
        "not_shipped": (f"订单 {oid} 还没有发货，直接取消订单就好，不用办理{zh_word}。", f"Order {oid} hasn't shipped yet: simply cancel it instead."),
        "not_delivered": (f"订单 {oid} 还在运输途中，签收后 {days} 天内可以申请{zh_word}。",
                          f"Order {oid} is still on its way; once delivered you have {days} days to have it {en_word}."),
        "window_passed": (f"订单 {oid} 已超过签收后 {days} 天的{zh_word}期。如果是质量问题，回复“人工”，客服会帮您申请售后。",
                          f"Order {oid} is past the {days}-day window after delivery. If there is a quality problem, type 'agent' and a colleague will help."),
        "category_excluded": (f"订单 {oid} 的商品属于贴身/消耗类商品，不支持{zh_word}。如有质量问题请回复“人工”。",
                              f"The items in order {oid} are hygiene or consumable products and can't be {en_word}. "
                              "For a quality problem, type 'agent'."),
        "refund_in_progress": (f"订单 {oid} 已有一笔退款正在处理中，不需要重复申请。",
                               f"Order {oid} already has a refund in progress; no need to apply again."),
        "after_sale_open": (f"订单 {oid} 已有一个售后申请在处理中，不需要重复申请。",
                            f"Order {oid} already has an after-sales request in progress."),
    }
    zh, en = texts.get(code, (f"订单 {oid} 目前无法{zh_word}，回复“人工”让客服帮您看看。",
                              f"Order {oid} can't be {en_word} right now; type 'agent' and a colleague will help."))
    return t(lang, zh, en)


__all__ = ["ActionApplyOrderChange", "ActionOrderRequest", "re"]
