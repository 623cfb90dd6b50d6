"""Schema migrations (Alembic) of the demo shop's database.

The shop is the project's code (``actions/``), which the engine never imports, so its
tables are not a branch of kefu's own migrations (``bot/stores/migrations``): the shop
carries its own Alembic environment in ``actions/shop/migrations`` with its own version
table (``shop_alembic_version``), and its own command, ``python -m actions.shop db
upgrade|current``. A shop and kefu's stores may share one database: each records its
revisions in its own table.

``SqlShopStore`` (and seed/import) call :func:`ensure_schema` instead of ``create_all``:
a fresh database is created, an older one upgraded in place (rows kept), one made
before migrations adopted. ``KEFU_DB_MIGRATE=check`` — the same switch as kefu's stores —
makes it refuse an out-of-date database, naming the command. Workers starting together
are serialised (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actions.shop.base import ShopError

logger = logging.getLogger(__name__)
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

VERSION_TABLE = "shop_alembic_version"
BRANCH = "shop"
LOCK_KEY = 0x73686F70  # "shop": not kefu's key, so a shared database migrates both without waiting on each other
MODE_ENV = "KEFU_DB_MIGRATE"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class ShopSchemaError(ShopError):
    """The shop database's schema is not the one this code needs (and may not be changed)."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return str(script_directory().get_current_head())


def upgrade_command(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # sqlalchemy.exc.ArgumentError: shown as given
        shown = url
    return f"python -m actions.shop db upgrade --url '{shown}'"


def take_lock(connection: Any) -> None:
    """Serialise migrations of one database across processes (until the transaction ends)."""
    import sqlalchemy as sa

    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        try:  # take the write lock before reading the version
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except sa.exc.OperationalError as e:
            if "within a transaction" not in str(e):
                raise


def state(connection: Any) -> SchemaState:
    from alembic.migration import MigrationContext

    heads = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_heads()
    known = {r.revision for r in script_directory().walk_revisions()}
    for revision in heads:
        if revision not in known:
            raise ShopSchemaError(
                f"The shop database is at revision '{revision}', which this shop code does not know (was it "
                "upgraded by a newer version?). Fix: run the newer code, or restore the database.")
    return SchemaState(heads[0] if heads else None, head())


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "check"):
        raise ShopSchemaError(f"{MODE_ENV}={mode!r} is not a migration mode. Fix: set it to 'auto' or 'check'.")
    return mode


def _safe(url: str) -> str:
    return upgrade_command(url).split("--url ", 1)[1]


def ensure_schema(engine: Any, revision: str = "head") -> str:
    """Bring the shop's tables to ``revision`` (or refuse, in check mode): ``"current"`` or ``"upgraded"``."""
    from alembic import command

    url = engine.url.render_as_string(hide_password=False)
    mode = _mode()
    try:
        with engine.begin() as connection:
            take_lock(connection)
            now = state(connection)
            target = now.head if revision == "head" else revision
            if now.current == target:
                return "current"
            if mode != "auto":
                raise ShopSchemaError(
                    f"The shop database {_safe(url)} is at revision {now.current or '(none)'}, this shop needs "
                    f"{now.head}. Fix: run `{upgrade_command(url)}` (or unset {MODE_ENV} to migrate on start).")
            logger.info("Migrating the shop database from %s to %s.", now.current or "(empty)", target)
            command.upgrade(alembic_config(connection), target)
            return "upgraded"
    except ShopError:
        raise
    except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, alembic errors, OSError
        raise ShopSchemaError(
            f"Could not migrate the shop database {_safe(url)}: {type(e).__name__}: {e}. Fix: check `shop: url` in "
            f"endpoints.yml; if the server's database user may not change the schema, run `{upgrade_command(url)}` "
            f"as its owner and set {MODE_ENV}=check.") from e


def current(engine: Any) -> SchemaState:
    with engine.connect() as connection:
        return state(connection)
