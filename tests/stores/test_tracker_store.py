"""One behaviour suite run against every tracker store (memory, SQLite file, Redis, PostgreSQL)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.shared.events import (
    ActionExecuted,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from bot.shared.exceptions import ConfigError, UnknownComponentError
from bot.shared.tracker import DialogueStateTracker, EventVerbosity
from bot.stores.event_broker import InProcessEventBroker
from bot.stores.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    async_sql_url,
    create_tracker_store,
)

ALL_KINDS = ["memory", "sql", pytest.param("redis", marks=pytest.mark.redis),
             pytest.param("postgres", marks=pytest.mark.postgres)]
PERSISTENT_KINDS = ["sql", pytest.param("redis", marks=pytest.mark.redis),
                    pytest.param("postgres", marks=pytest.mark.postgres)]


def first_turn(sender_id: str, domain: Any, t0: float = 1_700_000_000.0) -> DialogueStateTracker:
    """A tracker whose events use every commonly stored field."""
    tracker = DialogueStateTracker(sender_id, domain.slots)
    parse_data = {
        "intent": {"name": "order_status", "confidence": 0.93},
        "entities": [{"entity": "order_id", "value": "E20261101001", "start": 4, "end": 17}],
        "intent_ranking": [{"name": "order_status", "confidence": 0.93}],
        "text": "查订单 E20261101001",
    }
    for event in [
        ActionExecuted("action_listen", timestamp=t0),
        UserUttered(
            "查订单 E20261101001",
            parse_data["intent"],
            parse_data["entities"],
            parse_data,
            timestamp=t0 + 1.25,
            input_channel="rest",
            message_id="m-1",
            metadata={"shop": "sports", "nested": {"n": [1, 2]}},
        ),
        SlotSet("name", "小王", timestamp=t0 + 2),
        ActionExecuted("utter_order", policy="RulePolicy", confidence=1.0, timestamp=t0 + 3),
        BotUttered("正在查询", {"buttons": [{"title": "ok", "payload": "/affirm"}]}, {"utter_action": "utter_order"}, timestamp=t0 + 4),
        ActionExecuted("action_listen", timestamp=t0 + 5),
    ]:
        tracker.update(event)
    return tracker


def dicts(tracker: DialogueStateTracker) -> list[dict[str, Any]]:
    return [event.as_dict() for event in tracker.events]


@pytest.mark.parametrize("make_tracker_store", ALL_KINDS, indirect=True)
class TestTrackerStore:
    @pytest.mark.asyncio
    async def test_tracker_store_round_trip_preserves_every_event_field(self, make_tracker_store, domain):
        store = make_tracker_store()
        tracker = first_turn("alice", domain)
        await store.save(tracker)

        restored = await store.retrieve("alice")

        assert restored is not None
        assert dicts(restored) == dicts(tracker)
        assert restored.current_state(EventVerbosity.ALL) == tracker.current_state(EventVerbosity.ALL)
        assert restored.get_slot("name") == "小王"
        assert restored.latest_message.intent_name == "order_status"
        assert restored.latest_message.metadata == {"shop": "sports", "nested": {"n": [1, 2]}}

    @pytest.mark.asyncio
    async def test_tracker_store_retrieve_unknown_is_none(self, make_tracker_store):
        store = make_tracker_store()
        assert await store.retrieve("nobody") is None
        assert await store.retrieve_full_tracker("nobody") is None

    @pytest.mark.asyncio
    async def test_tracker_store_saves_append_only_new_events(self, make_tracker_store, domain, collecting_broker):
        broker, published = collecting_broker
        store = make_tracker_store(event_broker=broker)
        tracker = first_turn("bob", domain)
        await store.save(tracker)
        await store.save(tracker)  # nothing new: nothing written, nothing published
        assert len(published) == 6

        tracker.update(UserUttered("谢谢", {"name": "thank", "confidence": 1.0}, timestamp=1_700_000_010.0))
        tracker.update(ActionExecuted("utter_welcome", timestamp=1_700_000_011.0))
        await store.save(tracker)

        full = await store.retrieve_full_tracker("bob")
        assert dicts(full) == dicts(tracker)
        assert [e["event"] for e in published[6:]] == ["user", "action"]
        assert published[6]["sender_id"] == "bob"
        assert published[6]["text"] == "谢谢"

    @pytest.mark.asyncio
    async def test_tracker_store_retrieve_returns_latest_session(self, make_tracker_store, domain):
        store = make_tracker_store()
        tracker = first_turn("carol", domain)
        await store.save(tracker)
        tracker.update(ActionExecuted("action_session_start", timestamp=1_700_100_000.0))
        tracker.update(SessionStarted(timestamp=1_700_100_000.5))
        tracker.update(SlotSet("name", "小王", timestamp=1_700_100_001.0))
        tracker.update(ActionExecuted("action_listen", timestamp=1_700_100_002.0))
        await store.save(tracker)

        session = await store.retrieve("carol")
        assert [e["event"] for e in dicts(session)] == ["session_started", "slot", "action"]
        assert session.get_slot("name") == "小王"

        # A tracker loaded as the latest session appends after the stored events.
        session.update(UserUttered("你好", {"name": "greet", "confidence": 1.0}, timestamp=1_700_100_003.0))
        await store.save(session)
        full = await store.retrieve_full_tracker("carol")
        assert len(full.events) == len(tracker.events) + 1
        assert full.events[-1].as_dict()["text"] == "你好"
        assert [e.as_dict() for e in list(full.events)[:-1]] == dicts(tracker)

    @pytest.mark.asyncio
    async def test_tracker_store_keys_and_delete(self, make_tracker_store, domain):
        store = make_tracker_store()
        for sender in ["u1", "u:2", "用户3"]:
            await store.save(first_turn(sender, domain))

        assert sorted(await store.keys()) == sorted(["u1", "u:2", "用户3"])

        await store.delete("u:2")
        assert sorted(await store.keys()) == sorted(["u1", "用户3"])
        assert await store.retrieve("u:2") is None
        assert await store.retrieve("u1") is not None
        await store.delete("never-existed")  # no error

    @pytest.mark.asyncio
    async def test_tracker_store_get_or_create_starts_with_action_listen(self, make_tracker_store):
        store = make_tracker_store()
        tracker = await store.get_or_create_tracker("new-user")
        assert [e.as_dict()["name"] for e in tracker.events] == ["action_listen"]
        again = await store.get_or_create_tracker("new-user")
        assert len(again.events) == 1
        assert await store.keys() == ["new-user"]

    @pytest.mark.asyncio
    async def test_tracker_store_trackers_get_domain_slots(self, make_tracker_store, domain):
        store = make_tracker_store()
        await store.save(first_turn("dave", domain))
        restored = await store.retrieve("dave")
        assert set(restored.slots) >= {"name", "city"}
        assert restored.get_slot("city") is None
        # Slots are not shared between trackers or with the domain.
        assert domain.slots[0].value is None


@pytest.mark.parametrize("make_tracker_store", PERSISTENT_KINDS, indirect=True)
class TestPersistentTrackerStore:
    @pytest.mark.asyncio
    async def test_tracker_store_survives_restart(self, make_tracker_store, domain):
        first = make_tracker_store()
        tracker = first_turn("erin", domain)
        await first.save(tracker)
        await first.close()

        second = make_tracker_store()
        restored = await second.retrieve("erin")
        assert restored is not None
        assert dicts(restored) == dicts(tracker)
        assert await second.keys() == ["erin"]

        restored.update(ActionExecuted("utter_goodbye", timestamp=1_700_000_100.0))
        await second.save(restored)
        third = make_tracker_store()
        assert len((await third.retrieve_full_tracker("erin")).events) == len(tracker.events) + 1


@pytest.mark.asyncio
async def test_sql_tracker_store_writes_rasa_columns_with_wal(tmp_path: Path, domain):
    path = tmp_path / "events.db"
    store = SQLTrackerStore(domain, url=f"sqlite:///{path}")
    await store.save(first_turn("frank", domain))
    await store.close()

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = connection.execute(
            "SELECT sender_id, type_name, timestamp, intent_name, action_name, data FROM events ORDER BY id"
        ).fetchall()
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(events)")}
    assert [r[1] for r in rows] == ["action", "user", "slot", "action", "bot", "action"]
    assert rows[1][3] == "order_status"
    assert rows[3][4] == "utter_order"
    assert rows[0][2] == 1_700_000_000.0
    assert json.loads(rows[1][5])["text"] == "查订单 E20261101001"
    assert any("sender_id" in name for name in indexes)


def test_async_sql_url_swaps_sync_drivers():
    assert async_sql_url("sqlite:///kefu.db") == "sqlite+aiosqlite:///kefu.db"
    assert async_sql_url("postgresql://u:p@db/kefu") == "postgresql+psycopg://u:p@db/kefu"
    assert async_sql_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    with pytest.raises(ConfigError, match="not an SQLAlchemy database URL"):
        async_sql_url("kefu.db")


def test_postgresql_urls_all_go_through_psycopg():
    from bot.stores.sql import is_postgresql, sync_sql_url

    for scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"):
        assert sync_sql_url(f"{scheme}://u:p@db/kefu") == "postgresql+psycopg://u:p@db/kefu"
        assert is_postgresql(f"{scheme}://db/kefu")
    assert async_sql_url("postgres+psycopg2://db/kefu") == "postgresql+psycopg://db/kefu"
    assert sync_sql_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db" and not is_postgresql("sqlite:///x.db")
    with pytest.raises(ConfigError, match="not an SQLAlchemy database URL"):
        sync_sql_url("db.example.com")


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_tracker_store_uses_hash_tagged_keys_and_ttl(redis_url: str, domain):
    store = RedisTrackerStore(domain, host=redis_url, record_exp=100)
    try:
        await store.save(first_turn("gina", domain))
        assert await store.redis.keys("*") == ["{kefu:tracker:gina}"]
        ttl = await store.redis.ttl("{kefu:tracker:gina}")
        assert 0 < ttl <= 100
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_create_tracker_store_by_type(tmp_path: Path, domain):
    broker = InProcessEventBroker()
    assert isinstance(create_tracker_store(None, domain), InMemoryTrackerStore)

    config = SimpleNamespace(url=f"sqlite:///{tmp_path / 'a.db'}", type="SQL", token=None, kwargs={})
    store = create_tracker_store(config, domain, broker)
    assert isinstance(store, SQLTrackerStore)
    assert store.url.startswith("sqlite+aiosqlite:///")
    assert store.event_broker is broker
    await store.close()

    rasa_style = SimpleNamespace(url=None, type="sql", token=None, kwargs={"dialect": "sqlite", "db": str(tmp_path / "b.db")})
    store = create_tracker_store(rasa_style, domain)
    assert store.url == f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    await store.close()

    redis_config = SimpleNamespace(url="localhost", type="redis", token=None, kwargs={"port": 6390, "record_exp": 30})
    redis_store = create_tracker_store(redis_config, domain)
    assert isinstance(redis_store, RedisTrackerStore) and redis_store.record_exp == 30

    dotted = SimpleNamespace(url=None, type="bot.stores.tracker_store.InMemoryTrackerStore", token=None, kwargs={})
    assert isinstance(create_tracker_store(dotted, domain), InMemoryTrackerStore)

    with pytest.raises(UnknownComponentError, match="mongod") as error:
        create_tracker_store(SimpleNamespace(url=None, type="mongod", token=None, kwargs={}), domain)
    assert "redis" in str(error.value) and "sql" in str(error.value)
    with pytest.raises(UnknownComponentError):
        create_tracker_store(SimpleNamespace(url=None, type="no.such.Store", token=None, kwargs={}), domain)


@pytest.mark.asyncio
async def test_sql_tracker_store_concurrent_saves_of_many_conversations(tmp_path: Path, domain):
    store = SQLTrackerStore(domain, url=f"sqlite:///{tmp_path / 'busy.db'}")
    trackers = [first_turn(f"user-{i}", domain) for i in range(30)]
    try:
        await asyncio.gather(*(store.save(t) for t in trackers))
        for tracker in trackers:
            tracker.update(ActionExecuted("utter_more", timestamp=1_700_000_050.0))
        await asyncio.gather(*(store.save(t) for t in trackers))
        assert len(await store.keys()) == 30
        full = await store.retrieve_full_tracker("user-7")
        assert dicts(full) == dicts(trackers[7])
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_stores_from_endpoints_yml_with_real_domain(tmp_path: Path):
    from bot.shared.domain import Domain
    from bot.shared.endpoints import endpoints_from_yaml
    from bot.stores.lock_store import InMemoryLockStore, create_lock_store

    domain = Domain.from_yaml(
        'version: "3.1"\nintents: [greet]\nslots:\n  name:\n    type: text\n    mappings:\n    - type: from_text\n'
    )
    endpoints = endpoints_from_yaml(
        f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path / 'rasa.db'}\n"
        "lock_store:\n  type: in_memory\n"
        "event_broker:\n  type: unknown_broker\n",
        "endpoints.yml",
    )
    store = create_tracker_store(endpoints.tracker_store, domain)
    assert isinstance(create_lock_store(endpoints.lock_store), InMemoryLockStore)
    try:
        tracker = await store.get_or_create_tracker("zoe")
        tracker.update(SlotSet("name", "Zoe"))
        await store.save(tracker)
        restored = await store.retrieve("zoe")
        assert restored.get_slot("name") == "Zoe"
        assert "name" in restored.slots
    finally:
        await store.close()

    from bot.stores.event_broker import create_event_broker

    with pytest.raises(UnknownComponentError, match=r"endpoints.yml:\d+"):
        create_event_broker(endpoints.event_broker)


def test_loads_events_matches_row_by_row_and_fails_like_it() -> None:
    import json

    from bot.stores.tracker_store import loads_events

    rows = [json.dumps({"event": "action", "name": "action_listen", "n": i}) for i in range(3)]
    assert loads_events(rows) == [json.loads(r) for r in rows]
    assert loads_events([r.encode() for r in rows]) == [json.loads(r) for r in rows]
    assert loads_events([]) == []
    for corrupt in ('{"event": "slot"', '{"event": "a"}, {"event": "b"}'):
        with pytest.raises(json.JSONDecodeError):
            loads_events([rows[0], corrupt])
