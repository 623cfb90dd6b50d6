"""What the alert rules count, per minute: messages matching a rule, and distinct conversations.

The :class:`SignalHook` sees every shopper message (a processor hook that never handles
the turn) and adds one to each ``complaint_spike`` rule whose intents or negative
sentiment it matches, and the conversation to the minute's set. Counts are kept in
one-minute buckets (a window of N minutes is the N whole minutes before the evaluation),
in memory (one worker) or in Redis (several workers: ``HINCRBY`` per minute, a
HyperLogLog per minute for distinct conversations, all keys under one hash tag).

:class:`AlertState` keeps which rules fire and the recent history; in Redis it is shared
and one worker at a time evaluates (a lease renewed every evaluation), so a supervisor
gets one alert, not one per worker.
"""
from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import Counter, deque
from typing import Any, Protocol

from bot.alerts.config import AlertsConfig

logger = logging.getLogger(__name__)

MINUTE = 60.0
MAX_HISTORY = 200
CONVERSATIONS = "conversations"
MESSAGES = "messages"


def minute_of(at: float) -> int:
    return int(math.floor(at / MINUTE))


def minutes_between(since: float, until: float) -> range:
    """The whole minutes whose start lies in ``[since, until)``."""
    return range(math.ceil(since / MINUTE), math.ceil(until / MINUTE))


def retention_minutes(config: AlertsConfig) -> int:
    longest = 60
    for rule in config.rules:
        longest = max(longest, int(rule.params.get("window_minutes", 0) + rule.params.get("baseline_minutes", 0)))
    return longest + 5


class SignalStore(Protocol):
    async def record(self, at: float, conversation_id: str, counters: list[str]) -> None: ...

    async def count(self, counter: str, since: float, until: float) -> int: ...

    async def conversations(self, since: float, until: float) -> int: ...

    async def close(self) -> None: ...


class MemorySignals:
    """One worker's counts (``store: {type: memory}``, the default)."""

    def __init__(self, retention: int) -> None:
        self.retention = retention
        self.buckets: dict[int, tuple[Counter, set[str]]] = {}

    async def record(self, at: float, conversation_id: str, counters: list[str]) -> None:
        minute = minute_of(at)
        counts, conversations = self.buckets.setdefault(minute, (Counter(), set()))
        counts[MESSAGES] += 1
        for counter in counters:
            counts[counter] += 1
        conversations.add(conversation_id)
        for old in [m for m in self.buckets if m < minute - self.retention]:
            del self.buckets[old]

    async def count(self, counter: str, since: float, until: float) -> int:
        return sum(self.buckets[m][0][counter] for m in minutes_between(since, until) if m in self.buckets)

    async def conversations(self, since: float, until: float) -> int:
        seen: set[str] = set()
        for m in minutes_between(since, until):
            if m in self.buckets:
                seen |= self.buckets[m][1]
        return len(seen)

    async def close(self) -> None:
        return None


class RedisSignals:
    """Counts every worker shares; keys ``{kefu:alerts}:m:<minute>`` (hash) and ``:c:<minute>`` (HLL)."""

    def __init__(self, client: Any, retention: int, prefix: str = "{kefu:alerts}") -> None:
        self.redis = client
        self.retention = retention
        self.prefix = prefix

    def _m(self, minute: int) -> str:
        return f"{self.prefix}:m:{minute}"

    def _c(self, minute: int) -> str:
        return f"{self.prefix}:c:{minute}"

    async def record(self, at: float, conversation_id: str, counters: list[str]) -> None:
        minute = minute_of(at)
        ttl = int((self.retention + 2) * MINUTE)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._m(minute), MESSAGES, 1)
            for counter in counters:
                pipe.hincrby(self._m(minute), counter, 1)
            pipe.pfadd(self._c(minute), conversation_id)
            pipe.expire(self._m(minute), ttl)
            pipe.expire(self._c(minute), ttl)
            await pipe.execute()

    async def count(self, counter: str, since: float, until: float) -> int:
        minutes = list(minutes_between(since, until))
        if not minutes:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in minutes:
                pipe.hget(self._m(m), counter)
            values = await pipe.execute()
        return sum(int(v) for v in values if v is not None)

    async def conversations(self, since: float, until: float) -> int:
        minutes = list(minutes_between(since, until))
        if not minutes:
            return 0
        return int(await self.redis.pfcount(*[self._c(m) for m in minutes]))

    async def close(self) -> None:
        await self.redis.aclose()


