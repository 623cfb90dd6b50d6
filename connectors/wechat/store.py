"""Small key/value state the WeChat connector shares between Sanic workers.

Dedupe keys, replay nonces, cached passive replies, pending numbered buttons and the
per-openid send-window record live here. With ``redis_url`` in credentials.yml every
worker (and machine) sees the same state; otherwise it is kept in process memory,
which is right for a single worker and for tests.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from bot.stores._common import redis_client

__all__ = ["InMemoryWeChatStore", "RedisWeChatStore", "WeChatStore", "create_store"]


class WeChatStore(Protocol):
    async def add_if_absent(self, key: str, ttl: float) -> bool:
        """Mark ``key`` for ``ttl`` seconds; False when it was already marked."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def hgetall(self, key: str) -> dict[str, str]: ...

    async def hset(self, key: str, mapping: dict[str, Any]) -> None: ...

    async def hincrby(self, key: str, field: str, amount: int = 1) -> int: ...

    async def close(self) -> None: ...


class InMemoryWeChatStore:
    """Process-local state with lazy expiry."""

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._values: dict[str, tuple[Any, float | None]] = {}

    def _live(self, key: str) -> Any:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self.clock():
            del self._values[key]
            return None
        return value

    def _purge(self) -> None:
        if len(self._values) < self.max_keys:
            return
        now = self.clock()
        for key in [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]:
            del self._values[key]

    def _put(self, key: str, value: Any, ttl: float | None) -> None:
        self._purge()
        self._values[key] = (value, self.clock() + ttl if ttl else None)

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, "1", ttl)
        return True

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._put(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._live(key) or {})

    async def hset(self, key: str, mapping: dict[str, Any]) -> None:
        current = self._live(key) or {}
        current.update({k: str(v) for k, v in mapping.items()})
        self._values[key] = (current, None)

    async def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        current = self._live(key) or {}
        value = int(current.get(field, 0)) + amount
        current[field] = str(value)
        self._values[key] = (current, None)
        return value

    async def close(self) -> None:
        return None


class RedisWeChatStore:
    """The same operations on Redis; keys get ``prefix`` so one Redis serves many bots."""

    def __init__(self, url: str, prefix: str = "kefu:wechat:", client: Any = None) -> None:
        self.prefix = prefix
        self.redis = client if client is not None else redis_client(url)

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        return bool(await self.redis.set(self._k(key), "1", nx=True, px=max(1, int(ttl * 1000))))

    async def get(self, key: str) -> str | None:
        return await self.redis.get(self._k(key))

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if ttl:
            await self.redis.set(self._k(key), value, px=max(1, int(ttl * 1000)))
        else:
            await self.redis.set(self._k(key), value)

    async def delete(self, key: str) -> None:
        await self.redis.delete(self._k(key))

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(self._k(key)))

    async def hset(self, key: str, mapping: dict[str, Any]) -> None:
        await self.redis.hset(self._k(key), mapping={k: str(v) for k, v in mapping.items()})

    async def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        return int(await self.redis.hincrby(self._k(key), field, amount))

    async def close(self) -> None:
        await self.redis.aclose()


def create_store(redis_url: str | None, prefix: str = "kefu:wechat:") -> WeChatStore:
    return RedisWeChatStore(redis_url, prefix) if redis_url else InMemoryWeChatStore()
