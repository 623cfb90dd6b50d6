"""`SqlShopStore`: the shop over SQLAlchemy (SQLite file by default, any URL).

Queries are synchronous SQLAlchemy run in a worker thread under a timeout, so a
slow database never blocks the action server's event loop and a hung one turns
into `ShopUnavailable` instead of a hung conversation. Every state change is one
transaction that also writes its behaviour event to the `outbox` table.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Sequence, TypeVar

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from actions.shop import models as m
from actions.shop import rules
from actions.shop.base import (
    AfterSaleView,
    Basket,
    ChangeResult,
    CouponView,
    CustomerView,
    LineView,
    OrderView,
    PointsEntryView,
    ProductView,
    RefundView,
    ShopUnavailable,
    TrackingView,
    mask_address,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT_S = 2.0


def make_engine(url: str) -> Engine:
    """An engine with SQLite tuned for several readers and one writer (WAL, busy timeout)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    m.Base.metadata.create_all(engine)
    # Indexes added after a database was first created (create_all skips existing tables).
    for index in m.Order.__table__.indexes:
        index.create(engine, checkfirst=True)


class SqlShopStore:
    """The `ShopStore` over a SQL database."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S, create: bool = True) -> None:
        self.url = url
        self.timeout = timeout
        self.engine = make_engine(url)
        if create:
            create_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[[Session], T], what: str) -> T:
        def work() -> T:
            with self._sessions() as session:
                return fn(session)

        try:
            return await asyncio.wait_for(asyncio.to_thread(work), self.timeout)
        except (TimeoutError, asyncio.TimeoutError) as e:
            raise ShopUnavailable(
                f"Shop database did not answer '{what}' within {self.timeout:.1f}s ({_safe_url(self.url)}). "
                "Check the database, or raise `shop: timeout` in endpoints.yml."
            ) from e
        except SQLAlchemyError as e:
            raise ShopUnavailable(
                f"Shop database failed on '{what}' ({_safe_url(self.url)}): {type(e).__name__}. "
                "Check the `shop: url` in endpoints.yml and that the database is up (run `python -m bot shop seed` for the demo)."
            ) from e

    async def close(self) -> None:
        self.engine.dispose()

    # -- reads ----------------------------------------------------------------------

    async def find_order(self, order_id: str) -> Optional[OrderView]:
        return await self._run(lambda s: _order_view(s, order_id), "find order")

    async def customer(self, customer_id: int) -> Optional[CustomerView]:
        return await self._run(lambda s: _customer_view(s.get(m.Customer, customer_id)), "customer")

    async def customer_by_identity(self, channel: str, external_id: str) -> Optional[CustomerView]:
        def q(s: Session) -> Optional[CustomerView]:
            row = s.execute(
                select(m.Customer)
                .join(m.ChannelIdentity, m.ChannelIdentity.customer_id == m.Customer.id)
                .where(m.ChannelIdentity.channel == channel, m.ChannelIdentity.external_id == external_id)
            ).scalar_one_or_none()
            return _customer_view(row)

        return await self._run(q, "customer by channel identity")

    async def customer_by_phone(self, phone: str) -> Optional[CustomerView]:
        return await self._run(
            lambda s: _customer_view(s.execute(select(m.Customer).where(m.Customer.phone == phone)).scalar_one_or_none()),
            "customer by phone",
        )

    async def recent_orders(self, customer_id: int, limit: int = 5) -> list[OrderView]:
        def q(s: Session) -> list[OrderView]:
            ids = s.execute(
                select(m.Order.id).where(m.Order.customer_id == customer_id).order_by(m.Order.created_at.desc()).limit(limit)
            ).scalars().all()
            return [v for v in (_order_view(s, i) for i in ids) if v is not None]

        return await self._run(q, "recent orders")

    async def orders_by_phone(
        self, phone: str, *, since: Optional[datetime] = None, limit: int = 20
    ) -> list[OrderView]:
        def q(s: Session) -> list[OrderView]:
            # Two indexed look-ups (ship_phone; the phone's customer) instead of one OR that scans.
            owner = s.execute(select(m.Customer.id).where(m.Customer.phone == phone)).scalar_one_or_none()
            found: dict[str, datetime] = {}
            for cond in ([m.Order.ship_phone == phone] + ([m.Order.customer_id == owner] if owner is not None else [])):
                stmt = select(m.Order.id, m.Order.created_at).where(cond)
                if since is not None:
                    stmt = stmt.where(m.Order.created_at >= since)
                found.update(s.execute(stmt.order_by(m.Order.created_at.desc()).limit(limit)).tuples().all())
            ids = sorted(found, key=lambda i: found[i], reverse=True)[:limit]
            return [v for v in (_order_view(s, i) for i in ids) if v is not None]

        return await self._run(q, "orders by phone")

    async def coupons(self, customer_id: int) -> list[CouponView]:
        def q(s: Session) -> list[CouponView]:
            rows = s.execute(select(m.Coupon).where(m.Coupon.customer_id == customer_id).order_by(m.Coupon.valid_until)).scalars()
            return [
                CouponView(c.code, c.title_zh, c.title_en, c.threshold_cents, c.amount_cents, c.valid_from,
                           c.valid_until, c.category, c.used_order_id)
                for c in rows
            ]

        return await self._run(q, "coupons")

    async def points(self, customer_id: int) -> list[PointsEntryView]:
        def q(s: Session) -> list[PointsEntryView]:
            rows = s.execute(select(m.PointsEntry).where(m.PointsEntry.customer_id == customer_id)).scalars()
            return [PointsEntryView(p.delta, p.reason, p.created_at, p.expires_at) for p in rows]

        return await self._run(q, "points")

    async def products(self, skus: Optional[Sequence[str]] = None) -> list[ProductView]:
        def q(s: Session) -> list[ProductView]:
            stmt = select(m.Product).order_by(m.Product.sku)
            if skus is not None:
                stmt = stmt.where(m.Product.sku.in_(list(skus)))
            return [_product_view(p) for p in s.execute(stmt).scalars()]

        return await self._run(q, "products")

    async def baskets(self, customer_id: Optional[int] = None) -> list[Basket]:
        def q(s: Session) -> list[Basket]:
            stmt = (
                select(m.Order.customer_id, m.Order.id, m.Order.created_at, m.OrderLine.sku)
                .join(m.OrderLine, m.OrderLine.order_id == m.Order.id)
                .where(m.Order.status.not_in(("cancelled", "pending_payment")))
                .order_by(m.Order.created_at, m.Order.id, m.OrderLine.id)
            )
            if customer_id is not None:
                stmt = stmt.where(m.Order.customer_id == customer_id)
            out: dict[str, list[Any]] = {}
            for cid, oid, created, sku in s.execute(stmt):
                out.setdefault(oid, [cid, oid, created, []])[3].append(sku)
            return [Basket(c, o, t, tuple(skus)) for c, o, t, skus in out.values()]

        return await self._run(q, "purchase baskets")

    # -- changes (one transaction each, with an outbox event) ------------------------

    async def cancel_order(self, order_id: str, *, sender_id: Optional[str], now: datetime) -> ChangeResult:
        def tx(s: Session) -> ChangeResult:
            with s.begin():
                order = _order_view(s, order_id)
                if order is None:
                    return ChangeResult(False, "unknown_order")
                decision = rules.can_cancel(order)
                if not decision.allowed:
                    return ChangeResult(False, decision.code, order)
                # Guarded update: a concurrent shipment or cancel wins, we don't.
                moved = s.execute(
                    update(m.Order)
                    .where(m.Order.id == order_id, m.Order.status.in_(rules.BEFORE_SHIPMENT))
                    .values(status="cancelled", cancelled_at=now)
                ).rowcount
                if moved != 1:
                    return ChangeResult(False, "already_shipped", order)
                for line in order.lines:
                    s.execute(update(m.Product).where(m.Product.sku == line.sku).values(stock=m.Product.stock + line.quantity))
                restored = s.execute(
                    update(m.Coupon).where(m.Coupon.used_order_id == order_id).values(used_order_id=None)
                ).rowcount
                refund_cents = 0
                if order.status == "paid":
                    refund_cents = order.total_cents
                    s.execute(update(m.Payment).where(m.Payment.order_id == order_id).values(status="refunded"))
                    s.add(m.Refund(order_id=order_id, amount_cents=refund_cents, status="processing",
                                   reason="order cancelled", requested_at=now))
                event = _outbox(s, "order_cancelled", sender_id, order.customer_id, order_id, now, {
                    "refund_cents": refund_cents, "coupons_restored": restored,
                    "skus": [l.sku for l in order.lines],
                })
            return ChangeResult(True, "ok", _order_view(s, order_id), event)

        return await self._run(tx, "cancel order")

    async def change_address(self, order_id: str, address: str, *, sender_id: Optional[str], now: datetime) -> ChangeResult:
        def tx(s: Session) -> ChangeResult:
            with s.begin():
                order = _order_view(s, order_id)
                if order is None:
                    return ChangeResult(False, "unknown_order")
                decision = rules.can_change_address(order)
                if not decision.allowed:
                    return ChangeResult(False, decision.code, order)
                moved = s.execute(
                    update(m.Order)
                    .where(m.Order.id == order_id, m.Order.status.in_(rules.BEFORE_SHIPMENT))
                    .values(ship_address=address)
                ).rowcount
                if moved != 1:
                    return ChangeResult(False, "already_shipped", order)
                event = _outbox(s, "address_changed", sender_id, order.customer_id, order_id, now,
                                {"address_masked": mask_address(address)})
            return ChangeResult(True, "ok", _order_view(s, order_id), event)

        return await self._run(tx, "change address")

    async def request_after_sale(
        self, order_id: str, kind: str, reason: str, *, sender_id: Optional[str], now: datetime
    ) -> ChangeResult:
        def tx(s: Session) -> ChangeResult:
            with s.begin():
                order = _order_view(s, order_id)
                if order is None:
                    return ChangeResult(False, "unknown_order")
                decision = rules.can_request_after_sale(order, kind, now)
                if not decision.allowed:
                    return ChangeResult(False, decision.code, order)
                moved = s.execute(
                    update(m.Order).where(m.Order.id == order_id, m.Order.status == "delivered").values(status="after_sales")
                ).rowcount
                if moved != 1:
                    return ChangeResult(False, "after_sale_open", order)
                record = m.AfterSale(order_id=order_id, kind=kind, reason=reason[:200], status="requested", created_at=now)
                s.add(record)
                s.flush()
                event = _outbox(s, f"{kind}_requested", sender_id, order.customer_id, order_id, now, {
                    "after_sale_id": record.id, "reason": reason[:200],
                    "skus": rules.eligible_lines(order, kind),
                    "refund_cents": rules.refundable_cents(order, kind),
                })
            return ChangeResult(True, "ok", _order_view(s, order_id), event, decision.days_left)

        return await self._run(tx, f"request {kind}")

    async def record_event(
        self, event: str, *, sender_id: Optional[str], customer_id: Optional[int], payload: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        def tx(s: Session) -> dict[str, Any]:
            with s.begin():
                return _outbox(s, event, sender_id, customer_id, payload.get("order_id"), now, payload)

        return await self._run(tx, f"record {event}")

    # -- outbox relay (used by `bot/shop_cli.forward_outbox`) -------------------------

    def pending_outbox(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._sessions() as s:
            rows = s.execute(
                select(m.OutboxEvent).where(m.OutboxEvent.published_at.is_(None)).order_by(m.OutboxEvent.id).limit(limit)
            ).scalars()
            return [_event_dict(r) for r in rows]

    def mark_published(self, ids: Sequence[int], now: Optional[datetime] = None) -> None:
        with self._sessions() as s, s.begin():
            s.execute(
                update(m.OutboxEvent).where(m.OutboxEvent.id.in_(list(ids))).values(published_at=now or datetime.now(timezone.utc))
            )


# --- row → view ------------------------------------------------------------------------

def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _customer_view(row: Optional[m.Customer]) -> Optional[CustomerView]:
    return CustomerView(row.id, row.name, row.phone) if row is not None else None


def _product_view(p: m.Product) -> ProductView:
    return ProductView(p.sku, p.category, p.title_zh, p.title_en, p.brand, p.price_cents, p.stock,
                       tuple(p.sizes or ()), tuple(p.colours or ()), tuple(p.images or ()), dict(p.attributes or {}))


def _order_view(s: Session, order_id: str) -> Optional[OrderView]:
    o = s.get(m.Order, order_id)
    if o is None:
        return None
    lines = tuple(
        LineView(l.sku, p.title_zh, p.title_en, p.category, l.size, l.colour, l.quantity, l.unit_price_cents)
        for l, p in s.execute(
            select(m.OrderLine, m.Product).join(m.Product, m.Product.sku == m.OrderLine.sku)
            .where(m.OrderLine.order_id == order_id).order_by(m.OrderLine.id)
        )
    )
    shipment = s.execute(
        select(m.Shipment).where(m.Shipment.order_id == order_id).order_by(m.Shipment.id.desc()).limit(1)
    ).scalar_one_or_none()
    tracking: tuple[TrackingView, ...] = ()
    if shipment is not None:
        tracking = tuple(
            TrackingView(t.time, t.text_zh, t.text_en)
            for t in s.execute(select(m.TrackingEvent).where(m.TrackingEvent.shipment_id == shipment.id)
                               .order_by(m.TrackingEvent.time)).scalars()
        )
    refunds = tuple(
        RefundView(r.amount_cents, r.status, r.requested_at, r.completed_at, r.reason)
        for r in s.execute(select(m.Refund).where(m.Refund.order_id == order_id).order_by(m.Refund.id)).scalars()
    )
    after_sales = tuple(
        AfterSaleView(a.id, a.kind, a.reason, a.status, a.created_at)
        for a in s.execute(select(m.AfterSale).where(m.AfterSale.order_id == order_id).order_by(m.AfterSale.id)).scalars()
    )
    return OrderView(
        id=o.id, customer_id=o.customer_id, status=o.status, created_at=o.created_at, ship_name=o.ship_name,
        ship_phone=o.ship_phone, ship_address=o.ship_address, total_cents=o.total_cents,
        discount_cents=o.discount_cents, coupon_code=o.coupon_code, paid_at=o.paid_at, shipped_at=o.shipped_at,
        delivered_at=o.delivered_at, cancelled_at=o.cancelled_at,
        carrier=shipment.carrier if shipment else None,
        tracking_number=shipment.tracking_number if shipment else None,
        eta=shipment.eta if shipment else None,
        lines=lines, tracking=tracking, refunds=refunds, after_sales=after_sales,
    )


def _outbox(s: Session, name: str, sender_id: Optional[str], customer_id: Optional[int], order_id: Optional[str],
            now: datetime, payload: dict[str, Any]) -> dict[str, Any]:
    row = m.OutboxEvent(event=name, sender_id=sender_id, customer_id=customer_id, order_id=order_id,
                        payload=payload, created_at=now)
    s.add(row)
    s.flush()
    return _event_dict(row)


def _event_dict(row: m.OutboxEvent) -> dict[str, Any]:
    """The broker body: Rasa-like `event` + `sender_id` + `timestamp`, plus the shop fields."""
    return {
        "event": row.event,
        "sender_id": row.sender_id,
        "timestamp": row.created_at.timestamp(),
        "customer_id": row.customer_id,
        "order_id": row.order_id,
        "data": dict(row.payload or {}),
        "outbox_id": row.id,
    }


def bulk_insert(session: Session, model: type, rows: list[dict[str, Any]], chunk: int = 20000) -> None:
    """Fast executemany inserts for seeding and imports.

    On SQLite, values are converted once here and sent through the DB-API driver
    (the ORM bulk path was ~10x slower and type processing per value ~3x).
    """
    if not rows:
        return
    table = model.__table__
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        for i in range(0, len(rows), chunk):
            connection.execute(insert(table), rows[i:i + chunk])
        return
    columns = [c for c in table.columns if any(c.name in row for row in rows[:1]) or c.name in rows[0]]
    converters = [_sqlite_converter(c) for c in columns]
    sql = f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) VALUES ({', '.join('?' for _ in columns)})"
    names = [c.name for c in columns]
    for i in range(0, len(rows), chunk):
        batch = [tuple(conv(row.get(name)) for name, conv in zip(names, converters)) for row in rows[i:i + chunk]]
        connection.exec_driver_sql(sql, batch)


def _sqlite_converter(column: Any) -> Callable[[Any], Any]:
    import json

    if isinstance(column.type, m.UTCDateTime):
        def when(v: Any) -> Any:
            if v is None:
                return None
            return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        return when
    if column.type.__class__.__name__ == "JSON":
        return lambda v: json.dumps(v if v is not None else None, ensure_ascii=False)
    if column.type.__class__.__name__ == "Boolean":
        return lambda v: None if v is None else int(bool(v))
    return lambda v: v


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
