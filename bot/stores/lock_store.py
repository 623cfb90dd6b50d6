"""Lock stores: one message at a time per conversation, first come first served.

Like Rasa's ``TicketLock``: each caller takes a numbered ticket and waits until it is
the lowest live ticket of its conversation. A holder's ticket expires ``lock_lifetime``
seconds after it acquired the lock, so a crashed worker blocks the conversation for at
most that long; waiting tickets are refreshed on every poll and therefore only expire
when their owner is gone. The Redis store keeps tickets in Redis, updated by Lua
scripts using the server's clock, so workers on many machines share one queue.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from bot.shared.exceptions import LockError
from bot.stores.keys import KeyBuilder
from bot.stores._common import (
    endpoint_kwargs,
    endpoint_type,
    load_class,
    redis_client,
    unknown_type_error,
)

logger = logging.getLogger(__name__)

DEFAULT_LOCK_LIFETIME = 60.0
DEFAULT_WAIT_TIME = 0.1
DEFAULT_REDIS_LOCK_PREFIX = "kefu:lock:"

ACQUIRED, WAITING, LOST = 1, 0, -1


@dataclass(frozen=True)
class Ticket:
    """The caller's place in a conversation's queue."""

    conversation_id: str
    number: int
    lock_lifetime: float


class LockStore:
    """Base class: ``async with store.lock(conversation_id): ...``.

    Subclasses implement three atomic steps: ``_issue`` (take the next ticket),
    ``_poll`` (drop expired tickets; ACQUIRED if ours is first, LOST if ours expired,
    else WAITING and refresh ours) and ``_release``.
    """

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = DEFAULT_LOCK_LIFETIME,
        wait_time: float = DEFAULT_WAIT_TIME,
        timeout: Optional[float] = None,
    ) -> AsyncIterator[Ticket]:
        """Hold the conversation's lock; LockError if not acquired within ``timeout``.

        ``timeout=None`` waits as long as the queue moves (every holder's ticket
        expires, so it always does).
        """
        number, state = await self._issue_and_poll(conversation_id, lock_lifetime)
        ticket = Ticket(conversation_id, number, lock_lifetime)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while True:
                if state is None:
                    state = await self._poll(conversation_id, number, lock_lifetime)
                if state == ACQUIRED:
                    break
                if state == LOST:
                    raise LockError(
                        f"Ticket {number} for conversation '{conversation_id}' expired while "
                        f"waiting for the lock. Fix: raise lock_lifetime (now {lock_lifetime}s) "
                        f"or keep the event loop free of long blocking work."
                    )
                if timeout is not None and loop.time() - started >= timeout:
                    raise LockError(
                        f"Could not acquire the lock for conversation '{conversation_id}' "
                        f"within {timeout}s. Fix: raise the lock timeout, or find the message "
                        f"that holds the lock too long."
                    )
                await self._wait(conversation_id, wait_time)
                state = None
            acquired_at = loop.time()
            logger.debug("Acquired lock for conversation '%s' (ticket %d).", conversation_id, number)
            yield ticket
            held = loop.time() - acquired_at
            if held > lock_lifetime:
                logger.warning(
                    "Conversation '%s' held its lock %.1fs, longer than its lifetime of %.1fs; "
                    "another message may have been processed concurrently.",
                    conversation_id,
                    held,
                    lock_lifetime,
                )
        finally:
            await self._release(conversation_id, number)

    async def _issue(self, conversation_id: str, lock_lifetime: float) -> int:
        raise NotImplementedError

    async def _issue_and_poll(self, conversation_id: str, lock_lifetime: float) -> tuple[int, int | None]:
        """Take a ticket and, where a store can do both in one step, poll it at once.

        Returns the ticket number and its first poll's state, or None when the caller
        must poll (the default). A conversation nobody else is writing to (the usual
        case) then costs one round trip to acquire instead of two.
        """
        return await self._issue(conversation_id, lock_lifetime), None

    async def _poll(self, conversation_id: str, number: int, lock_lifetime: float) -> int:
        raise NotImplementedError

    async def _release(self, conversation_id: str, number: int) -> None:
        raise NotImplementedError

    async def _wait(self, conversation_id: str, wait_time: float) -> None:
        await asyncio.sleep(wait_time)

    async def close(self) -> None:
        """Release connections."""


class InMemoryLockStore(LockStore):
    """Tickets in a dict; correct within one process. Waiters wake on release."""

    def __init__(self) -> None:
        # conversation -> {ticket number: expiry (monotonic seconds)}, in issue order
        self.tickets: dict[str, dict[int, float]] = {}
        self.last_issued: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}

    async def _issue(self, conversation_id: str, lock_lifetime: float) -> int:
        number = self.last_issued.get(conversation_id, 0) + 1
        self.last_issued[conversation_id] = number
        self.tickets.setdefault(conversation_id, {})[number] = time.monotonic() + lock_lifetime
        return number

    async def _poll(self, conversation_id: str, number: int, lock_lifetime: float) -> int:
        tickets = self.tickets.get(conversation_id, {})
        now = time.monotonic()
        for expired in [n for n, expiry in tickets.items() if expiry <= now]:
            logger.warning("Lock ticket %d of conversation '%s' expired.", expired, conversation_id)
            del tickets[expired]
        if number not in tickets:
            return LOST
        tickets[number] = now + lock_lifetime
        return ACQUIRED if min(tickets) == number else WAITING

    async def _release(self, conversation_id: str, number: int) -> None:
        tickets = self.tickets.get(conversation_id)
        if tickets is not None:
            tickets.pop(number, None)
            if not tickets:
                del self.tickets[conversation_id]
                self.last_issued.pop(conversation_id, None)
        changed = self._changed.pop(conversation_id, None)
        if changed is not None:
            changed.set()

    async def _wait(self, conversation_id: str, wait_time: float) -> None:
        changed = self._changed.setdefault(conversation_id, asyncio.Event())
        try:
            await asyncio.wait_for(changed.wait(), wait_time)
        except asyncio.TimeoutError:
            pass


# KEYS: counter, tickets (zset: member=score=number), expiries (hash number -> ms)
# ARGV: lifetime in ms
_ISSUE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lifetime = tonumber(ARGV[1])
local number = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], number, number)
redis.call('HSET', KEYS[3], number, now + lifetime)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], lifetime * 2 + 1000) end
return number
"""

