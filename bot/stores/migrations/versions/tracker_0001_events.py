"""tracker: the events table (Rasa's columns, one row per event)

Revision ID: tracker_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.stores.migrate import create_table_if_missing, table_name

revision = "tracker_0001"
down_revision = None
branch_labels = ("tracker",)
depends_on = None


def upgrade() -> None:
    name = table_name("events")
    create_table_if_missing(
        name,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("type_name", sa.String(length=255), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=True),
        sa.Column("intent_name", sa.String(length=255), nullable=True),
        sa.Column("action_name", sa.String(length=255), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes=[(f"ix_{name}_sender_id_id", ["sender_id", "id"], False),
                 (f"ix_{name}_sender_id_type_name", ["sender_id", "type_name"], False)],
    )


def downgrade() -> None:
    op.drop_table(table_name("events"))
