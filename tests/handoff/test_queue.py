"""Live queue ordering and the single-winner remove, in memory and on a real Redis."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.handoff.queue import InMemoryLiveQueue, RedisLiveQueue, score


async def _exercise(queue: Any) -> None:
    await queue.clear()
    await queue.add("old", "general:en", score(0, 100.0))
    await queue.add("new", "general:en", score(0, 200.0))
    await queue.add("vip", "general:en", score(1, 300.0))
    await queue.add("zh", "general:zh", score(0, 50.0))
    assert await queue.ordered("general:en") == ["vip", "old", "new"]
    assert await queue.position("new") == 3 and await queue.position("zh") == 1
    results = await asyncio.gather(queue.remove("vip"), queue.remove("vip"))
    assert sorted(results) == [False, True]
    assert await queue.position("old") == 1 and await queue.position("vip") is None


def test_queue_in_memory_orders_vip_first_and_removes_once() -> None:
    asyncio.run(_exercise(InMemoryLiveQueue()))


@pytest.mark.redis
def test_queue_redis_orders_vip_first_and_removes_once(redis_url: str) -> None:
    async def run() -> None:
        queue = RedisLiveQueue.from_url(redis_url)
        await _exercise(queue)
        await queue.close()

    asyncio.run(run())
