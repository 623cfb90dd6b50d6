"""The tracker stores' session cache (``cache_size``): a turn reads the session's position,
not every event, and still gets exactly the tracker a fresh read gives.

Each test compares a store with the cache (a worker) against a store without it reading
the same SQLite file or Redis server (the truth), after every change, including changes
made by another worker, deletes, new sessions and an evicted conversation.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.shared.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
from bot.shared.exceptions import ConfigError
from bot.shared.tracker import DialogueStateTracker, EventVerbosity
from bot.stores.tracker_store import RedisTrackerStore, SQLTrackerStore, create_tracker_store

PERSISTENT_KINDS = ["sql", pytest.param("redis", marks=pytest.mark.redis)]


class CountingSQLStore(SQLTrackerStore):
    """Counts full reads of a session (what the cache saves)."""

    loads = 0

    async def _load(self, sender_id: str, full: bool) -> list[dict[str, Any]]:
        if not full:
            type(self).loads += 1
        return await super()._load(sender_id, full)


def snapshot(tracker: DialogueStateTracker | None) -> Any:
    if tracker is None:
        return None
    return (
        [event.as_dict() for event in tracker.events],
        tracker.current_state(EventVerbosity.ALL),
        tracker.current_slot_values(),
    )


def turn(tracker: DialogueStateTracker, k: int, t0: float) -> None:
    intent = {"name": "count", "confidence": 0.9}
    tracker.update(UserUttered(f"count {k}", intent, [], {"intent": intent, "entities": [], "text": f"count {k}"},
                               timestamp=t0 + 10 * k, metadata={"k": k}))
    tracker.update(ActionExecuted("action_count", policy="RulePolicy", confidence=1.0, timestamp=t0 + 10 * k + 1))
    tracker.update(BotUttered(f"Count {k}", {}, {"utter_action": None}, timestamp=t0 + 10 * k + 2))
    tracker.update(SlotSet("name", f"n{k}", timestamp=t0 + 10 * k + 3))
    tracker.update(ActionExecuted("action_listen", timestamp=t0 + 10 * k + 4))


def session_start(tracker: DialogueStateTracker, t: float) -> None:
    tracker.update(ActionExecuted("action_session_start", timestamp=t))
    tracker.update(SessionStarted(timestamp=t + 0.1))
    tracker.update(ActionExecuted("action_listen", timestamp=t + 0.2))


@pytest.mark.parametrize("make_tracker_store", PERSISTENT_KINDS, indirect=True)
class TestSessionCache:
    @pytest.mark.asyncio
    async def test_every_turn_equals_a_fresh_read(self, make_tracker_store, domain):
        worker, truth = make_tracker_store(), make_tracker_store(cache_size=0)
        assert worker.cache_size > 0 and truth.cache_size == 0
        tracker = DialogueStateTracker("alice", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        await worker.save(tracker)
        for k in range(1, 8):
            tracker = await worker.retrieve("alice")
            assert snapshot(tracker) == snapshot(await truth.retrieve("alice")), k
            turn(tracker, k, 1_700_000_000.0)
            await worker.save(tracker)
        assert "alice" in worker._sessions
        assert snapshot(await worker.retrieve("alice")) == snapshot(await truth.retrieve("alice"))
        assert (await worker.retrieve("alice")).get_slot("name") == "n7"

    @pytest.mark.asyncio
    async def test_another_workers_write_is_seen(self, make_tracker_store, domain):
        worker, other, truth = make_tracker_store(), make_tracker_store(), make_tracker_store(cache_size=0)
        tracker = DialogueStateTracker("bob", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        turn(tracker, 1, 1_700_000_000.0)
        await worker.save(tracker)
        assert (await worker.retrieve("bob")).get_slot("name") == "n1"  # cached now

        elsewhere = await other.retrieve("bob")
        turn(elsewhere, 2, 1_700_000_000.0)
        await other.save(elsewhere)

        mine = await worker.retrieve("bob")
        assert mine.get_slot("name") == "n2"
        assert snapshot(mine) == snapshot(await truth.retrieve("bob"))
        turn(mine, 3, 1_700_000_000.0)  # and the worker's next write lands after the other's
        await worker.save(mine)
        assert snapshot(await worker.retrieve("bob")) == snapshot(await truth.retrieve("bob"))
        assert [e.as_dict()["event"] for e in (await truth.retrieve("bob")).events].count("user") == 3

    @pytest.mark.asyncio
    async def test_a_new_session_replaces_the_cached_one(self, make_tracker_store, domain):
        worker, truth = make_tracker_store(), make_tracker_store(cache_size=0)
        tracker = DialogueStateTracker("carol", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        turn(tracker, 1, 1_700_000_000.0)
        await worker.save(tracker)
        tracker = await worker.retrieve("carol")
        session_start(tracker, 1_700_010_000.0)
        tracker.update(SlotSet("name", "n1", timestamp=1_700_010_000.15))  # carried over, as Rasa does
        turn(tracker, 2, 1_700_010_000.0)
        await worker.save(tracker)

        cached, fresh = await worker.retrieve("carol"), await truth.retrieve("carol")
        assert snapshot(cached) == snapshot(fresh)
        assert cached.events[0].as_dict()["event"] == "session_started"
        assert len(cached.events) == len(fresh.events) == 1 + 1 + 1 + 5

    @pytest.mark.asyncio
    async def test_deleted_and_recreated_conversation(self, make_tracker_store, domain):
        worker, other, truth = make_tracker_store(), make_tracker_store(), make_tracker_store(cache_size=0)
        tracker = DialogueStateTracker("dan", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        turn(tracker, 1, 1_700_000_000.0)
        await worker.save(tracker)
        assert await worker.retrieve("dan") is not None

        await other.delete("dan")  # another worker (or the privacy erase) deletes it
        assert await worker.retrieve("dan") is None

        again = DialogueStateTracker("dan", domain.slots)
        session_start(again, 1_700_020_000.0)
        await other.save(again)
        assert snapshot(await worker.retrieve("dan")) == snapshot(await truth.retrieve("dan"))
        assert (await worker.retrieve("dan")).get_slot("name") is None

    @pytest.mark.asyncio
    async def test_the_cache_holds_at_most_cache_size_conversations(self, make_tracker_store, domain):
        worker, truth = make_tracker_store(cache_size=2), make_tracker_store(cache_size=0)
        for name in ("a", "b", "c"):
            tracker = DialogueStateTracker(name, domain.slots)
            session_start(tracker, 1_700_000_000.0)
            turn(tracker, 1, 1_700_000_000.0)
            await worker.save(tracker)
        assert list(worker._sessions) == ["b", "c"]
        for name in ("a", "b", "c"):  # the evicted one is read from the store
            assert snapshot(await worker.retrieve(name)) == snapshot(await truth.retrieve(name))
        assert len(worker._sessions) == 2

    @pytest.mark.asyncio
    async def test_a_changed_tracker_that_was_not_saved_does_not_reach_the_cache(self, make_tracker_store, domain):
        worker, truth = make_tracker_store(), make_tracker_store(cache_size=0)
        tracker = DialogueStateTracker("erin", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        turn(tracker, 1, 1_700_000_000.0)
        await worker.save(tracker)
        first = await worker.retrieve("erin")
        turn(first, 2, 1_700_000_000.0)  # a turn that failed before saving
        for event in first.events:
            event.timestamp = 1.0  # re-stamping a loaded event (update_with_events does)
            event.metadata = {"changed": True}
        assert snapshot(await worker.retrieve("erin")) == snapshot(await truth.retrieve("erin"))
        assert (await worker.retrieve("erin")).get_slot("name") == "n1"

        restarted = make_tracker_store()  # a worker that reads it first (the cache fills on that read)
        loaded = await restarted.retrieve("erin")
        for event in loaded.events:
            event.timestamp = 2.0
            event.metadata = {"changed": True}
        assert snapshot(await restarted.retrieve("erin")) == snapshot(await truth.retrieve("erin"))


@pytest.mark.asyncio
async def test_a_cached_turn_reads_the_position_not_the_events(tmp_path: Path, domain):
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    worker = CountingSQLStore(domain, url=url)
    try:
        tracker = DialogueStateTracker("fay", domain.slots)
        session_start(tracker, 1_700_000_000.0)
        await worker.save(tracker)
        CountingSQLStore.loads = 0
        for k in range(1, 6):
            tracker = await worker.retrieve("fay")
            turn(tracker, k, 1_700_000_000.0)
            await worker.save(tracker)
        assert CountingSQLStore.loads == 0
        uncached = CountingSQLStore(domain, url=url, cache_size=0)
        await uncached.retrieve("fay")
        await uncached.close()
        assert CountingSQLStore.loads == 1
    finally:
        await worker.close()


@pytest.mark.asyncio
async def test_cache_size_from_endpoints(tmp_path: Path, domain):
    def config(**kwargs: Any) -> Any:
        return SimpleNamespace(type="sql", url=f"sqlite:///{tmp_path / 'k.db'}", kwargs=kwargs)

    store = create_tracker_store(config(cache_size=0), domain)
    assert isinstance(store, SQLTrackerStore) and store.cache_size == 0
    await store.close()
    store = create_tracker_store(config(), domain)
    assert store.cache_size > 0
    await store.close()
    for bad in (-1, "many", 2.5, True):
        with pytest.raises(ConfigError, match="cache_size") as error:
            create_tracker_store(config(cache_size=bad), domain)
        assert "endpoints.yml" in str(error.value)


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_cache_size_from_endpoints(redis_url: str, domain):
    store = create_tracker_store(SimpleNamespace(type="redis", url=redis_url, kwargs={"cache_size": 5}), domain)
    assert isinstance(store, RedisTrackerStore) and store.cache_size == 5
    await store.close()
    # Off unless asked on Redis (no measured gain there; docs/performance.md).
    store = create_tracker_store(SimpleNamespace(type="redis", url=redis_url, kwargs={}), domain)
    assert store.cache_size == 0
    await store.close()
