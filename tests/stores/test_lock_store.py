"""One behaviour suite run against every lock store (memory, Redis)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from bot.shared.exceptions import LockError, UnknownComponentError
from bot.stores.lock_store import InMemoryLockStore, RedisLockStore, create_lock_store

ALL_KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.mark.parametrize("make_lock_store", ALL_KINDS, indirect=True)
class TestLockStore:
    @pytest.mark.asyncio
    async def test_lock_store_serialises_holders_in_ticket_order(self, make_lock_store):
        workers = [make_lock_store(), make_lock_store()]  # two "processes" for Redis
        log: list[tuple[str, int, int]] = []

        async def handle(i: int) -> None:
            async with workers[i % 2].lock("conv", lock_lifetime=10, wait_time=0.01) as ticket:
                log.append(("start", i, ticket.number))
                await asyncio.sleep(0.03)
                log.append(("end", i, ticket.number))

        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(handle(i)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)

        assert len(log) == 12
        # no interleaving: every start is directly followed by its own end
        for start, end in zip(log[::2], log[1::2]):
            assert start[0] == "start" and end[0] == "end" and start[1] == end[1]
        # strict FIFO: holders ran in the order their tickets were issued
        numbers = [entry[2] for entry in log[::2]]
        assert numbers == sorted(numbers) and len(set(numbers)) == 6

    @pytest.mark.asyncio
    async def test_lock_store_other_conversations_do_not_wait(self, make_lock_store):
        store = make_lock_store()
        async with store.lock("a", lock_lifetime=10):
            async with store.lock("b", lock_lifetime=10, timeout=0.5) as ticket:
                assert ticket.conversation_id == "b"

    @pytest.mark.asyncio
    async def test_lock_store_expired_holder_lets_next_in(self, make_lock_store):
        store = make_lock_store()
        crashed = store.lock("conv", lock_lifetime=0.3)
        await crashed.__aenter__()  # a worker that dies without releasing
        loop = asyncio.get_running_loop()
        started = loop.time()

        async with make_lock_store().lock("conv", lock_lifetime=5, wait_time=0.02, timeout=3):
            waited = loop.time() - started

        assert 0.25 <= waited < 2.0

    @pytest.mark.asyncio
    async def test_lock_store_timeout_raises_lock_error_and_leaves_queue(self, make_lock_store):
        store = make_lock_store()
        async with store.lock("conv", lock_lifetime=10):
            with pytest.raises(LockError, match="within 0.1s"):
                async with store.lock("conv", lock_lifetime=10, wait_time=0.02, timeout=0.1):
                    pytest.fail("acquired a held lock")
        # the timed-out ticket is gone, so the next caller gets the lock at once
        async with store.lock("conv", lock_lifetime=10, timeout=0.2):
            pass

    @pytest.mark.asyncio
    async def test_lock_store_releases_when_the_body_raises(self, make_lock_store):
        store = make_lock_store()
        with pytest.raises(ValueError):
            async with store.lock("conv", lock_lifetime=10):
                raise ValueError("boom")
        async with store.lock("conv", lock_lifetime=10, timeout=0.2) as ticket:
            assert ticket.number >= 1


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_lock_store_cleans_up_hash_tagged_keys(redis_url: str):
    store = RedisLockStore(redis_url)
    try:
        async with store.lock("会话:1", lock_lifetime=10):
            keys = sorted(await store.redis.keys("*"))
            assert keys == [
                "{kefu:lock:会话:1}:counter",
                "{kefu:lock:会话:1}:expiry",
                "{kefu:lock:会话:1}:tickets",
            ]
        assert await store.redis.keys("*") == []
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_in_memory_lock_store_forgets_finished_conversations():
    store = InMemoryLockStore()
    async with store.lock("conv"):
        assert "conv" in store.tickets
    assert store.tickets == {} and store.last_issued == {}


def test_create_lock_store_by_type():
    assert isinstance(create_lock_store(None), InMemoryLockStore)
    memory = SimpleNamespace(url=None, type="in_memory", token=None, kwargs={})
    assert isinstance(create_lock_store(memory), InMemoryLockStore)
    redis_config = SimpleNamespace(
        url="localhost", type="redis", token=None, kwargs={"port": 6390, "db": 1, "concurrent_mode": True}
    )
    assert isinstance(create_lock_store(redis_config), RedisLockStore)
    with pytest.raises(UnknownComponentError, match="zookeeper"):
        create_lock_store(SimpleNamespace(url=None, type="zookeeper", token=None, kwargs={}))


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_lock_store_free_conversation_is_acquired_in_one_round_trip(redis_server, redis_url):
    from tests.redis_monitor import KeyRecorder

    store = RedisLockStore(redis_url)
    waiter = RedisLockStore(redis_url)
    try:
        with KeyRecorder(redis_server.host, redis_server.port) as recorder:
            async with store.lock("free", lock_lifetime=10):
                pass
        assert len(recorder.scripts()) == 2  # issue-and-poll, release

        order: list[str] = []
        async with store.lock("busy", lock_lifetime=10):
            second = asyncio.create_task(_hold(waiter, "busy", order))
            await asyncio.sleep(0.3)
            order.append("first done")
        await second
        assert order == ["first done", "second"]  # a waiting ticket still polls until its turn
    finally:
        await store.close()
        await waiter.close()


async def _hold(store: RedisLockStore, conversation_id: str, order: list[str]) -> None:
    async with store.lock(conversation_id, lock_lifetime=10, wait_time=0.05):
        order.append("second")
