"""triggers: index behaviour events by time (retention purges delete ``WHERE ts < cutoff``)

Revision ID: triggers_0002
Revises: triggers_0001
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op

revision = "triggers_0002"
down_revision = "triggers_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trigger_events_ts", "trigger_events", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_trigger_events_ts", table_name="trigger_events")
