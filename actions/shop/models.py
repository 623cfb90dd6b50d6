"""SQLAlchemy tables of the shop: customers, catalogue, orders and after-sales.

Money is stored as integer cents (exact, portable across SQLite and PostgreSQL);
times as timezone-aware UTC. Natural keys (phone, sku, order id, coupon code)
are unique so that imports can upsert idempotently.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out (SQLite forgets the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the shop stores aware times only")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChannelIdentity(Base):
    """A channel's id for a customer, e.g. ("wechat", openid)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))


class Category(Base):
    __tablename__ = "categories"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(32))
    name_en: Mapped[str] = mapped_column(String(64))
    size_chart: Mapped[str] = mapped_column(String(16))  # shoes | apparel | none
    returnable: Mapped[bool] = mapped_column(Boolean, default=True)
    exchangeable: Mapped[bool] = mapped_column(Boolean, default=True)


class Product(Base):
    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(48), primary_key=True)
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"), index=True)
    title_zh: Mapped[str] = mapped_column(String(128))
    title_en: Mapped[str] = mapped_column(String(128))
    brand: Mapped[str] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sizes: Mapped[list[str]] = mapped_column(JSON, default=list)
    colours: Mapped[list[str]] = mapped_column(JSON, default=list)
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer_created", "customer_id", "created_at"),
        Index("ix_orders_ship_phone", "ship_phone", "created_at"),  # order look-up by phone
    )
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    shipped_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    cancelled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    ship_name: Mapped[str] = mapped_column(String(64))
    ship_phone: Mapped[str] = mapped_column(String(20))
    ship_address: Mapped[str] = mapped_column(Text)
    coupon_code: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    discount_cents: Mapped[int] = mapped_column(Integer, default=0)
    total_cents: Mapped[int] = mapped_column(Integer)  # after discount


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    size: Mapped[str] = mapped_column(String(16))
    colour: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # wechat_pay | alipay | card
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending | paid | refunded
    paid_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(16))
    tracking_number: Mapped[str] = mapped_column(String(32))
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime)
    eta: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class TrackingEvent(Base):
    __tablename__ = "tracking_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    text_zh: Mapped[str] = mapped_column(String(128))
    text_en: Mapped[str] = mapped_column(String(128))


class AfterSale(Base):
    """A return or exchange request."""

    __tablename__ = "after_sales"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # return | exchange
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # requested | received | completed | rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # processing | completed
    reason: Mapped[str] = mapped_column(String(200), default="")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class Coupon(Base):
    __tablename__ = "coupons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    title_zh: Mapped[str] = mapped_column(String(64))
    title_en: Mapped[str] = mapped_column(String(64))
    threshold_cents: Mapped[int] = mapped_column(Integer, default=0)
    amount_cents: Mapped[int] = mapped_column(Integer)
    category: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    used_order_id: Mapped[Optional[str]] = mapped_column(String(24), nullable=True, index=True)  # restored on cancel


class PointsEntry(Base):
    __tablename__ = "points_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class OutboxEvent(Base):
    """Behaviour events written in the same transaction as the change they describe."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(32), index=True)
    sender_id: Mapped[Optional[str]] = mapped_column(String(128), nullable=True)
    customer_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    order_id: Mapped[Optional[str]] = mapped_column(String(24), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True, index=True)


class VerificationFailure(Base):
    """A failed order/phone verification, shared by every conversation and worker.

    `subject` is a SHA-256 of the order id or phone (a phone is personal data, and the
    count needs only equality); rows older than the window are ignored and purged.
    """

    __tablename__ = "verification_failures"
    __table_args__ = (Index("ix_verification_failures_subject", "kind", "subject", "failed_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # order | phone
    subject: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VariantStock(Base):
    """Stock of one size/colour of a product; a product without rows has only `Product.stock`."""

    __tablename__ = "variant_stock"
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    size: Mapped[str] = mapped_column(String(16), primary_key=True)
    colour: Mapped[str] = mapped_column(String(16), primary_key=True)
    stock: Mapped[int] = mapped_column(Integer)


class RestockSubscription(Base):
    """A shopper asked to hear when a product (optionally one size/colour) is back."""

    __tablename__ = "restock_subscriptions"
    __table_args__ = (UniqueConstraint("sku", "size", "colour", "sender_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    size: Mapped[str] = mapped_column(String(16), default="")
    colour: Mapped[str] = mapped_column(String(16), default="")
    sender_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notified_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class CouponTemplateRow(Base):
    """What a coupon of this kind is worth and its terms (from shop.yml, or the merchant's own)."""

    __tablename__ = "coupon_templates"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    title_zh: Mapped[str] = mapped_column(String(64))
    title_en: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    threshold_cents: Mapped[int] = mapped_column(Integer, default=0)
    valid_days: Mapped[int] = mapped_column(Integer)
    category: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    terms_zh: Mapped[str] = mapped_column(String(200), default="")
    terms_en: Mapped[str] = mapped_column(String(200), default="")
    points_cost: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)


class CouponIssue(Base):
    """One issued coupon per (customer, issue key): a journey step, a points redemption, a complaint.

    The unique key makes issuing idempotent across retries, workers and restarts.
    """

    __tablename__ = "coupon_issues"
    __table_args__ = (UniqueConstraint("customer_id", "issue_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    issue_key: Mapped[str] = mapped_column(String(96))
    template: Mapped[str] = mapped_column(String(32))
    coupon_code: Mapped[str] = mapped_column(String(32), unique=True)
    issued_by: Mapped[str] = mapped_column(String(64))  # journey:step | points | agent:<id>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_order_id: Mapped[Optional[str]] = mapped_column(String(24), nullable=True)
