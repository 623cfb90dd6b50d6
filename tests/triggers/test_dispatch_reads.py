"""The batched dispatch path: one read round trip per batch (snapshots + variant stops),
packed Redis script arguments, and the per-tz quiet-hours memo. Each fast path is checked
against the slow per-key reads it replaces."""
from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.triggers.guards import QuietWindows, quiet_hours
from bot.triggers.journeys import TriggerSettings
from bot.triggers.queue import Job, RedisJobQueue
from bot.triggers.store import BatchReads, BatchWrites, Instance, Reservation, SentMark, SQLTriggerStore

from tests.triggers.conftest import local_ts

pytestmark = pytest.mark.asyncio

ODD = 'c"客\\户/1'  # quotes, backslash, slash and CJK survive the packed JSON both ways


async def _open(kind: str, tmp_path: Any, request: Any) -> Any:
    if kind == "redis":
        from bot.triggers.redis_store import RedisTriggerStore

        return RedisTriggerStore(request.getfixturevalue("redis_url"), prefix=f"t:{uuid.uuid4().hex[:8]}")
    store = SQLTriggerStore(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    await store.setup()
    return store


async def _seed(store: Any) -> None:
    await store.update_profile(ODD, {"timezone": "Europe/Berlin", "name": "张三", "tags": ["vip", {"n": 1}]}, 1.0)
    await store.update_profile("out", {"points": 3}, 1.0, opted_out=True)
    await store.create_instance(Instance("j:1", ODD, "j", 10.0, "s1", {"id": "e1", "properties": {"sku": "ä"}},
                                         {"hello": "B"}))
    await store.create_instance(Instance("j:2", "out", "j", 11.0, "out", {}, {}))
    await store.close_instance("j:2", "exited", "exit:order_paid")
    assert await store.reserve_sends([Reservation("j:1:0", ODD, "j", "hello", "B", "utter_b", False)],
                                     20.0, 5, 10) == ["reserved"]
    await store.stop_variant("j", "hello", "A", 30.0, "typo", "send")


@pytest.mark.parametrize("kind", ["sql", "redis"])
async def test_dispatch_reads_match_the_per_key_reads(kind, tmp_path, request):
    store = await _open(kind, tmp_path, request)
    try:
        await _seed(store)
        keys = [("j:1", ODD, "j:1:0"), ("j:2", "out", "j:2:0"), ("missing", "nobody", "none"), ("j:1", ODD, "x")]
        reads = await store.dispatch_reads(keys)
        assert isinstance(reads, BatchReads) and len(reads.snapshots) == 4
        for (iid, cid, sid), snap in zip(keys, reads.snapshots):
            assert snap.instance == await store.get_instance(iid)
            assert snap.profile == await store.get_profile(cid)
        first, closed, missing, other = reads.snapshots
        assert first.profile["tags"] == ["vip", {"n": 1}] and first.profile["opted_out"] is False
        assert first.instance.entry["properties"]["sku"] == "ä" and first.instance.variants == {"hello": "B"}
        assert (first.send_status, first.send_variant) == ("pending", "B")
        assert closed.instance.status == "exited" and closed.profile["opted_out"] is True
        assert missing.instance is None and missing.profile == {"opted_out": False} and missing.send_status is None
        assert other.send_status is None and other.send_variant is None
        assert reads.stops == await store.stopped_variants()
        assert reads.stops[("j", "hello", "A")]["in_flight"] == "send"
        assert await store.dispatch_snapshots(keys) == list(reads.snapshots)
        empty = await store.dispatch_reads([])
        assert empty.snapshots == () and empty.stops == reads.stops
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_packed_reserve_and_commit_keep_records_exact(request):
    from bot.triggers.redis_store import RedisTriggerStore

    store = RedisTriggerStore(request.getfixturevalue("redis_url"), prefix=f"t:{uuid.uuid4().hex[:8]}")
    try:
        at = 1763904626.123456
        statuses = await store.reserve_sends([
            Reservation("s1", ODD, "旅程", "步", "A", "utter_a", False),
            Reservation("s2", ODD, "旅程", "步", "A", "utter_a", False),  # over the day cap of one
            Reservation("s3", ODD, "旅程", "步", "A", "utter_t", True),  # transactional: ignores caps
            Reservation("s1", ODD, "旅程", "步", "A", "utter_a", False),  # same id again
        ], at, 1, 5)
        assert statuses == ["reserved", "frequency_cap_day", "reserved", "pending"]
        await store.commit_batch(BatchWrites(sent=[SentMark("s1", at + 1.000001, "p,1", ODD, "旅程", "步", "A")],
                                             releases=[("s3", ODD)]))
        record = await store.get_send("s1")
        assert record is not None and record.reserved_at == at and record.sent_at == at + 1.000001
        assert record.journey == "旅程" and record.status == "sent"
        assert await store.get_send("s3") is None  # released
        assert [s.send_id for s in await store.sends_for(ODD)] == ["s1"]
        assert (await store.report_counts())["sends"] == [("旅程", "步", "A", 1)]
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_queue_claims_as_one_text_and_acks_in_one_call(request):
    queue = RedisJobQueue(request.getfixturevalue("redis_url"), prefix=f"t:{uuid.uuid4().hex[:8]}")
    try:
        jobs = [Job(f'{ODD}:{i}', 100.0 + i, {"customer": ODD, "n": i}) for i in range(1200)]
        assert await queue.enqueue_many(jobs) == 1200
        assert await queue.claim(50.0, 10, 60.0) == []
        claimed = await queue.claim(2000.0, 1100, 60.0)
        assert [j.id for j in claimed] == [j.id for j in jobs[:1100]] and claimed[5].data == {"customer": ODD, "n": 5}
        await queue.ack_many([j.id for j in claimed])  # more than one unpack chunk
        assert await queue.size() == {"due": 100, "in_flight": 0}
    finally:
        await queue.close()


async def test_quiet_windows_agree_with_quiet_hours_across_days_and_zones():
    settings = TriggerSettings(quiet_start=(21, 0), quiet_end=(9, 0))
    memo = QuietWindows(settings)
    start = local_ts(2026, 3, 28, 0, 0)  # spans the Berlin DST change (29 March)
    for tz in (ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")):
        for step in range(0, 3 * 86400, 337):
            now = start + step
            assert memo(now, tz) == quiet_hours(now, tz, settings), (tz, now)
    back = start + 86400 + 12 * 3600  # a test clock going back gets a fresh answer
    assert memo(back, ZoneInfo("Asia/Shanghai")) == quiet_hours(back, ZoneInfo("Asia/Shanghai"), settings)


async def test_quiet_windows_never_quiet_when_start_equals_end():
    memo = QuietWindows(TriggerSettings(quiet_start=(0, 0), quiet_end=(0, 0)))
    assert memo.off and memo(local_ts(2026, 1, 1, 23), ZoneInfo("Asia/Shanghai")) is None
