"""kefu's one Alembic environment: a branch of revisions per SQL store.

Each store (``tracker``, ``audit``, ``handoff``, ``triggers``, ...) is an independent
branch (its first revision has ``branch_labels = ("<store>",)``), so stores that live in
separate databases (one SQLite file each) and stores that share one PostgreSQL database
use the same revisions; the version table ``kefu_alembic_version`` holds one head per
branch present. See docs/database.md and :mod:`bot.stores.migrate`.
"""
