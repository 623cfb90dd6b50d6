"""Alembic's environment for kefu's stores (online only: migrations run on a connection).

:mod:`bot.stores.migrate` hands a connection over in ``config.attributes["connection"]``
(already in a transaction and holding the migration lock); with ``alembic -x url=...``
run by hand, this file opens one itself.
"""
from __future__ import annotations

from alembic import context

from bot.stores import migrate


def _run(connection: object) -> None:
    context.configure(connection=connection, target_metadata=None, version_table=migrate.VERSION_TABLE,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic -c ... -x url=postgresql://...`: a connection of our own
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("No database URL: pass -x url=... or use `python -m bot db upgrade --url ...`.")
    engine = migrate.sync_engine(url)
    try:
        with engine.begin() as own:
            migrate.take_lock(own)
            _run(own)
    finally:
        engine.dispose()
