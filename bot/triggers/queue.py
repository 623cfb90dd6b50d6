"""The durable due-time queue the scheduler workers share.

Jobs are claimed atomically with a lease: a claimed job moves from *due* to *in flight*
until it is acknowledged; if its worker dies, the lease runs out and the next claim takes
it again (at-least-once). Job ids are deterministic (``journey:instance:step``) so
enqueueing the same job twice is harmless and a send id makes a retried send harmless.

- :class:`RedisJobQueue`: two sorted sets (due, in-flight lease) and a hash of payloads;
  claims, enqueues and holds are Lua scripts, so any number of workers on any number of
  machines never claim the same job twice while its lease holds.
- :class:`SQLJobQueue`: one table; a claim is one ``UPDATE ... RETURNING`` statement
  (SQLite ≥ 3.35, PostgreSQL), the embedded default.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.shared.exceptions import StoreError
from bot.stores.keys import KeyBuilder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    id: str
    due: float
    data: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"id": self.id, "due": self.due, "data": self.data}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> "Job":
        raw = json.loads(text)
        return cls(raw["id"], float(raw["due"]), raw.get("data") or {})


class JobQueue(Protocol):
    async def enqueue(self, job: Job) -> bool:
        """Add a job unless one with its id exists; True when added."""

    async def claim(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Atomically take up to ``limit`` jobs due at ``now`` (and expired leases)."""

    async def ack(self, job_id: str) -> None:
        """Done: remove the job."""

    async def reschedule(self, job: Job) -> None:
        """Put a claimed job back with a new due time / data (a hold)."""

    async def cancel(self, job_ids: list[str]) -> int:
        """Remove jobs that must not run (journey exited)."""

    async def size(self) -> dict[str, int]:
        """Counts of due and in-flight jobs."""

    async def next_due(self) -> float | None:
        """The earliest time a job becomes claimable (simulation)."""

    async def close(self) -> None: ...


_ENQUEUE = """
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
"""

_ENQUEUE_MANY = """
local added = 0
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    added = added + 1
  end
end
return added
"""

_CLAIM = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local lease_until = ARGV[3]
local out = {}
local function each(cmd, key, items, step)
  for lo = 1, #items, step do redis.call(cmd, key, unpack(items, lo, math.min(#items, lo + step - 1))) end
