"""Redis Cluster safety of the tracker and lock stores: each script and MULTI stays in one slot.

The keys are read off ``MONITOR`` (tests/redis_monitor.py), the commands Lua runs included.
Both stores keep their names (``{<prefix><conversation>}…``), one tag per conversation.
"""
from __future__ import annotations

from typing import Any

import pytest

from bot.shared.events import SessionStarted, UserUttered
from bot.shared.tracker import DialogueStateTracker
from bot.stores.lock_store import RedisLockStore
from bot.stores.tracker_store import RedisTrackerStore
from tests.redis_monitor import KeyRecorder, assert_cluster_safe

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


async def test_redis_tracker_store_keys_hash_to_one_slot_per_conversation(redis_server, redis_url, domain: Any):
    store = RedisTrackerStore(domain, host=redis_url, record_exp=60)
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            for sender in ("alice", "会话:2"):
                tracker = DialogueStateTracker(sender, domain.slots)
                tracker.update(SessionStarted(timestamp=1.0))
                tracker.update(UserUttered("hi", timestamp=2.0))
                await store.save(tracker)
                await store.retrieve(sender)
            assert await store.keys() == ["alice", "会话:2"]
            await store.delete("alice")
    finally:
        await store.close()
    assert_cluster_safe(recorder)
    assert store.events_key("alice") == "{kefu:tracker:alice}"
    assert store.session_key("alice") == "{kefu:tracker:alice}:session"
    assert any(len(rec.all_keys) == 2 for rec in recorder.groups)  # the MULTI of events + session index


async def test_redis_lock_store_scripts_hash_to_one_slot_per_conversation(redis_server, redis_url):
    store = RedisLockStore(redis_url)
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            async with store.lock("会话:1", lock_lifetime=10):
                pass
    finally:
        await store.close()
    assert_cluster_safe(recorder)
    assert len(recorder.scripts()) >= 2  # issue, poll and release are scripts
