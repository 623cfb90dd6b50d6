"""The trigger store: event log, customer profiles/consent, journey instances, sends, skips.

SQLAlchemy async (SQLite by default, any SQLAlchemy URL otherwise). Writes that must be
atomic across workers - event ids, send reservations under frequency caps, conversions -
are single transactions keyed by primary keys, so a retried request or job is harmless.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.stores.migrate import ensure_schema
from bot.stores.sql import advisory_key, create_async_sql_engine
from bot.triggers.events import BehaviourEvent

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite+aiosqlite:///triggers.db"

metadata = sa.MetaData()
events_t = sa.Table(
    "trigger_events", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
)
customers_t = sa.Table(
    "trigger_customers", metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("profile", sa.Text, nullable=False, default="{}"),
    sa.Column("opted_out", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.Float, nullable=False, default=0.0),
)
instances_t = sa.Table(
    "trigger_instances", metadata,
    sa.Column("id", sa.String(300), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("journey", sa.String(128), nullable=False),
    sa.Column("entered_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active, exited, completed
    sa.Column("reason", sa.String(128)),
    sa.Column("body", sa.Text, nullable=False),
)
sends_t = sa.Table(
    "trigger_sends", metadata,
    sa.Column("send_id", sa.String(300), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("journey", sa.String(128), nullable=False),
    sa.Column("step", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(128), nullable=False),
    sa.Column("message", sa.String(128), nullable=False),
    sa.Column("transactional", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, sent
    sa.Column("reserved_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
    sa.Column("path", sa.String(64)),
)
decisions_t = sa.Table(
    "trigger_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("send_id", sa.String(300), nullable=False, index=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("journey", sa.String(128), nullable=False),
    sa.Column("step", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # skip, hold
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("until", sa.Float),
)
conversions_t = sa.Table(
    "trigger_conversions", metadata,
    sa.Column("send_id", sa.String(300), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("journey", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(128), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
variant_states_t = sa.Table(
    "trigger_variant_states", metadata,
    sa.Column("journey", sa.String(128), primary_key=True),
    sa.Column("step", sa.String(128), primary_key=True),
    sa.Column("variant", sa.String(128), primary_key=True),
    sa.Column("stopped_at", sa.Float, nullable=False),
    sa.Column("reason", sa.String(256)),
    sa.Column("in_flight", sa.String(16), nullable=False, default="reroute"),
)

_CHUNK = 400  # ids per IN (...) clause; well under SQLite's bound-parameter limit
_BUSY_RETRIES = 20


def _is_busy(error: Exception) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


@dataclass(frozen=True)
class Instance:
    """One customer's pass through one journey."""

    id: str
    customer_id: str
    journey: str
    entered_at: float
    sender_id: str
    entry: dict[str, Any] = field(default_factory=dict)  # the entry event (as_dict)
    variants: dict[str, str] = field(default_factory=dict)  # step name -> variant name
    status: str = "active"

    def body(self) -> str:
        return json.dumps({"sender_id": self.sender_id, "entry": self.entry, "variants": self.variants},
                          ensure_ascii=False, default=str)


@dataclass(frozen=True)
class SendRecord:
    send_id: str
    customer_id: str
    journey: str
    step: str
    variant: str
    status: str
    reserved_at: float
    sent_at: float | None


@dataclass(frozen=True)
class Snapshot:
    """What the dispatcher needs about one job, read in one batched round trip."""

    instance: Instance | None
    profile: dict[str, Any]
    send_status: str | None  # None, "pending" (reserved, unconfirmed) or "sent"
    send_variant: str | None = None  # the variant a pending/sent reservation recorded


@dataclass(frozen=True)
class BatchReads:
    """Everything the guards of a claimed batch read, in one round trip: a snapshot per job
    (in order) and the variants stopped at run time (``stopped_variants()``)."""

    snapshots: tuple[Snapshot, ...]
    stops: dict[tuple[str, str, str], dict[str, Any]]


@dataclass(frozen=True)
class Reservation:
    """A send to reserve under the frequency caps (the send id is the idempotency key)."""

    send_id: str
    customer_id: str
    journey: str
    step: str
    variant: str
    message: str
    transactional: bool


