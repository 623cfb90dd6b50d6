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
from typing import Any, Mapping

from sqlalchemy import and_, case, func, or_, select, update

from bot.analytics.schema import conversations, orders, rollups, surveys

logger = logging.getLogger(__name__)

# Metrics also kept per hour (the page's hourly series for ranges up to two days); the rest per day only.
HOURLY_METRICS = frozenset({"conversations", "escalated", "user_turns", "fallback"})
ALL = "*"  # the channel / segment of the rows that sum every channel / segment (filters read one cell)
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


def split_range(start: str, end: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``start..end`` (inclusive days) as the whole months inside it and the day ranges left over."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    months: list[str] = []
    days: list[tuple[str, str]] = []
    cursor = first
    while cursor <= last:
        month_end = (cursor.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        if cursor.day == 1 and month_end <= last:
            months.append(cursor.strftime("%Y-%m"))
        else:
            stop = min(month_end, last)
            if days and (dt.date.fromisoformat(days[-1][1]) + dt.timedelta(days=1)) == cursor:
                days[-1] = (days[-1][0], stop.isoformat())
            else:
                days.append((cursor.isoformat(), stop.isoformat()))
        cursor = month_end + dt.timedelta(days=1)
    return months, days


class RollupBuffer:
    """Rollup increments gathered in memory and written together (rollups are sums: order does not matter).

    Each increment goes to its day and month (and hour, for the hourly metrics), for its
    channel and segment and for the ``*`` cells that sum every channel and/or segment.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple, list[float]] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, bucket: Bucket, metric: str, dim: str = "", n: int = 1, total: float = 0.0) -> None:
        dim = (dim or "")[:255]
        grains = [("d", bucket.day), ("m", bucket.day[:7])]
        if metric in HOURLY_METRICS:
            grains.append(("h", bucket.hour))
        for channel in {bucket.channel, ALL}:
            for segment in {bucket.segment, ALL}:
                for grain, key in grains:
                    self._bump((grain, key, channel, segment, metric, dim), n, total)

    def add_cell(self, day: str, channel: str, segment: str, metric: str, dim: str, n: int, total: float) -> None:
        """One increment to exactly this channel/segment cell (day and month rows), no ``*`` spreading:
        for the per-customer rollups, whose ``*`` cells are computed on their own (a customer's previous
        order differs per filter)."""
        for grain, key in (("d", day), ("m", day[:7])):
            self._bump((grain, key, channel, segment, metric, dim), n, total)

    def _bump(self, cell_key: tuple, n: int, total: float) -> None:
        cell = self.pending.get(cell_key)
        if cell is None:
            self.pending[cell_key] = [n, total]
        else:
            cell[0] += n
            cell[1] += total

    def take(self) -> dict[tuple, list[float]]:
        pending, self.pending = self.pending, {}
        return pending


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
        from bot.stores.migrate import ensure_schema
        from bot.stores.sql import create_async_sql_engine

        if self.engine is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.engine is not None:
                return
            engine, _ = create_async_sql_engine(self.url, filename="config.yml")
            # Alembic branch `analytics` (bot/stores/migrations): upgraded in place, never create_all
            await ensure_schema(engine, "analytics", "analytics store",
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
    async def write_rollups(self, pending: dict[tuple, list[float]]) -> None:
        """Add buffered increments to their rows (created when missing), in one transaction."""
        if not pending:
            return
        params = [{"grain": k[0], "bucket": k[1], "channel": k[2], "segment": k[3], "metric": k[4], "dim": k[5],
                   "n": int(v[0]), "total": float(v[1])} for k, v in pending.items()]
        async with self.engine.begin() as conn:
            if self.dialect in ("sqlite", "postgresql"):
                if self.dialect == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert
                else:
                    from sqlalchemy.dialects.postgresql import insert
                stmt = insert(rollups)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[c.name for c in rollups.primary_key.columns],
                    set_={"n": rollups.c.n + stmt.excluded.n, "total": rollups.c.total + stmt.excluded.total})
                await conn.execute(stmt, params)
                return
            for values in params:  # other dialects: update, else insert
                key_match = and_(*(rollups.c[k] == values[k] for k in ("grain", "bucket", "channel", "segment",
                                                                       "metric", "dim")))
                done = await conn.execute(update(rollups).where(key_match).values(
                    n=rollups.c.n + values["n"], total=rollups.c.total + values["total"]))
                if not done.rowcount:
                    await conn.execute(rollups.insert().values(**values))

    def _filtered(self, query: Any, filters: Filters, per_channel: bool = False) -> Any:
        """One precomputed cell per filter: ``*`` rows hold every channel's / segment's sum."""
        c = rollups.c
        if per_channel:
            query = query.where(c.channel != ALL if not filters.channel else c.channel == filters.channel)
        else:
            query = query.where(c.channel == (filters.channel or ALL))
        return query.where(c.segment == (filters.segment or ALL))

    def _in_range(self, filters: Filters) -> Any:
        """Whole months from the month rows, the rest of the days from the day rows."""
        c = rollups.c
        months, days = split_range(filters.start, filters.end)
        parts = []
        if months:
            parts.append(and_(c.grain == "m", c.bucket.in_(months)))
        for first, last in days:
            parts.append(and_(c.grain == "d", c.bucket >= first, c.bucket <= last))
        return or_(*parts)

    async def sums(self, filters: Filters) -> tuple[list[tuple[str, str, int, float]], list[tuple[str, str, int, float]]]:
        """``(metric, dim, n, total)`` over the filters' days, and ``(channel, metric, n, total)`` per channel."""
        c = rollups.c
        in_range = self._in_range(filters)
        overall = self._filtered(select(c.metric, c.dim, func.sum(c.n), func.sum(c.total))
                                 .where(in_range).group_by(c.metric, c.dim), filters)
        per_channel = self._filtered(select(c.channel, c.metric, func.sum(c.n), func.sum(c.total))
                                     .where(in_range, c.metric.in_(CHANNEL_METRICS))
                                     .group_by(c.channel, c.metric), filters, per_channel=True)
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
                select(c.channel).where(c.grain == "m", c.metric == "conversations", c.segment == ALL).distinct())).all()]
            segments = [r[0] for r in (await conn.execute(
                select(c.segment).where(c.grain == "m", c.metric == "conversations", c.channel == ALL).distinct())).all()]
        return {"channels": sorted(x for x in channels if x and x != ALL),
                "segments": sorted(x for x in segments if x and x != ALL)}

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

    async def unconverted_before(self, conn: Any, customer_id: str, since: float, until: float,
                                 also: list[str] | None = None) -> dict[str, Any] | None:
        """The customer's latest unconverted conversation started in [since, until]; ``also``: more ids
        proven to be the same customer (Customer 360), matched as customer or sender id."""
        c = conversations.c
        who = c.customer_id == customer_id
        if also:
            who = or_(who, c.customer_id.in_(also), c.sender_id.in_(also))
        row = (await conn.execute(select(conversations).where(
            who, c.started_at >= since, c.started_at <= until,
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

    async def previous_order(self, conn: Any, customer_id: str, before: float) -> float | None:
        """When the customer last paid an order before ``before`` (None: a first order)."""
        row = (await conn.execute(select(func.max(orders.c.paid_at)).where(
            orders.c.customer_id == customer_id, orders.c.paid_at < before))).first()
        return float(row[0]) if row and row[0] is not None else None

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

    async def customer_value(self, filters: Filters, start_ts: float = 0.0, end_ts: float = 0.0) -> dict[str, Any]:
        """Buyers, LTV and retention from the per-customer rollups (:mod:`bot.analytics.customer_rollups`):
        a few index ranges of ``analytics_rollups``, however long the shop's order history."""
        from bot.analytics.customer_rollups import FIRST, LAST

        start, end = dt.date.fromisoformat(filters.start), dt.date.fromisoformat(filters.end)
        length = (end - start).days + 1
        before = Filters((start - dt.timedelta(days=length)).isoformat(), (start - dt.timedelta(days=1)).isoformat(),
                         filters.channel, filters.segment)
        c = rollups.c

        def first_in(f: Filters, *where: Any) -> Any:
            return self._filtered(select(func.sum(c.n)).where(self._in_range(f), c.metric == FIRST, *where), f)

        new_in_range = or_(c.dim == "", c.dim < filters.start)  # the customer's first order in the range
        queries = (
            first_in(filters, new_in_range),
            first_in(filters, c.dim >= before.start, c.dim < filters.start),  # ... after one in the period before
            first_in(before, or_(c.dim == "", c.dim < before.start)),
            self._filtered(select(func.sum(c.total)).where(  # lifetime paid at each buyer's last order in the range
                self._in_range(filters), c.metric == LAST, or_(c.dim == "", c.dim > filters.end)), filters),
        )
        async with self.engine.connect() as conn:
            buyers, kept, previous, paid = [(await conn.execute(q)).scalar() for q in queries]
        buyers, previous, kept = int(buyers or 0), int(previous or 0), int(kept or 0)
        return {"ltv": round(float(paid or 0.0) / buyers, 2) if buyers else None, "buyers": buyers,
                "retention": round(kept / previous, 4) if previous else None}

    async def customer_value_scan(self, filters: Filters, start_ts: float, end_ts: float) -> dict[str, Any]:
        """The same figures by one pass over the orders (the reference the rollups are tested against;
        ``[start_ts, end_ts)`` is the filters' range in seconds).

        LTV: mean amount paid up to the range's end by the customers who paid in the range.
        Retention: of the customers who paid in the equally long period before the range, the
        share who paid again in it.
        """
        o = orders.c
        where = []
        if filters.channel:
            where.append(o.channel == filters.channel)
        if filters.segment:
            where.append(o.segment == filters.segment)
        length = end_ts - start_ts
        # one pass over the orders before the range's end, in the customer index's order (no sort):
        # per customer the lifetime amount, whether they paid in the range and in the period before
        in_range = func.max(case((o.paid_at >= start_ts, 1), else_=0)).label("now")
        per_customer = (select(o.customer_id, func.sum(o.amount).label("paid"), in_range,
                               func.max(case((and_(o.paid_at >= start_ts - length, o.paid_at < start_ts), 1),
                                             else_=0)).label("before"))
                        .where(o.paid_at < end_ts, *where).group_by(o.customer_id).subquery())
        c = per_customer.c
        query = select(func.sum(c.now), func.sum(case((c.now == 1, c.paid), else_=0.0)), func.sum(c.before),
                       func.sum(case((and_(c.before == 1, c.now == 1), 1), else_=0)))
        async with self.engine.connect() as conn:
            buyers, paid, previous, kept = (await conn.execute(query)).first()
        buyers, previous, kept = int(buyers or 0), int(previous or 0), int(kept or 0)
        return {"ltv": round(float(paid) / buyers, 2) if buyers else None, "buyers": buyers,
                "retention": round(kept / previous, 4) if previous else None}

    # --- privacy (the seam for bot/privacy: export and erase one customer) -----------------
    async def export_customer(self, ids: list[str]) -> dict[str, Any]:
        """Survey answers, conversation facts and orders of the customer's ids (customer id, senders)."""
        async with self.engine.connect() as conn:
            found = {}
            for name, table, columns in (("surveys", surveys, ("customer_id", "sender_id")),
                                         ("conversations", conversations, ("customer_id", "sender_id")),
                                         ("orders", orders, ("customer_id",))):
                match = or_(*(table.c[column].in_(ids) for column in columns))
                found[name] = [dict(r._mapping) for r in (await conn.execute(select(table).where(match))).all()]
        return found

    async def erase_customer(self, ids: list[str]) -> dict[str, int]:
        """Delete the customer's rows; the rollups keep only counts (and masked question texts)."""
        from sqlalchemy import delete

        counts = {}
        async with self.engine.begin() as conn:
            for name, table, columns in (("surveys", surveys, ("customer_id", "sender_id")),
                                         ("conversations", conversations, ("customer_id", "sender_id")),
                                         ("orders", orders, ("customer_id",))):
                match = or_(*(table.c[column].in_(ids) for column in columns))
                counts[name] = (await conn.execute(delete(table).where(match))).rowcount or 0
        return counts

    async def purge_before(self, cutoff: float, batch: int = 500, dry_run: bool = False) -> dict[str, int]:
        """Retention: delete conversations idle since ``cutoff``, surveys asked and orders paid before it,
        ``batch`` rows per statement; ``dry_run`` only counts. The rollups (counts only) stay."""
        from sqlalchemy import delete

        plan = (("conversations", conversations, conversations.c.last_event_at, conversations.c.id),
                ("surveys", surveys, surveys.c.asked_at, surveys.c.id),
                ("orders", orders, orders.c.paid_at, orders.c.order_id))
        counts = {}
        for name, table, when, key in plan:
            if dry_run:
                async with self.engine.connect() as conn:
                    counts[name] = int((await conn.execute(select(func.count()).select_from(table)
                                                           .where(when < cutoff))).scalar() or 0)
                continue
            counts[name] = 0
            while True:
                async with self.engine.begin() as conn:
                    ids = [r[0] for r in (await conn.execute(select(key).where(when < cutoff).limit(batch))).all()]
                    if not ids:
                        break
                    await conn.execute(delete(table).where(key.in_(ids)))
                counts[name] += len(ids)
        return counts

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
