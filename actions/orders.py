"""`action_order_request`: answer the order question the order form collected.

The form stores the order id; `order_request` says which intent opened the form
(status, cancel, change_address, return, exchange, refund). Replies follow the
`language` slot (zh default, en). Afterwards both slots are cleared so the next
order question starts afresh.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import shop_data
from actions.shop_data import Order

logger = logging.getLogger(__name__)

RETURN_WINDOW = timedelta(days=7)
EXCHANGE_WINDOW = timedelta(days=15)
CARRIER_NAMES_EN = {"顺丰": "SF Express", "中通": "ZTO Express"}
REQUESTS = ("status", "cancel", "change_address", "return", "exchange", "refund")


class ActionOrderRequest(Action):
    """Looks the order up and answers what the shopper asked about it."""

    def name(self) -> str:
        return "action_order_request"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[dict[str, Any]]:
        reset = [SlotSet("order_id", None), SlotSet("order_request", None)]
        language = "en" if tracker.get_slot("language") == "en" else "zh"
        order_id = tracker.get_slot("order_id")
        request = tracker.get_slot("order_request")
        if request not in REQUESTS:
            request = "status"
        if not order_id:
            dispatcher.utter_message(response="utter_order_request_failed")
            return reset
        try:
            order = await shop_data.find_order(order_id)
        except Exception:  # the data layer is outside our control: answer, don't crash
            logger.exception("Order look-up failed for %s", tracker.sender_id)
            dispatcher.utter_message(response="utter_order_request_failed")
            return reset
        if order is None:
            dispatcher.utter_message(text=_unknown_order(order_id, language))
        else:
            reply = _REPLIES[request](order, _Phrases(language), shop_data.now())
            dispatcher.utter_message(text=reply)
        return reset


def _unknown_order(order_id: str, language: str) -> str:
    if language == "en":
        return (
            f"Sorry, I couldn't find order {order_id}. Please check the number "
            "(E followed by 11 digits), or type 'agent' and a colleague will look it up."
        )
    return f"抱歉，没有查到订单 {order_id}。麻烦核对一下订单号（E 加 11 位数字），或者回复“人工”让客服帮您查。"


class _Phrases:
    """Formatting of dates, money, carriers and items in one language."""

    def __init__(self, language: str) -> None:
        self.en = language == "en"

    def pick(self, zh: str, en: str) -> str:
        return en if self.en else zh

    def day(self, when: datetime) -> str:
        when = when.astimezone(shop_data.SHOP_TZ)
        return f"{when.day} {when:%b}" if self.en else f"{when.month}月{when.day}日"

    def moment(self, when: datetime) -> str:
        local = when.astimezone(shop_data.SHOP_TZ)
        return f"{self.day(local)} {local:%H:%M}"

    def money(self, amount: Decimal) -> str:
        return f"¥{amount:.2f}"

    def carrier(self, order: Order) -> str:
        name = order.carrier or ""
        return CARRIER_NAMES_EN.get(name, name) if self.en else name

    def size(self, size: str) -> str:
        if not self.en:
            return size
        if size == "均码":
            return "one size"
        if size.endswith("码"):
            return f"EU {size[:-1]}"
        return size

    def items(self, order: Order) -> str:
        parts = [
            f"{line.name.get('en')} ({line.color.get('en')}, {self.size(line.size)}) x{line.quantity}"
            if self.en
            else f"{line.name.zh}（{line.color.zh}/{line.size}）×{line.quantity}"
            for line in order.lines
        ]
        return ("; " if self.en else "；").join(parts)

    def shipment(self, order: Order) -> str:
        carrier = self.carrier(order)
        number = order.tracking_number or ""
        return self.pick(f"{carrier} {number}".strip(), f"{carrier}, tracking number {number}".strip(", "))


def _days_left(deadline: datetime, now: datetime) -> int:
    """Calendar days until the deadline's day, as shoppers count them (at least 1)."""
    tz = shop_data.SHOP_TZ
    return max(1, (deadline.astimezone(tz).date() - now.astimezone(tz).date()).days)


