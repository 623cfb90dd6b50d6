"""Tell every worker at once that the registry's active model changed (Redis pub/sub).

The registry (SQL, `registry_sql.py`) stays the truth; a message only wakes the followers, so a
lost message costs at most ``follow_interval_s`` (each worker also polls the registry). Used
when ``workbench.notify_url`` is set or endpoints.yml has a Redis lock store, tracker store or
event broker — the stores a multi-worker deployment already shares.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

logger = logging.getLogger(__name__)

CHANNEL = "kefu:workbench:active"



class RedisActivations:
    """Publish an activation; listen for others' (one connection per worker)."""

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.from_url(self.url)
        return self._client

    async def publish(self, name: str) -> None:
        try:
            await self.client().publish(self.channel, name)
        except Exception:  # the other workers still poll the registry
            logger.warning("Could not publish the activation of %s on Redis; workers will poll it.", name,
                           exc_info=True)

    async def listen(self, stop: asyncio.Event, on_change: Callable[[], Awaitable[Any]]) -> None:
        """Call ``on_change`` for every activation message until ``stop`` (reconnects on errors)."""
        while not stop.is_set():
            pubsub = self.client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await on_change()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Workbench activation channel failed; reconnecting in 2 s.", exc_info=True)
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection
                    pass

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
