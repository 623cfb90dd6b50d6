"""customers: Customer 360 (customers, identities, events, health history, merges, conflicts, alerts)

The first revision adopts a database made before migrations (``create_all``): it creates
only the tables and indexes that are missing, leaving existing tables and rows alone.

Revision ID: customers_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "customers_0001"
down_revision = None
branch_labels = ("customers",)
depends_on = None

# The schema as of this revision (frozen here: later changes are later revisions).
metadata = sa.MetaData()
sa.Table(
    'c360_alerts', metadata,
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
)
sa.Table(
    'c360_conflicts', metadata,
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=191), nullable=False),
    sa.Column('owner_id', sa.String(length=40), nullable=False),
    sa.Column('claimant_id', sa.String(length=40), nullable=False),
    sa.Column('proof', sa.String(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
)
sa.Table(
    'c360_customers', metadata,
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('merged_into', sa.String(length=40), nullable=True),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('profile', sa.Text(), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('health_score', sa.Float(), nullable=True),
    sa.Column('health_band', sa.String(length=32), nullable=True),
    sa.Column('health', sa.Text(), nullable=False),
    sa.Column('last_event_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
)
sa.Table(
    'c360_events', metadata,
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=191), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('identity_kind', sa.String(length=32), nullable=False),
    sa.Column('identity_value', sa.String(length=191), nullable=False),
    sa.Column('type', sa.String(length=48), nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
)
sa.Table(
    'c360_health_history', metadata,
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('band', sa.String(length=32), nullable=False),
    sa.Column('factors', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
)
sa.Table(
    'c360_identities', metadata,
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=191), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('origin_customer_id', sa.String(length=40), nullable=False),
    sa.Column('proof', sa.String(length=64), nullable=False),
    sa.Column('linked_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'value')
)
sa.Table(
    'c360_merges', metadata,
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('survivor_id', sa.String(length=40), nullable=False),
    sa.Column('merged_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('undone_at', sa.Float(), nullable=True),
    sa.Column('undone_by', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id')
)

INDEXES = [
    ('ix_c360_alerts_customer_id', 'c360_alerts', ['customer_id'], False),
    ('ix_c360_customers_merged_into', 'c360_customers', ['merged_into'], False),
    ('ix_c360_events_customer_ts', 'c360_events', ['customer_id', 'ts', 'seq'], False),
    ('ix_c360_events_identity', 'c360_events', ['identity_kind', 'identity_value'], False),
    ('ix_c360_health_customer_at', 'c360_health_history', ['customer_id', 'at'], False),
    ('ix_c360_identities_customer_id', 'c360_identities', ['customer_id'], False),
    ('ix_c360_merges_survivor_id', 'c360_merges', ['survivor_id'], False),
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
