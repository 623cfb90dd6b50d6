"""The trigger store in Redis: the same interface as :class:`~bot.triggers.store.SQLTriggerStore`.

For production, where several scheduler workers on several machines share one Redis:
every write that must be atomic across workers is one Lua script (event ids, instance
creation and closing, send reservations under the frequency caps, batch commits,
conversions), so caps hold and nothing is sent twice without any process-local lock.

Keys (``<p>`` is the prefix, ``kefu:triggers`` by default, shared with the job queue)::

    <p>:ev                hash  event id -> event JSON            (idempotency by id)
    <p>:ev:c:<customer>   zset  ts -> event id                     (events_for)
    <p>:cust:<customer>   hash  profile field -> JSON value; "\\0opted_out", "\\0updated_at"
    <p>:inst              hash  instance id -> JSON;  <p>:inst:status  id -> "active" | "exited\\x1freason"
    <p>:inst:c:<customer> zset  entered_at -> instance id
    <p>:send              hash  send id -> reservation JSON;  <p>:send:status  id -> "pending" | "sent\\x1f<at>\\x1f<path>"
    <p>:send:c:<customer> zset  sent_at -> send id;  <p>:sent:all  zset sent_at -> send id (report ?since)
    <p>:cap:<customer>    zset  reserved_at -> send id (last 7 days: the frequency-cap window)
    <p>:dec:c:<customer>  list  "seq|decision JSON";  <p>:dec:all  zset at -> "seq|decision JSON"
    <p>:conv              hash  send id -> conversion JSON;  <p>:conv:all  zset at -> send id
    <p>:rep:sends|dec|conv hash counters for the report without ``since``
    <p>:variants          hash  "journey\\x1fstep\\x1fvariant" -> stop JSON

Keys are derived inside the scripts from the prefix, so this needs one Redis (or one
cluster slot: put the prefix in a hash tag, e.g. ``{kefu:triggers}``).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from bot.shared.exceptions import StoreError
from bot.triggers.events import BehaviourEvent
from bot.triggers.store import BatchWrites, Instance, Reservation, SendRecord, SentMark, Snapshot, decision

logger = logging.getLogger(__name__)

SEP = "\x1f"
OPTED = "\x00opted_out"
UPDATED = "\x00updated_at"
WEEK = 7 * 86400.0

_ADD_EVENTS = """
local p = ARGV[1]
local dups = {}
for i = 2, #ARGV, 4 do
  if redis.call('HEXISTS', p .. ':ev', ARGV[i]) == 1 then table.insert(dups, ARGV[i]) end
