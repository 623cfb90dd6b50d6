"""Every table of Customer 360, in one SQLAlchemy ``MetaData`` (an Alembic revision adds them all).

Portable types only (String, Text, Float, Integer, Boolean): the same tables on SQLite and
PostgreSQL. JSON documents are stored as Text written by ``json.dumps`` so both backends
read them back identically.
"""
from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# One row per customer. ``merged_into`` points at the survivor after a merge (kept for unmerge).
customers = Table(
    "c360_customers", metadata,
    Column("id", String(40), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("merged_into", String(40), nullable=True, index=True),
    Column("state", Text, nullable=False, default="{}"),  # profile accumulators (profile.py)
    Column("profile", Text, nullable=False, default="{}"),  # derived profile
    Column("tags", Text, nullable=False, default="[]"),
    Column("health_score", Float, nullable=True),
    Column("health_band", String(32), nullable=True),
    Column("health", Text, nullable=False, default="{}"),  # components + explanation
    Column("last_event_at", Float, nullable=True),
)

# Proven identities: (kind, value) belongs to exactly one customer.
identities = Table(
    "c360_identities", metadata,
    Column("kind", String(32), primary_key=True),  # shop_customer | widget | wechat_openid | phone | conversation
    Column("value", String(191), primary_key=True),
    Column("customer_id", String(40), nullable=False, index=True),
    Column("origin_customer_id", String(40), nullable=False),  # whose it was before any manual merge
    Column("proof", String(64), nullable=False),  # how it was proven (docs/customers.md)
    Column("linked_at", Float, nullable=False),
)

# Every event a customer's profile is computed from, and the timeline's items.
events = Table(
    "c360_events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(191), nullable=False, unique=True),
    Column("customer_id", String(40), nullable=False),
    Column("identity_kind", String(32), nullable=False),
    Column("identity_value", String(191), nullable=False),
    Column("type", String(48), nullable=False),
    Column("ts", Float, nullable=False),
    Column("data", Text, nullable=False, default="{}"),
)
Index("ix_c360_events_customer_ts", events.c.customer_id, events.c.ts, events.c.seq)
Index("ix_c360_events_identity", events.c.identity_kind, events.c.identity_value)

# Health score history (the trend) with each score's explanation.
health_history = Table(
    "c360_health_history", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("band", String(32), nullable=False),
    Column("factors", Text, nullable=False, default="[]"),
)
Index("ix_c360_health_customer_at", health_history.c.customer_id, health_history.c.at)

# Manual merges (and their undo), and links refused because they would join two known customers.
merges = Table(
    "c360_merges", metadata,
    Column("id", String(40), primary_key=True),
    Column("survivor_id", String(40), nullable=False, index=True),
    Column("merged_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),  # manual | auto (an anonymous conversation record)
    Column("actor", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("undone_at", Float, nullable=True),
    Column("undone_by", String(128), nullable=True),
)

conflicts = Table(
    "c360_conflicts", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("value", String(191), nullable=False),
    Column("owner_id", String(40), nullable=False),
    Column("claimant_id", String(40), nullable=False),
    Column("proof", String(64), nullable=False),
    Column("at", Float, nullable=False),
)

# Threshold actions that fired (notify agents, routing, journey) — the console lists them.
alerts = Table(
    "c360_alerts", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(40), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
)
