"""The analytics tables, in one MetaData (Alembic autogenerate reads ``metadata``). Portable types only.

- ``analytics_conversations``: one row per conversation (a tracker session), updated as its
  events arrive: the facts a figure needs at the end (first response, fallbacks, handoff
  times, first intent, resolution).
- ``analytics_rollups``: the figures' sums per month (``grain`` ``m``), day (``d``) and, for a few
  metrics, hour (``h``); per channel and customer segment, with ``*`` rows summing every
  channel and/or segment; per metric and dimension (an intent, a reason, a score, ...). The
  dashboard reads only this table — one cell per filter, whole months from month rows — so it
  answers in time proportional to (months + edge days) × dimensions, not to events.
- ``analytics_surveys``: one row per survey asked after a conversation (and its answers).
- ``analytics_orders``: paid orders seen on the broker (conversion, AOV).
"""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

conversations = Table(
    "analytics_conversations", metadata,
    Column("id", String(300), primary_key=True),  # sender_id + "@" + session start (seconds)
    Column("sender_id", String(255), nullable=False),
    Column("customer_id", String(255), nullable=False),
    Column("channel", String(64), nullable=False, default=""),
    Column("segment", String(64), nullable=False, default=""),
    Column("started_at", Float, nullable=False),
    Column("day", String(10), nullable=False),  # UTC day of the start: the row's rollup bucket
    Column("hour", String(13), nullable=False),
    Column("last_event_at", Float, nullable=False),
    Column("first_user_at", Float),
    Column("first_bot_at", Float),
    Column("first_intent", String(128)),
    Column("user_turns", Integer, nullable=False, default=0),
    Column("fallbacks", Integer, nullable=False, default=0),
    Column("fallback_streak", Integer, nullable=False, default=0),
    Column("max_fallback_streak", Integer, nullable=False, default=0),
    Column("fallback_turn", Integer),  # the user turn of the latest fallback (one per turn)
    Column("escalated", Boolean, nullable=False, default=False),
    Column("handoff_id", String(128)),
    Column("handoff_created_at", Float),
    Column("assigned_at", Float),
    Column("agent_id", String(128)),
    Column("first_agent_at", Float),
    Column("resolved_at", Float),
    Column("ended_at", Float),
    Column("resolved", Boolean, nullable=False, default=False),  # by the bot or by an agent
    Column("repeated", Boolean, nullable=False, default=False),  # a repeat inquiry followed within the window
    Column("converted", Boolean, nullable=False, default=False),  # an order followed within the window
    Column("rec_clicked_at", Float),  # the first recommendation click in the conversation (rec_ordered)
    Index("ix_analytics_conv_sender", "sender_id", "last_event_at"),
    Index("ix_analytics_conv_customer", "customer_id", "started_at"),
    Index("ix_analytics_conv_open", "ended_at", "last_event_at"),
)

rollups = Table(
    "analytics_rollups", metadata,
    # key order = the primary key's index: a filter's cell and date range is one index range
    Column("grain", String(1), primary_key=True),  # m | d | h
    Column("channel", String(64), primary_key=True),  # "*": every channel
    Column("segment", String(64), primary_key=True),  # "*": every segment; "": customers without one
    Column("bucket", String(13), primary_key=True),  # 2026-12 | 2026-12-07 | 2026-12-07T13 (UTC)
    Column("metric", String(48), primary_key=True),
    Column("dim", String(255), primary_key=True),  # "" when the metric has no dimension
    Column("n", Integer, nullable=False, default=0),
    Column("total", Float, nullable=False, default=0.0),
    Index("ix_analytics_rollups_metric", "grain", "metric", "segment", "bucket"),  # per-channel breakdowns
)

surveys = Table(
    "analytics_surveys", metadata,
    Column("id", String(64), primary_key=True),
    Column("sender_id", String(255), nullable=False),
    Column("conversation_id", String(300), nullable=False),
    Column("customer_id", String(255), nullable=False),
    Column("channel", String(64), nullable=False, default=""),
    Column("segment", String(64), nullable=False, default=""),
    Column("language", String(8), nullable=False, default="zh"),
    Column("trigger", String(16), nullable=False),  # goodbye | inactivity | session_end
    Column("day", String(10), nullable=False),  # the customer's "not twice a day" key (UTC)
    Column("asked_at", Float, nullable=False),
    Column("step", String(16), nullable=False),  # csat | comment | nps | ces | done | closed
    Column("intent", String(128)),  # the conversation's first intent (CSAT by intent)
    Column("csat", Integer),
    Column("nps", Integer),
    Column("ces", Integer),
    Column("comment", Text),
    Column("answered_at", Float),
    Index("ix_analytics_surveys_customer", "customer_id", "day"),
    Index("ix_analytics_surveys_sender", "sender_id", "step"),
)

orders = Table(
    "analytics_orders", metadata,
    Column("order_id", String(128), primary_key=True),
    Column("customer_id", String(255), nullable=False),
    Column("paid_at", Float, nullable=False),
    Column("amount", Float, nullable=False, default=0.0),
    Column("conversation_id", String(300)),  # the conversation it converted, if any
    Column("channel", String(64), nullable=False, default=""),  # of that conversation ("" without one)
    Column("segment", String(64), nullable=False, default=""),
    # covers the one pass of LTV / retention, filters included (no table lookups)
    Index("ix_analytics_orders_customer", "customer_id", "paid_at", "amount", "channel", "segment"),
    Index("ix_analytics_orders_paid", "paid_at", "customer_id"),  # covers who paid in a range
)
