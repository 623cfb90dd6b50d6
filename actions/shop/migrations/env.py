"""Alembic's environment for the demo shop's tables (online only: migrations run on a connection).

:mod:`actions.shop.migrate` hands a connection over in ``config.attributes["connection"]``,
already in a transaction and holding the migration lock.
"""
from __future__ import annotations

from alembic import context

from actions.shop import migrate

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run the shop's migrations with `python -m actions.shop db upgrade --url ...`.")
context.configure(connection=connection, target_metadata=None, version_table=migrate.VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
