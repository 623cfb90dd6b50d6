"""The 48-hour / 5-message customer-service window, in memory and shared through Redis."""
from __future__ import annotations

import pytest

from connectors.wechat.policy import SendPath, SendPolicy
from connectors.wechat.store import InMemoryWeChatStore, RedisWeChatStore


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def check_window(policy: SendPolicy, clock: Clock) -> None:
    assert await policy.allowed_send_path("oU") is SendPath.TEMPLATE  # never talked to us
    await policy.record_inbound("oU")
    assert await policy.allowed_send_path("oU") is SendPath.CUSTOMER_SERVICE
    for _ in range(5):
        await policy.record_customer_service_send("oU")
    assert await policy.allowed_send_path("oU") is SendPath.TEMPLATE  # cap reached
    await policy.record_inbound("oU")  # a new shopper message opens a new window
    assert await policy.allowed_send_path("oU") is SendPath.CUSTOMER_SERVICE
    clock.now += 48 * 3600 - 1
    assert await policy.allowed_send_path("oU") is SendPath.CUSTOMER_SERVICE
    clock.now += 2
    assert await policy.allowed_send_path("oU") is SendPath.TEMPLATE
    await policy.set_opted_out("oU", True)
    assert await policy.allowed_send_path("oU") is SendPath.NONE
    await policy.set_opted_out("oU", False)
    assert await policy.allowed_send_path("oU") is SendPath.TEMPLATE


@pytest.mark.asyncio
async def test_policy_window_in_memory():
    clock = Clock()
    await check_window(SendPolicy(InMemoryWeChatStore(clock), clock=clock), clock)


@pytest.mark.redis
@pytest.mark.asyncio
async def test_policy_window_shared_through_redis(redis_url):
    clock = Clock()
    store = RedisWeChatStore(redis_url)
    await check_window(SendPolicy(store, clock=clock), clock)
    other_worker = SendPolicy(RedisWeChatStore(redis_url), clock=clock)
    assert (await other_worker.state("oU")).last_inbound is not None
    await store.close()
    await other_worker.store.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_store_add_if_absent_expires(redis_url):
    import asyncio

    store = RedisWeChatStore(redis_url)
    assert await store.add_if_absent("seen:1", 0.2)
    assert not await store.add_if_absent("seen:1", 0.2)
    await asyncio.sleep(0.3)
    assert await store.add_if_absent("seen:1", 0.2)
    await store.close()
