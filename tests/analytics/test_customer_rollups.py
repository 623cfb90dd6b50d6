"""Buyers, LTV and retention from the per-customer rollups equal a pass over the orders.

A random shop history (customers, channels, segments, same-day and late-arriving orders) goes
through the real ingester into a real SQLite file; for many ranges and every filter the rollup
figures must equal the reference scan of ``analytics_orders``, and a rebuild from the orders
must give the same rows the increments did.
"""
from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.analytics import customer_rollups
from bot.analytics.config import AnalyticsConfig
from bot.analytics.ingest import Ingester
from bot.analytics.schema import rollups
from bot.analytics.store import AnalyticsStore, Filters
from tests.analytics.history import T0, user

DAY = 86400.0


async def _rows(store: AnalyticsStore) -> dict[tuple, tuple[int, float]]:
    c = rollups.c
    async with store.engine.connect() as conn:
        found = (await conn.execute(select(c.grain, c.bucket, c.channel, c.segment, c.metric, c.dim, c.n, c.total)
                                    .where(c.metric.in_((customer_rollups.FIRST, customer_rollups.LAST))))).all()
    return {tuple(r[:6]): (int(r[6]), round(float(r[7]), 6)) for r in found if r[6] != 0 or abs(r[7]) > 1e-9}


@pytest.mark.asyncio
async def test_rollup_figures_equal_a_scan_of_the_orders(tmp_path: Path) -> None:
    rng = random.Random(11)
    segments = {f"c{i}": rng.choice(["vip", "new", ""]) for i in range(25)}

    async def segment_of(channel: str | None, customer: str) -> str | None:
        return segments.get(customer) or None

    store = AnalyticsStore(f"sqlite:///{tmp_path / 'analytics.db'}")
    await store.open()
    ingester = Ingester(store, AnalyticsConfig(), segment_of)
    bodies = []
    for i in range(40):  # chats, so some orders get a channel and segment from the conversation they convert
        customer = f"c{rng.randrange(25)}"
        bodies.append(user(customer, T0 + rng.randrange(60) * DAY + rng.randrange(3600),
                           "greet", rng.choice(["wechat", "socketio"])))
    for i in range(160):
        day = rng.randrange(70)
        bodies.append({"event": "order_paid", "customer_id": f"c{rng.randrange(25)}", "order_id": f"o{i}",
                       "timestamp": T0 + day * DAY + rng.choice([0, 0, 3600, 7200]),  # ties and same days
                       "data": {"amount": rng.randrange(10, 300)}})
    rng.shuffle(bodies)  # late orders: an older order arriving after a newer one of the same customer
    for body in sorted(bodies[:40], key=lambda b: b["timestamp"]) + bodies[40:]:
        await ingester.handle(body)
    await ingester.flush()
    try:
        checked = 0
        first = dt.date(2026, 11, 2)
        for start_offset, length in [(0, 1), (0, 7), (3, 10), (10, 30), (20, 45), (0, 70), (35, 14), (69, 1)]:
            start, end = first + dt.timedelta(days=start_offset), first + dt.timedelta(days=start_offset + length - 1)
            start_ts = dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp()
            end_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc).timestamp()
            for channel in (None, "wechat", "socketio"):
                for segment in (None, "vip", "new"):
                    f = Filters(start.isoformat(), end.isoformat(), channel, segment)
                    assert await store.customer_value(f) == await store.customer_value_scan(f, start_ts, end_ts), f
                    checked += 1
        assert checked == 72
        whole = await store.customer_value(Filters("2026-11-02", "2027-01-10"))
        buyers = {b["customer_id"] for b in bodies if b["event"] == "order_paid"}
        paid = sum(b["data"]["amount"] for b in bodies if b["event"] == "order_paid")
        assert whole["buyers"] == len(buyers) and whole["ltv"] == round(paid / len(buyers), 2)

        incremental = await _rows(store)
        assert await customer_rollups.rebuild(store) == 160
        assert await _rows(store) == incremental
    finally:
        await store.close()
