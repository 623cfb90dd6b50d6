"""RedisTriggerStore specifics (the shared behaviour runs in test_engine.py on both backends)."""
from __future__ import annotations

import asyncio

import pytest

from bot.triggers.events import BehaviourEvent
from bot.triggers.redis_store import RedisTriggerStore
from bot.triggers.store import Reservation

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


async def test_redis_store_events_are_all_or_nothing_and_ordered(redis_url):
    store = RedisTriggerStore(redis_url, prefix="t:s")
    try:
        assert await store.add_events([BehaviourEvent("b", "order_paid", "c", 20.0), BehaviourEvent("a", "cart_item_added", "c", 10.0)]) == []
        assert await store.add_events([BehaviourEvent("new", "order_paid", "c", 30.0), BehaviourEvent("a", "order_paid", "c", 1.0)]) == ["a"]
        assert [e.id for e in await store.events_for("c")] == ["a", "b"]
        assert [e.id for e in await store.events_for("c", since=15, types=["order_paid"])] == ["b"]
    finally:
        await store.close()


async def test_redis_store_profile_merges_and_keeps_opt_out(redis_url):
    store = RedisTriggerStore(redis_url, prefix="t:s")
    try:
        await store.update_profile("c", {"timezone": "Asia/Shanghai", "points": 10}, 1.0)
        assert await store.update_profile("c", {"points": 12}, 2.0, opted_out=True) == {
            "timezone": "Asia/Shanghai", "points": 12, "opted_out": True}
        assert (await store.get_profile("c"))["opted_out"] is True
        assert await store.get_profile("nobody") == {"opted_out": False}
    finally:
        await store.close()


async def test_redis_store_caps_hold_under_concurrent_workers(redis_url):
    """Twenty clients reserve sends for one customer at once: exactly per_day succeed."""
    stores = [RedisTriggerStore(redis_url, prefix="t:s") for _ in range(20)]
    try:
        results = await asyncio.gather(*(
            s.reserve_sends([Reservation(f"s{i}", "c", "j", "st", "A", "utter_x", False)], 1000.0, 2, 5)
            for i, s in enumerate(stores)))
        statuses = [r[0] for r in results]
        assert statuses.count("reserved") == 2 and statuses.count("frequency_cap_day") == 18
        # a day later the week cap (5) counts the two from before
        later = await stores[0].reserve_sends(
            [Reservation(f"d{i}", "c", "j", "st", "A", "u", False) for i in range(6)]
            + [Reservation("t", "c", "j", "st", "A", "u", True)], 1000.0 + 86401, 2, 5)
        assert later == ["reserved", "reserved", "frequency_cap_day", "frequency_cap_day", "frequency_cap_day",
                         "frequency_cap_day", "reserved"]  # transactional ignores caps
        winner = next(f"s{i}" for i, st in enumerate(statuses) if st == "reserved")
        assert await stores[0].reserve_sends([Reservation(winner, "c", "j", "st", "A", "u", False)], 2000.0, 2, 5) == [
            "pending"]  # a retry of a reserved send id is not re-counted
    finally:
        for s in stores:
            await s.close()


async def test_redis_store_report_since_matches_counters(redis_url):
    from bot.triggers.store import BatchWrites, SentMark, decision

    store = RedisTriggerStore(redis_url, prefix="t:s")
    try:
        await store.reserve_sends([Reservation("x1", "c", "j", "st", "A", "u", False),
                                   Reservation("x2", "d", "j", "st", "B", "u", False)], 100.0, None, None)
        await store.commit_batch(BatchWrites(
            sent=[SentMark("x1", 100.0, "p", "c", "j", "st", "A"), SentMark("x2", 200.0, "p", "d", "j", "st", "B"),
                  SentMark("x2", 300.0, "p", "d", "j", "st", "B")],  # a repeated confirmation counts once
            decisions=[decision(send_id="y", customer_id="c", journey="j", step="st", variant="A", kind="skip",
                                reason="quiet", at=150.0)]))
        record = await store.get_send("x2")
        assert (record.status, record.sent_at) == ("sent", 200.0)
        assert sorted(await store.report_counts()) == ["conversions", "decisions", "sends"]
        assert sorted((await store.report_counts())["sends"]) == [("j", "st", "A", 1), ("j", "st", "B", 1)]
        assert (await store.report_counts(since=160.0))["sends"] == [("j", "st", "B", 1)]
        assert (await store.report_counts(since=160.0))["decisions"] == []
        assert (await store.report_counts())["decisions"] == [("j", "skip", "quiet", 1)]
        assert await store.record_conversion(record, "ev1", 250.0) is True
        assert await store.record_conversion(record, "ev1", 250.0) is False
        assert (await store.report_counts(since=0))["conversions"] == [("j", "st", "B", 1)]
    finally:
        await store.close()
