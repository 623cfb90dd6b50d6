"""Agent presence, per-agent load and console notifications, shared by every worker.

Sanic runs several worker processes (and shops run several machines); an agent's
console is connected to one of them while handoffs escalate on any. So who is
online, which conversations each agent holds and the console notifications live
behind two small interfaces:

- ``Presence``: online status with a heartbeat TTL (a crashed console goes away
  on its own), the set of handoffs each agent holds, and an atomic ``reserve``
  (add a handoff only while the agent is online and under their limit), so two
  workers routing at once never overfill an agent.
- ``NotificationBus``: every change reaches the console listeners of every
  worker (Redis pub/sub), each exactly once.

In memory for the embedded single-process default; Redis when ``handoff.queue``
(config.yml / endpoints.yml) names Redis.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, Iterable, Protocol

from bot.handoff.keys import handoff_keys

logger = logging.getLogger(__name__)

Dispatch = Callable[[dict[str, Any]], Awaitable[None]]
DEFAULT_PRESENCE_TTL_S = 60.0


class Presence(Protocol):
    async def set_online(self, agent_id: str) -> None: ...
    async def set_away(self, agent_id: str) -> bool: ...
    async def heartbeat(self, agent_id: str) -> bool: ...
    async def snapshot(self, agent_ids: Iterable[str]) -> dict[str, tuple[bool, set[str]]]: ...
    async def reserve(self, agent_id: str, handoff_id: str, limit: int | None, require_online: bool = True) -> bool: ...
    async def release(self, agent_id: str, handoff_id: str) -> bool: ...
    async def replace_loads(self, loads: dict[str, set[str]]) -> None: ...
    async def expired(self, agent_ids: Iterable[str]) -> list[str]: ...
    async def close(self) -> None: ...


class InMemoryPresence:
    """One process: dicts, with the TTL measured on the service's clock."""

    def __init__(self, ttl_s: float = DEFAULT_PRESENCE_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._until: dict[str, float] = {}  # agent -> heartbeat deadline
        self._marked: set[str] = set()  # went online and not yet seen to go away
        self._active: dict[str, set[str]] = {}

    def _online(self, agent_id: str) -> bool:
        return self._until.get(agent_id, float("-inf")) > self.clock()

    async def set_online(self, agent_id: str) -> None:
        self._until[agent_id] = self.clock() + self.ttl_s
        self._marked.add(agent_id)

    async def set_away(self, agent_id: str) -> bool:
        was = self._online(agent_id)
        self._until.pop(agent_id, None)
        self._marked.discard(agent_id)
        return was

    async def heartbeat(self, agent_id: str) -> bool:
        if not self._online(agent_id):
            return False
        self._until[agent_id] = self.clock() + self.ttl_s
        return True

    async def snapshot(self, agent_ids: Iterable[str]) -> dict[str, tuple[bool, set[str]]]:
        return {a: (self._online(a), set(self._active.get(a, ()))) for a in agent_ids}

    async def reserve(self, agent_id: str, handoff_id: str, limit: int | None, require_online: bool = True) -> bool:
        active = self._active.setdefault(agent_id, set())
        if handoff_id in active:
            return True
        if require_online and not self._online(agent_id):
            return False
        if limit is not None and len(active) >= limit:
            return False
        active.add(handoff_id)
        return True

    async def release(self, agent_id: str, handoff_id: str) -> bool:
        active = self._active.get(agent_id)
        if not active or handoff_id not in active:
            return False
        active.discard(handoff_id)
        return True

    async def replace_loads(self, loads: dict[str, set[str]]) -> None:
        self._active = {a: set(ids) for a, ids in loads.items()}

    async def expired(self, agent_ids: Iterable[str]) -> list[str]:
        gone = [a for a in agent_ids if a in self._marked and not self._online(a)]
        self._marked.difference_update(gone)
        return gone

    async def close(self) -> None:
        pass


# KEYS: presence key, active set; ARGV: handoff id, limit (-1: none), require_online (1/0)
_RESERVE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call('SCARD', KEYS[2]) >= limit then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
# KEYS: presence key, the 'went online' set; ARGV: agent id. 1 for exactly one caller per expiry.
_EXPIRED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('SREM', KEYS[2], ARGV[1])
"""


class RedisPresence:
    """``{prefix}:presence:<agent>`` (TTL = heartbeat), ``{prefix}:active:<agent>`` (set),
    ``{prefix}:online`` (set): one cluster slot, see :func:`handoff_keys`."""

    def __init__(self, client: Any, prefix: str = "kefu:handoff:", ttl_s: float = DEFAULT_PRESENCE_TTL_S) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = handoff_keys(prefix)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._reserve = client.register_script(_RESERVE)
        self._expired = client.register_script(_EXPIRED)

    def _p(self, agent_id: str) -> str:
        return self.keys.key("presence", agent_id)

    def _a(self, agent_id: str) -> str:
        return self.keys.key("active", agent_id)

    def _online_set(self) -> str:
        return self.keys.key("online")

    async def set_online(self, agent_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._p(agent_id), "online", px=self.ttl_ms)
        pipe.sadd(self._online_set(), agent_id)
        await pipe.execute()

    async def set_away(self, agent_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._p(agent_id))
        pipe.srem(self._online_set(), agent_id)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    async def heartbeat(self, agent_id: str) -> bool:
        return bool(await self.client.pexpire(self._p(agent_id), self.ttl_ms))

    async def snapshot(self, agent_ids: Iterable[str]) -> dict[str, tuple[bool, set[str]]]:
        ids = list(agent_ids)
        pipe = self.client.pipeline(transaction=False)
        for agent_id in ids:
            pipe.exists(self._p(agent_id))
            pipe.smembers(self._a(agent_id))
        values = await pipe.execute()
        return {a: (bool(values[2 * i]), set(values[2 * i + 1])) for i, a in enumerate(ids)}

    async def reserve(self, agent_id: str, handoff_id: str, limit: int | None, require_online: bool = True) -> bool:
        args = [handoff_id, -1 if limit is None else limit, "1" if require_online else "0"]
        return bool(await self._reserve(keys=[self._p(agent_id), self._a(agent_id)], args=args))

    async def release(self, agent_id: str, handoff_id: str) -> bool:
        return bool(await self.client.srem(self._a(agent_id), handoff_id))

    async def replace_loads(self, loads: dict[str, set[str]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for agent_id, ids in loads.items():
            pipe.delete(self._a(agent_id))
            if ids:
                pipe.sadd(self._a(agent_id), *sorted(ids))
        await pipe.execute()

    async def expired(self, agent_ids: Iterable[str]) -> list[str]:
        gone = []
        for agent_id in agent_ids:
            if await self._expired(keys=[self._p(agent_id), self._online_set()], args=[agent_id]):
                gone.append(agent_id)
        return gone

    async def close(self) -> None:
        pass  # the client is shared and closed by the owner


class InMemoryBus:
    """Delivers straight to this process's listeners."""

    def __init__(self) -> None:
        self._dispatch: Dispatch | None = None

    async def start(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch

    async def publish(self, event: dict[str, Any]) -> None:
        if self._dispatch is not None:
            await self._dispatch(event)

    async def close(self) -> None:
        self._dispatch = None


class RedisBus:
    """Redis pub/sub: every worker's listeners get every event once (the publisher's via Redis too)."""

    def __init__(self, client: Any, channel: str = "kefu:handoff:events") -> None:
        self.client = client
        self.channel = channel
        self.instance = uuid.uuid4().hex
        self._pubsub: Any = None
        self._task: asyncio.Task | None = None

    async def start(self, dispatch: Dispatch) -> None:
        if self._task is not None:
            return
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel)
        self._task = asyncio.ensure_future(self._read(dispatch))

    async def _read(self, dispatch: Dispatch) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis restarted: resubscribe and go on
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py may turn a cancellation mid-read into a connection error:
                    # stop as asked instead of resubscribing forever.
                    raise asyncio.CancelledError from None
                logger.warning("Handoff notification subscription lost; resubscribing.", exc_info=True)
                await asyncio.sleep(0.5)
                try:
                    await self._pubsub.subscribe(self.channel)
                except Exception:
                    pass
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except (TypeError, ValueError):
                continue
            try:
                await dispatch(event)
            except Exception:
                logger.exception("A handoff notification could not be dispatched.")

    async def publish(self, event: dict[str, Any]) -> None:
        await self.client.publish(self.channel, json.dumps(event, ensure_ascii=False, default=str))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
            self._pubsub = None


def create_shared_state(queue_config: dict[str, Any] | None, ttl_s: float = DEFAULT_PRESENCE_TTL_S,
                        clock: Callable[[], float] = time.time) -> tuple[Any, Any, Any]:
    """(live queue, presence, notification bus) for ``handoff.queue``: all in memory or all on one Redis."""
    from bot.handoff.queue import InMemoryLiveQueue, RedisLiveQueue, create_live_queue

    config = dict(queue_config or {})
    if config.get("type", "memory") != "redis":
        return create_live_queue(config), InMemoryPresence(ttl_s, clock), InMemoryBus()
    queue = create_live_queue(config)
    assert isinstance(queue, RedisLiveQueue) and not isinstance(queue, InMemoryLiveQueue)
    # The pub/sub channel is no key (PUBLISH reaches every cluster node): its name stays
    # ``<prefix>events`` so workers of an older and a newer kefu still hear each other.
    return (queue, RedisPresence(queue.client, queue.prefix, ttl_s),
            RedisBus(queue.client, queue.prefix + "events"))
