"""The workbench's shared state in SQL: models, activations, handled inbox messages, training jobs.

Before, these were JSON files under the project's ``.kefu/workbench/``, which workers on
other hosts could only share through a shared folder. Now they are tables (Alembic branch
``workbench``) in the tracker store's database by default (``workbench: state_url`` to
choose another, a SQLite file under ``.kefu/workbench/`` when the tracker store is not SQL),
so every host reads one registry. Redis pub/sub stays the fast notification of an
activation (``bot/workbench/notify.py``); the SQL row is the truth a worker polls.

A training job holds a **lease** its worker renews while it trains; a job whose lease ran
out (the worker died, its host went away) reads as failed, on whichever host asks.

Synchronous SQLAlchemy: callers run it in threads (``run_blocking``) and from the CLI.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa

from bot.stores.migrate import ensure_schema_sync
from bot.stores.sql import sqlite_in_memory, sync_sql_url

logger = logging.getLogger(__name__)

STORE = "workbench"
LOCK_KEY = 0x6B657762  # "kewb": one activation at a time per database
DEFAULT_LEASE_S = 120.0

metadata = sa.MetaData()
models_t = sa.Table(
    "kefu_workbench_models", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("trained_at", sa.Float, nullable=False),
    sa.Column("trained_by", sa.String(255), nullable=False),
    sa.Column("data_version", sa.String(64), nullable=False),
    sa.Column("holdout", sa.Float),
    sa.Column("comparison", sa.Text),
    sa.Column("gate_passed", sa.Boolean),
    sa.Column("detail", sa.Text),
)
activations_t = sa.Table(
    "kefu_workbench_activations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("previous", sa.String(255)),
    sa.Column("by", sa.String(255), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("override", sa.Boolean, nullable=False),
)
handled_t = sa.Table(
    "kefu_workbench_handled", metadata,
    sa.Column("text_key", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)
jobs_t = sa.Table(
    "kefu_workbench_jobs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("by", sa.String(255), nullable=False),
    sa.Column("worker", sa.String(255), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("model", sa.String(255)),
    sa.Column("gate_passed", sa.Boolean),
    sa.Column("error", sa.Text),
)


def default_state_url(root: Path, tracker_store: Any = None, configured: str = "") -> str:
    """``workbench: state_url``, else the SQL tracker store's database, else a SQLite file in the project.

    Without a running agent (``python -m bot workbench models``) the tracker store is the one
    the project's endpoints.yml configures, so the CLI reads the registry the servers use.
    """
    if configured:
        return configured
    url = getattr(tracker_store, "url", None) if tracker_store is not None else None
    endpoints = Path(root) / "endpoints.yml"
    if tracker_store is None and endpoints.is_file():
        from bot.stores.db_cli import endpoint_targets

        found = [u for store, u, _ in endpoint_targets(str(endpoints)) if store == "tracker"]
        if found and not (found[0].startswith("sqlite") and sqlite_in_memory(found[0])):
            return found[0]
    if isinstance(url, str) and not (url.startswith("sqlite") and sqlite_in_memory(url)) and hasattr(tracker_store, "prepare"):
        return url
    return f"sqlite:///{Path(root).resolve() / '.kefu' / 'workbench' / 'workbench.db'}"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _loads(value: str | None, default: Any) -> Any:
    try:
        return json.loads(value) if value else default
    except ValueError:
        return default


class WorkbenchState:
    """The tables behind ``ModelRegistry``, the inbox's handled messages and training jobs."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.pool import NullPool

        self.url = url
        sync_url = sync_sql_url(url)
        if sync_url.startswith("sqlite"):
            self.engine = sa.create_engine(sync_url, poolclass=NullPool, connect_args={"timeout": 15})
        else:
            self.engine = sa.create_engine(sync_url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        self._ready = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
                if database and database != ":memory:":  # the first use creates .kefu/workbench/, not the start
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                ensure_schema_sync(self.engine, STORE, "workbench state",
                                   "check `workbench: state_url` (or the tracker store's url) and that the "
                                   "database is reachable and writable.")
                self._ready = True

    def _begin_locked(self, connection: Any) -> None:
        """Serialise read-then-write changes (activation) across workers and hosts."""
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        elif connection.dialect.name == "sqlite":
            try:  # the driver begins lazily: take the write lock before reading
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except sa.exc.OperationalError as e:
                if "within a transaction" not in str(e):
                    raise

    def close(self) -> None:
        self.engine.dispose()

    # -- models and activations -------------------------------------------------------------
    def add_model(self, entry: dict[str, Any]) -> None:
        self._ensure()
        row = {"name": entry["name"], "path": entry["path"], "trained_at": entry["trained_at"],
               "trained_by": entry["trained_by"], "data_version": entry["data_version"],
               "holdout": entry.get("holdout"), "comparison": _json(entry.get("comparison")),
               "gate_passed": entry.get("gate_passed"), "detail": _json(entry.get("detail") or {})}
        with self.engine.begin() as c:
            c.execute(models_t.delete().where(models_t.c.name == row["name"]))
            c.execute(models_t.insert().values(**row))

    def models(self) -> list[dict[str, Any]]:
        self._ensure()
        with self.engine.connect() as c:
            rows = c.execute(sa.select(models_t).order_by(models_t.c.trained_at, models_t.c.name)).all()
            acts = c.execute(sa.select(activations_t).order_by(activations_t.c.id)).all()
        by_model: dict[str, list[dict[str, Any]]] = {}
        for a in acts:
            by_model.setdefault(a.model, []).append(self._activation(a))
        return [self._model(r, by_model.get(r.name, [])) for r in rows]

    def model(self, name: str, connection: Any = None) -> dict[str, Any] | None:
        self._ensure()
        if connection is None:
            with self.engine.connect() as c:
                return self.model(name, c)
        row = connection.execute(sa.select(models_t).where(models_t.c.name == name)).first()
        if row is None:
            return None
        acts = connection.execute(sa.select(activations_t).where(activations_t.c.model == name)
                                  .order_by(activations_t.c.id)).all()
        return self._model(row, [self._activation(a) for a in acts])

    @staticmethod
    def _model(row: Any, activations: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": row.name, "path": row.path, "trained_at": row.trained_at, "trained_by": row.trained_by,
                "data_version": row.data_version, "holdout": row.holdout,
                "comparison": _loads(row.comparison, None), "gate_passed": row.gate_passed,
                "detail": _loads(row.detail, {}), "activations": activations}

    @staticmethod
    def _activation(row: Any) -> dict[str, Any]:
        return {"action": row.action, "model": row.model, "previous": row.previous, "by": row.by, "at": row.at,
                "override": bool(row.override)}

    def active_name(self, connection: Any = None) -> str | None:
        """The model of the newest activation (or roll-back)."""
        self._ensure()
        query = sa.select(activations_t.c.model).order_by(activations_t.c.id.desc()).limit(1)
        if connection is None:
            with self.engine.connect() as c:
                return c.execute(query).scalar()
        return connection.execute(query).scalar()

    def history(self) -> list[dict[str, Any]]:
        self._ensure()
        with self.engine.connect() as c:
            return [self._activation(a) for a in c.execute(sa.select(activations_t).order_by(activations_t.c.id))]

    def activate(self, decide: Any) -> dict[str, Any]:
        """Under the activation lock: ``decide(connection, active_name)`` returns the record to append."""
        self._ensure()
        with self.engine.begin() as c:
            self._begin_locked(c)
            record = decide(c, self.active_name(c))
            c.execute(activations_t.insert().values(**record))
        return record

    # -- the inbox's handled messages ---------------------------------------------------------
    def mark(self, keys: Iterable[str], status: str, detail: dict[str, Any]) -> int:
        self._ensure()
        keys = list(dict.fromkeys(keys))
        now = time.time()
        with self.engine.begin() as c:
            c.execute(handled_t.delete().where(handled_t.c.text_key.in_(keys)))
            if keys:
                c.execute(handled_t.insert(), [{"text_key": k, "status": status, "at": now,
                                                "detail": _json(detail)} for k in keys])
        return len(keys)

    def handled(self) -> dict[str, Any]:
        self._ensure()
        with self.engine.connect() as c:
            rows = c.execute(sa.select(handled_t)).all()
        return {r.text_key: {"status": r.status, "at": r.at, **_loads(r.detail, {})} for r in rows}

    # -- training jobs --------------------------------------------------------------------------
    def start_job(self, job_id: str, by: str, worker: str, lease_s: float) -> dict[str, Any]:
        self._ensure()
        now = time.time()
        with self.engine.begin() as c:
            c.execute(jobs_t.insert().values(id=job_id, status="running", by=by, worker=worker, started_at=now,
                                             lease_until=now + lease_s))
        return self.job(job_id) or {}

    def renew_job(self, job_id: str, lease_s: float) -> bool:
        """Extend a running job's lease; False when it is no longer running (e.g. marked failed)."""
        self._ensure()
        with self.engine.begin() as c:
            result = c.execute(jobs_t.update().where(jobs_t.c.id == job_id, jobs_t.c.status == "running")
                               .values(lease_until=time.time() + lease_s))
        return result.rowcount == 1

    def finish_job(self, job_id: str, status: str, **fields: Any) -> None:
        self._ensure()
        with self.engine.begin() as c:
            c.execute(jobs_t.update().where(jobs_t.c.id == job_id)
                      .values(status=status, finished_at=time.time(), lease_until=None, **fields))

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job; one still "running" whose lease ran out is marked failed first (its worker died)."""
        self._ensure()
        now = time.time()
        with self.engine.begin() as c:
            c.execute(jobs_t.update().where(jobs_t.c.id == job_id, jobs_t.c.status == "running",
                                            jobs_t.c.lease_until < now)
                      .values(status="failed", finished_at=now,
                              error="The worker training this model stopped renewing its lease (it died or "
                                    "lost the database). Fix: start the training again."))
            row = c.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id)).first()
        if row is None:
            return None
        data = {k: v for k, v in row._mapping.items() if v is not None}
        return data

