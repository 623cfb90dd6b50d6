"""One way to open an async SQLAlchemy engine, for every SQL store kefu has.

The tracker store, the handoff store and the trigger store all accept a URL as
users write it (``sqlite:///kefu.db``, ``postgresql://...``) and need the asyncio
driver (PostgreSQL goes through psycopg 3, which is both the sync and the asyncio
driver, so the shop's sync engine and the stores' async engines share one package), an in-memory SQLite that stays one database across connections, and the
SQLite pragmas that let readers run while one process writes (WAL) without an
fsync per commit (``synchronous=NORMAL``: a power cut may lose the last commits,
never corrupt the file).
"""
from __future__ import annotations

from typing import Any, Callable

from bot.shared.exceptions import ConfigError

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgres+psycopg2": "postgresql+psycopg",
    "mysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+aiomysql",
}
# The sync twins, for code that runs SQLAlchemy in a thread (the shop, Alembic's CLI).
SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgres+psycopg2": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "mysql+aiomysql": "mysql+pymysql",
}
DEFAULT_BUSY_TIMEOUT_MS = 5000


def async_sql_url(url: str, filename: str = "endpoints.yml") -> str:
    """Swap a sync driver for its asyncio twin (``sqlite://`` → ``sqlite+aiosqlite://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"'{url}' is not an SQLAlchemy database URL.",
            filename,
            fix="Use e.g. 'sqlite:///kefu.db' or 'postgresql://user:pass@host/db'.",
        )
    return f"{ASYNC_DRIVERS.get(scheme.lower(), scheme)}://{rest}"


def sync_sql_url(url: str, filename: str = "endpoints.yml") -> str:
    """Swap an asyncio driver for its sync twin (``postgresql://`` → ``postgresql+psycopg://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"'{url}' is not an SQLAlchemy database URL.",
            filename,
            fix="Use e.g. 'sqlite:///kefu.db' or 'postgresql://user:pass@host/db'.",
        )
    return f"{SYNC_DRIVERS.get(scheme.lower(), scheme)}://{rest}"


def is_postgresql(url: str) -> bool:
    return url.partition("://")[0].lower().split("+")[0] in ("postgresql", "postgres")


def sqlite_in_memory(url: str) -> bool:
    """True for ``sqlite://``, ``sqlite:///:memory:`` and ``mode=memory`` URLs."""
    path = url.partition("://")[2]
    return path in ("", "/", "/:memory:") or "mode=memory" in path or ":memory:" in path


def create_async_sql_engine(
    url: str,
    engine_kwargs: dict[str, Any] | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    filename: str = "endpoints.yml",
) -> tuple[Any, str]:
    """``(engine, async_url)`` for ``url``; SQLite gets WAL, NORMAL sync and a busy timeout.

    An in-memory SQLite uses one shared connection (``StaticPool``): otherwise every
    pooled connection would see its own empty database.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    async_url = async_sql_url(url, filename)
    options = dict(engine_kwargs or {})
    is_sqlite = async_url.startswith("sqlite")
    in_memory = is_sqlite and sqlite_in_memory(async_url)
    if in_memory:
        from sqlalchemy.pool import StaticPool

        options.setdefault("poolclass", StaticPool)
        options.setdefault("connect_args", {"check_same_thread": False})
    if is_postgresql(async_url):
        options.setdefault("pool_pre_ping", True)  # a restarted server's dead connections are replaced
    engine = create_async_engine(async_url, **options)
    if is_sqlite:
        set_sqlite_pragmas_on_connect(engine.sync_engine, in_memory, busy_timeout_ms)
    return engine, async_url


def set_sqlite_pragmas_on_connect(sync_engine: Any, in_memory: bool,
                                  busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                                  writer: Callable[[Any], None] | None = None) -> None:
    """What every connection kefu opens to a SQLite database runs first: WAL and NORMAL sync
    for a file (readers never block the writer; a commit survives a process crash), the busy
    timeout, then ``writer`` (e.g. ``sqlite_checkpoint.writer_pragmas``)."""
    from sqlalchemy import event

    @event.listens_for(sync_engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if writer is not None:
                writer(cursor)
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()


async def create_tables(engine: Any, metadata: Any, what: str, fix: str) -> None:
    """Create ``metadata``'s missing tables; any failure is a StoreError naming the store and the fix.

    Stores with an Alembic branch use ``bot.stores.migrate.ensure_schema`` instead (their
    tables then upgrade in place); see docs/database.md to move a store over.

    The URL in the message is SQLAlchemy's repr, which masks a password.
    """
    from bot.shared.exceptions import StoreError

    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, OSError
        raise StoreError(f"Could not open the {what} at '{engine.url!r}': {e}. Fix: {fix}") from e


async def create_database_if_missing(url: str, login_db: str, filename: str = "endpoints.yml") -> bool:
    """Rasa's ``login_db``: connect to ``login_db`` and create ``url``'s database when it is missing.

    PostgreSQL only (as in Rasa). Returns True when the database was created. Two workers
    racing to create it are fine: the loser's "already exists" is ignored.
    """
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    target = sa.engine.make_url(async_sql_url(url, filename))
    if target.get_backend_name() != "postgresql":
        raise ConfigError(
            f"'login_db' can only be used with a PostgreSQL database, not '{target.get_backend_name()}'.",
            filename, fix="Remove login_db, or use dialect: postgresql.")
    database = target.database
    if not database:
        raise ConfigError("'login_db' needs the database to create ('db').", filename, fix="Set db: <name>.")
    engine = create_async_engine(target.set(database=login_db), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = (await connection.execute(
                sa.text("SELECT 1 FROM pg_catalog.pg_database WHERE datname = :name"), {"name": database})).first()
            if exists:
                return False
            quoted = engine.dialect.identifier_preparer.quote(database)
            try:
                await connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
            except sa.exc.ProgrammingError as e:  # DuplicateDatabase: another worker won the race
                if "already exists" not in str(e):
                    raise
                return False
            return True
    finally:
        await engine.dispose()


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory-lock key (signed 64-bit) for a name, the same in every process."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)
