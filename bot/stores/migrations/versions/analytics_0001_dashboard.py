"""analytics: conversations, rollups, surveys and orders of the dashboard

The first revision adopts a database made before migrations (``create_all``): it creates
only the tables and indexes that are missing, leaving existing tables and rows alone.

Revision ID: analytics_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "analytics_0001"
down_revision = None
branch_labels = ("analytics",)
depends_on = None

# The schema as of this revision (frozen here: later changes are later revisions).
metadata = sa.MetaData()
sa.Table(
    'analytics_conversations', metadata,
    sa.Column('id', sa.String(length=300), nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('hour', sa.String(length=13), nullable=False),
    sa.Column('last_event_at', sa.Float(), nullable=False),
    sa.Column('first_user_at', sa.Float(), nullable=True),
    sa.Column('first_bot_at', sa.Float(), nullable=True),
    sa.Column('first_intent', sa.String(length=128), nullable=True),
    sa.Column('user_turns', sa.Integer(), nullable=False),
    sa.Column('fallbacks', sa.Integer(), nullable=False),
    sa.Column('fallback_streak', sa.Integer(), nullable=False),
    sa.Column('max_fallback_streak', sa.Integer(), nullable=False),
    sa.Column('fallback_turn', sa.Integer(), nullable=True),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.Column('handoff_id', sa.String(length=128), nullable=True),
    sa.Column('handoff_created_at', sa.Float(), nullable=True),
    sa.Column('assigned_at', sa.Float(), nullable=True),
    sa.Column('agent_id', sa.String(length=128), nullable=True),
    sa.Column('first_agent_at', sa.Float(), nullable=True),
    sa.Column('resolved_at', sa.Float(), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('resolved', sa.Boolean(), nullable=False),
    sa.Column('repeated', sa.Boolean(), nullable=False),
    sa.Column('converted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'analytics_orders', metadata,
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('paid_at', sa.Float(), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('conversation_id', sa.String(length=300), nullable=True),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('order_id')
)
sa.Table(
    'analytics_rollups', metadata,
    sa.Column('grain', sa.String(length=1), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=False),
    sa.Column('bucket', sa.String(length=13), nullable=False),
    sa.Column('metric', sa.String(length=48), nullable=False),
    sa.Column('dim', sa.String(length=255), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('grain', 'channel', 'segment', 'bucket', 'metric', 'dim')
)
sa.Table(
    'analytics_surveys', metadata,
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('sender_id', sa.String(length=255), nullable=False),
    sa.Column('conversation_id', sa.String(length=300), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('asked_at', sa.Float(), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('intent', sa.String(length=128), nullable=True),
    sa.Column('csat', sa.Integer(), nullable=True),
    sa.Column('nps', sa.Integer(), nullable=True),
    sa.Column('ces', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
)

INDEXES = [
    ('ix_analytics_conv_customer', 'analytics_conversations', ['customer_id', 'started_at'], False),
    ('ix_analytics_conv_open', 'analytics_conversations', ['ended_at', 'last_event_at'], False),
    ('ix_analytics_conv_sender', 'analytics_conversations', ['sender_id', 'last_event_at'], False),
    ('ix_analytics_orders_customer', 'analytics_orders', ['customer_id', 'paid_at', 'amount', 'channel', 'segment'], False),
    ('ix_analytics_orders_paid', 'analytics_orders', ['paid_at', 'customer_id'], False),
    ('ix_analytics_rollups_metric', 'analytics_rollups', ['grain', 'metric', 'segment', 'bucket'], False),
    ('ix_analytics_surveys_customer', 'analytics_surveys', ['customer_id', 'day'], False),
    ('ix_analytics_surveys_sender', 'analytics_surveys', ['sender_id', 'step'], False),
]


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            table.create(bind)
    for name, table, columns, unique in INDEXES:
        if name not in {i["name"] for i in sa.inspect(bind).get_indexes(table)}:
            op.create_index(name, table, columns, unique=unique)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(metadata.sorted_tables):
        table.drop(bind, checkfirst=True)
