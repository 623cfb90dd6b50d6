"""handoff: handoffs, relayed messages and the handoff audit trail

Revision ID: handoff_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.stores.migrate import create_table_if_missing

revision = "handoff_0001"
down_revision = None
branch_labels = ("handoff",)
depends_on = None


def upgrade() -> None:
    create_table_if_missing(
        "kefu_handoff_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("handoff_id", sa.String(length=64), nullable=True),
        sa.Column("conversation_id", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    create_table_if_missing(
        "kefu_handoff_messages",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("handoff_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=128), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("handoff_id", "message_id", name="uq_handoff_message"),
    )
    create_table_if_missing(
        "kefu_handoffs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("skills", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.String(length=128), nullable=True),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("after_hours", sa.Boolean(), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("csat_pending", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("assigned_at", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes=[("ix_kefu_handoffs_agent_id", ["agent_id"], False),
                 ("ix_kefu_handoffs_conversation_id", ["conversation_id"], False),
                 ("ix_kefu_handoffs_status", ["status"], False)],
    )


def downgrade() -> None:
    for name in ("kefu_handoffs", "kefu_handoff_messages", "kefu_handoff_audit"):
        op.drop_table(name)
