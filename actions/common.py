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


# The engine's channels put an identity they verified themselves under this metadata key of
# the message (connectors.base.IDENTITY_METADATA_KEY; docs/channels.md): the widget's
# shop-signed token. No channel passes this key through from a client.
IDENTITY_KEY = "identity"
TRUSTED_IDENTITY_SOURCES = frozenset({"widget_token"})


def channel_identity(tracker: Tracker) -> tuple[str, str]:
    """(channel, sender id): on WeChat the sender id is the shopper's openid.

    The channel is the one the engine recorded for the latest message; the REST channel
    records itself whatever the body says, so a stranger cannot pose as a WeChat openid.
    """
    return (tracker.get_latest_input_channel() or "rest"), tracker.sender_id


def token_customer_id(tracker: Tracker) -> Optional[int]:
    """The customer a channel verified for the latest message (the widget's shop-signed token)."""
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    identity = metadata.get(IDENTITY_KEY) if isinstance(metadata, dict) else None
    if not isinstance(identity, dict) or identity.get("verified") is not True:
        return None
    if identity.get("source") not in TRUSTED_IDENTITY_SOURCES:
        return None
    try:
        return int(str(identity.get("customer_id")))
    except ValueError:
        logger.warning("Identity token of conversation %s names a customer id the shop does not use",
                       conversation(tracker))
        return None


async def identity_customer(tracker: Tracker) -> Optional[CustomerView]:
    """The customer a trusted source vouches for: the widget token, else the channel identity."""
    shop = get_shop()
    customer_id = token_customer_id(tracker)
    if customer_id is not None:
        return await shop.customer(customer_id)
    return await shop.customer_by_identity(*channel_identity(tracker))


def conversation(tracker: Tracker) -> str:
    """The sender id for logs, shortened so an openid is never logged whole."""
    sid = tracker.sender_id or ""
    return sid if len(sid) <= 8 else f"{sid[:4]}…{sid[-2:]}"


async def identified_customer(tracker: Tracker) -> Optional[CustomerView]:
    """The shopper as the shop knows them: a trusted identity, or an order verified in this chat."""
    shop = get_shop()
    customer = await identity_customer(tracker)
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
    """Verified for this order: a trusted identity owns it, its phone's last 4 digits were confirmed,
    or a verified phone look-up revealed it."""
    if tracker.get_slot("verified_order") == order.id or order.id in verified_orders(tracker):
        return True
    customer = await identity_customer(tracker)
    return customer is not None and customer.id == order.customer_id


def local(when: Optional[datetime]) -> Optional[datetime]:
    return when.astimezone(SHOP_TZ) if when else None


def day(lang: str, when: datetime) -> str:
    w = when.astimezone(SHOP_TZ)
    return f"{w.day} {w:%b}" if lang == "en" else f"{w.month}月{w.day}日"


def moment(lang: str, when: datetime) -> str:
    return f"{day(lang, when)} {when.astimezone(SHOP_TZ):%H:%M}"


def money(cents: int) -> str:
    """In the shop's currency (shop.yml `currency: symbol`)."""
    from actions.shop.config import shop_config

    return shop_config().money(cents)


def carrier(lang: str, name: Optional[str]) -> str:
    return CARRIER_EN.get(name or "", name or "") if lang == "en" else (name or "")


def items(lang: str, order: OrderView) -> str:
    if lang == "en":
        return "; ".join(f"{l.title_en} ({l.size}) x{l.quantity}" for l in order.lines)
    return "；".join(f"{l.title_zh}（{l.colour}/{l.size}）×{l.quantity}" for l in order.lines)


def locked_text(lang: str) -> str:
    """Too many failed verifications of this order or phone, from any conversation."""
    return t(lang, "这个订单（或手机号）验证失败次数过多，为保护账户安全已暂时锁定，请 1 小时后再试，或回复“人工”联系客服。",
             "Too many failed verification attempts for this order (or phone). To protect the account it is locked "
             "for now: please try again in an hour, or type 'agent' to reach a colleague.")


def unavailable(dispatcher: CollectingDispatcher, tracker: Tracker, what: str, error: Exception) -> None:
    """The data layer failed: log it (no personal data), tell the shopper politely."""
    logger.error("Shop data layer failed during %s for conversation %s: %s", what, conversation(tracker), error)
    dispatcher.utter_message(response="utter_shop_unavailable")


def reset_order_slots() -> list[dict[str, Any]]:
    return [SlotSet("order_id", None), SlotSet("order_request", None), SlotSet("phone_last4", None),
            SlotSet("pending_change", None), SlotSet("return_reason", None)]


__all__ = ["ShopError", "mask_phone"]
