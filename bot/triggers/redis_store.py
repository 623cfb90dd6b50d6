"""The trigger store in Redis: the same interface as :class:`~bot.triggers.store.SQLTriggerStore`.

For production, where several scheduler workers on several machines share one Redis:
every write that must be atomic across workers is one Lua script (event ids, instance
creation and closing, send reservations under the frequency caps, batch commits,
conversions), so caps hold and nothing is sent twice without any process-local lock.

Keys (``<p>`` is ``{prefix}``, the prefix in a Redis Cluster hash tag, so ``{kefu:triggers}``
by default; the job queue shares it, see :class:`~bot.stores.keys.KeyBuilder`)::

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

Why one tag for the whole store: the batch scripts (reserve, commit, snapshot) touch the
shared hashes (``<p>:send:status``, ``<p>:inst:status``, ...) together with the per-customer
keys of every customer in the batch, so every key of the store must be in one cluster slot;
a per-customer tag cannot work. Every script gets all its keys in ``KEYS`` (the Redis Cluster
rule; the cluster client routes the call by them): Python collects the per-customer keys of a
batch once (:class:`_ScriptKeys`) and each packed row carries the ``KEYS`` index of its key,
so no script builds a key name itself.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from bot.shared.exceptions import StoreError
from bot.stores.keys import KeyBuilder
from bot.triggers.events import BehaviourEvent
from bot.triggers.store import BatchReads, BatchWrites, Instance, Reservation, SendRecord, SentMark, Snapshot, decision

logger = logging.getLogger(__name__)

SEP = "\x1f"
OPTED = "\x00opted_out"
UPDATED = "\x00updated_at"
WEEK = 7 * 86400.0
_EMPTY: list[Any] = []

# KEYS: <p>:ev, then <p>:ev:c:<customer> of event n at KEYS[n + 1]; ARGV: id, ts, JSON per event.
_ADD_EVENTS = """
local dups = {}
for i = 1, #ARGV, 3 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then table.insert(dups, ARGV[i]) end
end
if #dups > 0 then return dups end
for i = 1, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[(i - 1) / 3 + 2], ARGV[i + 1], ARGV[i])
end
return dups
"""

# KEYS: <p>:inst, <p>:inst:status, <p>:inst:c:<customer>; ARGV: instance id, entered_at, JSON.
_CREATE_INSTANCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], 'active')
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: <p>:send:status, <p>:send, then the <p>:cap:<customer> keys of the batch.
# ARGV: at, per_day (-1: none), per_week, then one JSON array of
#   [send id, customer, transactional (0/1), journey, step, variant, message, KEYS index of the cap key].
# One packed argument: redis-py spends ~20 µs per argument packing a command.
# Returns the statuses joined by "," (one reply to parse, not one per send).
_RESERVE = """
local at = tonumber(ARGV[1])
local per_day = tonumber(ARGV[2])
local per_week = tonumber(ARGV[3])
local enc = cjson.encode
local rs = cjson.decode(ARGV[4])
local function each(cmd, key, items, step)
  for lo = 1, #items, step do redis.call(cmd, key, unpack(items, lo, math.min(#items, lo + step - 1))) end
