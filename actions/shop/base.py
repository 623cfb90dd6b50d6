"""The shop interface the actions use, and the values it returns.

One `ShopStore` protocol, two implementations: `SqlShopStore` (SQLAlchemy, any
URL; SQLite file by default) and `HttpShopStore` (a merchant's own order API).
Values are frozen dataclasses that serialise to JSON (`to_json`/`from_json`), so
the HTTP adapter and the test API server share one wire format.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

SHOP_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
# The demo shop's formats; the running shop's own come from shop.yml (`config.shop_config().order_id_re`).
ORDER_ID_RE = re.compile(r"E\d{11}")
PHONE_RE = re.compile(r"1[3-9]\d{9}")


class ShopError(RuntimeError):
    """Base of shop data-layer errors; messages say what failed and the fix."""


class ShopUnavailable(ShopError):
    """The data layer is down, slow (timed out) or answered garbage."""


class ShopDataError(ShopError, ValueError):
    """Input the shop cannot accept (bad import row, unknown config key...)."""


def mask_phone(phone: Optional[str]) -> str:
    """138****5678: enough for the shopper to recognise, useless to anyone else."""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_address(address: Optional[str]) -> str:
    """Keep province/city/district (the first ~8 characters), hide the street and number."""
    text = (address or "").strip()
    if not text:
        return ""
    keep = max(2, min(9, len(text) // 2))
    return text[:keep] + "****"


@dataclass(frozen=True)
class CustomerView:
    id: int
    name: str
    phone: str


@dataclass(frozen=True)
class VariantView:
    """Stock of one size/colour of a product."""

    size: str
    colour: str
    stock: int


@dataclass(frozen=True)
class ProductView:
    sku: str
    category: str
    title_zh: str
    title_en: str
    brand: str
    price_cents: int
    stock: int
    sizes: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    variants: tuple[VariantView, ...] = ()  # empty: only the product's total `stock` is known

    def title(self, language: str) -> str:
        return self.title_en if language == "en" else self.title_zh

    def stock_of(self, size: Optional[str] = None, colour: Optional[str] = None) -> int:
        """Units in stock for this size and/or colour (the total when neither is given or no variants are kept)."""
        if not self.variants or (size is None and colour is None):
            return self.stock
        return sum(v.stock for v in self.variants
                   if (size is None or v.size == size) and (colour is None or v.colour == colour))


@dataclass(frozen=True)
class LineView:
    sku: str
    title_zh: str
    title_en: str
    category: str
    size: str
    colour: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class TrackingView:
    time: datetime
    text_zh: str
    text_en: str


@dataclass(frozen=True)
class RefundView:
    amount_cents: int
    status: str  # processing | completed
    requested_at: datetime
    completed_at: Optional[datetime] = None
    reason: str = ""


@dataclass(frozen=True)
class AfterSaleView:
    id: int
    kind: str  # return | exchange
    reason: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class OrderView:
    id: str
    customer_id: int
    status: str
    created_at: datetime
    ship_name: str
    ship_phone: str
    ship_address: str
    total_cents: int
    discount_cents: int = 0
    coupon_code: Optional[str] = None
    paid_at: Optional[datetime] = None
    shipped_at: Optional[datetime] = None
    delivered_at: Optional[datetime] = None
    cancelled_at: Optional[datetime] = None
    carrier: Optional[str] = None
    tracking_number: Optional[str] = None
    eta: Optional[datetime] = None
    lines: tuple[LineView, ...] = ()
    tracking: tuple[TrackingView, ...] = ()
    refunds: tuple[RefundView, ...] = ()
    after_sales: tuple[AfterSaleView, ...] = ()

    @property
    def latest_event(self) -> Optional[TrackingView]:
        return max(self.tracking, key=lambda e: e.time) if self.tracking else None

    @property
    def refund(self) -> Optional[RefundView]:
        return max(self.refunds, key=lambda r: r.requested_at) if self.refunds else None


@dataclass(frozen=True)
class CouponView:
    code: str
    title_zh: str
    title_en: str
    threshold_cents: int
    amount_cents: int
    valid_from: datetime
    valid_until: datetime
    category: Optional[str] = None
    used_order_id: Optional[str] = None


@dataclass(frozen=True)
class CouponTemplateView:
    code: str
    title_zh: str
    title_en: str
    amount_cents: int
    threshold_cents: int
    valid_days: int
    category: Optional[str] = None
    terms_zh: str = ""
    terms_en: str = ""
    points_cost: Optional[int] = None


@dataclass(frozen=True)
class IssueResult:
    """Outcome of issuing a coupon: `code` ok | unknown_template | unknown_customer | insufficient_points |
    over_limit | not_redeemable; `new` is False when this issue key already had its coupon."""

    ok: bool
    code: str
    coupon: Optional[CouponView] = None
    template: Optional[CouponTemplateView] = None
    new: bool = False
    balance: Optional[int] = None
    event: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class PointsEntryView:
    delta: int
    reason: str
    created_at: datetime
    expires_at: Optional[datetime] = None


@dataclass(frozen=True)
class Basket:
    """One order's products, for recommendation training and evaluation."""

    customer_id: int
    order_id: str
    created_at: datetime
    skus: tuple[str, ...]


