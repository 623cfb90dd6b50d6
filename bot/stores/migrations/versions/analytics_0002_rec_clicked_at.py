"""analytics: when a conversation's first recommendation was clicked ("recommendations ordered")

Revision ID: analytics_0002
Revises: analytics_0001
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "analytics_0002"
down_revision = "analytics_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("analytics_conversations")}
    if "rec_clicked_at" not in columns:  # a store made by create_all after the column was added
        with op.batch_alter_table("analytics_conversations") as batch:
            batch.add_column(sa.Column("rec_clicked_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analytics_conversations") as batch:
        batch.drop_column("rec_clicked_at")
