"""The shop data the demo actions read: orders, for now from a JSON file.

Everything the actions need goes through `find_order(order_id)`, so a real shop
backend (SQL, an HTTP API) replaces this module's body without touching the
actions. The demo file is anchored to a `reference_time`; timestamps are shifted
by whole days so that the reference day is today, which keeps "delivered three
days ago" true whenever the demo runs.
"""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

SHOP_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DEMO_ORDERS_PATH = Path(__file__).parent / "data" / "demo_orders.json"
ORDER_ID_RE = re.compile(r"E\d{11}")
ORDER_STATUSES = ("paid", "shipped", "delivered", "cancelled")
REFUND_STATUSES = ("processing", "completed")


class ShopDataError(RuntimeError):
    """The shop data could not be read; the message names the file and the fix."""


def now() -> datetime:
    """The shop's clock (Beijing time); tests replace it to freeze time."""
    return datetime.now(SHOP_TZ)


@dataclass(frozen=True)
class LocalText:
    """A text in the shop's two languages."""

    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: LocalText
    color: LocalText
    size: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class TrackingEvent:
    time: datetime
    text: LocalText


@dataclass(frozen=True)
class Refund:
    status: str  # processing | completed
    amount: Decimal
    requested_at: datetime
    completed_at: Optional[datetime]
    channel: LocalText
    reason: Optional[LocalText] = None


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str  # paid | shipped | delivered | cancelled
    created_at: datetime
    shipped_at: Optional[datetime]
    delivered_at: Optional[datetime]
    cancelled_at: Optional[datetime]
    carrier: Optional[str]
    tracking_number: Optional[str]
    phone_masked: str
    address_masked: LocalText
    lines: tuple[OrderLine, ...]
    events: tuple[TrackingEvent, ...]
    refund: Optional[Refund]

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal("0"))

    @property
    def latest_event(self) -> Optional[TrackingEvent]:
        return max(self.events, key=lambda e: e.time) if self.events else None


def normalize_order_id(order_id: str) -> str:
    """Order ids are compared upper-case, half-width, without spaces."""
    text = unicodedata.normalize("NFKC", str(order_id))
    return re.sub(r"\s+", "", text).upper()


async def find_order(order_id: str) -> Optional[Order]:
    """The order with this id, or None when the shop has no such order."""
    orders = _demo_orders(str(DEMO_ORDERS_PATH), now().date())
    return orders.get(normalize_order_id(order_id))


@lru_cache(maxsize=4)
def _demo_orders(path: str, today: date) -> dict[str, Order]:
    return load_orders(Path(path), today)


def load_orders(path: Path, today: date) -> dict[str, Order]:
    """Read a demo order file, shifting its timestamps so reference_time is `today`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        reference = _parse_time(raw["reference_time"])
        shift = timedelta(days=(today - reference.astimezone(SHOP_TZ).date()).days)
        orders = [_order(item, shift) for item in raw["orders"]]
    except FileNotFoundError as e:
        raise ShopDataError(
            f"Demo order file '{path}' is missing. Restore actions/data/demo_orders.json "
            "or point actions/shop_data.py at your shop's database."
        ) from e
    except (ValueError, KeyError, TypeError, InvalidOperation) as e:
        raise ShopDataError(
            f"Demo order file '{path}' is malformed ({type(e).__name__}: {e}). Each order "
            f"needs order_id (E + 11 digits), status ({', '.join(ORDER_STATUSES)}), "
            "ISO timestamps with a time zone, lines and events."
        ) from e
    logger.debug("Loaded %d demo orders from %s (shifted by %s)", len(orders), path, shift)
    return {order.order_id: order for order in orders}


def _order(item: dict[str, Any], shift: timedelta) -> Order:
    order_id = normalize_order_id(item["order_id"])
    if not ORDER_ID_RE.fullmatch(order_id):
        raise ValueError(f"order_id '{item['order_id']}' is not E followed by 11 digits")
    if item["status"] not in ORDER_STATUSES:
        raise ValueError(f"order {order_id}: unknown status '{item['status']}'")

    def when(key: str) -> Optional[datetime]:
        value = item.get(key)
        return _parse_time(value) + shift if value else None

    refund = item.get("refund")
    return Order(
        order_id=order_id,
        status=item["status"],
        created_at=_parse_time(item["created_at"]) + shift,
        shipped_at=when("shipped_at"),
        delivered_at=when("delivered_at"),
        cancelled_at=when("cancelled_at"),
        carrier=item.get("carrier"),
        tracking_number=item.get("tracking_number"),
        phone_masked=item["phone"],
        address_masked=LocalText(**item["address"]),
        lines=tuple(
            OrderLine(
                sku=line["sku"],
                name=LocalText(**line["name"]),
                color=LocalText(**line["color"]),
                size=line["size"],
                quantity=int(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
            )
            for line in item["lines"]
        ),
        events=tuple(
            TrackingEvent(time=_parse_time(e["time"]) + shift, text=LocalText(zh=e["zh"], en=e["en"]))
            for e in item.get("events", [])
        ),
        refund=_refund(refund, shift) if refund else None,
    )


def _refund(item: dict[str, Any], shift: timedelta) -> Refund:
    if item["status"] not in REFUND_STATUSES:
        raise ValueError(f"unknown refund status '{item['status']}'")
    completed = item.get("completed_at")
    return Refund(
        status=item["status"],
        amount=Decimal(item["amount"]),
        requested_at=_parse_time(item["requested_at"]) + shift,
        completed_at=_parse_time(completed) + shift if completed else None,
        channel=LocalText(**item["channel"]),
        reason=LocalText(**item["reason"]) if item.get("reason") else None,
    )


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp '{value}' has no time zone")
    return parsed
