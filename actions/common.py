"""Helpers shared by the shop actions: language, shopper identity, formatting, failures."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import shop_data
from actions.shop import SHOP_TZ, OrderView, get_shop, mask_phone
from actions.shop.base import CustomerView, ShopError

logger = logging.getLogger(__name__)

CARRIER_EN = {"顺丰": "SF Express", "中通": "ZTO Express", "圆通": "YTO Express", "京东": "JD Logistics"}
STATUS_TEXT = {
    "pending_payment": ("待付款", "awaiting payment"),
    "paid": ("已付款，仓库备货中", "paid and being packed"),
    "shipped": ("运输中", "on its way"),
    "delivered": ("已签收", "delivered"),
    "after_sales": ("售后处理中", "in after-sales processing"),
    "cancelled": ("已取消", "cancelled"),
    "refunded": ("已退货退款", "returned and refunded"),
}


def language(tracker: Tracker) -> str:
    return "en" if tracker.get_slot("language") == "en" else "zh"


def t(lang: str, zh: str, en: str) -> str:
    return en if lang == "en" else zh


def now() -> datetime:
    return shop_data.now()


def channel_identity(tracker: Tracker) -> tuple[str, str]:
    """(channel, sender id): on WeChat the sender id is the shopper's openid."""
    return (tracker.get_latest_input_channel() or "rest"), tracker.sender_id


def conversation(tracker: Tracker) -> str:
    """The sender id for logs, shortened so an openid is never logged whole."""
    sid = tracker.sender_id or ""
    return sid if len(sid) <= 8 else f"{sid[:4]}…{sid[-2:]}"


async def identified_customer(tracker: Tracker) -> Optional[CustomerView]:
    """The shopper as the shop knows them: channel identity, or an order verified in this chat."""
    shop = get_shop()
    channel, sender = channel_identity(tracker)
    customer = await shop.customer_by_identity(channel, sender)
    if customer is not None:
        return customer
    verified = tracker.get_slot("verified_order") or next(iter(verified_orders(tracker)), None)
    if verified:
        order = await shop.find_order(verified)
        if order is not None:
            return await shop.customer(order.customer_id)
    return None


def verified_orders(tracker: Tracker) -> list[str]:
    """Orders a phone look-up verified in this chat (`rules.phone_lookup_orders`)."""
    value = tracker.get_slot("verified_orders")
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


async def owns_order(tracker: Tracker, order: OrderView) -> bool:
    """Verified for this order: channel identity owns it, its phone's last 4 digits were confirmed,
    or a verified phone look-up revealed it."""
    if tracker.get_slot("verified_order") == order.id or order.id in verified_orders(tracker):
        return True
    channel, sender = channel_identity(tracker)
    customer = await get_shop().customer_by_identity(channel, sender)
    return customer is not None and customer.id == order.customer_id


def local(when: Optional[datetime]) -> Optional[datetime]:
    return when.astimezone(SHOP_TZ) if when else None


def day(lang: str, when: datetime) -> str:
    w = when.astimezone(SHOP_TZ)
    return f"{w.day} {w:%b}" if lang == "en" else f"{w.month}月{w.day}日"


def moment(lang: str, when: datetime) -> str:
    return f"{day(lang, when)} {when.astimezone(SHOP_TZ):%H:%M}"


def money(cents: int) -> str:
    return f"¥{cents / 100:.2f}"


def carrier(lang: str, name: Optional[str]) -> str:
    return CARRIER_EN.get(name or "", name or "") if lang == "en" else (name or "")


def items(lang: str, order: OrderView) -> str:
    if lang == "en":
        return "; ".join(f"{l.title_en} ({l.size}) x{l.quantity}" for l in order.lines)
    return "；".join(f"{l.title_zh}（{l.colour}/{l.size}）×{l.quantity}" for l in order.lines)


def unavailable(dispatcher: CollectingDispatcher, tracker: Tracker, what: str, error: Exception) -> None:
    """The data layer failed: log it (no personal data), tell the shopper politely."""
    logger.error("Shop data layer failed during %s for conversation %s: %s", what, conversation(tracker), error)
    dispatcher.utter_message(response="utter_shop_unavailable")


def reset_order_slots() -> list[dict[str, Any]]:
    return [SlotSet("order_id", None), SlotSet("order_request", None), SlotSet("phone_last4", None),
            SlotSet("pending_change", None), SlotSet("return_reason", None)]


__all__ = ["ShopError", "mask_phone"]
