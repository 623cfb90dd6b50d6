"""The widget's outbox: per session, every message said, with increasing ``seq`` numbers.

Recording a message before it is emitted means a socket that drops mid-reply loses
nothing: the widget asks for what came after its ``last_seen_seq`` when it reconnects.
In memory per process by default (one worker, or sticky sessions); ``outbox: {type: redis}``
shares it between workers and keeps it across restarts.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Protocol

from bot.shared.exceptions import ConfigError
from bot.stores.keys import KeyBuilder
from connectors.socketio.credentials import positive_int

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_SESSIONS", "DEFAULT_OUTBOX_SIZE", "DEFAULT_OUTBOX_TTL", "InMemoryOutbox", "Outbox",
    "OutboxKeys", "RedisOutbox", "create_outbox",
]

DEFAULT_OUTBOX_SIZE = 200
DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_OUTBOX_TTL = 30 * 24 * 3600  # a month of widget history in Redis
DEFAULT_KEY_PREFIX = "kefu:outbox"


class Outbox(Protocol):
    """Per-session record of what was said, with increasing ``seq`` numbers.

    :class:`InMemoryOutbox` keeps them per process; :class:`RedisOutbox` stores the same
    dicts in a capped list per session plus an INCR counter.
    """

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Store ``entry`` with the next ``seq``; returns the stored dict."""

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        """Entries with ``seq`` greater than ``seq``, oldest first."""

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        """The entry with this ``message_id`` if it is still kept."""


class InMemoryOutbox:
    """Keeps the last ``max_messages`` entries of the ``max_sessions`` most recent sessions."""

    def __init__(
        self, max_messages: int = DEFAULT_OUTBOX_SIZE, max_sessions: int = DEFAULT_MAX_SESSIONS
    ) -> None:
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[list[int], deque]] = OrderedDict()

    def _session(self, session_id: str) -> tuple[list[int], deque]:
        session = self._sessions.get(session_id)
        if session is None:
            session = ([0], deque(maxlen=self.max_messages))
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return session

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        counter, entries = self._session(session_id)
        counter[0] += 1
        stored = {**entry, "seq": counter[0]}
        entries.append(stored)
        return stored

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        session = self._sessions.get(session_id)
        if session is None:
            return []
        return [dict(e) for e in session[1] if e["seq"] > seq]

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        for entry in reversed(session[1]):
            if entry.get("message_id") == message_id:
                return dict(entry)
        return None


# Appends atomically: next seq, push "seq<TAB>json", trim, refresh the TTL.
# KEYS are OutboxKeys.script_keys(): both carry the session's hash tag (one Redis Cluster slot).
_APPEND_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], seq .. '\t' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


@dataclass(frozen=True)
class OutboxKeys:
    """A session's Redis keys, tagged with the session id so one script call stays in one slot.

    ``kefu:outbox:{<session>}:seq`` (the counter) and ``kefu:outbox:{<session>}:log`` (the
    capped list): Redis Cluster hashes only the ``{...}`` part, so both keys of a session
    land on one node while different sessions spread over the cluster.
    """

    seq: str
    log: str

    @classmethod
    def for_session(cls, keys: KeyBuilder, session_id: str) -> "OutboxKeys":
        return cls(seq=keys.key("seq", tag=session_id), log=keys.key("log", tag=session_id))

    def script_keys(self) -> list[str]:
        """KEYS of the append script, in its order."""
        return [self.seq, self.log]


class RedisOutbox:
    """The outbox in Redis: a seq counter and a capped list per session, with a TTL.

    Shared by every worker and machine, and it survives restarts, so a widget
    that reconnects to another worker still gets what it missed. Entries are
    stored as ``"<seq>\t<json>"`` so the stored JSON is exactly what was given.
    """

    def __init__(
        self,
        url: str,
        max_messages: int = DEFAULT_OUTBOX_SIZE,
        ttl_seconds: int = DEFAULT_OUTBOX_TTL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        self.url = url
        self.max_messages = max_messages
        self.ttl_seconds = ttl_seconds
        self.key_builder = KeyBuilder(key_prefix.rstrip(":"))
        self._client: Any = None
        self._append: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(self.url, decode_responses=True)
            self._append = self._client.register_script(_APPEND_LUA)
        return self._client

    def keys(self, session_id: str) -> OutboxKeys:
        """The Redis keys of one session's outbox."""
        return OutboxKeys.for_session(self.key_builder, session_id)

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        self._redis()
        body = json.dumps(entry, ensure_ascii=False)
        seq = int(await self._append(
            keys=self.keys(session_id).script_keys(), args=[body, self.max_messages, self.ttl_seconds]
        ))
        return {**entry, "seq": seq}

    async def _entries(self, session_id: str) -> list[dict[str, Any]]:
        raw = await self._redis().lrange(self.keys(session_id).log, 0, -1)
        entries = []
        for item in raw:
            seq, _, body = item.partition("\t")
            try:
                entries.append({**json.loads(body), "seq": int(seq)})
            except ValueError:  # never written by kefu; skip rather than fail the history
                logger.warning("Skipped an unreadable outbox entry of session %s", session_id)
        return entries

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        return [e for e in await self._entries(session_id) if e["seq"] > seq]

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        for entry in reversed(await self._entries(session_id)):
            if entry.get("message_id") == message_id:
                return entry
        return None


def create_outbox(config: dict[str, Any] | None) -> Outbox:
    """The outbox named in ``credentials.yml`` (``outbox: {type: memory|redis, ...}``)."""
    config = dict(config or {})
    kind = config.pop("type", "memory")
    if kind not in ("memory", "redis"):
        raise ConfigError(
            f"Unknown socketio outbox type '{kind}'.",
            filename="credentials.yml",
            fix="Use 'outbox: {type: memory}' (one worker) or "
            "'outbox: {type: redis, url: \"redis://127.0.0.1:6379/0\"}' (several workers).",
        )
    max_messages = positive_int(config, "max_messages", DEFAULT_OUTBOX_SIZE, "outbox.")
    if kind == "redis":
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"socketio credential 'outbox.url' must be a redis:// URL, got {url!r}.",
                filename="credentials.yml",
                fix="Write 'url: \"redis://127.0.0.1:6379/0\"' under 'outbox:'.",
            )
        ttl = positive_int(config, "ttl_seconds", DEFAULT_OUTBOX_TTL, "outbox.")
        return RedisOutbox(url, max_messages=max_messages, ttl_seconds=ttl)
    max_sessions = positive_int(config, "max_sessions", DEFAULT_MAX_SESSIONS, "outbox.")
    return InMemoryOutbox(max_messages=max_messages, max_sessions=max_sessions)
