"""shop: the demo shop's tables (customers, catalogue, orders, after-sales, coupons, points, stock, outbox)

The first revision adopts a shop database made before migrations (``create_all``): it
creates only the tables and indexes that are missing, so the older tables (and their
rows) stay as they are and the ones added later — coupon templates and issues, points,
variant stock, restock subscriptions, verification failures — are added.

Revision ID: shop_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "shop_0001"
down_revision = None
branch_labels = ("shop",)
depends_on = None

# The schema as of this revision (frozen here: later model changes are later revisions).
metadata = sa.MetaData()
sa.Table(
    'categories', metadata,
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name_zh', sa.String(length=32), nullable=False),
    sa.Column('name_en', sa.String(length=64), nullable=False),
    sa.Column('size_chart', sa.String(length=16), nullable=False),
    sa.Column('returnable', sa.Boolean(), nullable=False),
    sa.Column('exchangeable', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code')
)
sa.Table(
    'coupon_templates', metadata,
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('title_zh', sa.String(length=64), nullable=False),
    sa.Column('title_en', sa.String(length=64), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('threshold_cents', sa.Integer(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('terms_zh', sa.String(length=200), nullable=False),
    sa.Column('terms_en', sa.String(length=200), nullable=False),
    sa.Column('points_cost', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('code')
)
sa.Table(
    'customers', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('phone')
)
sa.Table(
    'outbox', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('sender_id', sa.String(length=128), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.String(length=24), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'verification_failures', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'channel_identities', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'external_id')
)
sa.Table(
    'coupon_issues', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('issue_key', sa.String(length=96), nullable=False),
    sa.Column('template', sa.String(length=32), nullable=False),
    sa.Column('coupon_code', sa.String(length=32), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('redeemed_order_id', sa.String(length=24), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('coupon_code'),
    sa.UniqueConstraint('customer_id', 'issue_key')
)
sa.Table(
    'coupons', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('title_zh', sa.String(length=64), nullable=False),
    sa.Column('title_en', sa.String(length=64), nullable=False),
    sa.Column('threshold_cents', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('valid_from', sa.DateTime(), nullable=False),
    sa.Column('valid_until', sa.DateTime(), nullable=False),
    sa.Column('used_order_id', sa.String(length=24), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
)
sa.Table(
    'orders', metadata,
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.Column('shipped_at', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(), nullable=True),
    sa.Column('ship_name', sa.String(length=64), nullable=False),
    sa.Column('ship_phone', sa.String(length=20), nullable=False),
    sa.Column('ship_address', sa.Text(), nullable=False),
    sa.Column('coupon_code', sa.String(length=32), nullable=True),
    sa.Column('discount_cents', sa.Integer(), nullable=False),
    sa.Column('total_cents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'points_entries', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'products', metadata,
    sa.Column('sku', sa.String(length=48), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('title_zh', sa.String(length=128), nullable=False),
    sa.Column('title_en', sa.String(length=128), nullable=False),
    sa.Column('brand', sa.String(length=32), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('sizes', sa.JSON(), nullable=False),
    sa.Column('colours', sa.JSON(), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('images', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['category'], ['categories.code'], ),
    sa.PrimaryKeyConstraint('sku')
)
sa.Table(
    'after_sales', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=24), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'order_lines', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=24), nullable=False),
    sa.Column('sku', sa.String(length=48), nullable=False),
    sa.Column('size', sa.String(length=16), nullable=False),
    sa.Column('colour', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price_cents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.ForeignKeyConstraint(['sku'], ['products.sku'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'payments', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=24), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'refunds', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=24), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'restock_subscriptions', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=48), nullable=False),
    sa.Column('size', sa.String(length=16), nullable=False),
    sa.Column('colour', sa.String(length=16), nullable=False),
    sa.Column('sender_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('notified_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['sku'], ['products.sku'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sku', 'size', 'colour', 'sender_id')
)
sa.Table(
    'shipments', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=24), nullable=False),
    sa.Column('carrier', sa.String(length=16), nullable=False),
    sa.Column('tracking_number', sa.String(length=32), nullable=False),
    sa.Column('shipped_at', sa.DateTime(), nullable=False),
    sa.Column('eta', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'variant_stock', metadata,
    sa.Column('sku', sa.String(length=48), nullable=False),
    sa.Column('size', sa.String(length=16), nullable=False),
    sa.Column('colour', sa.String(length=16), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['sku'], ['products.sku'], ),
    sa.PrimaryKeyConstraint('sku', 'size', 'colour')
)
sa.Table(
    'tracking_events', metadata,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('time', sa.DateTime(), nullable=False),
    sa.Column('text_zh', sa.String(length=128), nullable=False),
    sa.Column('text_en', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], ),
    sa.PrimaryKeyConstraint('id')
)

INDEXES = [
    ('ix_outbox_event', 'outbox', ['event'], False),
    ('ix_outbox_published_at', 'outbox', ['published_at'], False),
    ('ix_verification_failures_subject', 'verification_failures', ['kind', 'subject', 'failed_at'], False),
    ('ix_channel_identities_customer_id', 'channel_identities', ['customer_id'], False),
    ('ix_coupons_customer_id', 'coupons', ['customer_id'], False),
    ('ix_coupons_used_order_id', 'coupons', ['used_order_id'], False),
    ('ix_orders_customer_created', 'orders', ['customer_id', 'created_at'], False),
    ('ix_orders_ship_phone', 'orders', ['ship_phone', 'created_at'], False),
    ('ix_orders_status', 'orders', ['status'], False),
    ('ix_points_entries_customer_id', 'points_entries', ['customer_id'], False),
    ('ix_products_category', 'products', ['category'], False),
    ('ix_after_sales_order_id', 'after_sales', ['order_id'], False),
    ('ix_order_lines_order_id', 'order_lines', ['order_id'], False),
    ('ix_order_lines_sku', 'order_lines', ['sku'], False),
    ('ix_payments_order_id', 'payments', ['order_id'], False),
    ('ix_refunds_order_id', 'refunds', ['order_id'], False),
    ('ix_restock_subscriptions_sku', 'restock_subscriptions', ['sku'], False),
    ('ix_shipments_order_id', 'shipments', ['order_id'], False),
    ('ix_tracking_events_shipment_id', 'tracking_events', ['shipment_id'], False),]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:  # parents before children (foreign keys)
        if table.name not in existing:
            table.create(bind)
    for name, table, columns, unique in INDEXES:
        if name not in {i["name"] for i in sa.inspect(bind).get_indexes(table)}:
            op.create_index(name, table, columns, unique=unique)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(metadata.sorted_tables):
        table.drop(bind, checkfirst=True)
