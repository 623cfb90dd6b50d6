"""triggers: every trigger table (events, profiles, journeys, sends, decisions, conversions, jobs)

Revision ID: triggers_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.stores.migrate import create_table_if_missing

revision = "triggers_0001"
down_revision = None
branch_labels = ("triggers",)
depends_on = None
TABLES = ("trigger_conversions", "trigger_customers", "trigger_decisions", "trigger_events", "trigger_instances", "trigger_sends", "trigger_variant_states", "trigger_jobs")


def upgrade() -> None:
    create_table_if_missing(
        "trigger_conversions",
        sa.Column("send_id", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("journey", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("send_id"),
    )
    create_table_if_missing(
        "trigger_customers",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    create_table_if_missing(
        "trigger_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("send_id", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("journey", sa.String(length=128), nullable=False),
        sa.Column("step", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_trigger_decisions_customer_id", ["customer_id"], False), ("ix_trigger_decisions_send_id", ["send_id"], False)],
    )
    create_table_if_missing(
        "trigger_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_trigger_events_customer_id", ["customer_id"], False)],
    )
    create_table_if_missing(
        "trigger_instances",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("journey", sa.String(length=128), nullable=False),
        sa.Column("entered_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_trigger_instances_customer_id", ["customer_id"], False)],
    )
    create_table_if_missing(
        "trigger_sends",
        sa.Column("send_id", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("journey", sa.String(length=128), nullable=False),
        sa.Column("step", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("message", sa.String(length=128), nullable=False),
        sa.Column("transactional", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reserved_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("path", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("send_id"),
        indexes=[("ix_trigger_sends_customer_id", ["customer_id"], False)],
    )
    create_table_if_missing(
        "trigger_variant_states",
        sa.Column("journey", sa.String(length=128), nullable=False),
        sa.Column("step", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("in_flight", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("journey", "step", "variant"),
    )
    create_table_if_missing(
        "trigger_jobs",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("due", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_trigger_jobs_due", ["lease_until", "due"], False)],
    )


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
