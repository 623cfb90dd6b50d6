"""audit: the audit_log table (who read which transcript)

Revision ID: audit_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.stores.migrate import create_table_if_missing, table_name

revision = "audit_0001"
down_revision = None
branch_labels = ("audit",)
depends_on = None


def upgrade() -> None:
    name = table_name("audit_log")
    create_table_if_missing(
        name,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        indexes=[(f"ix_{name}_at", ["at"], False), (f"ix_{name}_actor_at", ["actor", "at"], False),
                 (f"ix_{name}_target_at", ["target", "at"], False)],
    )


def downgrade() -> None:
    op.drop_table(table_name("audit_log"))
