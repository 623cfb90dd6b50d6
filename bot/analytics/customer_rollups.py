"""Buyers, LTV and retention kept incrementally, as rollup rows (no pass over the orders per request).

Those figures depend on each customer's whole order history, which plain per-day sums cannot
give; two per-order rollups can. For each paid order, in each filter cell it belongs to
(its channel and segment, and the ``*`` cells), with the customer's orders in that cell ordered
by (paid_at, order_id):

- ``cust_first``: bucket = the order's day, ``dim`` = the day of the customer's previous order
  ("" for their first), n = 1. The customer's first order within a range is the one whose
  previous order lies before the range, so **buyers** in [s, e] = Σn over buckets in [s, e] with
  ``dim`` "" or < s; the customers who also paid in the equally long period before
  (**retention**'s numerator) = the same with ``dim`` in [s − L, s).
- ``cust_last``: bucket = the order's day, ``dim`` = the day of the customer's next order (""
  while there is none), total = the customer's amount paid up to and including it. A buyer's
  last order up to e is the one whose next order is after e, so **LTV**'s numerator = Σtotal
  over buckets in [s, e] with ``dim`` "" or > e.

A new order updates at most the rows of its neighbours (its previous order's ``cust_last``
gains a next day; a later order, when this one arrives late, moves). Rows are days, so the
figures are exact for whole-day ranges — the only ranges the dashboard has.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, delete, func, or_, select

from bot.analytics.schema import orders, rollups
from bot.analytics.store import ALL, RollupBuffer, day_of

logger = logging.getLogger(__name__)

FIRST = "cust_first"
LAST = "cust_last"


def cells(channel: str, segment: str) -> list[tuple[str, str]]:
    """The filter cells an order with this channel/segment counts in ("" is never a filter)."""
    channels = [ALL] + ([channel] if channel else [])
    segments = [ALL] + ([segment] if segment else [])
    return [(c, s) for c in channels for s in segments]


def _in_cell(channel: str, segment: str) -> list[Any]:
    o = orders.c
    where = []
    if channel != ALL:
        where.append(o.channel == channel)
    if segment != ALL:
        where.append(o.segment == segment)
    return where


async def add_order(conn: Any, buffer: RollupBuffer, order_id: str, customer: str, ts: float, amount: float,
                    channel: str, segment: str) -> None:
    """The rollup changes of one newly inserted order (``conn``: the ingester's transaction)."""
    o = orders.c
    day = day_of(ts)
    before = or_(o.paid_at < ts, and_(o.paid_at == ts, o.order_id < order_id))
    after = or_(o.paid_at > ts, and_(o.paid_at == ts, o.order_id > order_id))
    for ch, seg in cells(channel, segment):
        where = [o.customer_id == customer, *_in_cell(ch, seg)]
        prev_at, paid_before = (await conn.execute(
            select(func.max(o.paid_at), func.sum(o.amount)).where(*where, before))).first()
        later = [float(r[0]) for r in (await conn.execute(
            select(o.paid_at).where(*where, after).order_by(o.paid_at, o.order_id))).all()]
        prev_day = day_of(prev_at) if prev_at is not None else ""
        paid_before = float(paid_before or 0.0)
        next_day = day_of(later[0]) if later else ""
        buffer.add_cell(day, ch, seg, FIRST, prev_day, 1, 0.0)
        buffer.add_cell(day, ch, seg, LAST, next_day, 1, paid_before + amount)
        if later:  # arrived late: the next order's previous is now this one
            buffer.add_cell(next_day, ch, seg, FIRST, prev_day, -1, 0.0)
            buffer.add_cell(next_day, ch, seg, FIRST, day, 1, 0.0)
            for i, at in enumerate(later):  # each later order's lifetime amount grows by this one
                buffer.add_cell(day_of(at), ch, seg, LAST, day_of(later[i + 1]) if i + 1 < len(later) else "", 0,
                                amount)
        if prev_at is not None:  # the previous order's next order is now this one
            buffer.add_cell(prev_day, ch, seg, LAST, next_day, -1, -paid_before)
            buffer.add_cell(prev_day, ch, seg, LAST, day, 1, paid_before)


async def rebuild(store: Any, batch: int = 20000) -> int:
    """Recompute every ``cust_first`` / ``cust_last`` row from ``analytics_orders`` (an upgrade from a
    store without them, or after bulk-loading orders); returns the orders read."""
    o = orders.c
    buffer = RollupBuffer()
    count = 0
    async with store.engine.begin() as conn:
        await conn.execute(delete(rollups).where(rollups.c.metric.in_((FIRST, LAST))))
    current: str | None = None
    history: list[tuple[float, float, str, str]] = []

    def fold(items: list[tuple[float, float, str, str]]) -> None:
        per_cell: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for at, amount, channel, segment in items:
            for cell in cells(channel, segment):
                per_cell.setdefault(cell, []).append((at, amount))
        for (ch, seg), seq in per_cell.items():
            paid = 0.0
            for i, (at, amount) in enumerate(seq):
                paid += amount
                day = day_of(at)
                buffer.add_cell(day, ch, seg, FIRST, day_of(seq[i - 1][0]) if i else "", 1, 0.0)
                buffer.add_cell(day, ch, seg, LAST, day_of(seq[i + 1][0]) if i + 1 < len(seq) else "", 1, paid)

    async with store.engine.connect() as conn:
        result = await conn.stream(select(o.customer_id, o.paid_at, o.amount, o.channel, o.segment)
                                   .order_by(o.customer_id, o.paid_at, o.order_id))
        async for customer, at, amount, channel, segment in result:
            count += 1
            if customer != current:
                fold(history)
                current, history = customer, []
            history.append((float(at), float(amount or 0.0), channel or "", segment or ""))
            if len(buffer) >= batch:
                await store.write_rollups(buffer.take())
        fold(history)
    await store.write_rollups(buffer.take())
    return count


async def ensure(store: Any) -> None:
    """Build the rows once for a store that has orders but none of them (written before they existed);
    the feature's start runs it, so a long build delays the start, never a page request."""
    async with store.engine.connect() as conn:
        has_orders = (await conn.execute(select(orders.c.order_id).limit(1))).first() is not None
        has_rows = (await conn.execute(select(rollups.c.n).where(rollups.c.metric == FIRST).limit(1))).first()
    if has_orders and has_rows is None:
        logger.info("Building the per-customer order rollups (buyers, LTV, retention) from analytics_orders.")
        await rebuild(store)
