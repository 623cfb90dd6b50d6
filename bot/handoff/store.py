"""Durable handoff state in SQL (SQLite by default, any SQLAlchemy async URL).

The SQL rows are the truth: a restarted server rebuilds the live queue and the
agents' loads from them. State changes are single conditional UPDATEs
(``WHERE status = 'queued'``), so when two agents claim at once exactly one
row update succeeds, in one process or many.

SQLite allows one writer at a time; hundreds of concurrent escalations each
opening a write transaction made SQLite's busy handler sleep-and-retry, which
was most of the latency under load. Writes in one process therefore queue on
an asyncio lock (cheap, FIFO) and WAL runs with ``synchronous=NORMAL`` (an
application or server crash loses nothing; only an OS crash/power cut may drop
the last commits).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.stores.migrate import ensure_schema
from bot.stores.sql import create_async_sql_engine

logger = logging.getLogger(__name__)

QUEUED, ASSIGNED, RESOLVED, CANCELLED = "queued", "assigned", "resolved", "cancelled"
ACTIVE = (QUEUED, ASSIGNED)
JSON_COLUMNS = ("skills", "tags", "record", "notes")

metadata = sa.MetaData()
handoffs = sa.Table(
    "kefu_handoffs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(255), nullable=False, index=True),
    sa.Column("channel", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("queue", sa.String(128), nullable=False),
    sa.Column("language", sa.String(8)),
    sa.Column("skills", sa.Text), sa.Column("tags", sa.Text),
    sa.Column("agent_id", sa.String(128), index=True),
    sa.Column("customer_id", sa.String(128)),
    sa.Column("after_hours", sa.Boolean, default=False),
    sa.Column("record", sa.Text), sa.Column("notes", sa.Text),
    sa.Column("csat", sa.Integer), sa.Column("csat_pending", sa.Boolean, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("assigned_at", sa.Float), sa.Column("resolved_at", sa.Float),
)
messages = sa.Table(
    "kefu_handoff_messages", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("handoff_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("sender", sa.String(16), nullable=False),  # user | agent | bot | note | system
    sa.Column("agent_id", sa.String(128)),
    sa.Column("text", sa.Text), sa.Column("data", sa.Text),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.UniqueConstraint("handoff_id", "message_id", name="uq_handoff_message"),
)
audit = sa.Table(
    "kefu_handoff_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("handoff_id", sa.String(64), index=True), sa.Column("conversation_id", sa.String(255)),
    sa.Column("detail", sa.Text),
)


def _row(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in JSON_COLUMNS:
        if key in data:
            data[key] = json.loads(data[key]) if data[key] else ([] if key != "record" else {})
    if "data" in data:
        data["data"] = json.loads(data["data"]) if data["data"] else {}
    return data


class SQLHandoffStore:
    def __init__(self, url: str = "sqlite+aiosqlite:///handoff.db") -> None:
        # WAL: readers never block the writer; a longer busy timeout for agent bursts.
        self.engine, self.url = create_async_sql_engine(url, busy_timeout_ms=10000, filename="config.yml")
        url = self.url
        self._ready = False
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if url.startswith("sqlite") else None

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[Any]:
        """A write transaction; on SQLite one at a time per process (no busy-handler sleeps)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            async with self.engine.begin() as conn:
                yield conn

    async def init(self) -> None:
        if self._ready:
            return
        # Alembic branch "handoff" (bot/stores/migrations): created, adopted or upgraded in place.
        await ensure_schema(self.engine, "handoff", "handoff store",
                            "check 'handoff.store_url' in config.yml/endpoints.yml and that its folder exists.")
        self._ready = True

    async def close(self) -> None:
        await self.engine.dispose()

    # ------------------------------------------------------------------ handoffs
    async def create(self, values: dict[str, Any]) -> dict[str, Any]:
        await self.init()
        row = dict(values)
        row.setdefault("id", uuid.uuid4().hex)
        row.setdefault("created_at", time.time())
        row.setdefault("status", QUEUED)
        for key in JSON_COLUMNS:
            if key in row:
                row[key] = json.dumps(row[key], ensure_ascii=False, default=str)
        async with self._writing() as conn:
            await conn.execute(handoffs.insert().values(**row))
        created = {c.name: c.default.arg if c.default is not None and c.default.is_scalar else None
                   for c in handoffs.columns}
        created.update(row)
        for key in JSON_COLUMNS:  # the row as get() would read it, without reading it back
            created[key] = json.loads(created[key]) if created[key] else ([] if key != "record" else {})
        created["after_hours"] = bool(created.get("after_hours"))
        return created

    async def get(self, handoff_id: str) -> dict[str, Any] | None:
        await self.init()
        async with self.engine.connect() as conn:
            row = (await conn.execute(handoffs.select().where(handoffs.c.id == handoff_id))).first()
        return _row(row) if row else None

    async def get_many(self, handoff_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Rows by id in a few queries (routing scans the whole queue at once, not one SELECT each)."""
        await self.init()
        found: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(handoff_ids), 500):
                chunk = handoff_ids[start:start + 500]
                for row in (await conn.execute(handoffs.select().where(handoffs.c.id.in_(chunk)))).all():
                    data = _row(row)
                    found[data["id"]] = data
        return found

    async def active_for(self, conversation_id: str) -> dict[str, Any] | None:
        return await self._one(sa.and_(handoffs.c.conversation_id == conversation_id, handoffs.c.status.in_(ACTIVE)))

    async def current_for(self, conversation_id: str) -> dict[str, Any] | None:
        """The open handoff, else the one awaiting a rating: one query per shopper message, not two."""
        await self.init()
        where = sa.and_(handoffs.c.conversation_id == conversation_id,
                        sa.or_(handoffs.c.status.in_(ACTIVE), handoffs.c.csat_pending.is_(True)))
        async with self.engine.connect() as conn:
            rows = [_row(r) for r in (await conn.execute(
                handoffs.select().where(where).order_by(handoffs.c.created_at.desc()))).all()]
        return next((r for r in rows if r["status"] in ACTIVE), rows[0] if rows else None)

    async def csat_pending_for(self, conversation_id: str) -> dict[str, Any] | None:
        return await self._one(sa.and_(handoffs.c.conversation_id == conversation_id, handoffs.c.csat_pending.is_(True)))

    async def _one(self, where: Any) -> dict[str, Any] | None:
        await self.init()
        async with self.engine.connect() as conn:
            row = (await conn.execute(handoffs.select().where(where).order_by(handoffs.c.created_at.desc()))).first()
        return _row(row) if row else None

    async def list(self, statuses: tuple[str, ...] | None = None, queues: list[str] | None = None,
                   agent_id: str | None = None, limit: int = 500,
                   after_hours: bool | None = None) -> list[dict[str, Any]]:
        await self.init()
        query = handoffs.select()
        if after_hours is not None:
            query = query.where(handoffs.c.after_hours.is_(after_hours))
        if statuses:
            query = query.where(handoffs.c.status.in_(statuses))
        if queues is not None:
            query = query.where(handoffs.c.queue.in_(queues))
        if agent_id is not None:
            query = query.where(handoffs.c.agent_id == agent_id)
        query = query.order_by(handoffs.c.priority.desc(), handoffs.c.created_at).limit(limit)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def _update(self, where: Any, **values: Any) -> bool:
        await self.init()
        for key in JSON_COLUMNS:
            if key in values:
                values[key] = json.dumps(values[key], ensure_ascii=False, default=str)
        async with self._writing() as conn:
            result = await conn.execute(handoffs.update().where(where).values(**values))
        return result.rowcount == 1

    async def try_assign(self, handoff_id: str, agent_id: str) -> bool:
        """Queued -> assigned to ``agent_id``; True for exactly one caller."""
        return await self._update(sa.and_(handoffs.c.id == handoff_id, handoffs.c.status == QUEUED),
                                  status=ASSIGNED, agent_id=agent_id, assigned_at=time.time())

    async def requeue(self, handoff_id: str, from_agent: str | None = None, queue: str | None = None) -> bool:
        where = sa.and_(handoffs.c.id == handoff_id, handoffs.c.status.in_(ACTIVE))
        if from_agent is not None:
            where = sa.and_(where, handoffs.c.agent_id == from_agent)
        values: dict[str, Any] = {"status": QUEUED, "agent_id": None, "assigned_at": None}
        if queue:
            values["queue"] = queue
        return await self._update(where, **values)

    async def move_to(self, handoff_id: str, agent_id: str) -> bool:
        """Supervisor move/take: any active handoff to ``agent_id``."""
        return await self._update(sa.and_(handoffs.c.id == handoff_id, handoffs.c.status.in_(ACTIVE)),
                                  status=ASSIGNED, agent_id=agent_id, assigned_at=time.time())

    async def resolve(self, handoff_id: str) -> bool:
        return await self._update(sa.and_(handoffs.c.id == handoff_id, handoffs.c.status.in_(ACTIVE)),
                                  status=RESOLVED, resolved_at=time.time(), csat_pending=True)

    async def set_csat(self, handoff_id: str, rating: int) -> bool:
        return await self._update(sa.and_(handoffs.c.id == handoff_id, handoffs.c.csat_pending.is_(True)),
                                  csat=rating, csat_pending=False)

    async def clear_csat(self, handoff_id: str) -> bool:
        return await self._update(handoffs.c.id == handoff_id, csat_pending=False)

    async def update(self, handoff_id: str, **values: Any) -> bool:
        return await self._update(handoffs.c.id == handoff_id, **values)

    # ------------------------------------------------------------------ messages
    async def add_message(self, handoff_id: str, message_id: str, sender: str, text: str | None,
                          data: dict[str, Any] | None = None, agent_id: str | None = None,
                          timestamp: float | None = None) -> tuple[dict[str, Any], bool]:
        """Store a relayed message once; a known ``message_id`` returns the stored row, created False."""
        await self.init()
        row = {"handoff_id": handoff_id, "message_id": message_id, "sender": sender, "agent_id": agent_id,
               "text": text, "data": json.dumps(data or {}, ensure_ascii=False), "timestamp": timestamp or time.time()}
        try:
            async with self._writing() as conn:
                result = await conn.execute(messages.insert().values(**row))
                row["seq"] = result.inserted_primary_key[0]
            row["data"] = data or {}
            return row, True
        except IntegrityError:
            async with self.engine.connect() as conn:
                found = (await conn.execute(messages.select().where(sa.and_(
                    messages.c.handoff_id == handoff_id, messages.c.message_id == message_id)))).first()
            return _row(found), False

    async def messages(self, handoff_id: str, after: int = 0) -> list[dict[str, Any]]:
        await self.init()
        query = messages.select().where(sa.and_(messages.c.handoff_id == handoff_id, messages.c.seq > after))
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query.order_by(messages.c.seq))).all()]

    # ------------------------------------------------------------------ audit
    async def audit(self, actor: str, action: str, handoff_id: str | None = None,
                    conversation_id: str | None = None, detail: str = "") -> None:
        await self.init()
        async with self._writing() as conn:
            await conn.execute(audit.insert().values(timestamp=time.time(), actor=actor, action=action,
                                                     handoff_id=handoff_id, conversation_id=conversation_id,
                                                     detail=detail))

    async def audit_log(self, limit: int = 200, handoff_id: str | None = None) -> list[dict[str, Any]]:
        await self.init()
        query = audit.select()
        if handoff_id:
            query = query.where(audit.c.handoff_id == handoff_id)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query.order_by(audit.c.id.desc()).limit(limit))).all()]

    # ------------------------------------------------------------------ privacy (bot/privacy)
    async def handoffs_of(self, conversation_ids: list[str], customer_id: str | None = None) -> list[dict[str, Any]]:
        """Every handoff (any status) of these conversations or of ``customer_id``."""
        await self.init()
        where = handoffs.c.conversation_id.in_(sorted(set(conversation_ids)))
        if customer_id is not None:
            where = sa.or_(where, handoffs.c.customer_id == str(customer_id))
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(
                handoffs.select().where(where).order_by(handoffs.c.created_at))).all()]

    async def export_customer(self, conversation_ids: list[str], customer_id: str | None = None) -> list[dict[str, Any]]:
        """Each handoff record with its messages (notes included) and its audit entries."""
        out = []
        for record in await self.handoffs_of(conversation_ids, customer_id):
            record["messages"] = await self.messages(record["id"])
            record["audit"] = await self.audit_log(limit=10_000, handoff_id=record["id"])
            out.append(record)
        return out

    async def erase_customer(self, conversation_ids: list[str], customer_id: str | None = None) -> int:
        """Delete the handoffs and their messages; their audit entries stay (who did what, when)
        with the conversation id and detail blanked. Returns how many handoffs were deleted."""
        ids = [r["id"] for r in await self.handoffs_of(conversation_ids, customer_id)]
        conversations = sorted(set(conversation_ids))
        async with self._writing() as conn:
            for start in range(0, max(len(ids), 1), 400):
                chunk = ids[start:start + 400]
                if chunk:
                    await conn.execute(messages.delete().where(messages.c.handoff_id.in_(chunk)))
                    await conn.execute(handoffs.delete().where(handoffs.c.id.in_(chunk)))
                    await conn.execute(audit.update().where(audit.c.handoff_id.in_(chunk))
                                       .values(conversation_id="erased", detail=""))
            if conversations:
                await conn.execute(audit.update().where(audit.c.conversation_id.in_(conversations))
                                   .values(conversation_id="erased", detail=""))
        return len(ids)

    async def purge_closed(self, cutoff: float, batch: int = 500, dry_run: bool = False) -> int:
        """Delete resolved/cancelled handoffs (and their messages) closed before ``cutoff``,
        batch by batch; open ones are never purged. Returns the count."""
        await self.init()
        closed_at = sa.func.coalesce(handoffs.c.resolved_at, handoffs.c.created_at)
        where = sa.and_(handoffs.c.status.in_((RESOLVED, CANCELLED)), closed_at < cutoff)
        total = 0
        while True:
            async with self.engine.connect() as conn:
                query = sa.select(handoffs.c.id).where(where)
                if dry_run:
                    return len((await conn.execute(query)).scalars().all())
                ids = list((await conn.execute(query.limit(batch))).scalars().all())
            if not ids:
                return total
            async with self._writing() as conn:
                await conn.execute(messages.delete().where(messages.c.handoff_id.in_(ids)))
                await conn.execute(handoffs.delete().where(handoffs.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total
