"""Customer 360's SQL store (SQLAlchemy async; SQLite by default, any URL SQLAlchemy takes).

Every method takes an open connection so the service can make one event's changes in one
transaction (:meth:`CustomerStore.transaction`).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Iterable

import sqlalchemy as sa
from contextlib import asynccontextmanager

from bot.customers import tables as t
from bot.stores.sql import create_async_sql_engine, create_tables, sqlite_in_memory

DEFAULT_URL = "sqlite:///customers.db"
STRONG_KINDS = ("shop_customer", "widget", "wechat_openid", "phone")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _customer(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "created_at": row.created_at, "updated_at": row.updated_at, "merged_into": row.merged_into,
        "state": json.loads(row.state or "{}"), "profile": json.loads(row.profile or "{}"),
        "tags": json.loads(row.tags or "[]"), "health_score": row.health_score, "health_band": row.health_band,
        "health": json.loads(row.health or "{}"), "last_event_at": row.last_event_at,
    }


class CustomerStore:
    def __init__(self, url: str = DEFAULT_URL, engine_kwargs: dict[str, Any] | None = None) -> None:
        self.engine, self.url = create_async_sql_engine(url, engine_kwargs)
        self.in_memory = self.url.startswith("sqlite") and sqlite_in_memory(self.url)
        self._ready = False
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await create_tables(self.engine, t.metadata, "customer store",
                                    "check customers.url in endpoints.yml and that the database is writable.")
                self._ready = True

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        await self.open()
        async with self.engine.begin() as conn:
            yield conn

    # -- identities --------------------------------------------------------------------
    async def owner(self, conn: Any, kind: str, value: str) -> str | None:
        row = (await conn.execute(sa.select(t.identities.c.customer_id).where(
            t.identities.c.kind == kind, t.identities.c.value == value))).first()
        return row[0] if row else None

    async def add_identity(self, conn: Any, kind: str, value: str, customer_id: str, proof: str, now: float) -> None:
        await conn.execute(t.identities.insert().values(kind=kind, value=value, customer_id=customer_id,
                                                        origin_customer_id=customer_id, proof=proof, linked_at=now))

    async def identities_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.identities).where(t.identities.c.customer_id == customer_id)
                                  .order_by(t.identities.c.linked_at, t.identities.c.kind))
        return [dict(r._mapping) for r in rows]

    async def is_anonymous(self, conn: Any, customer_id: str) -> bool:
        """True when the customer has no identity but conversations (an anonymous chat)."""
        row = (await conn.execute(sa.select(sa.func.count()).select_from(t.identities).where(
            t.identities.c.customer_id == customer_id, t.identities.c.kind.in_(STRONG_KINDS)))).scalar()
        return not row

    async def add_conflict(self, conn: Any, kind: str, value: str, owner: str, claimant: str, proof: str,
                           now: float) -> None:
        await conn.execute(t.conflicts.insert().values(kind=kind, value=value, owner_id=owner, claimant_id=claimant,
                                                       proof=proof, at=now))

    async def conflicts(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.conflicts).where(sa.or_(
            t.conflicts.c.owner_id == customer_id, t.conflicts.c.claimant_id == customer_id)).order_by(t.conflicts.c.seq))
        return [dict(r._mapping) for r in rows]

    # -- customers ---------------------------------------------------------------------
    async def create_customer(self, conn: Any, customer_id: str, now: float) -> None:
        await conn.execute(t.customers.insert().values(id=customer_id, created_at=now, updated_at=now, state="{}",
                                                       profile="{}", tags="[]", health="{}"))

    async def get(self, conn: Any, customer_id: str) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(t.customers).where(t.customers.c.id == customer_id))).first()
        return _customer(row) if row else None

    async def save(self, conn: Any, customer_id: str, *, state: dict[str, Any], profile: dict[str, Any],
                   tags: list[str], health: dict[str, Any], now: float, last_event_at: float | None) -> None:
        await conn.execute(t.customers.update().where(t.customers.c.id == customer_id).values(
            state=dumps(state), profile=dumps(profile), tags=dumps(tags), health=dumps(health),
            health_score=health.get("score"), health_band=health.get("band"), updated_at=now,
            last_event_at=last_event_at))

    async def delete_customer(self, conn: Any, customer_id: str) -> None:
        await conn.execute(t.customers.delete().where(t.customers.c.id == customer_id))
        await conn.execute(t.health_history.delete().where(t.health_history.c.customer_id == customer_id))

    async def list_ids(self, conn: Any, after: str = "", limit: int = 1000) -> list[str]:
        rows = await conn.execute(sa.select(t.customers.c.id).where(
            t.customers.c.id > after, t.customers.c.merged_into.is_(None)).order_by(t.customers.c.id).limit(limit))
        return [r[0] for r in rows]

    async def search(self, conn: Any, *, tag: str | None = None, band: str | None = None, limit: int = 50,
                     offset: int = 0) -> list[dict[str, Any]]:
        query = sa.select(t.customers).where(t.customers.c.merged_into.is_(None))
        if band:
            query = query.where(t.customers.c.health_band == band)
        if tag:  # tags are a JSON list in Text: match the quoted name, then confirm in Python
            query = query.where(t.customers.c.tags.contains(json.dumps(tag, ensure_ascii=False)))
        rows = await conn.execute(query.order_by(t.customers.c.id).limit(limit).offset(offset))
        found = [_customer(r) for r in rows]
        return [c for c in found if tag is None or tag in c["tags"]]

    # -- events ------------------------------------------------------------------------
    async def add_event(self, conn: Any, *, event_id: str, customer_id: str, identity: tuple[str, str], kind: str,
                        ts: float, data: dict[str, Any]) -> bool:
        """Store an event once; False when its id was seen before (a redelivery)."""
        exists = (await conn.execute(sa.select(t.events.c.seq).where(t.events.c.id == event_id))).first()
        if exists:
            return False
        await conn.execute(t.events.insert().values(id=event_id, customer_id=customer_id, identity_kind=identity[0],
                                                    identity_value=identity[1], type=kind, ts=ts, data=dumps(data)))
        return True

    async def events_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.events).where(t.events.c.customer_id == customer_id)
                                  .order_by(t.events.c.ts, t.events.c.seq))
        return [{**dict(r._mapping), "data": json.loads(r.data or "{}")} for r in rows]

    async def timeline(self, conn: Any, customer_id: str, *, before: tuple[float, int] | None, limit: int,
                       types: Iterable[str] | None = None, hide: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the (ts, seq) cursor of the last item of the previous page."""
        c = t.events.c
        query = sa.select(t.events).where(c.customer_id == customer_id)
        if before is not None:
            ts, seq = before
            query = query.where(sa.or_(c.ts < ts, sa.and_(c.ts == ts, c.seq < seq)))
        if types:
            query = query.where(c.type.in_(list(types)))
        hidden = list(hide)
        if hidden:
            query = query.where(c.type.not_in(hidden))
        rows = await conn.execute(query.order_by(c.ts.desc(), c.seq.desc()).limit(limit))
        return [{"seq": r.seq, "id": r.id, "type": r.type, "ts": r.ts, "data": json.loads(r.data or "{}"),
                 "via": f"{r.identity_kind}"} for r in rows]

    async def move(self, conn: Any, from_id: str, to_id: str, *, keep_origin: bool) -> None:
        """Every identity and event of ``from_id`` now belongs to ``to_id``."""
        values: dict[str, Any] = {"customer_id": to_id}
        if not keep_origin:
            values["origin_customer_id"] = to_id
        await conn.execute(t.identities.update().where(t.identities.c.customer_id == from_id).values(**values))
        await conn.execute(t.events.update().where(t.events.c.customer_id == from_id).values(customer_id=to_id))

    async def move_back(self, conn: Any, merged_id: str) -> list[str]:
        """Undo a merge: identities that came from ``merged_id``, and their events, go back; returns who lost them."""
        rows = (await conn.execute(sa.select(t.identities).where(
            t.identities.c.origin_customer_id == merged_id, t.identities.c.customer_id != merged_id))).all()
        holders = sorted({r.customer_id for r in rows})
        for r in rows:
            await conn.execute(t.events.update().where(
                t.events.c.identity_kind == r.kind, t.events.c.identity_value == r.value).values(customer_id=merged_id))
        await conn.execute(t.identities.update().where(t.identities.c.origin_customer_id == merged_id)
                           .values(customer_id=merged_id))
        return holders

    async def set_merged_into(self, conn: Any, customer_id: str, survivor: str | None) -> None:
        await conn.execute(t.customers.update().where(t.customers.c.id == customer_id).values(merged_into=survivor))

    async def add_merge(self, conn: Any, **values: Any) -> None:
        await conn.execute(t.merges.insert().values(**values))

    async def get_merge(self, conn: Any, merge_id: str) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(t.merges).where(t.merges.c.id == merge_id))).first()
        return dict(row._mapping) if row else None

    async def merges_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.merges).where(sa.or_(
            t.merges.c.survivor_id == customer_id, t.merges.c.merged_id == customer_id)).order_by(t.merges.c.at))
        return [dict(r._mapping) for r in rows]

    async def undo_merge(self, conn: Any, merge_id: str, actor: str, now: float) -> None:
        await conn.execute(t.merges.update().where(t.merges.c.id == merge_id).values(undone_at=now, undone_by=actor))

    # -- health history and alerts -----------------------------------------------------
    async def add_health(self, conn: Any, customer_id: str, at: float, score: float, band: str,
                         factors: list[dict[str, Any]]) -> None:
        await conn.execute(t.health_history.insert().values(customer_id=customer_id, at=at, score=score, band=band,
                                                            factors=dumps(factors)))

    async def health_history(self, conn: Any, customer_id: str, limit: int = 90) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.health_history).where(t.health_history.c.customer_id == customer_id)
                                  .order_by(t.health_history.c.at.desc(), t.health_history.c.seq.desc()).limit(limit))
        out = [{"at": r.at, "score": r.score, "band": r.band, "factors": json.loads(r.factors or "[]")} for r in rows]
        return list(reversed(out))

    async def clear_health(self, conn: Any, customer_id: str) -> None:
        await conn.execute(t.health_history.delete().where(t.health_history.c.customer_id == customer_id))

    async def add_alert(self, conn: Any, customer_id: str, at: float, rule: str, detail: dict[str, Any]) -> None:
        await conn.execute(t.alerts.insert().values(customer_id=customer_id, at=at, rule=rule, detail=dumps(detail)))

    async def alerts(self, conn: Any, since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(t.alerts).where(t.alerts.c.at >= since)
                                  .order_by(t.alerts.c.seq.desc()).limit(limit))
        return [{"customer_id": r.customer_id, "at": r.at, "rule": r.rule, "detail": json.loads(r.detail or "{}")}
                for r in rows]