def _status(order: Order, p: _Phrases, now: datetime) -> str:
    oid = order.order_id
    if order.status == "paid":
        return p.pick(
            f"订单 {oid} 已付款，正在仓库备货，预计 48 小时内发货。商品：{p.items(order)}。",
            f"Order {oid} is paid and being packed; it ships within 48 hours. Items: {p.items(order)}.",
        )
    if order.status == "shipped":
        latest = order.latest_event
        update = p.pick(
            f"最新物流：{p.moment(latest.time)} {latest.text.zh}。" if latest else "",
            f"Latest update: {p.moment(latest.time)} {latest.text.en}." if latest else "",
        )
        return p.pick(
            f"订单 {oid} 已于{p.day(order.shipped_at)}发货（{p.shipment(order)}），正在运输途中。{update}",
            f"Order {oid} shipped on {p.day(order.shipped_at)} ({p.shipment(order)}) and is on its way. {update}",
        )
    if order.status == "delivered":
        return p.pick(
            f"订单 {oid} 已于{p.day(order.delivered_at)}签收（{p.shipment(order)}）。商品：{p.items(order)}。",
            f"Order {oid} was delivered on {p.day(order.delivered_at)} ({p.shipment(order)}). Items: {p.items(order)}.",
        )
    return p.pick(
        f"订单 {oid} 已于{p.day(order.cancelled_at or order.created_at)}取消。",
        f"Order {oid} was cancelled on {p.day(order.cancelled_at or order.created_at)}.",
    ) + _with_refund(order, p)


def _cancel(order: Order, p: _Phrases, now: datetime) -> str:
    oid = order.order_id
    if order.status == "paid":
        return p.pick(
            f"订单 {oid} 还没有发货，可以取消：在“我的订单”中点击“取消订单”即可，"
            f"货款 {p.money(order.total)} 会在 1–3 个工作日内原路退回。",
            f"Order {oid} hasn't shipped yet, so you can cancel it: tap 'Cancel order' under "
            f"'My orders' and {p.money(order.total)} goes back to your payment method within 1–3 working days.",
        )
    if order.status == "shipped":
        return p.pick(
            f"订单 {oid} 已经发货（{p.shipment(order)}），无法直接取消了。您可以拒收快递，"
            "或者签收后 7 天内申请无理由退货。",
            f"Order {oid} has already shipped ({p.shipment(order)}), so it can't be cancelled. "
            "You can refuse the parcel, or return it within 7 days of delivery.",
        )
    if order.status == "delivered":
        return p.pick(
            f"订单 {oid} 已于{p.day(order.delivered_at)}签收，无法取消；签收后 7 天内可以申请退货。",
            f"Order {oid} was delivered on {p.day(order.delivered_at)}, so it can't be cancelled; "
            "you can return it within 7 days of delivery.",
        )
    return p.pick(
        f"订单 {oid} 已经是取消状态，不需要再操作了。",
        f"Order {oid} is already cancelled; nothing more to do.",
    ) + _with_refund(order, p)


def _change_address(order: Order, p: _Phrases, now: datetime) -> str:
    oid = order.order_id
    if order.status == "paid":
        return p.pick(
            f"订单 {oid} 还没有发货，可以修改收货地址（当前地址：{order.address_masked.zh}）。"
            "请在订单详情页点击“修改地址”，或者把新地址发给人工客服。",
            f"Order {oid} hasn't shipped yet, so the address can still be changed (current: "
            f"{order.address_masked.en}). Tap 'Change address' on the order page, or send the new "
            "address to an agent.",
        )
    if order.status == "shipped":
        return p.pick(
            f"订单 {oid} 已经发货（{p.shipment(order)}），系统里无法再改地址了。"
            "可以回复“人工”，客服帮您联系快递尝试拦截改派。",
            f"Order {oid} has already shipped ({p.shipment(order)}), so the address can't be changed "
            "here. Type 'agent' and a colleague will ask the carrier to redirect it.",
        )
    if order.status == "delivered":
        return p.pick(
            f"订单 {oid} 已于{p.day(order.delivered_at)}签收，无法修改地址了。",
            f"Order {oid} was delivered on {p.day(order.delivered_at)}; the address can no longer be changed.",
        )
    return p.pick(
        f"订单 {oid} 已取消，不需要修改地址。",
        f"Order {oid} is cancelled, so there is no address to change.",
    )