end
-- Lease the ids whose payload still exists (bulk HMGET/ZADD, not one call per job);
-- returns the ids without a payload (cancelled meanwhile).
local function take(ids)
  local leases, gone = {}, {}
  for lo = 1, #ids, 1000 do
    local payloads = redis.call('HMGET', KEYS[3], unpack(ids, lo, math.min(#ids, lo + 999)))
    for j = 1, #payloads do
      local id = ids[lo + j - 1]
      if payloads[j] then
        leases[#leases + 1] = lease_until
        leases[#leases + 1] = id
        out[#out + 1] = payloads[j]
      else
        gone[#gone + 1] = id
      end
    end
  end
  each('ZADD', KEYS[2], leases, 2000)
  return gone
end
each('ZREM', KEYS[2], take(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)), 1000)
local left = limit - #out
if left > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, left)
  each('ZREM', KEYS[1], ids, 1000)
  take(ids)
end
return '[' .. table.concat(out, ',') .. ']'
"""

# Acknowledge a batch: ARGV[1] is a JSON array of job ids (one packed argument, one reply).
_ACK_MANY = """
local ids = cjson.decode(ARGV[1])
for lo = 1, #ids, 1000 do
  local part = {unpack(ids, lo, math.min(#ids, lo + 999))}
  redis.call('ZREM', KEYS[2], unpack(part))
  redis.call('ZREM', KEYS[1], unpack(part))
  redis.call('HDEL', KEYS[3], unpack(part))
end
return #ids
"""

_RESCHEDULE = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0
"""


class RedisJobQueue:
    """Redis sorted sets + Lua: ``{<prefix>}:due``, ``{<prefix>}:inflight``, ``{<prefix>}:jobs``.

    The three keys share the prefix as their hash tag (one Redis Cluster slot): a claim scans the
    due set and the leases and reads the payload hash in one script, and an ack/cancel removes
    from all three at once. Every script gets them in ``KEYS`` (no name is built in Lua).
    """

    def __init__(self, url: str | None = None, *, prefix: str = "kefu:triggers", client: Any = None,
                 **redis_options: Any) -> None:
        if client is None:
            from bot.stores._common import redis_client

            client = redis_client(url, **redis_options)
        self.redis = client
        key = KeyBuilder(prefix).key
        self.keys = [key("due"), key("inflight"), key("jobs")]
        self._enqueue = self.redis.register_script(_ENQUEUE)
        self._enqueue_many = self.redis.register_script(_ENQUEUE_MANY)
        self._claim = self.redis.register_script(_CLAIM)
        self._reschedule = self.redis.register_script(_RESCHEDULE)
        self._ack_many = self.redis.register_script(_ACK_MANY)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as e:  # redis.RedisError, OSError
            raise StoreError(f"Trigger queue could not {what} in Redis: {e}. Fix: check the triggers queue url "
                             f"in endpoints.yml and that Redis is running.") from e

    async def enqueue(self, job: Job) -> bool:
        return bool(await self._call("enqueue", self._enqueue(keys=self.keys, args=[job.id, job.due, job.dumps()])))

    async def enqueue_many(self, jobs: list[Job], chunk: int = 500) -> int:
        """Bulk enqueue (imports, backfills, benchmarks): one script call per ``chunk`` jobs."""
        added = 0
        for lo in range(0, len(jobs), chunk):
            args: list[Any] = []
            for job in jobs[lo:lo + chunk]:
                args.extend((job.id, job.due, job.dumps()))
            added += int(await self._call("enqueue", self._enqueue_many(keys=self.keys, args=args)))
        return added

    async def claim(self, now: float, limit: int, lease_s: float) -> list[Job]:
        raw = await self._call("claim", self._claim(keys=self.keys, args=[now, limit, now + lease_s]))
        # One JSON text for the batch: one reply to parse and one decode, not one per job.
        return [Job(j["id"], float(j["due"]), j.get("data") or {}) for j in json.loads(raw)]

    async def ack(self, job_id: str) -> None:
        await self.ack_many([job_id])

    async def ack_many(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        await self._call("acknowledge", self._ack_many(keys=self.keys, args=[
            json.dumps(list(job_ids), ensure_ascii=False, separators=(",", ":"))]))

    async def reschedule(self, job: Job) -> None:
        await self._call("reschedule", self._reschedule(keys=self.keys, args=[job.id, job.due, job.dumps()]))

    async def reschedule_many(self, jobs: list[Job]) -> None:
        """Holds and retries of a batch: the script per job, pipelined in one round trip."""
        if not jobs:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                await self._reschedule(keys=self.keys, args=[job.id, job.due, job.dumps()], client=pipe)
            await self._call("reschedule", pipe.execute())

    async def cancel(self, job_ids: list[str]) -> int:
        if not job_ids:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys[0], *job_ids)
            pipe.zrem(self.keys[1], *job_ids)
            pipe.hdel(self.keys[2], *job_ids)
            result = await self._call("cancel", pipe.execute())
        return int(result[2])

    async def size(self) -> dict[str, int]:
        due, inflight = await self._call(
            "count", asyncio.gather(self.redis.zcard(self.keys[0]), self.redis.zcard(self.keys[1])))
        return {"due": int(due), "in_flight": int(inflight)}

    async def next_due(self) -> float | None:
        firsts = [await self.redis.zrange(key, 0, 0, withscores=True) for key in self.keys[:2]]
        scores = [f[0][1] for f in firsts if f]
        return min(scores) if scores else None

    async def close(self) -> None:
        await self.redis.aclose()


class SQLJobQueue:
    """One table ``trigger_jobs``; claims are single ``UPDATE ... RETURNING`` statements."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._ready = False

    async def _setup(self) -> None:
        if self._ready:
            return
        from bot.stores.migrate import ensure_schema

        # The table is in the trigger store's Alembic branch (bot/stores/migrations).
        await ensure_schema(self.engine, "triggers", "trigger job queue", "check the triggers store url.")
        self._ready = True

    async def enqueue(self, job: Job) -> bool:
        from sqlalchemy import text

        await self._setup()
        async with self.engine.begin() as conn:
            result = await conn.execute(text(
                "INSERT INTO trigger_jobs (id, due, lease_until, payload) VALUES (:id, :due, NULL, :p) "
                "ON CONFLICT (id) DO NOTHING"), {"id": job.id, "due": job.due, "p": job.dumps()})
            return bool(result.rowcount)

    async def claim(self, now: float, limit: int, lease_s: float) -> list[Job]:
        from sqlalchemy import text

        await self._setup()
        # PostgreSQL: without SKIP LOCKED, a worker that waited on another's row locks would
        # lease the same rows again (the IN list is not re-evaluated); with it, each worker
        # takes rows nobody holds. SQLite has one writer at a time, so the plain form is atomic.
        lock = " FOR UPDATE SKIP LOCKED" if self.engine.dialect.name == "postgresql" else ""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(text(
                "UPDATE trigger_jobs SET lease_until = :lease WHERE id IN (SELECT id FROM trigger_jobs WHERE "
                "(lease_until IS NULL AND due <= :now) OR (lease_until IS NOT NULL AND lease_until <= :now) "
                f"ORDER BY due LIMIT :n{lock}) RETURNING payload"),
                {"lease": now + lease_s, "now": now, "n": limit})).all()
        return sorted((Job.loads(r[0]) for r in rows), key=lambda j: j.due)

    async def enqueue_many(self, jobs: list[Job]) -> int:
        """Bulk enqueue in one transaction (existing ids are left alone)."""
        from sqlalchemy import text

        if not jobs:
            return 0
        await self._setup()
        async with self.engine.begin() as conn:
            result = await conn.execute(text(
                "INSERT INTO trigger_jobs (id, due, lease_until, payload) VALUES (:id, :due, NULL, :p) "
                "ON CONFLICT (id) DO NOTHING"), [{"id": j.id, "due": j.due, "p": j.dumps()} for j in jobs])
            return max(0, int(result.rowcount or 0))

    async def ack(self, job_id: str) -> None:
        await self.ack_many([job_id])

    async def ack_many(self, job_ids: list[str]) -> None:
        from sqlalchemy import text

        if not job_ids:
            return
        from sqlalchemy import bindparam

        # One statement per 400 ids (under SQLite's parameter limit), not one execution per id.
        stmt = text("DELETE FROM trigger_jobs WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
        ids = list(job_ids)
        async with self.engine.begin() as conn:
            for lo in range(0, len(ids), 400):
                await conn.execute(stmt, {"ids": ids[lo:lo + 400]})

    async def reschedule(self, job: Job) -> None:
        await self.reschedule_many([job])

    async def reschedule_many(self, jobs: list[Job]) -> None:
        from sqlalchemy import text

        if not jobs:
            return
        async with self.engine.begin() as conn:
            await conn.execute(text("UPDATE trigger_jobs SET due = :due, lease_until = NULL, payload = :p WHERE id = :id"),
                               [{"id": j.id, "due": j.due, "p": j.dumps()} for j in jobs])

    async def cancel(self, job_ids: list[str]) -> int:
        from sqlalchemy import bindparam, text

        if not job_ids:
            return 0
        await self._setup()
        async with self.engine.begin() as conn:
            stmt = text("DELETE FROM trigger_jobs WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
            return int((await conn.execute(stmt, {"ids": list(job_ids)})).rowcount or 0)

    async def size(self) -> dict[str, int]:
        from sqlalchemy import text

        await self._setup()
        async with self.engine.connect() as conn:
            due = (await conn.execute(text("SELECT COUNT(*) FROM trigger_jobs WHERE lease_until IS NULL"))).scalar()
            flight = (await conn.execute(text("SELECT COUNT(*) FROM trigger_jobs WHERE lease_until IS NOT NULL"))).scalar()
        return {"due": int(due or 0), "in_flight": int(flight or 0)}

    async def next_due(self) -> float | None:
        from sqlalchemy import text

        await self._setup()
        async with self.engine.connect() as conn:
            value = (await conn.execute(text(
                "SELECT MIN(CASE WHEN lease_until IS NULL THEN due ELSE lease_until END) FROM trigger_jobs"))).scalar()
        return float(value) if value is not None else None

    async def close(self) -> None:
        """The engine belongs to the store that created it."""
