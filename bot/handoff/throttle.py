"""Console login throttling: failures counted per agent id and per client address, then a lockout.

``max_login_failures`` wrong passwords for one agent id (four times as many from one
address, which may be an office behind one NAT) lock it for ``login_lockout_s``; each
further lockout doubles, up to ``max_login_lockout_s``. A success clears both counters.
Unknown agent ids are counted like known ones, so a lockout tells a stranger nothing
about which ids exist. In memory for one process; on Redis (the handoff queue's
client and prefix) every worker shares the counts.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from bot.handoff.config import HandoffConfig

ADDRESS_FACTOR = 4
FORGET_AFTER_S = 24 * 3600  # lockouts grow within a day, then start again from the first
MAX_TRACKED = 10_000  # in-memory entries kept (least recently touched go first)


@dataclass(frozen=True)
class ThrottleKey:
    """One counter: ``kind`` agent or address, ``limit`` failures before a lockout."""

    kind: str
    name: str
    limit: int

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.name.encode("utf-8", "replace")).hexdigest()[:32]  # any text, one safe key
        return f"{self.kind}:{digest}"


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5
    lockout_s: float = 60.0
    max_lockout_s: float = 900.0

    @classmethod
    def from_config(cls, config: HandoffConfig) -> "ThrottlePolicy":
        return cls(config.max_login_failures, config.login_lockout_s, config.max_login_lockout_s)

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0

    def keys(self, agent_id: str, address: str) -> tuple[ThrottleKey, ThrottleKey]:
        return (ThrottleKey("agent", agent_id, self.max_failures),
                ThrottleKey("address", address, self.max_failures * ADDRESS_FACTOR))

    def lockout(self, count: int) -> float:
        """Seconds of the ``count``-th lockout (1-based)."""
        return min(self.max_lockout_s, self.lockout_s * 2 ** max(0, count - 1))


class LoginThrottle(Protocol):
    policy: ThrottlePolicy

    async def locked_for(self, keys: tuple[ThrottleKey, ...]) -> float:
        """Seconds until every key is free again (0: none is locked)."""
        ...

    async def failure(self, keys: tuple[ThrottleKey, ...]) -> float:
        """Count a failed login; the seconds of a lockout it started (0: none)."""
        ...

    async def success(self, keys: tuple[ThrottleKey, ...]) -> None: ...


class InMemoryLoginThrottle:
    def __init__(self, policy: ThrottlePolicy, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.clock = clock
        self._state: OrderedDict[str, list[float]] = OrderedDict()  # key -> [failures, locked_until, lockouts, seen]

    def _entry(self, key: ThrottleKey, now: float) -> list[float]:
        entry = self._state.get(key.id)
        if entry is None or now - entry[3] > FORGET_AFTER_S:
            entry = [0, 0.0, 0, now]
        self._state[key.id] = entry
        self._state.move_to_end(key.id)
        while len(self._state) > MAX_TRACKED:
            self._state.popitem(last=False)
        return entry

    async def locked_for(self, keys: tuple[ThrottleKey, ...]) -> float:
        now = self.clock()
        return max([0.0] + [e[1] - now for k in keys if (e := self._state.get(k.id)) is not None])

    async def failure(self, keys: tuple[ThrottleKey, ...]) -> float:
        now, started = self.clock(), 0.0
        for key in keys:
            entry = self._entry(key, now)
            entry[0] += 1
            entry[3] = now
            if entry[0] >= key.limit:
                entry[2] += 1
                lock = self.policy.lockout(int(entry[2]))
                entry[0], entry[1] = 0, now + lock
                started = max(started, lock)
        return started

    async def success(self, keys: tuple[ThrottleKey, ...]) -> None:
        for key in keys:
            self._state.pop(key.id, None)


# KEYS[1] the counter hash; ARGV: now ms, limit, first lockout ms, cap ms, forget-after ms.
_FAILURE = """
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
local lock = 0
if f >= tonumber(ARGV[2]) then
  local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  lock = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (n - 1))
  redis.call('HSET', KEYS[1], 'f', 0, 'u', tonumber(ARGV[1]) + lock)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) + lock)
return lock
"""


class RedisLoginThrottle:
    """``{prefix}:login:<agent|address>:<sha256>`` hashes (failures, locked-until, lockouts), one script each."""

    def __init__(self, client: Any, policy: ThrottlePolicy, prefix: str = "kefu:handoff:",
                 clock: Callable[[], float] = time.time) -> None:
        from bot.handoff.keys import handoff_keys

        self.client = client
        self.policy = policy
        self.keys = handoff_keys(prefix)
        self.clock = clock
        self._failure = client.register_script(_FAILURE)

    def _key(self, key: ThrottleKey) -> str:
        return self.keys.key("login", key.id)

    async def locked_for(self, keys: tuple[ThrottleKey, ...]) -> float:
        now_ms = self.clock() * 1000
        values = [await self.client.hget(self._key(k), "u") for k in keys]
        return max([0.0] + [(float(v) - now_ms) / 1000 for v in values if v is not None])

    async def failure(self, keys: tuple[ThrottleKey, ...]) -> float:
        now_ms = int(self.clock() * 1000)
        started = 0.0
        for key in keys:
            lock_ms = await self._failure(keys=[self._key(key)], args=[
                now_ms, key.limit, int(self.policy.lockout_s * 1000), int(self.policy.max_lockout_s * 1000),
                FORGET_AFTER_S * 1000])
            started = max(started, int(lock_ms) / 1000)
        return started

    async def success(self, keys: tuple[ThrottleKey, ...]) -> None:
        await self.client.delete(*[self._key(k) for k in keys])


def create_login_throttle(config: HandoffConfig, queue: Any = None) -> LoginThrottle:
    """On the handoff queue's Redis when it has one (shared by every worker), else in memory."""
    policy = ThrottlePolicy.from_config(config)
    client = getattr(queue, "client", None)
    if client is not None and config.queue.get("type") == "redis":
        return RedisLoginThrottle(client, policy, getattr(queue, "prefix", "kefu:handoff:"))
    return InMemoryLoginThrottle(policy)
