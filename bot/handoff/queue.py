"""The live queue: waiting handoffs per skill/language queue, best first.

Ordering score is ``created_at - priority * 1e9`` (lower first): VIP and urgent
handoffs jump the line, ties go to whoever waited longest. In memory by
default; Redis sorted sets when several workers share the queue. ``remove``
answers True for exactly one caller (ZREM's count), a second guard next to the
SQL conditional update. The queue is rebuilt from SQL on start.
"""
from __future__ import annotations

from typing import Any, Protocol

from bot.handoff.keys import handoff_keys

PRIORITY_WEIGHT = 1e9


def score(priority: int, created_at: float) -> float:
    return created_at - priority * PRIORITY_WEIGHT


class LiveQueue(Protocol):
    async def add(self, handoff_id: str, queue: str, score: float) -> None: ...
    async def remove(self, handoff_id: str) -> bool: ...
    async def ordered(self, queue: str | None = None) -> list[str]: ...
    async def position(self, handoff_id: str) -> int | None: ...
    async def clear(self) -> None: ...


class InMemoryLiveQueue:
    def __init__(self) -> None:
        self._items: dict[str, tuple[str, float]] = {}

    async def add(self, handoff_id: str, queue: str, score: float) -> None:
        self._items[handoff_id] = (queue, score)

    async def remove(self, handoff_id: str) -> bool:
        return self._items.pop(handoff_id, None) is not None

    async def ordered(self, queue: str | None = None) -> list[str]:
        items = [(s, h) for h, (q, s) in self._items.items() if queue is None or q == queue]
        return [h for _, h in sorted(items)]

    async def position(self, handoff_id: str) -> int | None:
        item = self._items.get(handoff_id)
        if item is None:
            return None
        return 1 + sum(1 for q, s in self._items.values() if q == item[0] and s < item[1])

    async def clear(self) -> None:
        self._items.clear()


class RedisLiveQueue:
    """One sorted set per queue (``{prefix}:q:<queue>``) plus a hash handoff -> queue
    (``{prefix}:where``) and the set of queue names (``{prefix}:queues``); one hash tag so
    ``add``'s MULTI stays in one Redis Cluster slot (see :func:`bot.handoff.keys.handoff_keys`)."""

    def __init__(self, client: Any, prefix: str = "kefu:handoff:") -> None:
        self.client = client
        self.prefix = prefix
        self.keys = handoff_keys(prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str = "kefu:handoff:") -> "RedisLiveQueue":
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url, decode_responses=True), prefix)

    def _key(self, queue: str) -> str:
        return self.keys.key("q", queue)

    async def add(self, handoff_id: str, queue: str, score: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.key("where"), handoff_id, queue)
        pipe.sadd(self.keys.key("queues"), queue)
        pipe.zadd(self._key(queue), {handoff_id: score})
        await pipe.execute()

    async def remove(self, handoff_id: str) -> bool:
        queue = await self.client.hget(self.keys.key("where"), handoff_id)
        if queue is None:
            return False
        removed = await self.client.zrem(self._key(queue), handoff_id)
        if removed:
            await self.client.hdel(self.keys.key("where"), handoff_id)
        return bool(removed)

    async def ordered(self, queue: str | None = None) -> list[str]:
        queues = [queue] if queue else sorted(await self.client.smembers(self.keys.key("queues")))
        scored: list[tuple[float, str]] = []
        for name in queues:
            scored.extend((s, h) for h, s in await self.client.zrange(self._key(name), 0, -1, withscores=True))
        return [h for _, h in sorted(scored)]

    async def position(self, handoff_id: str) -> int | None:
        queue = await self.client.hget(self.keys.key("where"), handoff_id)
        if queue is None:
            return None
        rank = await self.client.zrank(self._key(queue), handoff_id)
        return None if rank is None else rank + 1

    async def clear(self) -> None:
        for queue in await self.client.smembers(self.keys.key("queues")):
            await self.client.delete(self._key(queue))
        await self.client.delete(self.keys.key("where"), self.keys.key("queues"))

    async def close(self) -> None:
        await self.client.aclose()


def create_live_queue(config: dict[str, Any] | None) -> Any:
    from bot.shared.exceptions import ConfigError

    config = dict(config or {})
    kind = config.get("type", "memory")
    if kind == "memory":
        return InMemoryLiveQueue()
    if kind == "redis":
        url = config.get("url") or "redis://localhost:6379/0"
        return RedisLiveQueue.from_url(url, config.get("prefix", "kefu:handoff:"))
    raise ConfigError(f"Unknown handoff queue type '{kind}'.", filename="config.yml",
                      fix="Write 'queue: {type: memory}' or 'queue: {type: redis, url: redis://localhost:6379/0}' "
                          "under 'handoff:'.")