class MemoryAlertState:
    """Which rules fire, and the last :data:`MAX_HISTORY` transitions, in this worker."""

    def __init__(self) -> None:
        self.firing: dict[str, dict[str, Any]] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=MAX_HISTORY)

    async def lead(self, lease_s: float) -> bool:
        return True

    async def active(self) -> dict[str, dict[str, Any]]:
        return dict(self.firing)

    async def fire(self, alert: dict[str, Any]) -> None:
        self.firing[alert["rule"]] = alert
        self.history.appendleft(alert)

    async def update(self, alert: dict[str, Any]) -> None:
        self.firing[alert["rule"]] = alert

    async def clear(self, rule: str, event: dict[str, Any]) -> None:
        self.firing.pop(rule, None)
        self.history.appendleft(event)

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.history)[:limit]

    async def close(self) -> None:
        return None


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class RedisAlertState:
    """The firing set and history shared by every worker; one worker (the lease holder) evaluates."""

    def __init__(self, client: Any, prefix: str = "{kefu:alerts}") -> None:
        self.redis = client
        self.prefix = prefix
        self.me = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW)

    async def lead(self, lease_s: float) -> bool:
        return bool(await self._renew(keys=[f"{self.prefix}:leader"], args=[self.me, int(lease_s * 1000)]))

    async def active(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(f"{self.prefix}:firing")
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}

    async def fire(self, alert: dict[str, Any]) -> None:
        text = json.dumps(alert, ensure_ascii=False)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{self.prefix}:firing", alert["rule"], text)
            pipe.lpush(f"{self.prefix}:history", text)
            pipe.ltrim(f"{self.prefix}:history", 0, MAX_HISTORY - 1)
            await pipe.execute()

    async def update(self, alert: dict[str, Any]) -> None:
        await self.redis.hset(f"{self.prefix}:firing", alert["rule"], json.dumps(alert, ensure_ascii=False))

    async def clear(self, rule: str, event: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(f"{self.prefix}:firing", rule)
            pipe.lpush(f"{self.prefix}:history", json.dumps(event, ensure_ascii=False))
            pipe.ltrim(f"{self.prefix}:history", 0, MAX_HISTORY - 1)
            await pipe.execute()

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(v) for v in await self.redis.lrange(f"{self.prefix}:history", 0, limit - 1)]

    async def close(self) -> None:
        return None  # the client is closed by the signals store that shares it


def create_stores(config: AlertsConfig) -> tuple[Any, Any]:
    """(signals, state) for ``alerts.yml`` ``store:``; Redis clients connect on first use."""
    retention = retention_minutes(config)
    if config.store.get("type") == "redis":
        from bot.stores._common import redis_client

        client = redis_client(config.store["url"])
        return RedisSignals(client, retention), RedisAlertState(client)
    return MemorySignals(retention), MemoryAlertState()


class SignalHook:
    """Counts each shopper message for the ``complaint_spike`` rules it matches; never handles the turn."""

    def __init__(self, config: AlertsConfig, signals: Any, clock: Any = time.time) -> None:
        self.spikes = [r for r in config.rules if r.kind == "complaint_spike"]
        self.signals = signals
        self.clock = clock

    def matches(self, parse: dict[str, Any]) -> list[str]:
        intent = (parse.get("intent") or {}).get("name")
        negative = (parse.get("sentiment") or {}).get("label") == "negative"
        return [f"spike:{r.name}" for r in self.spikes
                if intent in r.params["intents"] or (r.params["negative_sentiment"] and negative)]

    async def after_user_message(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        message = tracker.latest_message
        if message is None:
            return False
        try:
            await self.signals.record(self.clock(), tracker.sender_id, self.matches(message.parse_data or {}))
        except Exception as e:  # counting must never cost a shopper their answer
            logger.warning("Alert signals not recorded (%s).", type(e).__name__)
        return False

    async def after_turn(self, processor: Any, tracker: Any, output_channel: Any) -> None:
        return None
