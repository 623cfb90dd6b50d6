"""Customer 360's SQL store (SQLAlchemy Core; SQLite by default, PostgreSQL through psycopg).

Synchronous on purpose: the service runs one event's whole transaction (5–7 statements) in a
worker thread with ``run_blocking``, one hop off the event loop per event instead of one per
statement and fetch through an asyncio driver (measured: that hopping was most of the cost on a
loaded 2-core box). Every method takes the open connection of :meth:`CustomerStore.transaction`.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from bot.customers import tables as t
from bot.stores.migrate import ensure_schema_sync
from bot.stores.sqlite_checkpoint import DEFAULT_INTERVAL_S, WalCheckpointer, writer_pragmas
from bot.stores.sql import set_sqlite_pragmas_on_connect, sqlite_in_memory, sync_sql_url

DEFAULT_URL = "sqlite:///customers.db"
STRONG_KINDS = ("shop_customer", "widget", "wechat_openid", "phone")


# The per-event statements, built once and executed with parameters: SQLAlchemy then reuses their
# compiled form. Building them per call (``.where(col == value)``, ``.values(**row)``) cost 4–6 times
# the statement's own execution on SQLite (cache-key generation and coercion; measured by
# benchmarks/customers.py's profile), most of an event's CPU.
_OWNER = sa.select(t.identities.c.customer_id).where(
    t.identities.c.kind == sa.bindparam("kind"), t.identities.c.value == sa.bindparam("value"))
_GET = sa.select(t.customers).where(t.customers.c.id == sa.bindparam("cid"))
_IDENTITIES_OF = sa.select(t.identities).where(t.identities.c.customer_id == sa.bindparam("cid")).order_by(
    t.identities.c.linked_at, t.identities.c.kind)
_SAVE = t.customers.update().where(t.customers.c.id == sa.bindparam("cid")).values(
    state=sa.bindparam("u_state"), profile=sa.bindparam("u_profile"), tags=sa.bindparam("u_tags"),
    health=sa.bindparam("u_health"), health_score=sa.bindparam("u_score"), health_band=sa.bindparam("u_band"),
    updated_at=sa.bindparam("u_now"), last_event_at=sa.bindparam("u_last"))
_EVENT_SEEN = sa.select(t.events.c.seq).where(t.events.c.id == sa.bindparam("event_id"))


def _insert_event_once(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (id) DO NOTHING RETURNING seq`` (a row back: it was new), or None
    where the dialect has no such statement (look first, then insert)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return None
    return insert(t.events).on_conflict_do_nothing(index_elements=["id"]).returning(t.events.c.seq)


def _save_params(cid: str, state: dict[str, Any], profile: dict[str, Any], tags: list[str],
                 health: dict[str, Any], now: float, last_event_at: float | None) -> dict[str, Any]:
    return {"cid": cid, "u_state": dumps(state), "u_profile": dumps(profile), "u_tags": dumps(tags),
            "u_health": dumps(health), "u_score": health.get("score"), "u_band": health.get("band"),
            "u_now": now, "u_last": last_event_at}


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
    def __init__(self, url: str = DEFAULT_URL, engine_kwargs: dict[str, Any] | None = None,
                 checkpoint_interval: float | None = DEFAULT_INTERVAL_S) -> None:
        """``checkpoint_interval``: a SQLite file's WAL is checkpointed by a background thread this
        often (bot/stores/sqlite_checkpoint.py), not by the event that happens to fill it; None:
        SQLite's default (the committing writer checkpoints every 1 000 pages)."""
        self.url = sync_sql_url(url)
        options = dict(engine_kwargs or {})
        is_sqlite = self.url.startswith("sqlite")
        self.in_memory = is_sqlite and sqlite_in_memory(self.url)
        if self.in_memory:
            options.setdefault("poolclass", sa.pool.StaticPool)
        if is_sqlite:
            options.setdefault("connect_args", {"check_same_thread": False})
        else:
            options.setdefault("pool_pre_ping", True)
        self.engine = sa.create_engine(self.url, **options)
        self.checkpointer: WalCheckpointer | None = None
        if is_sqlite and not self.in_memory and checkpoint_interval is not None:
            self.checkpointer = WalCheckpointer(str(self.engine.url.database), checkpoint_interval)
        if is_sqlite:
            set_sqlite_pragmas_on_connect(self.engine, self.in_memory,
                                          writer=writer_pragmas if self.checkpointer is not None else None)

        self._ready = False
        self._lock = threading.Lock()
        self._insert_event = _insert_event_once(self.engine.dialect.name)

    def open(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                # Alembic branch `customers` (bot/stores/migrations): upgraded in place, never create_all
                ensure_schema_sync(self.engine, "customers", "customer store",
                                   "check customers.url in endpoints.yml and that the database is writable.")
                if self.checkpointer is not None:
                    self.checkpointer.start()
                self._ready = True

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        self.open()
        with self.engine.begin() as conn:
            yield conn

    # -- identities --------------------------------------------------------------------
    def owner(self, conn: Any, kind: str, value: str) -> str | None:
        row = conn.execute(_OWNER, {"kind": kind, "value": value}).first()
        return row[0] if row else None

    def add_identity(self, conn: Any, kind: str, value: str, customer_id: str, proof: str, now: float) -> None:
        conn.execute(t.identities.insert().values(kind=kind, value=value, customer_id=customer_id,
                                                        origin_customer_id=customer_id, proof=proof, linked_at=now))

    def identities_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(_IDENTITIES_OF, {"cid": customer_id})]

    def is_anonymous(self, conn: Any, customer_id: str) -> bool:
        """True when the customer has no identity but conversations (an anonymous chat)."""
        row = (conn.execute(sa.select(sa.func.count()).select_from(t.identities).where(
            t.identities.c.customer_id == customer_id, t.identities.c.kind.in_(STRONG_KINDS)))).scalar()
        return not row

    def add_conflict(self, conn: Any, kind: str, value: str, owner: str, claimant: str, proof: str,
                           now: float) -> None:
        conn.execute(t.conflicts.insert().values(kind=kind, value=value, owner_id=owner, claimant_id=claimant,
                                                       proof=proof, at=now))

    def conflicts(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.conflicts).where(sa.or_(
            t.conflicts.c.owner_id == customer_id, t.conflicts.c.claimant_id == customer_id)).order_by(t.conflicts.c.seq))
        return [dict(r._mapping) for r in rows]

    # -- customers ---------------------------------------------------------------------
    def create_customer(self, conn: Any, customer_id: str, now: float) -> None:
        conn.execute(t.customers.insert().values(id=customer_id, created_at=now, updated_at=now, state="{}",
                                                       profile="{}", tags="[]", health="{}"))

    def get(self, conn: Any, customer_id: str) -> dict[str, Any] | None:
        row = conn.execute(_GET, {"cid": customer_id}).first()
        return _customer(row) if row else None

    def save(self, conn: Any, customer_id: str, *, state: dict[str, Any], profile: dict[str, Any],
                   tags: list[str], health: dict[str, Any], now: float, last_event_at: float | None) -> None:
        conn.execute(_SAVE, _save_params(customer_id, state, profile, tags, health, now, last_event_at))

    def delete_customer(self, conn: Any, customer_id: str) -> None:
        conn.execute(t.customers.delete().where(t.customers.c.id == customer_id))
        conn.execute(t.health_history.delete().where(t.health_history.c.customer_id == customer_id))

    def list_ids(self, conn: Any, after: str = "", limit: int = 1000) -> list[str]:
        rows = conn.execute(sa.select(t.customers.c.id).where(
            t.customers.c.id > after, t.customers.c.merged_into.is_(None)).order_by(t.customers.c.id).limit(limit))
        return [r[0] for r in rows]

    def rows_after(self, conn: Any, after: str, limit: int) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.customers).where(t.customers.c.id > after, t.customers.c.merged_into.is_(None))
                            .order_by(t.customers.c.id).limit(limit))
        return [_customer(r) for r in rows]

    def events_of_many(self, conn: Any, ids: list[str], types: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """(id, type, ts, data) of ``types`` per customer, in time order: one query for a batch."""
        out: dict[str, list[tuple[Any, ...]]] = {cid: [] for cid in ids}
        c = t.events.c
        rows = conn.execute(sa.select(c.customer_id, c.id, c.type, c.ts, c.data)
                            .where(c.customer_id.in_(ids), c.type.in_(list(types))).order_by(c.ts, c.seq))
        for cid, event_id, kind, ts, data in rows:
            out[cid].append((event_id, kind, ts, json.loads(data or "{}")))
        return out

    def identity_kinds_of_many(self, conn: Any, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {cid: set() for cid in ids}
        for cid, kind in conn.execute(sa.select(t.identities.c.customer_id, t.identities.c.kind)
                                      .where(t.identities.c.customer_id.in_(ids))):
            out[cid].add(kind)
        return {cid: sorted(kinds) for cid, kinds in out.items()}

    def save_many(self, conn: Any, updates: list[dict[str, Any]]) -> None:
        """One executemany UPDATE for a batch (keys as :meth:`save` takes them, plus ``cid``)."""
        if updates:
            conn.execute(_SAVE, [_save_params(u["cid"], u["state"], u["profile"], u["tags"], u["health"], u["now"],
                                              u["last_event_at"]) for u in updates])

    def add_health_many(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(t.health_history.insert(), [{**r, "factors": dumps(r["factors"])} for r in rows])

    def search(self, conn: Any, *, tag: str | None = None, band: str | None = None, limit: int = 50,
                     offset: int = 0) -> list[dict[str, Any]]:
        query = sa.select(t.customers).where(t.customers.c.merged_into.is_(None))
        if band:
            query = query.where(t.customers.c.health_band == band)
        if tag:  # tags are a JSON list in Text: match the quoted name, then confirm in Python
            query = query.where(t.customers.c.tags.contains(json.dumps(tag, ensure_ascii=False)))
        rows = conn.execute(query.order_by(t.customers.c.id).limit(limit).offset(offset))
        found = [_customer(r) for r in rows]
        return [c for c in found if tag is None or tag in c["tags"]]

    # -- events ------------------------------------------------------------------------
    def add_event(self, conn: Any, *, event_id: str, customer_id: str, identity: tuple[str, str], kind: str,
                        ts: float, data: dict[str, Any]) -> bool:
        """Store an event once; False when its id was seen before (a redelivery).

        SQLite and PostgreSQL: one ``INSERT … ON CONFLICT DO NOTHING``; other databases: look, then insert.
        """
        values = dict(id=event_id, customer_id=customer_id, identity_kind=identity[0], identity_value=identity[1],
                      type=kind, ts=ts, data=dumps(data))
        if self._insert_event is not None:
            # RETURNING: a row back means it was inserted (rowcount is not reliable across drivers)
            return conn.execute(self._insert_event, values).first() is not None
        if conn.execute(_EVENT_SEEN, {"event_id": event_id}).first():
            return False
        conn.execute(t.events.insert(), values)
        return True

    def events_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.events).where(t.events.c.customer_id == customer_id)
                                  .order_by(t.events.c.ts, t.events.c.seq))
        return [{**dict(r._mapping), "data": json.loads(r.data or "{}")} for r in rows]

    def timeline(self, conn: Any, customer_id: str, *, before: tuple[float, int] | None, limit: int,
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
        rows = conn.execute(query.order_by(c.ts.desc(), c.seq.desc()).limit(limit))
        return [{"seq": r.seq, "id": r.id, "type": r.type, "ts": r.ts, "data": json.loads(r.data or "{}"),
                 "via": f"{r.identity_kind}"} for r in rows]

    def move(self, conn: Any, from_id: str, to_id: str, *, keep_origin: bool) -> None:
        """Every identity and event of ``from_id`` now belongs to ``to_id``."""
        values: dict[str, Any] = {"customer_id": to_id}
        if not keep_origin:
            values["origin_customer_id"] = to_id
        conn.execute(t.identities.update().where(t.identities.c.customer_id == from_id).values(**values))
        conn.execute(t.events.update().where(t.events.c.customer_id == from_id).values(customer_id=to_id))

    def move_back(self, conn: Any, merged_id: str) -> list[str]:
        """Undo a merge: identities that came from ``merged_id``, and their events, go back; returns who lost them."""
        rows = (conn.execute(sa.select(t.identities).where(
            t.identities.c.origin_customer_id == merged_id, t.identities.c.customer_id != merged_id))).all()
        holders = sorted({r.customer_id for r in rows})
        for r in rows:
            conn.execute(t.events.update().where(
                t.events.c.identity_kind == r.kind, t.events.c.identity_value == r.value).values(customer_id=merged_id))
        conn.execute(t.identities.update().where(t.identities.c.origin_customer_id == merged_id)
                           .values(customer_id=merged_id))
        return holders

    def set_merged_into(self, conn: Any, customer_id: str, survivor: str | None) -> None:
        conn.execute(t.customers.update().where(t.customers.c.id == customer_id).values(merged_into=survivor))

    def add_merge(self, conn: Any, **values: Any) -> None:
        conn.execute(t.merges.insert().values(**values))

    def get_merge(self, conn: Any, merge_id: str) -> dict[str, Any] | None:
        row = (conn.execute(sa.select(t.merges).where(t.merges.c.id == merge_id))).first()
        return dict(row._mapping) if row else None

    def merges_of(self, conn: Any, customer_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.merges).where(sa.or_(
            t.merges.c.survivor_id == customer_id, t.merges.c.merged_id == customer_id)).order_by(t.merges.c.at))
        return [dict(r._mapping) for r in rows]

    def undo_merge(self, conn: Any, merge_id: str, actor: str, now: float) -> None:
        conn.execute(t.merges.update().where(t.merges.c.id == merge_id).values(undone_at=now, undone_by=actor))

    # -- health history and alerts -----------------------------------------------------
    def add_health(self, conn: Any, customer_id: str, at: float, score: float, band: str,
                         factors: list[dict[str, Any]]) -> None:
        conn.execute(t.health_history.insert(), {"customer_id": customer_id, "at": at, "score": score, "band": band,
                                                  "factors": dumps(factors)})

    def health_history(self, conn: Any, customer_id: str, limit: int = 90) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.health_history).where(t.health_history.c.customer_id == customer_id)
                                  .order_by(t.health_history.c.at.desc(), t.health_history.c.seq.desc()).limit(limit))
        out = [{"at": r.at, "score": r.score, "band": r.band, "factors": json.loads(r.factors or "[]")} for r in rows]
        return list(reversed(out))

    def clear_health(self, conn: Any, customer_id: str) -> None:
        conn.execute(t.health_history.delete().where(t.health_history.c.customer_id == customer_id))

    def add_alert(self, conn: Any, customer_id: str, at: float, rule: str, detail: dict[str, Any]) -> None:
        conn.execute(t.alerts.insert().values(customer_id=customer_id, at=at, rule=rule, detail=dumps(detail)))

    def alerts(self, conn: Any, since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:
        rows = conn.execute(sa.select(t.alerts).where(t.alerts.c.at >= since)
                                  .order_by(t.alerts.c.seq.desc()).limit(limit))
        return [{"customer_id": r.customer_id, "at": r.at, "rule": r.rule, "detail": json.loads(r.detail or "{}")}
                for r in rows]

    # -- privacy (bot/privacy: export, erase and retention of one customer's data) -----------
    def resolve(self, conn: Any, value: str) -> list[str]:
        """Customer ids ``value`` names: a Customer 360 id, or the value of any proven identity; with the
        customers merged into them (a merge keeps the merged record for unmerge)."""
        found = {r[0] for r in conn.execute(sa.select(t.customers.c.id).where(t.customers.c.id == value))}
        found |= {r[0] for r in conn.execute(sa.select(t.identities.c.customer_id).where(
            t.identities.c.value == value, t.identities.c.kind != "order"))}  # an order id names no person
        frontier = set(found)
        while frontier:  # merged records (and records merged into those)
            more = {r[0] for r in conn.execute(sa.select(t.customers.c.id).where(
                t.customers.c.merged_into.in_(sorted(frontier))))} - found
            found |= more
            frontier = more
        return sorted(found)

    def export_customers(self, conn: Any, ids: list[str]) -> dict[str, Any]:
        """Every row Customer 360 keeps of ``ids``: record (profile, tags, health), identities, health
        history, timeline events, alerts, merges and refused links."""
        c = t
        rows = lambda q: [dict(r._mapping) for r in conn.execute(q)]  # noqa: E731
        return {
            "customers": [_customer(r) for r in conn.execute(sa.select(c.customers).where(c.customers.c.id.in_(ids)))],
            "identities": rows(sa.select(c.identities).where(c.identities.c.customer_id.in_(ids))
                               .order_by(c.identities.c.linked_at)),
            "health_history": [{**r, "factors": json.loads(r["factors"] or "[]")} for r in rows(
                sa.select(c.health_history).where(c.health_history.c.customer_id.in_(ids)).order_by(c.health_history.c.seq))],
            "timeline": [{**r, "data": json.loads(r["data"] or "{}")} for r in rows(
                sa.select(c.events).where(c.events.c.customer_id.in_(ids)).order_by(c.events.c.ts, c.events.c.seq))],
            "alerts": [{**r, "detail": json.loads(r["detail"] or "{}")} for r in rows(
                sa.select(c.alerts).where(c.alerts.c.customer_id.in_(ids)).order_by(c.alerts.c.seq))],
            "merges": rows(sa.select(c.merges).where(sa.or_(c.merges.c.survivor_id.in_(ids),
                                                            c.merges.c.merged_id.in_(ids)))),
            "conflicts": rows(sa.select(c.conflicts).where(sa.or_(c.conflicts.c.owner_id.in_(ids),
                                                                  c.conflicts.c.claimant_id.in_(ids)))),
        }

    def erase_customers(self, conn: Any, ids: list[str]) -> dict[str, int]:
        """Delete every row of ``ids`` (as :meth:`export_customers` lists them); returns counts per table."""
        if not ids:
            return {}
        statements = {
            "identities": t.identities.delete().where(t.identities.c.customer_id.in_(ids)),
            "health_history": t.health_history.delete().where(t.health_history.c.customer_id.in_(ids)),
            "timeline": t.events.delete().where(t.events.c.customer_id.in_(ids)),
            "alerts": t.alerts.delete().where(t.alerts.c.customer_id.in_(ids)),
            "merges": t.merges.delete().where(sa.or_(t.merges.c.survivor_id.in_(ids), t.merges.c.merged_id.in_(ids))),
            "conflicts": t.conflicts.delete().where(sa.or_(t.conflicts.c.owner_id.in_(ids),
                                                           t.conflicts.c.claimant_id.in_(ids))),
            "customers": t.customers.delete().where(t.customers.c.id.in_(ids)),
        }
        return {name: conn.execute(statement).rowcount or 0 for name, statement in statements.items()}

    def idle_since(self, conn: Any, cutoff: float, limit: int) -> list[str]:
        """Customers (not merged away) with no event since ``cutoff`` — retention's candidates."""
        c = t.customers.c
        last = sa.func.coalesce(c.last_event_at, c.updated_at)
        return [r[0] for r in conn.execute(sa.select(c.id).where(last < cutoff, c.merged_into.is_(None))
                                           .order_by(c.id).limit(limit))]

    # -- the dashboard's health figures (bot/analytics) --------------------------------------
    def health_overview(self, conn: Any, tag: str | None, day_ends: list[float], bands: list[str]) -> dict[str, Any]:
        """Now: customers per band and per 10-point score bin; per ``day_ends`` (ascending epoch
        seconds): each customer's latest recorded score before that moment — the band counts
        and mean. ``tag``: only the customers in that segment now. One pass over the history."""
        c = t.customers.c
        query = sa.select(c.id, c.health_score, c.health_band, c.tags).where(
            c.merged_into.is_(None), c.health_score.is_not(None))
        if tag:
            query = query.where(c.tags.contains(json.dumps(tag, ensure_ascii=False)))
        members: set[str] = set()
        per_band = {band: 0 for band in bands}
        bins = [0] * 10
        for cid, score, band, tags in conn.execute(query):
            if tag and tag not in json.loads(tags or "[]"):
                continue
            members.add(cid)
            per_band[band] = per_band.get(band, 0) + 1
            bins[min(9, max(0, int(score // 10)))] += 1
        trend = [{"at": end, "bands": {band: 0 for band in bands}, "customers": 0, "mean": None} for end in day_ends]
        if day_ends and members:
            h = t.health_history.c
            rows = conn.execute(sa.select(h.customer_id, h.at, h.score, h.band).where(h.at < day_ends[-1])
                                .order_by(h.customer_id, h.at, h.seq))
            totals = [0.0] * len(day_ends)
            current: str | None = None
            history: list[tuple[float, float, str]] = []

            def fold(items: list[tuple[float, float, str]]) -> None:
                i = 0
                latest: tuple[float, float, str] | None = None
                for k, end in enumerate(day_ends):
                    while i < len(items) and items[i][0] < end:
                        latest = items[i]
                        i += 1
                    if latest is not None:
                        point = trend[k]
                        point["bands"][latest[2]] = point["bands"].get(latest[2], 0) + 1
                        point["customers"] += 1
                        totals[k] += latest[1]

            for cid, at, score, band in rows:
                if cid != current:
                    if current in members:
                        fold(history)
                    current, history = cid, []
                history.append((at, score, band))
            if current in members:
                fold(history)
            for k, point in enumerate(trend):
                point["mean"] = round(totals[k] / point["customers"], 1) if point["customers"] else None
        return {"customers": len(members), "bands": per_band,
                "bins": [{"from": 10 * i, "to": 10 * i + 9 if i < 9 else 100, "customers": n} for i, n in enumerate(bins)],
                "trend": trend}
