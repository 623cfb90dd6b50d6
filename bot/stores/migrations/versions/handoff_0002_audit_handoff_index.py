"""handoff: index the handoff audit trail by handoff (transcript exports and erasure read it by id)

Revision ID: handoff_0002
Revises: handoff_0001
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op

revision = "handoff_0002"
down_revision = "handoff_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_kefu_handoff_audit_handoff_id", "kefu_handoff_audit", ["handoff_id"])


def downgrade() -> None:
    op.drop_index("ix_kefu_handoff_audit_handoff_id", table_name="kefu_handoff_audit")