# KEYS as above; ARGV: ticket number, lifetime in ms.  Returns 1 / 0 / -1.
_POLL_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local number = ARGV[1]
local lifetime = tonumber(ARGV[2])
local expiries = redis.call('HGETALL', KEYS[3])
for i = 1, #expiries, 2 do
  if tonumber(expiries[i + 1]) <= now then
    redis.call('HDEL', KEYS[3], expiries[i])
    redis.call('ZREM', KEYS[2], expiries[i])
  end
end
if not redis.call('ZSCORE', KEYS[2], number) then
  return -1
end
redis.call('HSET', KEYS[3], number, now + lifetime)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], lifetime * 2 + 1000) end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
if head[1] == number then return 1 end
return 0
"""

# KEYS as above; ARGV: lifetime in ms. _ISSUE_SCRIPT then _POLL_SCRIPT in one atomic step;
# returns {number, 1 / 0 / -1}.
_ISSUE_AND_POLL_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lifetime = tonumber(ARGV[1])
local issued = redis.call('INCR', KEYS[1])
local number = tostring(issued)
redis.call('ZADD', KEYS[2], issued, number)
redis.call('HSET', KEYS[3], number, now + lifetime)
local expiries = redis.call('HGETALL', KEYS[3])
for i = 1, #expiries, 2 do
  if tonumber(expiries[i + 1]) <= now then
    redis.call('HDEL', KEYS[3], expiries[i])
    redis.call('ZREM', KEYS[2], expiries[i])
  end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], lifetime * 2 + 1000) end
if not redis.call('ZSCORE', KEYS[2], number) then
  return {issued, -1}
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
if head[1] == number then return {issued, 1} end
return {issued, 0}
"""

