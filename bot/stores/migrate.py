"""Schema migrations of the SQL stores (Alembic), for the stores and for ``python -m bot db``.

Every SQL store names its Alembic branch (``tracker``, ``audit``, ``handoff``,
``triggers``, ...) and calls :func:`ensure_schema` before first use instead of
``metadata.create_all``: a database at an older revision is upgraded in place (data
kept), a database made by kefu before migrations existed is adopted (the first revision
of each branch creates only the tables that are missing), and a fresh one is created.
Several workers starting at once are serialised by a lock (PostgreSQL: an advisory
transaction lock; SQLite: ``BEGIN IMMEDIATE``), so exactly one migrates.

``KEFU_DB_MIGRATE=check`` makes stores refuse to start on an out-of-date database
instead, with a message naming ``python -m bot db upgrade`` (for operators who migrate
as a deploy step). The revisions live in ``bot/stores/migrations/versions``; adding a
store's tables is one revision file (docs/database.md).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import weakref
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bot.shared.exceptions import StoreError
from bot.stores.sql import sync_sql_url

logger = logging.getLogger(__name__)
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one INFO line per plugin, every run

VERSION_TABLE = "kefu_alembic_version"
LOCK_KEY = 0x6B656675  # "kefu": one advisory lock for all migrations of a database
MODE_ENV = "KEFU_DB_MIGRATE"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_ENGINE_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()
_ENGINE_DONE: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class BranchState:
    """Where one store's branch stands in one database."""

    store: str
    current: str | None  # None: the branch was never applied there
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Any = None, tables: Mapping[str, str] | None = None) -> Any:
    """An Alembic ``Config`` for the package's script directory (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["tables"] = dict(tables or {})
    return config


@functools.lru_cache(maxsize=1)
def script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def stores() -> list[str]:
    """The store branches the revisions define, sorted."""
    labels: set[str] = set()
    for base in script_directory().get_bases():
        labels.update(script_directory().get_revision(base).branch_labels)
    return sorted(labels)


def head_of(store: str) -> str:
    _check_store(store)
    return script_directory().get_revision(f"{store}@head").revision


def _check_store(store: str) -> None:
    known = stores()
    if store not in known:
        raise StoreError(f"No migrations for a store named '{store}'. Known stores: {', '.join(known)}.")


def table_name(default: str) -> str:
    """Inside a revision: the table name a store was configured with (``table_name:``), else ``default``."""
    from alembic import context

    return str(context.config.attributes.get("tables", {}).get(default, default))


def create_table_if_missing(name: str, *columns: Any, indexes: Sequence[tuple[str, Sequence[str], bool]] = ()) -> bool:
    """Inside a first revision: create ``name`` (and its indexes) unless it exists.

    Databases made by kefu before migrations (``create_all``) and by Rasa (the ``events``
    table) already have the table: they are adopted as they are, data untouched.
    """
    import sqlalchemy as sa
    from alembic import op

    if sa.inspect(op.get_bind()).has_table(name):
        return False
    op.create_table(name, *columns)
    for index_name, index_columns, unique in indexes:
        op.create_index(index_name, name, list(index_columns), unique=unique)
    return True


def take_lock(connection: Any) -> None:
    """Serialise migrations of one database across processes (held until the transaction ends)."""
    import sqlalchemy as sa

    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif dialect == "sqlite":
        try:  # the driver begins lazily: take the write lock before reading the version
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except sa.exc.OperationalError as e:  # already inside a transaction
            if "within a transaction" not in str(e):
                raise


def sync_engine(url: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    return sa.create_engine(sync_sql_url(url), poolclass=NullPool)


def branch_states(connection: Any, only: Iterable[str] | None = None) -> list[BranchState]:
    """The state of each store's branch in the database behind ``connection``."""
    from alembic.migration import MigrationContext
    from alembic.util import CommandError

    script = script_directory()
    heads = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()
    current: dict[str, str] = {}
    for revision in heads:
        try:
            labels = script.get_revision(revision).branch_labels
        except CommandError as e:
            raise StoreError(
                f"The database is at revision '{revision}', which this kefu does not know (was it upgraded by "
                f"a newer kefu?). Fix: run the newer kefu, or `python -m bot db stamp` after checking the schema."
            ) from e
        for label in labels:
            current[label] = revision
    return [BranchState(s, current.get(s), head_of(s)) for s in (list(only) if only else stores())]


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "check"):
        raise StoreError(f"{MODE_ENV}={mode!r} is not a migration mode. Fix: set it to 'auto' or 'check'.")
    return mode


def upgrade_command(url: str, store: str) -> str:
    """The command an operator runs to migrate ``store`` at ``url`` (password masked)."""
    import sqlalchemy as sa

    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # sqlalchemy.exc.ArgumentError: shown as given
        shown = url
    return f"python -m bot db upgrade --url '{shown}' --store {store}"


def _ensure_sync(connection: Any, store: str, tables: Mapping[str, str], mode: str, url: str) -> str:
    from alembic import command

    take_lock(connection)
    (state,) = branch_states(connection, [store])
    if state.up_to_date:
        return "current"
    if mode != "auto":
        raise StoreError(
            f"The {store} store's database is at revision {state.current or '(none)'}, this kefu needs "
            f"{state.head}. Fix: run `{upgrade_command(url, store)}` (or unset {MODE_ENV} to migrate on start).")
    logger.info("Migrating the %s store from %s to %s.", store, state.current or "(empty)", state.head)
    command.upgrade(alembic_config(connection, tables), f"{store}@head")
    return "upgraded"


