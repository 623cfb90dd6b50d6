"""The audit log: who read which transcript, when and from where.

Every route that returns a conversation's transcript (the tracker, or a response that
includes it) records one :class:`AuditRecord`; so do the console (handoff transcripts)
and data export/erasure. Admins read it with ``GET /audit`` (``Scope.AUDIT_READ``).

``SQLAuditLog`` keeps one row per record in an ``audit_log`` table of any SQLAlchemy
database (default ``sqlite:///audit.db`` in the project root, or ``audit: {url: ...}``
in endpoints.yml). The server builds one per worker (``create_audit_log``); the table
is created on first use.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from bot.stores.limits import column_limit
from bot.stores.migrate import ensure_schema
from bot.stores.sql import create_async_sql_engine, sqlite_in_memory

logger = logging.getLogger(__name__)

DEFAULT_AUDIT_FILE = "audit.db"
IN_MEMORY_URL = "sqlite://"
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100

# What was done; one constant per kind of read so the log can be filtered by it.
TRACKER_READ = "tracker.read"  # GET /conversations/<id>/tracker
TRACKER_IN_RESPONSE = "tracker.returned"  # a write/predict/execute route answered with the tracker


class Actor(Protocol):
    """Who acted: ``bot.web.principals.Principal`` (stores sit below the web layer, so a Protocol)."""

    subject: str
    role: Any  # a Role enum (its ``value`` is stored) or a string
    via: str


@dataclass(frozen=True)
class AuditRecord:
    """One audited access. ``at`` is seconds since the epoch (UTC)."""

    actor: str  # the principal's subject
    role: str
    via: str  # token | jwt | console | widget | open
    action: str  # e.g. tracker.read, handoff.transcript, data.export
    target: str | None  # the conversation (or customer) id
    address: str | None  # the caller's IP address
    at: float
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"route": "GET /conversations/.../tracker"}
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class AuditLog(Protocol):
    async def record(self, principal: "Actor", action: str, target: str | None = None, *,
                     address: str | None = None, detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Store one access; never raises for a storage error (it is logged) so reads are not denied."""
        ...

    async def list(self, since: float | None = None, actor: str | None = None, target: str | None = None,
                   limit: int = DEFAULT_LIST_LIMIT) -> Sequence[AuditRecord]:
        """Newest first, filtered by time, actor (subject) and target."""
        ...

    async def close(self) -> None: ...


def _make_record(principal: "Actor", action: str, target: str | None, address: str | None,
                 detail: Mapping[str, Any] | None) -> AuditRecord:
    role = getattr(principal.role, "value", principal.role)
    return AuditRecord(actor=principal.subject, role=str(role), via=principal.via, action=action,
                       target=target, address=address or None, at=time.time(), detail=dict(detail or {}))


class SQLAuditLog:
    """The audit log in an SQL table (SQLAlchemy async; SQLite files in WAL mode)."""

    def __init__(self, url: str = f"sqlite:///{DEFAULT_AUDIT_FILE}", table_name: str = "audit_log",
                 engine_kwargs: dict[str, Any] | None = None) -> None:
        import sqlalchemy as sa

        self.engine, self.url = create_async_sql_engine(url, engine_kwargs)
        self.in_memory = self.url.startswith("sqlite") and sqlite_in_memory(self.url)
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            table_name, self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("actor", sa.String(255), nullable=False),
            sa.Column("role", sa.String(64), nullable=False),
            sa.Column("via", sa.String(32), nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("target", sa.String(255)),
            sa.Column("address", sa.String(64)),
            sa.Column("detail", sa.Text),
            sa.Index(f"ix_{table_name}_at", "at"),
            sa.Index(f"ix_{table_name}_actor_at", "actor", "at"),
            sa.Index(f"ix_{table_name}_target_at", "target", "at"),
        )
        self._ready = False
        self._lock = asyncio.Lock()

    async def prepare(self) -> None:
        """Check or upgrade the schema now (the server's start), not on the first read."""
        await self._ensure_schema()

    async def _ensure_schema(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if not self._ready:
                await ensure_schema(self.engine, "audit", "audit log",
                                    "check audit.url in endpoints.yml and that the database is reachable "
                                    "and writable.", tables={"audit_log": self.table.name})
                self._ready = True

    def _fit(self, **values: Any) -> dict[str, Any]:
        """Clip strings to their columns: a read is recorded, not refused (PostgreSQL enforces lengths).

        A clipped value ends with '…'; the untouched record is still returned to the caller.
        """
        for name, value in values.items():
            limit = column_limit(self.table, name)
            if isinstance(value, str) and limit is not None and len(value) > limit:
                values[name] = value[:limit - 1] + "…"
        return values

    async def record(self, principal: "Actor", action: str, target: str | None = None, *,
                     address: str | None = None, detail: Mapping[str, Any] | None = None) -> AuditRecord:
        entry = _make_record(principal, action, target, address, detail)
        try:
            await self._ensure_schema()
            async with self.engine.begin() as connection:
                result = await connection.execute(self.table.insert().values(**self._fit(
                    at=entry.at, actor=entry.actor, role=entry.role, via=entry.via, action=entry.action,
                    target=entry.target, address=entry.address,
                    detail=json.dumps(entry.detail, ensure_ascii=False, default=str))))
                key = result.inserted_primary_key
            return AuditRecord(**{**entry.as_dict(), "id": key[0] if key else None})
        except Exception:  # sqlalchemy errors, StoreError: logged loudly, the read itself goes on
            logger.exception("Could not write the audit record %s of '%s' on '%s'.", action, entry.actor,
                             entry.target)
            return entry

    async def list(self, since: float | None = None, actor: str | None = None, target: str | None = None,
                   limit: int = DEFAULT_LIST_LIMIT) -> Sequence[AuditRecord]:
        import sqlalchemy as sa

        await self._ensure_schema()
        table = self.table
        query = sa.select(table)
        if since is not None:
            query = query.where(table.c.at >= since)
        if actor is not None:
            query = query.where(table.c.actor == actor)
        if target is not None:
            query = query.where(table.c.target == target)
        query = query.order_by(table.c.id.desc()).limit(max(1, min(int(limit), MAX_LIST_LIMIT)))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [AuditRecord(actor=r["actor"], role=r["role"], via=r["via"], action=r["action"], target=r["target"],
                            address=r["address"], at=r["at"], detail=json.loads(r["detail"] or "{}"), id=r["id"])
                for r in rows]

    async def close(self) -> None:
        """Release pooled connections (an in-memory database is kept: closing would empty it)."""
        if not self.in_memory:
            await self.engine.dispose()


def audit_url(section: Any, project_root: str | Path | None) -> str:
    """The audit database URL: endpoints.yml ``audit: {url: ...}``, else ``audit.db`` in the project root.

    Without a project folder (tests, embedding) the log is in memory.
    """
    url = getattr(section, "url", None) if section is not None else None
    if url is None and isinstance(section, Mapping):
        url = section.get("url")
    if url:
        return str(url)
    if project_root is None:
        return IN_MEMORY_URL
    return f"sqlite:///{(Path(project_root) / DEFAULT_AUDIT_FILE).resolve()}"


def create_audit_log(section: Any = None, project_root: str | Path | None = None) -> SQLAuditLog:
    """One worker's audit log (cheap: the database is opened on first use)."""
    url = audit_url(section, project_root)
    if url == IN_MEMORY_URL:
        logger.debug("No project folder: the audit log is in memory.")
    return SQLAuditLog(url)