@dataclass(frozen=True)
class ChangeResult:
    """Outcome of a state change: `code` is a rule code from `rules.py` ("ok" when done)."""

    ok: bool
    code: str
    order: Optional[OrderView] = None
    event: Optional[dict[str, Any]] = None
    days_left: Optional[int] = None


@runtime_checkable
class ShopStore(Protocol):
    """Everything the actions read or change. All methods raise `ShopUnavailable` when down."""

    async def find_order(self, order_id: str) -> Optional[OrderView]: ...

    async def customer(self, customer_id: int) -> Optional[CustomerView]: ...

    async def customer_by_identity(self, channel: str, external_id: str) -> Optional[CustomerView]: ...

    async def customer_by_phone(self, phone: str) -> Optional[CustomerView]: ...

    async def recent_orders(self, customer_id: int, limit: int = 5) -> list[OrderView]: ...

    async def orders(self, order_ids: Sequence[str]) -> list[OrderView]:
        """Full views of these orders (unknown ids left out), in the given order, loaded together."""
        ...

    async def orders_by_phone(
        self, phone: str, *, since: Optional[datetime] = None, limit: int = 20, details: bool = True,
        keep: Optional[Callable[[list[OrderView]], list[OrderView]]] = None,
    ) -> list[OrderView]:
        """Orders shipped to `phone` or placed by the customer with that phone, newest first.

        Callers reveal them only after verification (`rules.phone_lookup_orders`).
        `details=False` may leave out lines, shipment, tracking, refunds and after-sales
        (the order rows are enough for the rule). `keep` (the rule) is applied to such
        light rows and only the orders it keeps are returned, with full details: one
        round trip instead of rows first and `orders()` after.
        """
        ...

    async def cancel_order(self, order_id: str, *, sender_id: Optional[str], now: datetime) -> ChangeResult: ...

    async def change_address(
        self, order_id: str, address: str, *, sender_id: Optional[str], now: datetime
    ) -> ChangeResult: ...

    async def request_after_sale(
        self, order_id: str, kind: str, reason: str, *, sender_id: Optional[str], now: datetime
    ) -> ChangeResult: ...

    async def coupons(self, customer_id: int) -> list[CouponView]: ...

    async def points(self, customer_id: int) -> list[PointsEntryView]: ...

    async def products(self, skus: Optional[Sequence[str]] = None) -> list[ProductView]: ...

    async def baskets(self, customer_id: Optional[int] = None) -> list[Basket]: ...

    async def record_event(
        self, event: str, *, sender_id: Optional[str], customer_id: Optional[int], payload: dict[str, Any], now: datetime
    ) -> dict[str, Any]: ...

    # -- catalogue stock, coupons, points (issue #20) --

    async def subscribe_restock(self, sku: str, *, size: Optional[str], colour: Optional[str], sender_id: str,
                                customer_id: Optional[int], now: datetime) -> bool:
        """Remember that this conversation wants to hear when the product is back; False if already asked."""
        ...

    async def set_stock(self, sku: str, stock: int, *, size: Optional[str] = None, colour: Optional[str] = None,
                        now: datetime) -> list[dict[str, Any]]:
        """The merchant's stock update; returns the `back_in_stock` events for waiting subscribers."""
        ...

    async def set_order_status(self, order_id: str, status: str, *, now: datetime) -> ChangeResult:
        """The shop reports an order paid/shipped/delivered: the status and its time, and `order_<status>`
        in the outbox when it changed (`code` "unchanged" when it already was). Points are earned by
        `loyalty.order_status_reported`, once per order."""
        ...

    async def coupon_templates(self) -> list[CouponTemplateView]: ...

    async def issue_coupon(self, customer_id: int, template: str, *, issue_key: str, issued_by: str, now: datetime,
                           amount_cents: Optional[int] = None) -> IssueResult:
        """Issue one coupon of `template` per (customer, issue_key); a repeat returns the first one."""
        ...

    async def redeem_coupon(self, code: str, order_id: str, *, now: datetime) -> ChangeResult:
        """An order used this coupon: mark it and publish `coupon_redeemed` (journeys count conversions)."""
        ...

    async def earn_points(self, customer_id: int, kind: str, *, ref: str, points: int, now: datetime,
                          expires_at: Optional[datetime] = None, daily_max: Optional[int] = None) -> int:
        """Add points once per (customer, kind, ref); returns the points added (0: already earned or capped)."""
        ...

    async def redeem_points(self, customer_id: int, template: str, *, issue_key: str, now: datetime) -> IssueResult:
        """Spend points on a coupon in one transaction, after a balance check; a ledger entry records it."""
        ...

    async def close(self) -> None: ...


# --- JSON wire format --------------------------------------------------------------

def to_json(value: Any) -> Any:
    """Dataclasses, datetimes and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(cls: Any, data: Any) -> Any:
    """Rebuild `cls` (a dataclass or a typing hint) from `to_json` output."""
    if data is None:
        return None
    origin = typing.get_origin(cls)
    if origin is typing.Union or str(origin) == "types.UnionType":
        inner = [a for a in typing.get_args(cls) if a is not type(None)]
        return from_json(inner[0], data)
    if origin in (tuple, list):
        (item, *_rest) = typing.get_args(cls) or (Any,)
        values = [from_json(item, v) for v in data]
        return tuple(values) if origin is tuple else values
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        kwargs = {f.name: from_json(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
        return cls(**kwargs)
    if cls is datetime:
        return datetime.fromisoformat(data)
    return data
