"""One way to open an async SQLAlchemy engine, for every SQL store kefu has.

The tracker store, the handoff store and the trigger store all accept a URL as
users write it (``sqlite:///kefu.db``, ``postgresql://...``) and need the asyncio
driver, an in-memory SQLite that stays one database across connections, and the
SQLite pragmas that let readers run while one process writes (WAL) without an
fsync per commit (``synchronous=NORMAL``: a power cut may lose the last commits,
never corrupt the file).
"""
from __future__ import annotations

from typing import Any

from bot.shared.exceptions import ConfigError

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+aiomysql",
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
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    async_url = async_sql_url(url, filename)
    options = dict(engine_kwargs or {})
    is_sqlite = async_url.startswith("sqlite")
    in_memory = is_sqlite and sqlite_in_memory(async_url)
    if in_memory:
        from sqlalchemy.pool import StaticPool

        options.setdefault("poolclass", StaticPool)
        options.setdefault("connect_args", {"check_same_thread": False})
    engine = create_async_engine(async_url, **options)
    if is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

    return engine, async_url


async def create_tables(engine: Any, metadata: Any, what: str, fix: str) -> None:
    """Create ``metadata``'s missing tables; any failure is a StoreError naming the store and the fix.

    The URL in the message is SQLAlchemy's repr, which masks a password.
    """
    from bot.shared.exceptions import StoreError

    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, OSError
        raise StoreError(f"Could not open the {what} at '{engine.url!r}': {e}. Fix: {fix}") from e
