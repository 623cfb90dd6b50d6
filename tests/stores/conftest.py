"""Fixtures for the store tests: a real redis-server and one factory per store kind.

Tests needing Redis carry ``@pytest.mark.redis``; they fail when redis-server is missing,
unless KEFU_SKIP_REDIS=1 is set, which skips them. Likewise ``@pytest.mark.postgres``
and a real PostgreSQL server (tests/postgres_server.py, KEFU_SKIP_POSTGRES=1).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

try:
    from tests.redis_server import INSTALL_HINT, RedisServer, find_redis_server, redis_skipped
except ImportError:  # tests/ itself on sys.path (pytest rootdir insertion)
    from redis_server import INSTALL_HINT, RedisServer, find_redis_server, redis_skipped  # type: ignore[no-redef]

from bot.shared.slots import TextSlot
from bot.stores.event_broker import InProcessEventBroker, RedisStreamsEventBroker
from bot.stores.lock_store import InMemoryLockStore, LockStore, RedisLockStore
from bot.stores.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)

redis_param = pytest.param("redis", marks=pytest.mark.redis)
postgres_param = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture
def domain() -> Any:
    """A minimal stand-in for ``Domain``: only ``.slots`` is used by the stores."""
    return SimpleNamespace(slots=[TextSlot("name", mappings=[]), TextSlot("city", mappings=[])])


TrackerStoreFactory = Callable[..., TrackerStore]


@pytest_asyncio.fixture
async def make_tracker_store(
    request: pytest.FixtureRequest, tmp_path: Path, domain: Any
) -> AsyncIterator[TrackerStoreFactory]:
    """Builds stores of the parametrised kind that share one backend (a 'restart')."""
    kind: str = request.param
    created: list[TrackerStore] = []
    url = request.getfixturevalue(f"{kind}_url") if kind in ("redis", "postgres") else None
    memory = InMemoryTrackerStore(domain)

    def factory(**kwargs: Any) -> TrackerStore:
        kwargs.setdefault("domain", domain)
        if kind == "memory":
            memory.event_broker = kwargs.get("event_broker")
            return memory
        if kind == "sql":
            store: TrackerStore = SQLTrackerStore(url=f"sqlite:///{tmp_path / 'kefu.db'}", **kwargs)
        elif kind == "postgres":
            store = SQLTrackerStore(url=url, **kwargs)
        else:
            store = RedisTrackerStore(host=url, **kwargs)
        created.append(store)
        return store

    factory.kind = kind  # type: ignore[attr-defined]
    yield factory
    for store in created:
        await store.close()


@pytest_asyncio.fixture
async def make_lock_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], LockStore]]:
    """Lock stores of the parametrised kind sharing one backend (like two workers)."""
    kind: str = request.param
    created: list[LockStore] = []
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    memory = InMemoryLockStore()

    def factory() -> LockStore:
        if kind == "memory":
            return memory
        store = RedisLockStore(url)
        created.append(store)
        return store

    yield factory
    for store in created:
        await store.close()


@pytest_asyncio.fixture
async def make_redis_broker(redis_url: str) -> AsyncIterator[Callable[..., RedisStreamsEventBroker]]:
    created: list[RedisStreamsEventBroker] = []

    def factory(**kwargs: Any) -> RedisStreamsEventBroker:
        broker = RedisStreamsEventBroker(redis_url, **kwargs)
        created.append(broker)
        return broker

    yield factory
    for broker in created:
        await broker.close()


@pytest_asyncio.fixture
async def collecting_broker() -> AsyncIterator[tuple[InProcessEventBroker, list[dict[str, Any]]]]:
    broker = InProcessEventBroker()
    received: list[dict[str, Any]] = []

    async def collect(event: dict[str, Any]) -> None:
        received.append(event)

    broker.subscribe(collect)
    yield broker, received
    await broker.close()


Handler = Callable[[dict[str, Any]], Awaitable[None]]