# KEYS as above; ARGV: ticket number
_RELEASE_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return 1
"""


class RedisLockStore(LockStore):
    """Ticket queues in Redis, shared by every worker process.

    Keys ``{kefu:lock:<id>}:counter|tickets|expiry`` share a hash tag (a :class:`KeyBuilder`
    per conversation whose whole prefix is the tag), so the Lua scripts touch a single Redis
    Cluster slot and every key is passed in ``KEYS``.
    """

    def __init__(
        self,
        host: str = "localhost",
        *,
        key_prefix: str = DEFAULT_REDIS_LOCK_PREFIX,
        client: Any = None,
        **redis_options: Any,
    ) -> None:
        self.key_prefix = key_prefix if key_prefix.endswith(":") else f"{key_prefix}:"
        self.redis = client if client is not None else redis_client(host, **redis_options)
        self._issue_script = self.redis.register_script(_ISSUE_SCRIPT)
        self._issue_and_poll_script = self.redis.register_script(_ISSUE_AND_POLL_SCRIPT)
        self._poll_script = self.redis.register_script(_POLL_SCRIPT)
        self._release_script = self.redis.register_script(_RELEASE_SCRIPT)

    def _keys(self, conversation_id: str) -> list[str]:
        key = KeyBuilder(f"{self.key_prefix}{conversation_id}").key
        return [key("counter"), key("tickets"), key("expiry")]

    def _error(self, conversation_id: str, e: Exception) -> LockError:
        return LockError(
            f"Redis lock store failed for conversation '{conversation_id}': {e}. "
            f"Fix: check lock_store url/port/password in endpoints.yml and that Redis is running."
        )

    async def _issue(self, conversation_id: str, lock_lifetime: float) -> int:
        try:
            return int(
                await self._issue_script(keys=self._keys(conversation_id), args=[int(lock_lifetime * 1000)])
            )
        except Exception as e:  # redis.RedisError, OSError
            raise self._error(conversation_id, e) from e

    async def _issue_and_poll(self, conversation_id: str, lock_lifetime: float) -> tuple[int, int | None]:
        try:
            number, state = await self._issue_and_poll_script(
                keys=self._keys(conversation_id), args=[int(lock_lifetime * 1000)]
            )
        except Exception as e:  # redis.RedisError, OSError
            raise self._error(conversation_id, e) from e
        return int(number), int(state)

    async def _poll(self, conversation_id: str, number: int, lock_lifetime: float) -> int:
        try:
            return int(
                await self._poll_script(
                    keys=self._keys(conversation_id), args=[number, int(lock_lifetime * 1000)]
                )
            )
        except Exception as e:  # redis.RedisError, OSError
            raise self._error(conversation_id, e) from e

    async def _release(self, conversation_id: str, number: int) -> None:
        try:
            await self._release_script(keys=self._keys(conversation_id), args=[number])
        except Exception as e:  # redis.RedisError, OSError
            # The ticket expires on its own; do not hide the caller's own exception.
            logger.error("Could not release lock ticket %d of '%s': %s", number, conversation_id, e)

    async def close(self) -> None:
        await self.redis.aclose()


LOCK_STORE_TYPES: dict[str, type[LockStore]] = {
    "in_memory": InMemoryLockStore,
    "memory": InMemoryLockStore,
    "inmemory": InMemoryLockStore,
    "redis": RedisLockStore,
}


def create_lock_store(endpoint_config: Any | None) -> LockStore:
    """The lock store named by ``lock_store:`` in endpoints.yml (in-memory by default)."""
    kind = endpoint_type(endpoint_config)
    if kind is None:
        return InMemoryLockStore()
    cls = LOCK_STORE_TYPES.get(kind.lower())
    if cls is InMemoryLockStore:
        return InMemoryLockStore()
    kwargs = endpoint_kwargs(endpoint_config)
    if cls is RedisLockStore:
        kwargs.pop("concurrent_mode", None)  # Rasa's flag; kefu's Redis store always is
        key_prefix = kwargs.pop("key_prefix", None) or DEFAULT_REDIS_LOCK_PREFIX
        return RedisLockStore(getattr(endpoint_config, "url", None) or "localhost", key_prefix=key_prefix, **kwargs)
    if "." not in kind:
        raise unknown_type_error("lock store type", kind, sorted(LOCK_STORE_TYPES), endpoint_config)
    custom = load_class(kind, "lock store type", sorted(LOCK_STORE_TYPES), endpoint_config)
    if hasattr(custom, "from_endpoint_config"):
        return custom.from_endpoint_config(endpoint_config)
    return custom(endpoint_config=endpoint_config)


create_lock_store_from_endpoint = create_lock_store
