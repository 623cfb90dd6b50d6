"""The shop's after-sales business rules, in one place.

Pure functions over `OrderView`/`CouponView` values and a clock: both data-layer
implementations and the actions call these, so a rule changes here and nowhere
else. Each decision carries a `code` the actions turn into a reply.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Sequence

from actions.shop.base import SHOP_TZ, CouponView, OrderView, PointsEntryView

ORDER_STATUSES = ("pending_payment", "paid", "shipped", "delivered", "after_sales", "cancelled", "refunded")
BEFORE_SHIPMENT = ("pending_payment", "paid")
RETURN_WINDOW = timedelta(days=7)
EXCHANGE_WINDOW = timedelta(days=15)
# Hygiene and consumables: no returns; nutrition cannot be exchanged either.
NO_RETURN_CATEGORIES = frozenset({"socks", "nutrition"})
NO_EXCHANGE_CATEGORIES = frozenset({"nutrition"})
POINTS_PER_YUAN = 1
POINTS_PER_YUAN_OFF = 100
EXPIRY_WARNING = timedelta(days=30)
# Order look-up by phone (see `phone_lookup_orders`).
PHONE_LOOKUP_WINDOW = timedelta(days=180)
PHONE_LOOKUP_LIMIT = 5
MAX_VERIFY_ATTEMPTS = 3


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str
    days_left: Optional[int] = None


def can_cancel(order: OrderView) -> Decision:
    """Cancel only before shipment."""
    if order.status in BEFORE_SHIPMENT:
        return Decision(True, "ok")
    return Decision(False, _after_shipment_code(order))


def can_change_address(order: OrderView) -> Decision:
    """Change the address only before shipment."""
    return can_cancel(order)


def _after_shipment_code(order: OrderView) -> str:
    return {
        "shipped": "already_shipped",
        "delivered": "already_delivered",
        "after_sales": "already_delivered",
        "cancelled": "already_cancelled",
        "refunded": "already_cancelled",
    }.get(order.status, "not_allowed")


def days_left(deadline: datetime, now: datetime) -> int:
    """Calendar days to the deadline's day in shop time (at least 1)."""
    return max(1, (deadline.astimezone(SHOP_TZ).date() - now.astimezone(SHOP_TZ).date()).days)


def after_sale_window(kind: str) -> timedelta:
    return RETURN_WINDOW if kind == "return" else EXCHANGE_WINDOW


def can_request_after_sale(order: OrderView, kind: str, now: datetime) -> Decision:
    """Return within 7 days of delivery, exchange within 15; excluded categories; one open request."""
    if kind not in ("return", "exchange"):
        raise ValueError(f"after-sale kind must be 'return' or 'exchange', not {kind!r}")
    refund = order.refund
    if refund is not None and refund.status == "processing":
        return Decision(False, "refund_in_progress")
    if any(a.status == "requested" for a in order.after_sales):
        return Decision(False, "after_sale_open")
    if order.status in BEFORE_SHIPMENT:
        return Decision(False, "not_shipped")
    if order.status == "shipped":
        return Decision(False, "not_delivered")
    if order.status in ("cancelled", "refunded"):
        return Decision(False, "already_cancelled")
    excluded = NO_RETURN_CATEGORIES if kind == "return" else NO_EXCHANGE_CATEGORIES
    if order.lines and all(line.category in excluded for line in order.lines):
        return Decision(False, "category_excluded")
    assert order.delivered_at is not None, f"delivered order {order.id} has no delivered_at"
    deadline = order.delivered_at + after_sale_window(kind)
    if now >= deadline:
        return Decision(False, "window_passed")
    return Decision(True, "ok", days_left(deadline, now))


def eligible_lines(order: OrderView, kind: str) -> list[str]:
    """SKUs of the lines a return/exchange may cover (excluded categories left out)."""
    excluded = NO_RETURN_CATEGORIES if kind == "return" else NO_EXCHANGE_CATEGORIES
    return [line.sku for line in order.lines if line.category not in excluded]


def refundable_cents(order: OrderView, kind: str) -> int:
    """What a return refunds: the eligible lines, less their share of the discount."""
    if kind != "return":
        return 0
    eligible = set(eligible_lines(order, kind))
    gross = sum(l.unit_price_cents * l.quantity for l in order.lines)
    part = sum(l.unit_price_cents * l.quantity for l in order.lines if l.sku in eligible)
    if gross == 0:
        return 0
    return round(order.total_cents * part / gross)


def coupon_usable(coupon: CouponView, cart_cents: int, now: datetime, categories: Sequence[str] = ()) -> Decision:
    """Unused, within its validity, cart at or above the threshold, category matches."""
    if coupon.used_order_id:
        return Decision(False, "coupon_used")
    if now < coupon.valid_from:
        return Decision(False, "coupon_not_yet_valid")
    if now >= coupon.valid_until:
        return Decision(False, "coupon_expired")
    if coupon.category and categories and coupon.category not in categories:
        return Decision(False, "coupon_wrong_category")
    if cart_cents < coupon.threshold_cents:
        return Decision(False, "coupon_below_threshold")
    return Decision(True, "ok", days_left(coupon.valid_until, now))


def points_for_order(total_cents: int) -> int:
    return total_cents // 100 * POINTS_PER_YUAN