end
local sids = {}
for i, r in ipairs(rs) do sids[i] = r[1] end
local known = {}
for lo = 1, #sids, 1000 do
  local part = redis.call('HMGET', KEYS[1], unpack(sids, lo, math.min(#sids, lo + 999)))
  for j = 1, #part do known[sids[lo + j - 1]] = part[j] end
end
local counts, caps, records, statuses, out = {}, {}, {}, {}, {}
for _, r in ipairs(rs) do
  local sid, customer, transactional = r[1], r[2], r[3]
  local st = known[sid]
  local result
  if st then
    if string.sub(st, 1, 4) == 'sent' then result = 'sent' else result = 'pending' end
  else
    local n = counts[customer]
    if not n then
      local cap = KEYS[r[8]]
      redis.call('ZREMRANGEBYSCORE', cap, '-inf', at - 604800)
      n = {redis.call('ZCOUNT', cap, '(' .. (at - 86400), '+inf'), redis.call('ZCOUNT', cap, '(' .. (at - 604800), '+inf')}
      counts[customer] = n
    end
    if transactional == 0 then
      if per_day >= 0 and n[1] >= per_day then
        result = 'frequency_cap_day'
      elseif per_week >= 0 and n[2] >= per_week then
        result = 'frequency_cap_week'
      end
    end
    if not result then
      local record = '{"customer_id":' .. enc(customer) .. ',"journey":' .. enc(r[4]) .. ',"step":' .. enc(r[5])
        .. ',"variant":' .. enc(r[6]) .. ',"message":' .. enc(r[7]) .. ',"transactional":'
        .. (transactional == 1 and 'true' or 'false') .. ',"reserved_at":' .. ARGV[1] .. '}'
      records[#records + 1] = sid
      records[#records + 1] = record
      statuses[#statuses + 1] = sid
      statuses[#statuses + 1] = 'pending'
      local members = caps[r[8]]
      if not members then members = {}; caps[r[8]] = members end
      members[#members + 1] = ARGV[1]
      members[#members + 1] = sid
      n[1], n[2] = n[1] + 1, n[2] + 1
      known[sid] = 'pending'
      result = 'reserved'
    end
  end
  out[#out + 1] = result
end
each('HSET', KEYS[2], records, 2000)
each('HSET', KEYS[1], statuses, 2000)
for index, members in pairs(caps) do
  each('ZADD', KEYS[index], members, 2000)
  redis.call('PEXPIRE', KEYS[index], 691200000)
end
return table.concat(out, ',')
"""

# KEYS: the fixed keys of _COMMIT_KEYS (in that order), then the per-customer keys of the batch.
# ARGV: one JSON object of arrays (times as strings, so scores keep every digit), each row ending
# with the KEYS index of its per-customer key:
#   s: [send id, at, path, report key, <p>:send:c:<customer>]   c: [instance id, status, reason]
#   d: [at, report key, decision JSON, <p>:dec:c:<customer>]     r: [send id, <p>:cap:<customer>]
_COMMIT_KEYS = ("send:status", "sent:all", "rep:sends", "inst:status", "dec:seq", "dec:all", "rep:dec", "send")
_COMMIT = """
local w = cjson.decode(ARGV[1])
local closed = 0
local function each(cmd, key, items, step)
  for lo = 1, #items, step do redis.call(cmd, key, unpack(items, lo, math.min(#items, lo + step - 1))) end
end
local function hmget(key, ids)
  local found = {}
  for lo = 1, #ids, 1000 do
    local part = redis.call('HMGET', key, unpack(ids, lo, math.min(#ids, lo + 999)))
    for j = 1, #part do found[ids[lo + j - 1]] = part[j] end
  end
  return found
end
local ids = {}
for i, m in ipairs(w['s']) do ids[i] = m[1] end
local known = hmget(KEYS[1], ids)
local statuses, all, counts = {}, {}, {}
for _, m in ipairs(w['s']) do
  local sid, at, path, key = m[1], m[2], m[3], m[4]
  local st = known[sid]
  if st and string.sub(st, 1, 4) ~= 'sent' then
    known[sid] = 'sent'
    statuses[#statuses + 1] = sid
    statuses[#statuses + 1] = 'sent\\31' .. at .. '\\31' .. path
    redis.call('ZADD', KEYS[m[5]], at, sid)
    all[#all + 1] = at
    all[#all + 1] = sid
    counts[key] = (counts[key] or 0) + 1
  end
end
each('HSET', KEYS[1], statuses, 2000)
each('ZADD', KEYS[2], all, 2000)
for key, n in pairs(counts) do redis.call('HINCRBY', KEYS[3], key, n) end
ids = {}
for i, c in ipairs(w['c']) do ids[i] = c[1] end
known = hmget(KEYS[4], ids)
local changes = {}
for _, c in ipairs(w['c']) do
  if known[c[1]] == 'active' then
    known[c[1]] = c[2]
    changes[#changes + 1] = c[1]
    changes[#changes + 1] = c[2] .. '\\31' .. c[3]
    closed = closed + 1
  end
end
each('HSET', KEYS[4], changes, 2000)
for _, d in ipairs(w['d']) do
  local member = redis.call('INCR', KEYS[5]) .. '|' .. d[3]
  redis.call('RPUSH', KEYS[d[4]], member)
  redis.call('ZADD', KEYS[6], d[1], member)
  redis.call('HINCRBY', KEYS[7], d[2], 1)
end
for _, r in ipairs(w['r']) do
  local st = redis.call('HGET', KEYS[1], r[1])
  if st == 'pending' then
    redis.call('HDEL', KEYS[1], r[1])
    redis.call('HDEL', KEYS[8], r[1])
    redis.call('ZREM', KEYS[r[2]], r[1])
  end
end
return closed
"""

# One round trip for everything the guards of a claimed batch read, packed as one JSON text
# (decoded once in Python). KEYS: the fixed keys of _SNAPSHOT_KEYS, then the <p>:cust:<customer>
# keys of the batch; ARGV: a JSON array of [instance id, customer id, send id, KEYS index of cust key].
# Stored values that are JSON already (instance bodies, profile fields, stops) are spliced
# in raw; names and statuses go through cjson.encode. Each profile is read once per batch.
# -> {"stops": {"j\\u001fs\\u001fv": stop}, "profiles": {customer: profile},
#     "jobs": [[instance body|null, instance status|null, send status|null, send variant|null]]}
_SNAPSHOT_KEYS = ("variants", "inst", "inst:status", "send:status", "send")
_SNAPSHOT = """
local enc = cjson.encode
local keys = cjson.decode(ARGV[1])
local out = {'{"stops":{'}
local stops = redis.call('HGETALL', KEYS[1])
for i = 1, #stops, 2 do
  if i > 1 then out[#out + 1] = ',' end
  out[#out + 1] = enc(stops[i]) .. ':' .. stops[i + 1]
end
out[#out + 1] = '},"profiles":{'
local seen = {}
local first = true
for _, key in ipairs(keys) do
  local customer = key[2]
  if not seen[customer] then
    seen[customer] = true
    if not first then out[#out + 1] = ',' end
    first = false
    out[#out + 1] = enc(customer) .. ':{'
    local raw = redis.call('HGETALL', KEYS[key[4]])
    local opted = 'false'
    for k = 1, #raw, 2 do
      local name = raw[k]
      if string.byte(name, 1) == 0 then
        if name == '\\0opted_out' and raw[k + 1] == '1' then opted = 'true' end
      else
        out[#out + 1] = enc(name) .. ':' .. raw[k + 1] .. ','
      end
    end
    out[#out + 1] = '"opted_out":' .. opted .. '}'
  end
end
out[#out + 1] = '},"jobs":['
for n, key in ipairs(keys) do
  if n > 1 then out[#out + 1] = ',' end
  local body = redis.call('HGET', KEYS[2], key[1])
  local st = redis.call('HGET', KEYS[3], key[1])
  local send = redis.call('HGET', KEYS[4], key[3])
  local variant = 'null'
  if send then
    local record = redis.call('HGET', KEYS[5], key[3])
    if record then variant = enc(cjson.decode(record)['variant']) end
    send = enc(send)
  else
    send = 'null'
  end
  out[#out + 1] = '[' .. (body or 'null') .. ',' .. (st and enc(st) or 'null') .. ',' .. send .. ',' .. variant .. ']'
end
out[#out + 1] = ']}'
return table.concat(out)
"""

# KEYS: <p>:conv, <p>:conv:all, <p>:rep:conv; ARGV: send id, at, report key, conversion JSON.
_CONVERSION = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
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


class _ScriptKeys:
    """The ``KEYS`` of one script call: fixed keys first, then per-customer keys added once each.

    :meth:`add` answers the key's 1-based ``KEYS`` index, which the packed row carries so the
    script reads ``KEYS[row[n]]`` instead of building the name (Redis Cluster wants every key
    a script touches in ``KEYS``; all of them share the store's hash tag, so one slot).
    """

    def __init__(self, fixed: list[str]) -> None:
        self.keys = list(fixed)
        self._index = {key: n for n, key in enumerate(self.keys, 1)}

    def add(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        return index


class RedisTriggerStore:
    """Event log, profiles, instances, sends, decisions, conversions and variant stops in Redis."""

    def __init__(self, url: str | None = None, *, prefix: str = "kefu:triggers", client: Any = None,
                 **redis_options: Any) -> None:
        if client is None:
            from bot.stores._common import redis_client

            client = redis_client(url, **redis_options)
        self.redis = client
        self.prefix = prefix
        # No per-call tag: every key of the store (and of the job queue) shares ``{prefix}``.
        self.key_builder = KeyBuilder(prefix)
        self.url = url or "redis://localhost:6379"
        self._add_events = self.redis.register_script(_ADD_EVENTS)
        self._create_instance = self.redis.register_script(_CREATE_INSTANCE)
        self._reserve = self.redis.register_script(_RESERVE)
        self._commit = self.redis.register_script(_COMMIT)
        self._conversion = self.redis.register_script(_CONVERSION)
        self._snapshot = self.redis.register_script(_SNAPSHOT)

    def k(self, *parts: str) -> str:
        """``{prefix}:part:...``: one slot for the whole store (see the module doc)."""
        return self.key_builder.key(*parts)

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
        keys = [self.k("ev")]
        args: list[Any] = []
        for e in events:
            keys.append(self.k("ev", "c", e.customer_id))
            args.extend((e.id, _num(e.timestamp), _dumps(e.as_dict())))
        return sorted(await self._call("store events", self._add_events(keys=keys, args=args)))

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
        keys = [self.k("inst"), self.k("inst", "status"), self.k("inst", "c", instance.customer_id)]
        return bool(await self._call("create an instance", self._create_instance(
            keys=keys, args=[instance.id, _num(instance.entered_at), body])))

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
        """Instances, profiles and send states of a batch (see :meth:`dispatch_reads`)."""
        return list((await self.dispatch_reads(keys)).snapshots)

    async def dispatch_reads(self, keys: list[tuple[str, str, str]]) -> BatchReads:
        """``[(instance id, customer id, send id)]`` → snapshots + variant stops: one Lua call
        returning one JSON text, so a batch costs one command to pack and one reply to parse
        (a pipeline of five reads per job spent most of the worker's CPU in the client)."""
        if not keys:
            return BatchReads((), await self.stopped_variants())
        script_keys = _ScriptKeys([self.k(*name.split(":")) for name in _SNAPSHOT_KEYS])
        rows = [(iid, cid, sid, script_keys.add(self.k("cust", cid))) for iid, cid, sid in keys]
        raw = await self._call("read the dispatch batch", self._snapshot(keys=script_keys.keys, args=[_dumps(rows)]))
        data = json.loads(raw)
        profiles = data["profiles"] or {}  # cjson writes an empty array as {}
        jobs = data["jobs"] or []
        out = []
        for (instance_id, customer_id, _send), (body, status, send_status, variant) in zip(keys, jobs):
            instance = None
            if body is not None:
                instance = Instance(instance_id, body["customer_id"], body["journey"], float(body["entered_at"]),
                                    body.get("sender_id") or body["customer_id"], body.get("entry") or {},
                                    body.get("variants") or {}, (status or "active").split(SEP, 1)[0])
            out.append(Snapshot(instance, profiles.get(customer_id) or {"opted_out": False},
                                send_status.split(SEP, 1)[0] if send_status else None, variant))
        stops = {tuple(k.split(SEP)): v for k, v in (data["stops"] or {}).items()}
        return BatchReads(tuple(out), stops)  # type: ignore[arg-type]

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
        script_keys = _ScriptKeys([self.k("send", "status"), self.k("send")])
        packed = _dumps([(r.send_id, r.customer_id, 1 if r.transactional else 0, r.journey, r.step, r.variant,
                          r.message, script_keys.add(self.k("cap", r.customer_id))) for r in reservations])
        raw = await self._call("reserve sends", self._reserve(keys=script_keys.keys, args=[
            _num(at), -1 if per_day is None else per_day, -1 if per_week is None else per_week, packed]))
        return raw.split(",")

    async def commit_batch(self, writes: BatchWrites) -> int:
        """Confirmations, instance closes, decisions and releases of a batch: one Lua call.

        Returns how many instances it closed (those still active)."""
        if not writes:
            return 0
        closes = [(i, "completed", "last_step") for i in writes.completed] + list(writes.closes)
        keys = _ScriptKeys([self.k(*name.split(":")) for name in _COMMIT_KEYS])
        packed = _dumps({
            "s": [(m.send_id, _num(m.at), m.path or "", _key(m.journey, m.step, m.variant),
                   keys.add(self.k("send", "c", m.customer_id))) for m in writes.sent] or _EMPTY,
            "c": closes or _EMPTY,
            "d": [(_num(d["at"]), _key(d["journey"], d["kind"], d["reason"]), _dumps(d),
                   keys.add(self.k("dec", "c", d["customer_id"]))) for d in writes.decisions] or _EMPTY,
            "r": [(send_id, keys.add(self.k("cap", customer_id))) for send_id, customer_id in writes.releases]
                 or _EMPTY,
        })
        return int(await self._call("commit the dispatch batch", self._commit(keys=keys.keys, args=[packed])))

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
        keys = [self.k("conv"), self.k("conv", "all"), self.k("rep", "conv")]
        return bool(await self._call("record a conversion", self._conversion(
            keys=keys, args=[send.send_id, _num(at), _key(send.journey, send.step, send.variant), body])))

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

    # ------------------------------------------------------------------ privacy (bot/privacy)
    async def _customer_ids(self, customer_id: str) -> tuple[list[str], list[str], list[str], list[str]]:
        """(event ids, instance ids, send ids, decision members) of one customer."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(self.k("ev", "c", customer_id), 0, -1)
            pipe.zrange(self.k("inst", "c", customer_id), 0, -1)
            pipe.zrange(self.k("send", "c", customer_id), 0, -1)
            pipe.zrange(self.k("cap", customer_id), 0, -1)
            pipe.lrange(self.k("dec", "c", customer_id), 0, -1)
            ev, inst, sent, capped, dec = await self._call("read a customer", pipe.execute())
        return list(ev), list(inst), sorted(set(sent) | set(capped)), list(dec)

    async def export_customer(self, customer_id: str) -> dict[str, Any]:
        """Everything stored about one customer (see :meth:`SQLTriggerStore.export_customer`)."""
        ev, inst, sends, dec = await self._customer_ids(customer_id)
        raw = await self._call("read a profile", self.redis.hgetall(self.k("cust", customer_id)))
        out: dict[str, Any] = {"profile": {**self._profile(raw), "updated_at": float(raw[UPDATED])
                                           if raw.get(UPDATED) else None} if raw else None}
        bodies = await self._call("read events", self.redis.hmget(self.k("ev"), ev)) if ev else []
        out["events"] = [json.loads(b) for b in bodies if b]
        out["instances"] = [i.__dict__ for i in await self.instances_for(customer_id)]
        records = []
        conversions = []
        if sends:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self.k("send"), sends)
                pipe.hmget(self.k("send", "status"), sends)
                pipe.hmget(self.k("conv"), sends)
                bodies, statuses, convs = await self._call("read sends", pipe.execute())
            for sid, body, status, conv in zip(sends, bodies, statuses, convs):
                if body:
                    records.append({"send_id": sid, **json.loads(body), "status": (status or "").split(SEP)[0]})
                if conv:
                    conversions.append({"send_id": sid, **json.loads(conv)})
        out["sends"] = records
        out["decisions"] = [self._decision(m) for m in dec]
        out["conversions"] = conversions
        return out

    async def erase_customer(self, customer_id: str, at: float) -> dict[str, int]:
        """Delete the customer's keys and their entries in the shared hashes and indexes in one
        MULTI (one hash tag, so one slot), leaving a tombstone profile (see the SQL store)."""
        ev, inst, sends, dec = await self._customer_ids(customer_id)
        had_profile = await self._call("read a profile", self.redis.exists(self.k("cust", customer_id)))
        async with self.redis.pipeline(transaction=True) as pipe:
            if ev:
                pipe.hdel(self.k("ev"), *ev)
            if inst:
                pipe.hdel(self.k("inst"), *inst)
                pipe.hdel(self.k("inst", "status"), *inst)
            if sends:
                pipe.hdel(self.k("send"), *sends)
                pipe.hdel(self.k("send", "status"), *sends)
                pipe.zrem(self.k("sent", "all"), *sends)
                pipe.hdel(self.k("conv"), *sends)
                pipe.zrem(self.k("conv", "all"), *sends)
            if dec:
                pipe.zrem(self.k("dec", "all"), *dec)
            pipe.delete(self.k("ev", "c", customer_id), self.k("inst", "c", customer_id),
                        self.k("send", "c", customer_id), self.k("cap", customer_id),
                        self.k("dec", "c", customer_id), self.k("cust", customer_id))
            pipe.hset(self.k("cust", customer_id), mapping={"erased_at": _dumps(at), OPTED: "1", UPDATED: _num(at)})
            await self._call("erase a customer", pipe.execute())
        return {"events": len(ev), "instances": len(inst), "sends": len(sends), "decisions": len(dec),
                "profile": int(bool(had_profile))}

    async def purge_events(self, cutoff: float, batch: int = 1000, dry_run: bool = False) -> int:
        """Delete logged events older than ``cutoff`` (``HSCAN`` of the event hash, batch by batch)."""
        total = 0
        old: list[tuple[str, str]] = []

        async def flush() -> None:
            if not old or dry_run:
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.k("ev"), *[i for i, _ in old])
                for event_id, customer in old:
                    pipe.zrem(self.k("ev", "c", customer), event_id)
                await self._call("purge events", pipe.execute())

        async for event_id, body in self.redis.hscan_iter(self.k("ev"), count=batch):
            data = json.loads(body)
            if float(data.get("timestamp") or 0) < cutoff:
                old.append((event_id, str(data.get("customer_id"))))
                total += 1
                if len(old) >= batch:
                    await flush()
                    old = []
        await flush()
        return total