end
if #dups > 0 then return dups end
for i = 2, #ARGV, 4 do
  redis.call('HSET', p .. ':ev', ARGV[i], ARGV[i + 3])
  redis.call('ZADD', p .. ':ev:c:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i])
end
return dups
"""

_CREATE_INSTANCE = """
local p = ARGV[1]
if redis.call('HSETNX', p .. ':inst', ARGV[2], ARGV[5]) == 1 then
  redis.call('HSET', p .. ':inst:status', ARGV[2], 'active')
  redis.call('ZADD', p .. ':inst:c:' .. ARGV[3], ARGV[4], ARGV[2])
  return 1
end
return 0
"""

_RESERVE = """
local p = ARGV[1]
local at = tonumber(ARGV[2])
local per_day = tonumber(ARGV[3])
local per_week = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV, 4 do
  local sid, customer, transactional, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local st = redis.call('HGET', p .. ':send:status', sid)
  local result
  if st then
    if string.sub(st, 1, 4) == 'sent' then result = 'sent' else result = 'pending' end
  else
    local cap = p .. ':cap:' .. customer
    redis.call('ZREMRANGEBYSCORE', cap, '-inf', at - 604800)
    if transactional == '0' then
      if per_day >= 0 and redis.call('ZCOUNT', cap, '(' .. (at - 86400), '+inf') >= per_day then
        result = 'frequency_cap_day'
      elseif per_week >= 0 and redis.call('ZCOUNT', cap, '(' .. (at - 604800), '+inf') >= per_week then
        result = 'frequency_cap_week'
      end
    end
    if not result then
      redis.call('HSET', p .. ':send', sid, record)
      redis.call('HSET', p .. ':send:status', sid, 'pending')
      redis.call('ZADD', cap, at, sid)
      redis.call('PEXPIRE', cap, 691200000)
      result = 'reserved'
    end
  end
  table.insert(out, result)
end
return out
"""

# ARGV: prefix, n_sent, n_close, n_dec, n_release, then
#   sent:    send id, at, path, customer, report key     (5 each)
#   close:   instance id, status, reason                 (3 each)
#   dec:     customer, at, report key, JSON              (4 each)
#   release: send id, customer                           (2 each)
_COMMIT = """
local p = ARGV[1]
local ns, nc, nd, nr = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 6
local closed = 0
for _ = 1, ns do
  local sid, at, path, customer, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local st = redis.call('HGET', p .. ':send:status', sid)
  if st and string.sub(st, 1, 4) ~= 'sent' then
    redis.call('HSET', p .. ':send:status', sid, 'sent\\31' .. at .. '\\31' .. path)
    redis.call('ZADD', p .. ':send:c:' .. customer, at, sid)
    redis.call('ZADD', p .. ':sent:all', at, sid)
    redis.call('HINCRBY', p .. ':rep:sends', key, 1)
  end
  i = i + 5
end
for _ = 1, nc do
  if redis.call('HGET', p .. ':inst:status', ARGV[i]) == 'active' then
    redis.call('HSET', p .. ':inst:status', ARGV[i], ARGV[i + 1] .. '\\31' .. ARGV[i + 2])
    closed = closed + 1
  end
  i = i + 3
end
for _ = 1, nd do
  local member = redis.call('INCR', p .. ':dec:seq') .. '|' .. ARGV[i + 3]
  redis.call('RPUSH', p .. ':dec:c:' .. ARGV[i], member)
  redis.call('ZADD', p .. ':dec:all', ARGV[i + 1], member)
  redis.call('HINCRBY', p .. ':rep:dec', ARGV[i + 2], 1)
  i = i + 4
end
for _ = 1, nr do
  local st = redis.call('HGET', p .. ':send:status', ARGV[i])
  if st == 'pending' then
    redis.call('HDEL', p .. ':send:status', ARGV[i])
    redis.call('HDEL', p .. ':send', ARGV[i])
    redis.call('ZREM', p .. ':cap:' .. ARGV[i + 1], ARGV[i])
  end
  i = i + 2
end
return closed
"""

_CONVERSION = """
local p = ARGV[1]
if redis.call('HSETNX', p .. ':conv', ARGV[2], ARGV[5]) == 1 then
  redis.call('ZADD', p .. ':conv:all', ARGV[3], ARGV[2])
  redis.call('HINCRBY', p .. ':rep:conv', ARGV[4], 1)
  return 1
end
return 0
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _key(*parts: str) -> str:
    return SEP.join(parts)


def _num(value: float) -> str:
    return repr(float(value))


class RedisTriggerStore:
    """Event log, profiles, instances, sends, decisions, conversions and variant stops in Redis."""

    def __init__(self, url: str | None = None, *, prefix: str = "kefu:triggers", client: Any = None,
                 **redis_options: Any) -> None:
        if client is None:
            from bot.stores._common import redis_client

            client = redis_client(url, **redis_options)
        self.redis = client
        self.prefix = prefix
        self.url = url or "redis://localhost:6379"
        self._add_events = self.redis.register_script(_ADD_EVENTS)
        self._create_instance = self.redis.register_script(_CREATE_INSTANCE)
        self._reserve = self.redis.register_script(_RESERVE)
        self._commit = self.redis.register_script(_COMMIT)
        self._conversion = self.redis.register_script(_CONVERSION)

    def k(self, *parts: str) -> str:
        return ":".join((self.prefix,) + parts)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as e:  # redis.RedisError, OSError
            raise StoreError(f"Trigger store could not {what} in Redis ({self.url.split('@')[-1]}): {e}. "
                             "Fix: check the triggers store url in endpoints.yml and that Redis is running.") from e

    async def setup(self) -> None:
        """Nothing to create: keys appear on first write."""

    async def close(self) -> None:
        await self.redis.aclose()

    # ------------------------------------------------------------------ events
    async def add_events(self, events: list[BehaviourEvent]) -> list[str]:
        """Store all events or none; returns the ids that already exist (then nothing is stored)."""
        args: list[Any] = [self.prefix]
        for e in events:
            args.extend((e.id, e.customer_id, _num(e.timestamp), _dumps(e.as_dict())))
        return sorted(await self._call("store events", self._add_events(keys=[], args=args)))

    async def add_event(self, event: BehaviourEvent) -> bool:
        return not await self.add_events([event])

    async def events_for(self, customer_id: str, since: float | None = None, types: list[str] | None = None) -> list[BehaviourEvent]:
        ids = await self._call("read events", self.redis.zrangebyscore(
            self.k("ev", "c", customer_id), "-inf" if since is None else since, "+inf"))
        if not ids:
            return []
        bodies = await self._call("read events", self.redis.hmget(self.k("ev"), ids))
        events = [BehaviourEvent.from_dict(json.loads(b)) for b in bodies if b]
        return [e for e in events if not types or e.type in types]

    # ------------------------------------------------------------------ customers
    @staticmethod
    def _profile(raw: dict[str, str]) -> dict[str, Any]:
        profile = {k: json.loads(v) for k, v in raw.items() if not k.startswith("\x00")}
        profile["opted_out"] = raw.get(OPTED) == "1"
        return profile

    async def get_profile(self, customer_id: str) -> dict[str, Any]:
        return self._profile(await self._call("read a profile", self.redis.hgetall(self.k("cust", customer_id))))

    async def update_profile(self, customer_id: str, changes: dict[str, Any], at: float,
                             opted_out: bool | None = None) -> dict[str, Any]:
        """Merge ``changes`` (field by field, like ``dict.update``) in one MULTI with the read-back."""
        mapping = {k: _dumps(v) for k, v in changes.items() if k != "opted_out"}
        mapping[UPDATED] = _num(at)
        if opted_out is not None:
            mapping[OPTED] = "1" if opted_out else "0"
        key = self.k("cust", customer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.hgetall(key)
            result = await self._call("update a profile", pipe.execute())
        return self._profile(result[1])

    # ------------------------------------------------------------------ instances
    def _instance(self, instance_id: str, body: str | None, status: str | None) -> Instance | None:
        if body is None:
            return None
        data = json.loads(body)
        return Instance(instance_id, data["customer_id"], data["journey"], float(data["entered_at"]),
                        data.get("sender_id") or data["customer_id"], data.get("entry") or {},
                        data.get("variants") or {}, (status or "active").split(SEP, 1)[0])

    async def create_instance(self, instance: Instance) -> bool:
        body = _dumps({"customer_id": instance.customer_id, "journey": instance.journey,
                       "entered_at": instance.entered_at, "sender_id": instance.sender_id,
                       "entry": instance.entry, "variants": instance.variants})
        return bool(await self._call("create an instance", self._create_instance(
            keys=[], args=[self.prefix, instance.id, instance.customer_id, _num(instance.entered_at), body])))

    async def get_instance(self, instance_id: str) -> Instance | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.k("inst"), instance_id)
            pipe.hget(self.k("inst", "status"), instance_id)
            body, status = await self._call("read an instance", pipe.execute())
        return self._instance(instance_id, body, status)

    async def instances_for(self, customer_id: str, journey: str | None = None, status: str | None = None) -> list[Instance]:
        ids = await self._call("read instances", self.redis.zrange(self.k("inst", "c", customer_id), 0, -1))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.k("inst"), ids)
            pipe.hmget(self.k("inst", "status"), ids)
            bodies, statuses = await self._call("read instances", pipe.execute())
        out = []
        for iid, body, st in zip(ids, bodies, statuses):
            inst = self._instance(iid, body, st)
            if inst is None or (journey and inst.journey != journey) or (status and inst.status != status):
                continue
            out.append(inst)
        return out

    async def close_instance(self, instance_id: str, status: str, reason: str) -> bool:
        """Mark an active instance exited/completed; False if it was no longer active."""
        return await self.commit_batch(BatchWrites(closes=[(instance_id, status, reason)])) == 1

    async def dispatch_snapshot(self, instance_id: str, customer_id: str, send_id: str
                                ) -> tuple[Instance | None, dict[str, Any], str | None]:
        snap = (await self.dispatch_snapshots([(instance_id, customer_id, send_id)]))[0]
        return snap.instance, snap.profile, snap.send_status

    async def dispatch_snapshots(self, keys: list[tuple[str, str, str]]) -> list[Snapshot]:
        """Instances, profiles and send states of a batch in one pipelined round trip."""
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for instance_id, customer_id, send_id in keys:
                pipe.hget(self.k("inst"), instance_id)
                pipe.hget(self.k("inst", "status"), instance_id)
                pipe.hgetall(self.k("cust", customer_id))
                pipe.hget(self.k("send", "status"), send_id)
                pipe.hget(self.k("send"), send_id)
            raw = await self._call("read the dispatch batch", pipe.execute())
        out = []
        for n, (instance_id, _customer, _send) in enumerate(keys):
            body, status, cust, send_status, send = raw[5 * n:5 * n + 5]
            variant = json.loads(send)["variant"] if send else None
            out.append(Snapshot(self._instance(instance_id, body, status), self._profile(cust or {}),
                                send_status.split(SEP, 1)[0] if send_status else None, variant))
        return out

    # ------------------------------------------------------------------ sends
    async def get_send(self, send_id: str) -> SendRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.k("send"), send_id)
            pipe.hget(self.k("send", "status"), send_id)
            body, status = await self._call("read a send", pipe.execute())
        return self._send(send_id, body, status)

    @staticmethod
    def _send(send_id: str, body: str | None, status: str | None) -> SendRecord | None:
        if body is None or status is None:
            return None
        data = json.loads(body)
        parts = status.split(SEP)
        sent_at = float(parts[1]) if parts[0] == "sent" and len(parts) > 1 else None
        return SendRecord(send_id, data["customer_id"], data["journey"], data["step"], data["variant"], parts[0],
                          float(data["reserved_at"]), sent_at)

    async def reserve_send(self, *, send_id: str, customer_id: str, journey: str, step: str, variant: str,
                           message: str, transactional: bool, at: float, per_day: int | None,
                           per_week: int | None) -> str:
        return (await self.reserve_sends([Reservation(send_id, customer_id, journey, step, variant, message,
                                                      transactional)], at, per_day, per_week))[0]

    async def reserve_sends(self, reservations: list[Reservation], at: float, per_day: int | None,
                            per_week: int | None) -> list[str]:
        """Check the caps and reserve a batch in one Lua call: atomic across all workers."""
        if not reservations:
            return []
        args: list[Any] = [self.prefix, _num(at), -1 if per_day is None else per_day, -1 if per_week is None else per_week]
        for r in reservations:
            record = _dumps({"customer_id": r.customer_id, "journey": r.journey, "step": r.step, "variant": r.variant,
                             "message": r.message, "transactional": r.transactional, "reserved_at": at})
            args.extend((r.send_id, r.customer_id, "1" if r.transactional else "0", record))
        return list(await self._call("reserve sends", self._reserve(keys=[], args=args)))

    async def commit_batch(self, writes: BatchWrites) -> int:
        """Confirmations, instance closes, decisions and releases of a batch: one Lua call.

        Returns how many instances it closed (those still active)."""
        if not writes:
            return 0
        closes = [(i, "completed", "last_step") for i in writes.completed] + list(writes.closes)
        args: list[Any] = [self.prefix, len(writes.sent), len(closes), len(writes.decisions), len(writes.releases)]
        for m in writes.sent:
            args.extend((m.send_id, _num(m.at), m.path or "", m.customer_id, _key(m.journey, m.step, m.variant)))
        for iid, status, reason in closes:
            args.extend((iid, status, reason))
        for d in writes.decisions:
            args.extend((d["customer_id"], _num(d["at"]), _key(d["journey"], d["kind"], d["reason"]), _dumps(d)))
        for sid, customer in writes.releases:
            args.extend((sid, customer))
        return int(await self._call("commit the dispatch batch", self._commit(keys=[], args=args)))

    async def _send_fields(self, send_id: str) -> dict[str, Any]:
        body = await self._call("read a send", self.redis.hget(self.k("send"), send_id))
        return json.loads(body) if body else {}

    async def mark_sent(self, send_id: str, at: float, path: str | None = None,
                        complete_instance: str | None = None) -> None:
        data = await self._send_fields(send_id)
        await self.commit_batch(BatchWrites(
            sent=[SentMark(send_id, at, path, data.get("customer_id", ""), data.get("journey", ""),
                           data.get("step", ""), data.get("variant", ""))],
            completed=[complete_instance] if complete_instance else []))

    async def release_send(self, send_id: str) -> None:
        data = await self._send_fields(send_id)
        await self.commit_batch(BatchWrites(releases=[(send_id, data.get("customer_id", ""))]))

    async def sends_for(self, customer_id: str, since: float | None = None) -> list[SendRecord]:
        ids = await self._call("read sends", self.redis.zrangebyscore(
            self.k("send", "c", customer_id), "-inf" if since is None else since, "+inf"))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.k("send"), ids)
            pipe.hmget(self.k("send", "status"), ids)
            bodies, statuses = await self._call("read sends", pipe.execute())
        records = [self._send(sid, b, s) for sid, b, s in zip(ids, bodies, statuses)]
        return [r for r in records if r is not None and r.status == "sent"]

    # ------------------------------------------------------------------ decisions, conversions
    async def record_decision(self, *, send_id: str, customer_id: str, journey: str, step: str, variant: str,
                              kind: str, reason: str, at: float, until: float | None = None) -> None:
        await self.commit_batch(BatchWrites(decisions=[decision(
            send_id=send_id, customer_id=customer_id, journey=journey, step=step, variant=variant, kind=kind,
            reason=reason, at=at, until=until)]))

    @staticmethod
    def _decision(member: str) -> dict[str, Any]:
        seq, body = member.split("|", 1)
        return {"id": int(seq), **json.loads(body)}

    async def decisions_for(self, customer_id: str) -> list[dict[str, Any]]:
        members = await self._call("read decisions", self.redis.lrange(self.k("dec", "c", customer_id), 0, -1))
        return sorted((self._decision(m) for m in members), key=lambda d: (d["at"], d["id"]))

    async def record_conversion(self, send: SendRecord, event_id: str, at: float) -> bool:
        body = _dumps({"customer_id": send.customer_id, "journey": send.journey, "step": send.step,
                       "variant": send.variant, "event_id": event_id, "at": at})
        return bool(await self._call("record a conversion", self._conversion(
            keys=[], args=[self.prefix, send.send_id, _num(at), _key(send.journey, send.step, send.variant), body])))

    async def report_counts(self, since: float | None = None) -> dict[str, Any]:
        """Counters when ``since`` is None; otherwise the time indexes are read and aggregated."""
        if since is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.k("rep", "sends"))
                pipe.hgetall(self.k("rep", "dec"))
                pipe.hgetall(self.k("rep", "conv"))
                sends, decisions, convs = await self._call("read the report", pipe.execute())
            return {
                "sends": [(*k.split(SEP), int(n)) for k, n in sends.items()],
                "decisions": [(*k.split(SEP), int(n)) for k, n in decisions.items()],
                "conversions": [(*k.split(SEP), int(n)) for k, n in convs.items()],
            }
        counts: dict[str, dict[tuple[str, ...], int]] = {"sends": {}, "decisions": {}, "conversions": {}}
        sent_ids = await self._call("read the report", self.redis.zrangebyscore(self.k("sent", "all"), since, "+inf"))
        for lo in range(0, len(sent_ids), 1000):
            for body in await self._call("read the report", self.redis.hmget(self.k("send"), sent_ids[lo:lo + 1000])):
                if body:
                    d = json.loads(body)
                    key = (d["journey"], d["step"], d["variant"])
                    counts["sends"][key] = counts["sends"].get(key, 0) + 1
        for member in await self._call("read the report", self.redis.zrangebyscore(self.k("dec", "all"), since, "+inf")):
            d = self._decision(member)
            key = (d["journey"], d["kind"], d["reason"])
            counts["decisions"][key] = counts["decisions"].get(key, 0) + 1
        conv_ids = await self._call("read the report", self.redis.zrangebyscore(self.k("conv", "all"), since, "+inf"))
        for lo in range(0, len(conv_ids), 1000):
            for body in await self._call("read the report", self.redis.hmget(self.k("conv"), conv_ids[lo:lo + 1000])):
                if body:
                    d = json.loads(body)
                    key = (d["journey"], d["step"], d["variant"])
                    counts["conversions"][key] = counts["conversions"].get(key, 0) + 1
        return {name: [(*k, n) for k, n in values.items()] for name, values in counts.items()}

    # ------------------------------------------------------------------ variant switches
    async def stop_variant(self, journey: str, step: str, variant: str, at: float, reason: str = "",
                           in_flight: str = "reroute") -> None:
        """Persist a variant stop (idempotent: the first stop is kept)."""
        await self._call("stop a variant", self.redis.hsetnx(self.k("variants"), _key(journey, step, variant), _dumps(
            {"stopped_at": at, "reason": reason, "in_flight": in_flight})))

    async def resume_variant(self, journey: str, step: str, variant: str) -> bool:
        return bool(await self._call("resume a variant", self.redis.hdel(self.k("variants"), _key(journey, step, variant))))

    async def stopped_variants(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        raw = await self._call("read variant stops", self.redis.hgetall(self.k("variants")))
        return {tuple(k.split(SEP)): json.loads(v) for k, v in raw.items()}  # type: ignore[misc]