def points_expiry(earned_at: datetime) -> datetime:
    """Points expire at the end of the year after the one they were earned in (shop time)."""
    local = earned_at.astimezone(SHOP_TZ)
    return datetime(local.year + 2, 1, 1, tzinfo=SHOP_TZ)


@dataclass(frozen=True)
class PointsSummary:
    balance: int
    expiring: int  # points that expire within EXPIRY_WARNING
    next_expiry: Optional[datetime]

    @property
    def worth_cents(self) -> int:
        return self.balance * 100 // POINTS_PER_YUAN_OFF


def points_summary(entries: Sequence[PointsEntryView], now: datetime) -> PointsSummary:
    """Balance after expiry; spending uses the oldest points first (FIFO)."""
    lots: list[list] = []  # [expires_at, remaining]
    spent = 0
    for e in sorted(entries, key=lambda e: e.created_at):
        if e.created_at > now:
            continue
        if e.delta > 0:
            lots.append([e.expires_at, e.delta])
        else:
            spent += -e.delta
            for lot in lots:
                take = min(lot[1], spent)
                lot[1] -= take
                spent -= take
                if not spent:
                    break
    live = [lot for lot in lots if lot[1] > 0 and (lot[0] is None or lot[0] > now)]
    balance = sum(lot[1] for lot in live)
    dated = sorted((lot for lot in live if lot[0] is not None), key=lambda lot: lot[0])
    expiring = sum(lot[1] for lot in dated if lot[0] - now <= EXPIRY_WARNING)
    return PointsSummary(balance, expiring, dated[0][0] if dated else None)


# --- order look-up by phone -----------------------------------------------------------
#
# A phone number is not a secret: it is printed on every parcel and given out
# freely, so knowing it proves nothing. Before a phone look-up reveals anything,
# the shopper is verified in one of two ways:
#   1. the channel identity (e.g. WeChat openid) belongs to the customer whose
#      account phone is this number: their own orders on it are shown; or
#   2. the shopper names the order's recipient (收货人) in full, as written on
#      the order: only the orders on this phone *with that recipient* in the last
#      PHONE_LOOKUP_WINDOW are shown (at most PHONE_LOOKUP_LIMIT).
# A surname alone is not enough (the three most common surnames cover about a fifth
# of China, so three guesses would pass too often). MAX_VERIFY_ATTEMPTS wrong names
# end the check. The reply to a wrong name is the same whether or not the phone has
# orders at all, so the check never tells a stranger that a number is a customer.
# The last 4 digits of the phone cannot be the check here (the shopper just gave
# the whole number) and SMS codes are out of scope for the bot.

_PHONE_SEPARATORS_RE = re.compile(r"(?<=\d)[\s\-‐－—.·()（）]+(?=\d)")
_NAME_NOISE_RE = re.compile(r"[\s·•．.,，。、!！?？:：;；'\"“”‘’()（）\-_]+")
_NAME_PREFIX_RE = re.compile(
    r"^(?:收货人(?:姓名)?(?:是|叫|为)?|收件人(?:是|叫|为)?|名字(?:是|叫)?|姓名(?:是)?|我叫|我是|叫|是|"
    r"(?:the\s+)?(?:recipient|name)(?:\s+is)?|my\s+name\s+is|it'?s|i'?m)\s*",
    re.IGNORECASE,
)


def normalise_phone(text: Optional[str]) -> Optional[str]:
    """A mainland mobile number as 11 digits (separators and +86/0086 dropped), or None when malformed."""
    value = unicodedata.normalize("NFKC", str(text or "")).strip()
    value = _PHONE_SEPARATORS_RE.sub("", value).replace(" ", "")
    value = re.sub(r"^(?:\+?86|0086)(?=1\d{10}$)", "", value)
    from actions.shop.config import shop_config

    return value if shop_config().phone_re.fullmatch(value) else None


def normalise_name(text: Optional[str]) -> str:
    """A recipient name for comparison: NFKC, case-folded, without spaces, dots and lead-ins ("我叫")."""
    value = unicodedata.normalize("NFKC", str(text or "")).strip()
    value = _NAME_PREFIX_RE.sub("", value, count=1)
    return _NAME_NOISE_RE.sub("", value).casefold()


def recipient_matches(order: OrderView, name: Optional[str]) -> bool:
    """The full recipient name of `order`, however it was typed (2 characters at least)."""
    given = normalise_name(name)
    return len(given) >= 2 and given == normalise_name(order.ship_name)


def phone_lookup_orders(
    orders: Sequence[OrderView], *, now: datetime, recipient: Optional[str] = None,
    customer_id: Optional[int] = None,
) -> list[OrderView]:
    """The orders a verified phone look-up may reveal, newest first.

    `customer_id` (rule 1: the channel identity owns the phone) keeps that
    customer's orders; otherwise `recipient` (rule 2) keeps the orders whose
    recipient it names. With neither, nothing is revealed.
    """
    since = now - PHONE_LOOKUP_WINDOW
    if customer_id is not None:
        kept = [o for o in orders if o.customer_id == customer_id]
    elif recipient is not None:
        kept = [o for o in orders if recipient_matches(o, recipient)]
    else:
        return []
    kept = [o for o in kept if o.created_at >= since]
    return sorted(kept, key=lambda o: o.created_at, reverse=True)[:PHONE_LOOKUP_LIMIT]