async def ensure_schema(engine: Any, store: str, what: str, fix: str,
                        tables: Mapping[str, str] | None = None) -> str:
    """Bring ``store``'s tables to the newest revision (or refuse, in check mode).

    Returns ``"current"`` or ``"upgraded"``; any failure is a StoreError naming the store,
    the database (password masked) and the fix.
    """
    _check_store(store)
    mode = _mode()
    url = engine.url.render_as_string(hide_password=False)
    # One migration at a time per engine in this process (an in-memory SQLite is one shared
    # connection; the database lock covers other processes).
    if store in _ENGINE_DONE.get(engine.sync_engine, ()):
        return "current"
    lock = _ENGINE_LOCKS.setdefault(engine.sync_engine, asyncio.Lock())
    try:
        async with lock:
            done = _ENGINE_DONE.setdefault(engine.sync_engine, set())
            if store in done:  # another caller of this engine migrated while we waited
                return "current"
            async with engine.begin() as connection:
                result = await connection.run_sync(_ensure_sync, store, dict(tables or {}), mode, url)
            done.add(store)
            return result
    except StoreError:
        raise
    except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, alembic errors, OSError
        raise StoreError(f"Could not open the {what} at '{engine.url!r}': {e}. Fix: {fix} If the server's "
                         f"database user may not change the schema, run `{upgrade_command(url, store)}` as its "
                         f"owner and set {MODE_ENV}=check.") from e


async def prepare_stores(components: Iterable[Any]) -> int:
    """At the server's start: check or upgrade the schema of each SQL store among ``components``.

    A store with a ``prepare()`` coroutine (the SQL tracker store, the SQL audit log)
    migrates now instead of on its first use, so ``KEFU_DB_MIGRATE=check`` on an
    out-of-date database stops the server before it accepts a shopper, with a
    StoreError naming ``python -m bot db upgrade``. Returns how many stores were prepared.
    """
    prepared = 0
    for component in components:
        prepare = getattr(component, "prepare", None) if component is not None else None
        if prepare is None or not asyncio.iscoroutinefunction(prepare):
            continue
        await prepare()
        prepared += 1
    return prepared


def ensure_schema_sync(engine: Any, store: str, what: str, fix: str) -> str:
    """:func:`ensure_schema` for a synchronous engine (stores used from threads and CLIs)."""
    _check_store(store)
    mode = _mode()
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.begin() as connection:
            return _ensure_sync(connection, store, {}, mode, url)
    except StoreError:
        raise
    except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, alembic errors, OSError
        raise StoreError(f"Could not open the {what} at '{engine.url!r}': {e}. Fix: {fix} If the server's "
                         f"database user may not change the schema, run `{upgrade_command(url, store)}` as its "
                         f"owner and set {MODE_ENV}=check.") from e


# --- python -m bot db ---------------------------------------------------------------


def _with_connection(url: str, work: Any) -> Any:
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            take_lock(connection)
            return work(connection)
    finally:
        engine.dispose()


def upgrade(url: str, store_names: Sequence[str] | None = None, revision: str = "head",
            tables: Mapping[str, str] | None = None) -> list[BranchState]:
    """Upgrade the named stores' branches (all by default) to ``revision``; returns the new states."""
    from alembic import command

    names = list(store_names or stores())
    for name in names:
        _check_store(name)

    def work(connection: Any) -> list[BranchState]:
        config = alembic_config(connection, tables)
        if revision in ("head", "heads"):
            for name in names:
                command.upgrade(config, f"{name}@head")
        else:
            command.upgrade(config, revision)
        return branch_states(connection, names)

    return _with_connection(url, work)


def current(url: str, store_names: Sequence[str] | None = None) -> list[BranchState]:
    return _with_connection(url, lambda connection: branch_states(connection, store_names))


def stamp(url: str, revision: str, purge: bool = False) -> list[BranchState]:
    """Record ``revision`` as applied without running it (a schema made by hand)."""
    from alembic import command

    def work(connection: Any) -> list[BranchState]:
        command.stamp(alembic_config(connection), revision, purge=purge)
        return branch_states(connection)

    return _with_connection(url, work)


def history(store_names: Sequence[str] | None = None) -> list[tuple[str, str, str | None, str]]:
    """``(store, revision, down_revision, message)`` oldest first, per store."""
    script = script_directory()
    rows: list[tuple[str, str, str | None, str]] = []
    for name in store_names or stores():
        _check_store(name)
        chain = list(script.iterate_revisions(f"{name}@head", "base"))
        for rev in reversed(chain):
            down = rev.down_revision if isinstance(rev.down_revision, str) or rev.down_revision is None else ",".join(rev.down_revision)
            rows.append((name, rev.revision, down, (rev.doc or "").strip().splitlines()[0] if rev.doc else ""))
    return rows


def new_revision(store: str, message: str, new_store: bool = False) -> str:
    """Write the next revision file of ``store`` (or the first of a new store's branch); returns its path.

    For developers in a source checkout: the file lands in bot/stores/migrations/versions.
    """
    import re

    from alembic import command

    if not re.fullmatch(r"[a-z][a-z0-9_]*", store):
        raise StoreError(f"'{store}' is not a store name. Fix: use lower-case letters, digits and '_'.")
    known = stores()
    if new_store and store in known:
        raise StoreError(f"The store '{store}' already has migrations. Fix: drop --new-store.")
    if new_store:
        number, head, labels = 1, "base", store
    else:
        _check_store(store)
        number = 1 + len(list(script_directory().iterate_revisions(f"{store}@head", "base")))
        head, labels = f"{store}@head", None
    script = command.revision(alembic_config(), message=message, head=head, branch_label=labels,
                              rev_id=f"{store}_{number:04d}")
    script_directory.cache_clear()
    return str(script.path)
