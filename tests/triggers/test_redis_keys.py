"""Redis Cluster safety of the trigger store and job queue: every script and MULTI in one slot.

The keys each atomic operation touches are read off ``MONITOR`` (tests/redis_monitor.py),
including the commands the Lua scripts run, so a key name built inside a script is caught.
"""
from __future__ import annotations

import pytest
from redis.crc import key_slot

from bot.triggers.events import BehaviourEvent
from bot.triggers.queue import Job, RedisJobQueue
from bot.triggers.redis_store import RedisTriggerStore
from bot.triggers.store import BatchWrites, Instance, Reservation, SentMark, decision
from tests.redis_monitor import KeyRecorder, assert_cluster_safe

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


async def _exercise_store(store: RedisTriggerStore) -> None:
    await store.add_events([BehaviourEvent("e1", "cart_item_added", "c1", 10.0),
                            BehaviourEvent("e2", "order_paid", "c2", 11.0)])
    await store.events_for("c1")
    await store.update_profile("c1", {"points": 3}, 12.0, opted_out=False)
    await store.get_profile("c1")
    for n, customer in enumerate(("c1", "c2")):
        await store.create_instance(Instance(f"i{n}", customer, "j", 13.0, customer))
    await store.get_instance("i0")
    await store.instances_for("c1")
    assert await store.reserve_sends([Reservation("s1", "c1", "j", "st", "A", "u", False),
                                      Reservation("s2", "c2", "j", "st", "A", "u", False),
                                      Reservation("s3", "c2", "j", "st", "B", "u", True)], 20.0, 2, 5) == [
        "reserved", "reserved", "reserved"]
    reads = await store.dispatch_reads([("i0", "c1", "s1"), ("i1", "c2", "s2"), ("i1", "c2", "s3")])
    assert reads.snapshots[0].instance is not None and reads.snapshots[0].send_status == "pending"
    await store.commit_batch(BatchWrites(
        sent=[SentMark("s1", 21.0, "p", "c1", "j", "st", "A"), SentMark("s2", 21.0, "p", "c2", "j", "st", "A")],
        completed=["i0"], closes=[("i1", "exited", "goal")],
        decisions=[decision(send_id="s9", customer_id="c1", journey="j", step="st", variant="A", kind="skip",
                            reason="quiet", at=21.0)],
        releases=[("s3", "c2")]))
    await store.mark_sent("s1", 22.0)
    await store.release_send("s1")
    record = await store.get_send("s1")
    assert record is not None and record.status == "sent"
    await store.sends_for("c1")
    await store.decisions_for("c1")
    assert await store.record_conversion(record, "e2", 23.0)
    await store.report_counts()
    await store.report_counts(since=0.0)
    await store.stop_variant("j", "st", "B", 24.0)
    await store.stopped_variants()
    await store.resume_variant("j", "st", "B")


async def test_redis_trigger_store_keys_hash_to_one_slot(redis_server, redis_url):
    store = RedisTriggerStore(redis_url, prefix="kefu:triggers")
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            await _exercise_store(store)
    finally:
        await store.close()
    assert_cluster_safe(recorder)
    scripts = recorder.scripts()
    assert len({rec.group.commands[-1][1] for rec in scripts}) >= 5  # every script ran (by its sha)
    touched = set().union(*(rec.all_keys for rec in recorder.groups))
    assert {key_slot(k) for k in touched} == {key_slot(b"{kefu:triggers}")}
    assert all(k.startswith(b"{kefu:triggers}:") for k in touched)


async def test_redis_job_queue_keys_hash_to_one_slot_with_the_store(redis_server, redis_url):
    queue = RedisJobQueue(redis_url, prefix="kefu:triggers")
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            await queue.enqueue(Job("a", 1.0, {"x": 1}))
            await queue.enqueue_many([Job("b", 2.0), Job("c", 3.0)])
            claimed = await queue.claim(5.0, 10, 30.0)
            assert [j.id for j in claimed] == ["a", "b", "c"]
            await queue.reschedule(Job("a", 9.0))
            await queue.reschedule_many([Job("b", 9.0)])
            await queue.ack("c")
            await queue.ack_many(["a"])
            assert await queue.cancel(["b"]) == 1
            await queue.size()
            await queue.next_due()
    finally:
        await queue.close()
    assert_cluster_safe(recorder)
    assert queue.keys == ["{kefu:triggers}:due", "{kefu:triggers}:inflight", "{kefu:triggers}:jobs"]
    touched = set().union(*(rec.all_keys for rec in recorder.groups))
    assert {key_slot(k) for k in touched} == {key_slot(b"{kefu:triggers}:jobs")}


async def test_key_recorder_flags_keys_built_inside_a_script(redis_server, redis_url):
    """The check itself: a script that builds a key from an ARGV prefix is reported."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            await client.eval("return redis.call('SET', ARGV[1] .. ':x', 1)", 1, "p:y", "p")
    finally:
        await client.aclose()
    with pytest.raises(AssertionError, match="not in KEYS"):
        assert_cluster_safe(recorder)
