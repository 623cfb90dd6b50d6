"""workbench: model registry, activations, handled inbox messages, training jobs (shared by every host)

Revision ID: workbench_0001
Revises:
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.stores.migrate import create_table_if_missing

revision = "workbench_0001"
down_revision = None
branch_labels = ("workbench",)
depends_on = None


def upgrade() -> None:
    create_table_if_missing(
        "kefu_workbench_models",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("trained_at", sa.Float, nullable=False),
        sa.Column("trained_by", sa.String(255), nullable=False),
        sa.Column("data_version", sa.String(64), nullable=False),
        sa.Column("holdout", sa.Float),
        sa.Column("comparison", sa.Text),
        sa.Column("gate_passed", sa.Boolean),
        sa.Column("detail", sa.Text),
    )
    create_table_if_missing(
        "kefu_workbench_activations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("previous", sa.String(255)),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("override", sa.Boolean, nullable=False),
        indexes=[("ix_kefu_workbench_activations_model", ["model"], False)],
    )
    create_table_if_missing(
        "kefu_workbench_handled",
        sa.Column("text_key", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text),
    )
    create_table_if_missing(
        "kefu_workbench_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("model", sa.String(255)),
        sa.Column("gate_passed", sa.Boolean),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    for name in ("kefu_workbench_jobs", "kefu_workbench_handled", "kefu_workbench_activations",
                 "kefu_workbench_models"):
        op.drop_table(name)
