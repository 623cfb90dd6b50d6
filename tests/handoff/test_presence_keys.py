"""Redis Cluster safety of the handoff's shared state: live queue and presence in one slot.

The keys are read off ``MONITOR`` (tests/redis_monitor.py), the commands Lua runs included.
"""
from __future__ import annotations

import pytest
from redis.crc import key_slot

from bot.handoff.keys import handoff_keys
from bot.handoff.presence import RedisPresence
from bot.handoff.queue import RedisLiveQueue
from tests.redis_monitor import KeyRecorder, assert_cluster_safe



def test_handoff_keys_drop_the_configured_trailing_colon():
    assert handoff_keys("kefu:handoff:").key("q", "sales:en") == "{kefu:handoff}:q:sales:en"
    assert handoff_keys("shop").key("online") == "{shop}:online"


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_handoff_queue_and_presence_keys_hash_to_one_slot(redis_server, redis_url):
    queue = RedisLiveQueue.from_url(redis_url)
    presence = RedisPresence(queue.client, queue.prefix, ttl_s=30)
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            await queue.add("h1", "sales:en", 1.0)
            await queue.add("h2", "support:zh", 2.0)
            assert await queue.ordered() == ["h1", "h2"]
            assert await queue.position("h2") == 1
            assert await queue.remove("h1")
            await presence.set_online("a1")
            assert await presence.heartbeat("a1")
            assert await presence.reserve("a1", "h2", limit=1)
            assert not await presence.reserve("a1", "h3", limit=1)
            await presence.snapshot(["a1", "a2"])
            assert await presence.release("a1", "h2")
            await presence.replace_loads({"a1": {"h2"}, "a2": {"h4"}})
            assert await presence.set_away("a1")
            await presence.set_online("a2")
            await queue.client.delete(presence._p("a2"))  # a heartbeat that lapsed
            assert await presence.expired(["a1", "a2"]) == ["a2"]
            await queue.clear()
    finally:
        await queue.close()
    assert_cluster_safe(recorder)
    assert len(recorder.scripts()) >= 2
    touched = set().union(*(rec.all_keys for rec in recorder.groups))
    assert {key_slot(k) for k in touched} == {key_slot(b"{kefu:handoff}")}