@dataclass(frozen=True)
class SentMark:
    """A confirmed send (the channel accepted it)."""

    send_id: str
    at: float
    path: str | None
    customer_id: str = ""
    journey: str = ""
    step: str = ""
    variant: str = ""


@dataclass
class BatchWrites:
    """Everything one dispatched batch writes to the store, applied in one transaction
    (SQL) or one Lua call (Redis) by ``commit_batch``: an accumulator, hence not frozen."""

    sent: list[SentMark] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)  # instance ids whose last step was sent
    closes: list[tuple[str, str, str]] = field(default_factory=list)  # (instance id, status, reason)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    releases: list[tuple[str, str]] = field(default_factory=list)  # (send id, customer id)

    def __bool__(self) -> bool:
        return bool(self.sent or self.completed or self.closes or self.decisions or self.releases)


def decision(*, send_id: str, customer_id: str, journey: str, step: str, variant: str, kind: str, reason: str,
             at: float, until: float | None = None) -> dict[str, Any]:
    return {"send_id": send_id, "customer_id": customer_id, "journey": journey, "step": step, "variant": variant,
            "kind": kind, "reason": reason, "at": at, "until": until}


def _chunks(items: list[Any], size: int = _CHUNK) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


class SQLTriggerStore:
    """Everything the scheduler and the report need, in SQL tables prefixed ``trigger_``."""

    def __init__(self, url: str = DEFAULT_URL, engine: AsyncEngine | None = None) -> None:
        if engine is None:
            engine, self.url = create_async_sql_engine(url, filename="endpoints.yml")
        else:
            self.url = str(engine.url)
        self.engine = engine
        self._ready = False
        # SQLite serialises writers anyway; this keeps cap checks atomic inside one process
        # without SQLITE_BUSY retries. Other databases rely on row locks (FOR UPDATE).
        self._write_lock = asyncio.Lock()
        self._is_sqlite = self.engine.dialect.name == "sqlite"

    async def setup(self) -> None:
        if self._ready:
            return
        # Alembic branch "triggers" (bot/stores/migrations), which also holds the job queue's table.
        await ensure_schema(self.engine, "triggers", "trigger store", "check the triggers store url.")
        self._ready = True

    async def close(self) -> None:
        await self.engine.dispose()

    # ------------------------------------------------------------------ events
    async def add_events(self, events: list[BehaviourEvent]) -> list[str]:
        """Insert all events or none: returns the ids that already exist (then nothing is stored)."""
        await self.setup()
        ids = [e.id for e in events]
        try:
            async with self._write_lock, self.engine.begin() as conn:
                existing = (await conn.execute(sa.select(events_t.c.id).where(events_t.c.id.in_(ids)))).scalars().all()
                if existing:
                    return sorted(existing)
                await conn.execute(events_t.insert(), [
                    {"id": e.id, "customer_id": e.customer_id, "type": e.type, "ts": e.timestamp,
                     "body": json.dumps(e.as_dict(), ensure_ascii=False, default=str)} for e in events])
        except sa.exc.IntegrityError:
            # Another worker inserted one of these ids between our read and our insert (both
            # read before either committed): ours rolled back whole, so report theirs.
            async with self.engine.connect() as conn:
                existing = (await conn.execute(sa.select(events_t.c.id).where(events_t.c.id.in_(ids)))).scalars().all()
            if not existing:
                raise
            return sorted(existing)
        return []

    async def add_event(self, event: BehaviourEvent) -> bool:
        return not await self.add_events([event])

    async def events_for(self, customer_id: str, since: float | None = None, types: list[str] | None = None) -> list[BehaviourEvent]:
        await self.setup()
        query = sa.select(events_t.c.body).where(events_t.c.customer_id == customer_id)
        if since is not None:
            query = query.where(events_t.c.ts >= since)
        if types:
            query = query.where(events_t.c.type.in_(types))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(events_t.c.ts, events_t.c.id))).scalars().all()
        return [BehaviourEvent.from_dict(json.loads(r)) for r in rows]

    # ------------------------------------------------------------------ customers
    async def get_profile(self, customer_id: str) -> dict[str, Any]:
        await self.setup()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(customers_t).where(customers_t.c.customer_id == customer_id))).first()
        if row is None:
            return {"opted_out": False}
        profile = json.loads(row.profile)
        profile["opted_out"] = bool(row.opted_out)
        return profile

    async def update_profile(self, customer_id: str, changes: dict[str, Any], at: float,
                             opted_out: bool | None = None) -> dict[str, Any]:
        await self.setup()
        for attempt in (1, 2):
            try:
                async with self._write_lock, self.engine.begin() as conn:
                    # Two workers merging changes into one profile apply one after the other, none
                    # is lost: PostgreSQL locks the row (FOR UPDATE), SQLite takes the write lock
                    # before the read (the driver would begin only at the write).
                    if self._is_sqlite:
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    row = (await conn.execute(sa.select(customers_t).where(
                        customers_t.c.customer_id == customer_id).with_for_update())).first()
                    profile = json.loads(row.profile) if row else {}
                    profile.update({k: v for k, v in changes.items() if k != "opted_out"})
                    flag = bool(row.opted_out) if row else False
                    if opted_out is not None:
                        flag = opted_out
                    values = {"profile": json.dumps(profile, ensure_ascii=False, default=str), "opted_out": flag,
                              "updated_at": at}
                    if row is None:
                        await conn.execute(customers_t.insert().values(customer_id=customer_id, **values))
                    else:
                        await conn.execute(customers_t.update().where(
                            customers_t.c.customer_id == customer_id).values(**values))
                return {**profile, "opted_out": flag}
            except sa.exc.IntegrityError:
                if attempt == 2:  # another worker created the row after our read: merge into theirs
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ instances
    @staticmethod
    def _instance(row: Any) -> Instance:
        body = json.loads(row.body)
        return Instance(row.id, row.customer_id, row.journey, row.entered_at, body.get("sender_id") or row.customer_id,
                        body.get("entry") or {}, body.get("variants") or {}, row.status)

    async def create_instance(self, instance: Instance) -> bool:
        await self.setup()
        try:
            async with self._write_lock, self.engine.begin() as conn:
                exists = (await conn.execute(sa.select(instances_t.c.id).where(instances_t.c.id == instance.id))).first()
                if exists:
                    return False
                await conn.execute(instances_t.insert().values(
                    id=instance.id, customer_id=instance.customer_id, journey=instance.journey,
                    entered_at=instance.entered_at, status=instance.status, reason=None, body=instance.body()))
        except sa.exc.IntegrityError:  # another worker created it after our read: theirs counts
            return False
        return True

    async def get_instance(self, instance_id: str) -> Instance | None:
        await self.setup()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(instances_t).where(instances_t.c.id == instance_id))).first()
        return self._instance(row) if row else None

    async def instances_for(self, customer_id: str, journey: str | None = None, status: str | None = None) -> list[Instance]:
        await self.setup()
        query = sa.select(instances_t).where(instances_t.c.customer_id == customer_id)
        if journey:
            query = query.where(instances_t.c.journey == journey)
        if status:
            query = query.where(instances_t.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(instances_t.c.entered_at))).all()
        return [self._instance(r) for r in rows]

    async def close_instance(self, instance_id: str, status: str, reason: str) -> bool:
        """Mark an active instance exited/completed; False if it was no longer active."""
        await self.setup()
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(instances_t.update().where(
                (instances_t.c.id == instance_id) & (instances_t.c.status == "active")).values(status=status, reason=reason))
        return bool(result.rowcount)

    async def dispatch_snapshot(self, instance_id: str, customer_id: str, send_id: str
                                ) -> tuple[Instance | None, dict[str, Any], str | None]:
        """Instance, profile and send status in one round trip (the scheduler's hot path)."""
        await self.setup()
        async with self.engine.connect() as conn:
            inst = (await conn.execute(sa.select(instances_t).where(instances_t.c.id == instance_id))).first()
            cust = (await conn.execute(sa.select(customers_t).where(customers_t.c.customer_id == customer_id))).first()
            send = (await conn.execute(sa.select(sends_t.c.status).where(sends_t.c.send_id == send_id))).first()
        profile: dict[str, Any] = {"opted_out": False}
        if cust is not None:
            profile = {**json.loads(cust.profile), "opted_out": bool(cust.opted_out)}
        return (self._instance(inst) if inst else None), profile, (str(send.status) if send else None)

    # ------------------------------------------------------------------ sends
    async def get_send(self, send_id: str) -> SendRecord | None:
        await self.setup()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sends_t).where(sends_t.c.send_id == send_id))).first()
        if row is None:
            return None
        return SendRecord(row.send_id, row.customer_id, row.journey, row.step, row.variant, row.status,
                          row.reserved_at, row.sent_at)

    async def reserve_send(self, *, send_id: str, customer_id: str, journey: str, step: str, variant: str,
                           message: str, transactional: bool, at: float, per_day: int | None,
                           per_week: int | None) -> str:
        """Atomically check the caps and reserve the send.

        Returns ``"reserved"``, ``"pending"`` (reserved earlier, not confirmed: resend
        with the same send id), ``"sent"`` (nothing to do) or ``"frequency_cap_day"`` /
        ``"frequency_cap_week"``. Transactional sends ignore the caps but count toward them.
        """
        return (await self.reserve_sends([Reservation(send_id, customer_id, journey, step, variant, message,
                                                      transactional)], at, per_day, per_week))[0]

    async def mark_sent(self, send_id: str, at: float, path: str | None = None,
                        complete_instance: str | None = None) -> None:
        """Confirm a send (and, after a journey's last step, complete its instance) in one transaction."""
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(sends_t.update().where(sends_t.c.send_id == send_id).values(status="sent", sent_at=at, path=path))
            if complete_instance is not None:
                await conn.execute(instances_t.update().where(
                    (instances_t.c.id == complete_instance) & (instances_t.c.status == "active")
                ).values(status="completed", reason="last_step"))

    # ------------------------------------------------------------------ batched dispatch
    async def dispatch_snapshots(self, keys: list[tuple[str, str, str]]) -> list[Snapshot]:
        """``[(instance id, customer id, send id)]`` → snapshots (see :meth:`dispatch_reads`)."""
        return list((await self.dispatch_reads(keys)).snapshots)

    async def dispatch_reads(self, keys: list[tuple[str, str, str]]) -> BatchReads:
        """Snapshots and variant stops of a batch: one SELECT per table with ``IN (...)`` on one
        connection; each profile and instance body is decoded once per batch."""
        await self.setup()
        instances: dict[str, Any] = {}
        profiles: dict[str, dict[str, Any]] = {}
        sends: dict[str, Any] = {}
        async with self.engine.connect() as conn:
            stop_rows = (await conn.execute(sa.select(variant_states_t))).all()
            if keys:
                for part in _chunks(sorted({k[0] for k in keys})):
                    for row in (await conn.execute(sa.select(instances_t).where(instances_t.c.id.in_(part)))).all():
                        instances[row.id] = self._instance(row)
                for part in _chunks(sorted({k[1] for k in keys})):
                    rows = await conn.execute(sa.select(customers_t.c.customer_id, customers_t.c.profile,
                                                        customers_t.c.opted_out).where(customers_t.c.customer_id.in_(part)))
                    for cid, body, opted in rows.all():
                        profiles[cid] = {**json.loads(body), "opted_out": bool(opted)}
                for part in _chunks(sorted({k[2] for k in keys})):
                    rows = await conn.execute(sa.select(sends_t.c.send_id, sends_t.c.status, sends_t.c.variant)
                                              .where(sends_t.c.send_id.in_(part)))
                    for sid, status, variant in rows.all():
                        sends[sid] = (str(status), str(variant))
        absent = {"opted_out": False}
        out = []
        for instance_id, customer_id, send_id in keys:
            send = sends.get(send_id)
            out.append(Snapshot(instances.get(instance_id), profiles.get(customer_id, absent),
                                send[0] if send else None, send[1] if send else None))
        stops = {(r.journey, r.step, r.variant): {"stopped_at": r.stopped_at, "reason": r.reason or "",
                                                   "in_flight": r.in_flight} for r in stop_rows}
        return BatchReads(tuple(out), stops)

    async def reserve_sends(self, reservations: list[Reservation], at: float, per_day: int | None,
                            per_week: int | None) -> list[str]:
        """:meth:`reserve_send` for a whole batch in one transaction (statuses in order).

        Reservations earlier in the batch count toward the caps of later ones, so two
        steps for one customer in the same batch cannot both pass a cap of one.
        """
        await self.setup()
        if not reservations:
            return []
        for attempt in range(_BUSY_RETRIES):
            try:
                return await self._reserve_sends(reservations, at, per_day, per_week)
            except sa.exc.OperationalError as e:
                # SQLite: another process committed after this transaction read the caps
                # (SQLITE_BUSY_SNAPSHOT); nothing was written, so reading again is safe.
                if attempt + 1 >= _BUSY_RETRIES or not _is_busy(e):
                    raise
                await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _reserve_sends(self, reservations: list[Reservation], at: float, per_day: int | None,
                             per_week: int | None) -> list[str]:
        customers = sorted({r.customer_id for r in reservations})
        async with self._write_lock, self.engine.begin() as conn:
            if self._is_sqlite:
                # The driver would BEGIN only at the INSERT, after the cap reads: take the
                # write lock first so workers in other processes cannot interleave.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.engine.dialect.name == "postgresql":
                # A lock per customer whether or not a profile row exists (a row lock would miss
                # customers without one), taken in sorted order so two batches cannot deadlock.
                for customer in customers:
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": advisory_key(f"trigger-cap:{customer}")})
            else:
                for part in _chunks(customers):
                    await conn.execute(sa.select(customers_t.c.customer_id).where(
                        customers_t.c.customer_id.in_(part)).with_for_update())
            existing: dict[str, str] = {}
            for part in _chunks(sorted({r.send_id for r in reservations})):
                rows = await conn.execute(sa.select(sends_t.c.send_id, sends_t.c.status).where(sends_t.c.send_id.in_(part)))
                existing.update({row.send_id: str(row.status) for row in rows.all()})
            day: dict[str, int] = {}
            week: dict[str, int] = {}
            if per_day is not None or per_week is not None:
                recent_day = sa.func.sum(sa.case((sends_t.c.reserved_at > at - 86400.0, 1), else_=0))
                for part in _chunks(customers):
                    rows = await conn.execute(
                        sa.select(sends_t.c.customer_id, recent_day, sa.func.count())
                        .where(sends_t.c.customer_id.in_(part) & (sends_t.c.reserved_at > at - 7 * 86400.0))
                        .group_by(sends_t.c.customer_id))
                    for cid, n_day, n_week in rows.all():
                        day[cid], week[cid] = int(n_day or 0), int(n_week or 0)
            statuses: list[str] = []
            inserts: list[dict[str, Any]] = []
            for r in reservations:
                if r.send_id in existing:
                    statuses.append(existing[r.send_id])
                    continue
                n_day, n_week = day.get(r.customer_id, 0), week.get(r.customer_id, 0)
                if not r.transactional and per_day is not None and n_day >= per_day:
                    statuses.append("frequency_cap_day")
                    continue
                if not r.transactional and per_week is not None and n_week >= per_week:
                    statuses.append("frequency_cap_week")
                    continue
                day[r.customer_id], week[r.customer_id] = n_day + 1, n_week + 1
                existing[r.send_id] = "pending"
                inserts.append({"send_id": r.send_id, "customer_id": r.customer_id, "journey": r.journey,
                                "step": r.step, "variant": r.variant, "message": r.message,
                                "transactional": r.transactional, "status": "pending", "reserved_at": at})
                statuses.append("reserved")
            if inserts:
                await conn.execute(sends_t.insert(), inserts)
        return statuses

    async def commit_batch(self, writes: BatchWrites) -> int:
        """Apply a batch's confirmations, decisions, instance closes and releases in one transaction.

        Returns how many instances it closed (those still active)."""
        if not writes:
            return 0
        await self.setup()
        closed = 0
        async with self._write_lock, self.engine.begin() as conn:
            if writes.sent:
                await conn.execute(
                    sends_t.update().where(sends_t.c.send_id == sa.bindparam("sid"))
                    .values(status="sent", sent_at=sa.bindparam("at"), path=sa.bindparam("p")),
                    [{"sid": m.send_id, "at": m.at, "p": m.path} for m in writes.sent])
            closes = [(i, "completed", "last_step") for i in writes.completed] + list(writes.closes)
            if closes:
                result = await conn.execute(
                    instances_t.update().where((instances_t.c.id == sa.bindparam("iid")) & (instances_t.c.status == "active"))
                    .values(status=sa.bindparam("st"), reason=sa.bindparam("why")),
                    [{"iid": i, "st": st, "why": why} for i, st, why in closes])
                closed = max(0, int(result.rowcount or 0))
            if writes.decisions:
                await conn.execute(decisions_t.insert(), writes.decisions)
            if writes.releases:
                await conn.execute(sends_t.delete().where((sends_t.c.send_id == sa.bindparam("sid"))
                                                          & (sends_t.c.status == "pending")),
                                   [{"sid": sid} for sid, _ in writes.releases])
        return closed

    # ------------------------------------------------------------------ variant switches
    async def stop_variant(self, journey: str, step: str, variant: str, at: float, reason: str = "",
                           in_flight: str = "reroute") -> None:
        """Persist a variant stop (idempotent: the first stop time is kept)."""
        await self.setup()
        try:
            async with self._write_lock, self.engine.begin() as conn:
                exists = (await conn.execute(sa.select(variant_states_t.c.journey).where(
                    (variant_states_t.c.journey == journey) & (variant_states_t.c.step == step)
                    & (variant_states_t.c.variant == variant)))).first()
                if exists is None:
                    await conn.execute(variant_states_t.insert().values(
                        journey=journey, step=step, variant=variant, stopped_at=at, reason=reason or None,
                        in_flight=in_flight))
        except sa.exc.IntegrityError:  # stopped by another worker after our read: the first stop is kept
            pass

    async def resume_variant(self, journey: str, step: str, variant: str) -> bool:
        await self.setup()
        async with self._write_lock, self.engine.begin() as conn:
            result = await conn.execute(variant_states_t.delete().where(
                (variant_states_t.c.journey == journey) & (variant_states_t.c.step == step)
                & (variant_states_t.c.variant == variant)))
        return bool(result.rowcount)

    async def stopped_variants(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """``{(journey, step, variant): {"stopped_at", "reason"}}`` for variants stopped at run time."""
        await self.setup()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(variant_states_t))).all()
        return {(r.journey, r.step, r.variant): {"stopped_at": r.stopped_at, "reason": r.reason or "",
                                                  "in_flight": r.in_flight} for r in rows}

    async def release_send(self, send_id: str) -> None:
        """Undo a reservation whose send failed permanently (frees the cap)."""
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(sends_t.delete().where((sends_t.c.send_id == send_id) & (sends_t.c.status == "pending")))

    async def sends_for(self, customer_id: str, since: float | None = None) -> list[SendRecord]:
        await self.setup()
        query = sa.select(sends_t).where((sends_t.c.customer_id == customer_id) & (sends_t.c.status == "sent"))
        if since is not None:
            query = query.where(sends_t.c.sent_at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(sends_t.c.sent_at))).all()
        return [SendRecord(r.send_id, r.customer_id, r.journey, r.step, r.variant, r.status, r.reserved_at, r.sent_at)
                for r in rows]

    # ------------------------------------------------------------------ decisions, conversions
    async def record_decision(self, *, send_id: str, customer_id: str, journey: str, step: str, variant: str,
                              kind: str, reason: str, at: float, until: float | None = None) -> None:
        await self.setup()
        async with self._write_lock, self.engine.begin() as conn:
            await conn.execute(decisions_t.insert().values(
                send_id=send_id, customer_id=customer_id, journey=journey, step=step, variant=variant,
                kind=kind, reason=reason, at=at, until=until))

    async def decisions_for(self, customer_id: str) -> list[dict[str, Any]]:
        await self.setup()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(decisions_t).where(decisions_t.c.customer_id == customer_id)
                                       .order_by(decisions_t.c.at, decisions_t.c.id))).mappings().all()
        return [dict(r) for r in rows]

    async def record_conversion(self, send: SendRecord, event_id: str, at: float) -> bool:
        await self.setup()
        try:
            async with self._write_lock, self.engine.begin() as conn:
                exists = (await conn.execute(sa.select(conversions_t.c.send_id).where(conversions_t.c.send_id == send.send_id))).first()
                if exists:
                    return False
                await conn.execute(conversions_t.insert().values(send_id=send.send_id, customer_id=send.customer_id,
                                                                 journey=send.journey, variant=send.variant,
                                                                 event_id=event_id, at=at))
        except sa.exc.IntegrityError:  # counted by another worker after our read
            return False
        return True

    async def report_counts(self, since: float | None = None) -> dict[str, Any]:
        """Raw counts for :mod:`bot.triggers.report`."""
        await self.setup()
        sends_q = sa.select(sends_t.c.journey, sends_t.c.step, sends_t.c.variant, sa.func.count()).where(
            sends_t.c.status == "sent")
        skips_q = sa.select(decisions_t.c.journey, decisions_t.c.kind, decisions_t.c.reason, sa.func.count())
        conv_q = sa.select(conversions_t.c.journey, sends_t.c.step, conversions_t.c.variant, sa.func.count()).join(
            sends_t, sends_t.c.send_id == conversions_t.c.send_id)
        if since is not None:
            sends_q = sends_q.where(sends_t.c.sent_at >= since)
            skips_q = skips_q.where(decisions_t.c.at >= since)
            conv_q = conv_q.where(conversions_t.c.at >= since)
        async with self.engine.connect() as conn:
            sends = (await conn.execute(sends_q.group_by(sends_t.c.journey, sends_t.c.step, sends_t.c.variant))).all()
            skips = (await conn.execute(skips_q.group_by(decisions_t.c.journey, decisions_t.c.kind, decisions_t.c.reason))).all()
            convs = (await conn.execute(conv_q.group_by(conversions_t.c.journey, sends_t.c.step, conversions_t.c.variant))).all()
        return {
            "sends": [tuple(r) for r in sends],
            "decisions": [tuple(r) for r in skips],
            "conversions": [tuple(r) for r in convs],
        }

    # ------------------------------------------------------------------ privacy (bot/privacy)
    async def export_customer(self, customer_id: str) -> dict[str, Any]:
        """Everything stored about one customer: profile, events, journeys, sends, decisions, conversions."""
        await self.setup()
        out: dict[str, Any] = {}
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(customers_t).where(customers_t.c.customer_id == customer_id))).first()
            out["profile"] = ({**json.loads(row.profile), "opted_out": bool(row.opted_out),
                               "updated_at": row.updated_at} if row else None)
            out["events"] = [json.loads(b) for b in (await conn.execute(
                sa.select(events_t.c.body).where(events_t.c.customer_id == customer_id)
                .order_by(events_t.c.ts))).scalars().all()]
            for name, table in (("instances", instances_t), ("sends", sends_t), ("decisions", decisions_t),
                                ("conversions", conversions_t)):
                rows = (await conn.execute(sa.select(table).where(table.c.customer_id == customer_id))).mappings().all()
                out[name] = [dict(r) for r in rows]
        for instance in out["instances"]:
            instance["body"] = json.loads(instance["body"])
        return out

    async def erase_customer(self, customer_id: str, at: float) -> dict[str, int]:
        """Delete the customer's events, journeys, sends, decisions and conversions, and replace
        the profile with a tombstone (``erased_at``, opted out, nothing else): a late event for
        this id must not bring back a consenting profile that messages someone who asked to be
        forgotten. Returns the rows deleted per table."""
        await self.setup()
        counts: dict[str, int] = {}
        async with self._write_lock, self.engine.begin() as conn:
            for name, table in (("events", events_t), ("instances", instances_t), ("sends", sends_t),
                                ("decisions", decisions_t), ("conversions", conversions_t)):
                result = await conn.execute(table.delete().where(table.c.customer_id == customer_id))
                counts[name] = max(0, int(result.rowcount or 0))
            result = await conn.execute(customers_t.delete().where(customers_t.c.customer_id == customer_id))
            counts["profile"] = max(0, int(result.rowcount or 0))
            await conn.execute(customers_t.insert().values(
                customer_id=customer_id, profile=json.dumps({"erased_at": at}), opted_out=True, updated_at=at))
        return counts

    async def purge_events(self, cutoff: float, batch: int = 1000, dry_run: bool = False) -> int:
        """Delete logged behaviour events older than ``cutoff``, batch by batch; returns the count."""
        await self.setup()
        total = 0
        while True:
            async with self.engine.connect() as conn:
                query = sa.select(events_t.c.id).where(events_t.c.ts < cutoff)
                if dry_run:
                    return len((await conn.execute(query)).scalars().all())
                ids = list((await conn.execute(query.limit(batch))).scalars().all())
            if not ids:
                return total
            async with self._write_lock, self.engine.begin() as conn:
                for part in _chunks(ids):
                    await conn.execute(events_t.delete().where(events_t.c.id.in_(part)))
            total += len(ids)
            if len(ids) < batch:
                return total