def _after_sales(kind: str, window: timedelta) -> Callable[[Order, _Phrases, datetime], str]:
    """Return or exchange: allowed within `window` of delivery."""
    zh_kind = "退货" if kind == "return" else "换货"
    zh_button = "申请退货" if kind == "return" else "申请换货"
    en_button = "Return" if kind == "return" else "Exchange"
    days = window.days

    def reply(order: Order, p: _Phrases, now: datetime) -> str:
        oid = order.order_id
        if order.refund is not None and order.refund.status == "processing":
            return p.pick(
                f"订单 {oid} 已有一笔退款 {p.money(order.refund.amount)} 正在处理中，不需要重复申请。",
                f"Order {oid} already has a refund of {p.money(order.refund.amount)} in progress; "
                "no need to apply again.",
            )
        if order.status == "paid":
            return p.pick(
                f"订单 {oid} 还没有发货，直接取消订单就好，不用办理{zh_kind}。",
                f"Order {oid} hasn't shipped yet: simply cancel it instead.",
            )
        if order.status == "shipped":
            return p.pick(
                f"订单 {oid} 还在运输途中（{p.shipment(order)}），签收后 {days} 天内可以申请{zh_kind}。",
                f"Order {oid} is still on its way ({p.shipment(order)}); once delivered you have "
                f"{days} days to request a{'n' if kind == 'exchange' else ''} {kind}.",
            )
        if order.status == "cancelled":
            return p.pick(
                f"订单 {oid} 已取消，不需要{zh_kind}。",
                f"Order {oid} is cancelled, so there is nothing to {kind}.",
            ) + _with_refund(order, p)
        deadline = order.delivered_at + window
        if now < deadline:
            left = _days_left(deadline, now)
            if kind == "return":
                zh_how = "商品和吊牌保持完好寄回，我们收到后会尽快退款"
                en_how = "send the item back with its tags and we'll refund you once it arrives"
            else:
                zh_how = "选好新的尺码或颜色后寄回原商品，我们收到后马上寄出新的"
                en_how = "choose the new size or colour, send the item back and we'll ship the new one as soon as it arrives"
            return p.pick(
                f"订单 {oid} 于{p.day(order.delivered_at)}签收，还在 {days} 天{zh_kind}期内（还剩 {left} 天）。"
                f"请在订单详情页点击“{zh_button}”，{zh_how}。",
                f"Order {oid} was delivered on {p.day(order.delivered_at)} and is within the {days}-day "
                f"{kind} window ({left} day{'s' if left != 1 else ''} left). Tap '{en_button}' on the "
                f"order page, then {en_how}.",
            )
        return p.pick(
            f"订单 {oid} 于{p.day(order.delivered_at)}签收，已超过 {days} 天{zh_kind}期。"
            "如果是质量问题，回复“人工”，客服会帮您申请售后。",
            f"Order {oid} was delivered on {p.day(order.delivered_at)}, which is past the {days}-day "
            f"{kind} window. If there is a quality problem, type 'agent' and a colleague will help.",
        )

    return reply


def _refund(order: Order, p: _Phrases, now: datetime) -> str:
    if order.refund is None:
        return p.pick(
            f"订单 {order.order_id} 目前没有退款记录。",
            f"There is no refund on order {order.order_id}.",
        ) + p.pick(
            "如需退货退款，签收后 7 天内可以在订单详情页申请。" if order.status != "cancelled" else "",
            " To get your money back, request a return within 7 days of delivery."
            if order.status != "cancelled" else "",
        )
    return p.pick(f"订单 {order.order_id}：", f"Order {order.order_id}: ") + _refund_sentence(order, p)


def _with_refund(order: Order, p: _Phrases) -> str:
    """The refund sentence to append after another sentence, if there is a refund."""
    sentence = _refund_sentence(order, p)
    return (" " + sentence if p.en else sentence) if sentence else ""


def _refund_sentence(order: Order, p: _Phrases) -> str:
    refund = order.refund
    if refund is None:
        return ""
    zh_what = f"{refund.reason.zh}退款" if refund.reason else "退款"
    en_what = f"{refund.reason.en} refund" if refund.reason else "refund"
    if refund.status == "completed" and refund.completed_at is not None:
        return p.pick(
            f"{zh_what} {p.money(refund.amount)} 已于{p.day(refund.completed_at)}退回{refund.channel.zh}，请留意到账信息。",
            f"The {en_what} of {p.money(refund.amount)} was paid back to {refund.channel.en} on "
            f"{p.day(refund.completed_at)}.",
        )
    return p.pick(
        f"{zh_what} {p.money(refund.amount)} 正在处理中（{p.day(refund.requested_at)}申请），"
        f"审核通过后 1–3 个工作日退回{refund.channel.zh}。",
        f"The {en_what} of {p.money(refund.amount)} (requested on {p.day(refund.requested_at)}) is "
        f"being processed and will reach {refund.channel.en} within 1–3 working days after approval.",
    )


_REPLIES: dict[str, Callable[[Order, _Phrases, datetime], str]] = {
    "status": _status,
    "cancel": _cancel,
    "change_address": _change_address,
    "return": _after_sales("return", RETURN_WINDOW),
    "exchange": _after_sales("exchange", EXCHANGE_WINDOW),
    "refund": _refund,
}
