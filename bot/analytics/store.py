"""The analytics store: conversation facts, rollup sums, survey rows and orders (SQLAlchemy async).

Every write adds to the hourly and the daily rollup of the same (channel, segment,
metric, dim) in the same transaction, with the dialect's upsert (SQLite and
PostgreSQL ``ON CONFLICT``), so the rollups always equal the facts that fed them.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, func, select, update

from bot.analytics.schema import conversations, metadata, orders, rollups, surveys

logger = logging.getLogger(__name__)

# Metrics also kept per hour (the page's hourly series for ranges up to two days); the rest per day only.
HOURLY_METRICS = frozenset({"conversations", "escalated", "user_turns", "fallback"})
# Metrics the page also breaks down per channel (satisfaction by channel).
CHANNEL_METRICS = ("conversations", "csat", "nps", "ces")


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def hour_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H")


@dataclass(frozen=True)
class Bucket:
    """Where a figure is added: the hour and day (UTC) of the fact it belongs to, channel and segment."""

    day: str
    hour: str
    channel: str = ""
    segment: str = ""

    @classmethod
    def at(cls, ts: float, channel: str = "", segment: str = "") -> "Bucket":
        return cls(day_of(ts), hour_of(ts), channel or "", segment or "")

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "Bucket":
        return cls(row["day"], row["hour"], row["channel"] or "", row["segment"] or "")


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows: an inclusive UTC day range, optionally one channel and one segment."""

    start: str
    end: str
    channel: str | None = None
    segment: str | None = None


class AnalyticsStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Any = None
        self.dialect = ""
        self._opening: asyncio.Lock | None = None

    async def open(self) -> None:
        """Connect and create missing tables; idempotent and safe to call from concurrent requests."""
        from bot.stores.sql import create_async_sql_engine, create_tables

        if self.engine is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.engine is not None:
                return
            engine, _ = create_async_sql_engine(self.url, filename="config.yml")
            await create_tables(engine, metadata, "analytics store",
                                "Check 'analytics: database:' in config.yml (docs/dashboard.md).")
            self.dialect = engine.dialect.name
            self.engine = engine

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    def begin(self) -> Any:
        return self.engine.begin()

    # --- rollups ---------------------------------------------------------------
    async def add(self, conn: Any, bucket: Bucket, metric: str, dim: str = "", n: int = 1,
                  total: float = 0.0) -> None:
        """Add ``n`` and ``total`` to the hour's and the day's rollup row (created when missing)."""
        dim = (dim or "")[:255]
        grains = (("h", bucket.hour), ("d", bucket.day)) if metric in HOURLY_METRICS else (("d", bucket.day),)
        for grain, key in grains:
            values = {"grain": grain, "bucket": key, "channel": bucket.channel, "segment": bucket.segment,
                      "metric": metric, "dim": dim, "n": n, "total": float(total)}
            if self.dialect in ("sqlite", "postgresql"):
                if self.dialect == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert
                else:
                    from sqlalchemy.dialects.postgresql import insert
                stmt = insert(rollups).values(**values)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[c.name for c in rollups.primary_key.columns],
                    set_={"n": rollups.c.n + stmt.excluded.n, "total": rollups.c.total + stmt.excluded.total})
                await conn.execute(stmt)
                continue
            key_match = and_(*(rollups.c[k] == values[k] for k in ("grain", "bucket", "channel", "segment",
                                                                   "metric", "dim")))
            done = await conn.execute(update(rollups).where(key_match).values(
                n=rollups.c.n + n, total=rollups.c.total + float(total)))
            if not done.rowcount:
                await conn.execute(rollups.insert().values(**values))

    def _filtered(self, query: Any, filters: Filters) -> Any:
        c = rollups.c
        if filters.channel:
            query = query.where(c.channel == filters.channel)
        if filters.segment:
            query = query.where(c.segment == filters.segment)
        return query

    async def sums(self, filters: Filters) -> tuple[list[tuple[str, str, int, float]], list[tuple[str, str, int, float]]]:
        """``(metric, dim, n, total)`` over the filters' days, and ``(channel, metric, n, total)`` per channel."""
        c = rollups.c
        in_range = (c.grain == "d", c.bucket >= filters.start, c.bucket <= filters.end)
        overall = self._filtered(select(c.metric, c.dim, func.sum(c.n), func.sum(c.total))
                                 .where(*in_range).group_by(c.metric, c.dim), filters)
        per_channel = self._filtered(select(c.channel, c.metric, func.sum(c.n), func.sum(c.total))
                                     .where(*in_range, c.metric.in_(CHANNEL_METRICS))
                                     .group_by(c.channel, c.metric), filters)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(overall)).all()
            channels = (await conn.execute(per_channel)).all()
        return ([(r[0], r[1], int(r[2] or 0), float(r[3] or 0.0)) for r in rows],
                [(r[0], r[1], int(r[2] or 0), float(r[3] or 0.0)) for r in channels])

    async def series(self, filters: Filters, metric: str, grain: str = "d") -> list[tuple[str, int]]:
        """``(bucket, n)`` of one metric per day (or hour), oldest first."""
        c = rollups.c
        end = filters.end if grain == "d" else filters.end + "T23"
        query = (select(c.bucket, func.sum(c.n)).where(c.grain == grain, c.metric == metric,
                                                       c.bucket >= filters.start, c.bucket <= end)
                 .group_by(c.bucket).order_by(c.bucket))
        query = self._filtered(query, filters)
        async with self.engine.connect() as conn:
            return [(r[0], int(r[1] or 0)) for r in (await conn.execute(query)).all()]

    async def dimensions(self) -> dict[str, list[str]]:
        """The channels and segments the rollups know (the page's filter choices)."""
        c = rollups.c
        async with self.engine.connect() as conn:
            channels = [r[0] for r in (await conn.execute(
                select(c.channel).where(c.grain == "d", c.metric == "conversations").distinct())).all()]
            segments = [r[0] for r in (await conn.execute(
                select(c.segment).where(c.grain == "d", c.metric == "conversations").distinct())).all()]
        return {"channels": sorted(x for x in channels if x), "segments": sorted(x for x in segments if x)}

    # --- conversations -----------------------------------------------------------
    async def conversation(self, conn: Any, conversation_id: str) -> dict[str, Any] | None:
        row = (await conn.execute(select(conversations).where(conversations.c.id == conversation_id))).first()
        return dict(row._mapping) if row else None

    async def latest_conversation(self, conn: Any, sender_id: str) -> dict[str, Any] | None:
        c = conversations.c
        row = (await conn.execute(select(conversations).where(c.sender_id == sender_id)
                                  .order_by(c.started_at.desc()).limit(1))).first()
        return dict(row._mapping) if row else None

    async def insert_conversation(self, conn: Any, row: dict[str, Any]) -> None:
        await conn.execute(conversations.insert().values(**row))

    async def update_conversation(self, conn: Any, conversation_id: str, **values: Any) -> None:
        if values:
            await conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))

    async def earlier_same_intent(self, conn: Any, customer_id: str, intent: str, since: float,
                                  before: float, exclude: str) -> dict[str, Any] | None:
        """The customer's latest conversation with the same first intent that started in [since, before)."""
        c = conversations.c
        row = (await conn.execute(select(conversations).where(
            c.customer_id == customer_id, c.first_intent == intent, c.started_at >= since,
            c.started_at < before, c.id != exclude).order_by(c.started_at.desc()).limit(1))).first()
        return dict(row._mapping) if row else None

    async def unconverted_before(self, conn: Any, customer_id: str, since: float, until: float) -> dict[str, Any] | None:
        c = conversations.c
        row = (await conn.execute(select(conversations).where(
            c.customer_id == customer_id, c.started_at >= since, c.started_at <= until,
            c.converted.is_(False)).order_by(c.started_at.desc()).limit(1))).first()
        return dict(row._mapping) if row else None

    async def idle_open(self, idle_before: float, limit: int = 500) -> list[dict[str, Any]]:
        c = conversations.c
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(conversations).where(c.ended_at.is_(None), c.last_event_at < idle_before)
                                       .order_by(c.last_event_at).limit(limit))).all()
        return [dict(r._mapping) for r in rows]

    # --- orders -------------------------------------------------------------------
    async def has_order(self, conn: Any, order_id: str) -> bool:
        return (await conn.execute(select(orders.c.order_id).where(orders.c.order_id == order_id))).first() is not None

    async def insert_order(self, conn: Any, row: dict[str, Any]) -> None:
        await conn.execute(orders.insert().values(**row))

    # --- surveys --------------------------------------------------------------------
    async def insert_survey(self, row: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(surveys.insert().values(**row))

    async def survey_today(self, customer_id: str, day: str) -> bool:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(surveys.c.id).where(
                surveys.c.customer_id == customer_id, surveys.c.day == day).limit(1))).first()
        return row is not None

    async def open_survey(self, sender_id: str) -> dict[str, Any] | None:
        c = surveys.c
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(surveys).where(
                c.sender_id == sender_id, c.step.notin_(("done", "closed"))).order_by(c.asked_at.desc()).limit(1))).first()
        return dict(row._mapping) if row else None

    async def update_survey(self, conn: Any, survey_id: str, **values: Any) -> None:
        await conn.execute(update(surveys).where(surveys.c.id == survey_id).values(**values))

    async def surveys_between(self, filters: Filters, limit: int = 200) -> list[dict[str, Any]]:
        """The latest answered surveys with a comment (the page's comment table)."""
        c = surveys.c
        query = (select(surveys).where(c.day >= filters.start, c.day <= filters.end, c.comment.is_not(None))
                 .order_by(c.answered_at.desc()).limit(limit))
        if filters.channel:
            query = query.where(c.channel == filters.channel)
        if filters.segment:
            query = query.where(c.segment == filters.segment)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def idle_unsurveyed(self, active_after: float, idle_before: float, limit: int = 200) -> list[dict[str, Any]]:
        """Conversations whose last event lies in [active_after, idle_before), never escalated, not yet surveyed."""
        c = conversations.c
        asked = select(surveys.c.conversation_id)
        query = (select(conversations).where(c.last_event_at >= active_after, c.last_event_at < idle_before,
                                             c.escalated.is_(False), c.user_turns > 0, c.id.notin_(asked))
                 .order_by(c.last_event_at).limit(limit))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]
