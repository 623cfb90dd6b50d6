"""Schema migrations (Alembic) of the SQL stores, on a real SQLite file and a real PostgreSQL server.

The upgrade path that matters: a database that an older kefu filled (tables made by
``create_all``, no version table) goes through ``python -m bot db upgrade`` and every row
is still there, readable through the stores, with the newer revisions applied.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.shared.exceptions import StoreError
from bot.stores import migrate

LEGACY_REVISIONS = ["tracker_0001", "audit_0001", "handoff_0001", "triggers_0001"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'kefu.db'}"


def execute(url: str, *statements: Any) -> list[Any]:
    engine = migrate.sync_engine(url)
    try:
        with engine.begin() as connection:
            return [connection.execute(s) for s in statements]
    finally:
        engine.dispose()


def indexes(url: str, table: str) -> set[str]:
    engine = migrate.sync_engine(url)
    try:
        return {i["name"] for i in sa.inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def make_legacy_database(url: str) -> None:
    """Today's schema of every store as kefu made it before migrations: tables, no version table."""
    for revision in LEGACY_REVISIONS:
        migrate.upgrade(url, revision=revision)
    execute(url, sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))


def fill(url: str) -> None:
    from bot.handoff.store import handoffs, messages
    from bot.stores.tracker_store import _events_table
    from bot.triggers.store import events_t, sends_t

    events = _events_table(sa.MetaData(), "events")
    execute(
        url,
        events.insert().values(sender_id="s1", type_name="user", timestamp=1.5, intent_name="greet",
                               data=json.dumps({"event": "user", "text": "你好", "timestamp": 1.5})),
        handoffs.insert().values(id="h1", conversation_id="s1", status="queued", reason="complaint", priority=2,
                                 queue="after_sales:zh", skills='["after_sales"]', after_hours=True, created_at=10.0),
        messages.insert().values(handoff_id="h1", message_id="m1", sender="user", text="退款", data="{}", timestamp=11.0),
        events_t.insert().values(id="e1", customer_id="c1", type="cart_abandoned", ts=5.0,
                                 body=json.dumps({"id": "e1", "customer_id": "c1", "type": "cart_abandoned",
                                                  "timestamp": 5.0, "properties": {}})),
        sends_t.insert().values(send_id="x1", customer_id="c1", journey="cart", step="remind", variant="a",
                                message="m", transactional=False, status="sent", reserved_at=6.0, sent_at=7.0),
        sa.text("INSERT INTO trigger_jobs (id, due, lease_until, payload) VALUES ('j1', 9.0, NULL, '{}')"),
        sa.text("INSERT INTO audit_log (at, actor, role, via, action, target, detail) "
                "VALUES (3.0, 'tina', 'trainer', 'jwt', 'tracker.read', 's1', '{}')"),
    )


async def read_back(url: str) -> dict[str, Any]:
    from bot.handoff.store import SQLHandoffStore
    from bot.stores.audit import SQLAuditLog
    from bot.stores.tracker_store import SQLTrackerStore
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.store import SQLTriggerStore

    tracker, audit = SQLTrackerStore(url=url), SQLAuditLog(url)
    handoff, triggers = SQLHandoffStore(url), SQLTriggerStore(url)
    try:
        conversation = await tracker.retrieve_full_tracker("s1")
        return {
            "tracker": [e.as_dict().get("text") for e in conversation.events] if conversation else None,
            "handoff": await handoff.get("h1"),
            "messages": [m["text"] for m in await handoff.messages("h1")],
            "events": [e.id for e in await triggers.events_for("c1")],
            "sends": [s.send_id for s in await triggers.sends_for("c1")],
            "jobs": await SQLJobQueue(triggers.engine).size(),
            "audit": [(r.actor, r.target) for r in await audit.list()],
        }
    finally:
        for store in (tracker, audit, handoff, triggers):
            await store.close()


def test_db_upgrade_keeps_the_data_of_a_database_made_before_migrations(database_url, monkeypatch, capsys):
    make_legacy_database(database_url)
    fill(database_url)
    assert "ix_trigger_events_ts" not in indexes(database_url, "trigger_events")

    assert main(["db", "current", "--url", database_url]) == 3  # nothing recorded: behind
    assert main(["db", "upgrade", "--url", database_url]) == 0
    assert main(["db", "current", "--url", database_url]) == 0
    out = capsys.readouterr().out
    assert "handoff    handoff_0002     up to date" in out and "triggers   triggers_0002    up to date" in out

    assert "ix_trigger_events_ts" in indexes(database_url, "trigger_events")
    assert "ix_kefu_handoff_audit_handoff_id" in indexes(database_url, "kefu_handoff_audit")
    monkeypatch.setenv(migrate.MODE_ENV, "check")  # the stores accept the upgraded database as it is
    data = asyncio.run(read_back(database_url))
    assert data["tracker"] == ["你好"]
    assert data["handoff"]["after_hours"] is True and data["handoff"]["skills"] == ["after_sales"]
    assert data["handoff"]["priority"] == 2 and data["messages"] == ["退款"]
    assert data["events"] == ["e1"] and data["sends"] == ["x1"] and data["jobs"] == {"due": 1, "in_flight": 0}
    assert data["audit"] == [("tina", "s1")]


def test_a_store_upgrades_an_older_revision_on_start(database_url):
    from bot.handoff.store import handoffs

    migrate.upgrade(database_url, ["handoff"], revision="handoff_0001")
    execute(database_url, handoffs.insert().values(id="h9", conversation_id="s9", status="queued",
                                                       reason="r", priority=0, queue="q", created_at=1.0))
    assert [s.current for s in migrate.current(database_url, ["handoff"])] == ["handoff_0001"]

    async def open_store() -> Any:
        from bot.handoff.store import SQLHandoffStore

        store = SQLHandoffStore(database_url)
        try:
            return await store.get("h9")
        finally:
            await store.close()

    assert asyncio.run(open_store())["conversation_id"] == "s9"
    (state,) = migrate.current(database_url, ["handoff"])
    assert state.current == "handoff_0002" and state.up_to_date


def test_check_mode_refuses_an_old_database_naming_the_command(database_url, monkeypatch):
    migrate.upgrade(database_url, ["triggers"], revision="triggers_0001")
    monkeypatch.setenv(migrate.MODE_ENV, "check")

    async def open_store() -> None:
        from bot.triggers.store import SQLTriggerStore

        store = SQLTriggerStore(database_url)
        try:
            await store.setup()
        finally:
            await store.close()

    with pytest.raises(StoreError, match=r"triggers store's database is at revision triggers_0001") as error:
        asyncio.run(open_store())
    message = str(error.value)
    assert "python -m bot db upgrade --url '" in message and "--store triggers" in message
    assert "kefu-test-secret" not in message  # the PostgreSQL password is masked
    assert main(["db", "upgrade", "--url", database_url, "--store", "triggers"]) == 0
    asyncio.run(open_store())  # now it starts


def test_unknown_stores_and_revisions_are_clear_errors(database_url):
    with pytest.raises(StoreError, match="No migrations for a store named 'nope'. Known stores: analytics, audit, customers, handoff"):
        migrate.upgrade(database_url, ["nope"])
    migrate.upgrade(database_url, ["audit"])
    execute(database_url, sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'audit_9999'"))
    with pytest.raises(StoreError, match="revision 'audit_9999', which this kefu does not know"):
        migrate.current(database_url)


@pytest.mark.postgres
def test_workers_starting_together_migrate_once(postgres_url: str):
    """Eight stores (workers) open a fresh PostgreSQL database at once: the advisory lock lets one migrate."""
    from bot.handoff.store import SQLHandoffStore
    from bot.triggers.store import SQLTriggerStore

    async def start_all() -> None:
        stores: list[Any] = [SQLHandoffStore(postgres_url) for _ in range(4)]
        stores += [SQLTriggerStore(postgres_url) for _ in range(4)]
        try:
            await asyncio.gather(*(s.init() if isinstance(s, SQLHandoffStore) else s.setup() for s in stores))
        finally:
            for store in stores:
                await store.close()

    asyncio.run(start_all())
    (rows,) = execute(postgres_url, sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE} ORDER BY 1"))
    assert [r[0] for r in rows] == ["handoff_0002", "triggers_0002"]


def test_every_revision_downgrades_and_upgrades_again(tmp_path: Path):
    """Each branch's downgrade undoes its upgrade (a bad deploy can be rolled back)."""
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    migrate.upgrade(url)
    from alembic import command

    engine = migrate.sync_engine(url)
    with engine.begin() as connection:
        for store in migrate.stores():
            command.downgrade(migrate.alembic_config(connection), f"{store}@base")
    assert set(sa.inspect(engine).get_table_names()) == {migrate.VERSION_TABLE}
    engine.dispose()
    assert all(s.up_to_date for s in migrate.upgrade(url))


def test_a_new_store_is_one_revision_file(tmp_path: Path, monkeypatch, capsys):
    """`db revision --new-store` writes the first file of a new branch; filled in, it migrates like the rest."""
    import shutil

    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)
    migrate.script_directory.cache_clear()
    try:
        assert main(["db", "revision", "--new-store", "--store", "loyalty", "-m", "loyalty: points ledger"]) == 0
        path = Path(capsys.readouterr().out.split("Wrote ", 1)[1].strip())
        assert path.parent == scripts / "versions" and path.name.startswith("loyalty_0001_")
        text = path.read_text()
        assert 'branch_labels = (\'loyalty\',)' in text and "down_revision = None" in text
        path.write_text(text.replace("def upgrade() -> None:\n    pass", (
            "def upgrade() -> None:\n"
            "    op.create_table('loyalty_points', sa.Column('id', sa.Integer(), primary_key=True),\n"
            "                    sa.Column('points', sa.Integer(), nullable=False))")))
        assert "loyalty" in migrate.stores()
        url = f"sqlite:///{tmp_path / 'loyalty.db'}"
        (state,) = migrate.upgrade(url, ["loyalty"])
        assert state.current == "loyalty_0001" and state.up_to_date
        assert "loyalty_points" in sa.inspect(sa.create_engine(url)).get_table_names()
        assert main(["db", "revision", "--store", "loyalty", "-m", "loyalty: expiry"]) == 0
        assert "loyalty_0002_" in capsys.readouterr().out and migrate.head_of("loyalty") == "loyalty_0002"
    finally:
        migrate.script_directory.cache_clear()


@pytest.mark.parametrize("store", ["tracker", "audit", "handoff", "triggers"])
def test_revisions_build_exactly_the_tables_the_store_declares(store: str, tmp_path: Path):
    """Alembic's own comparison of the upgraded database with the store's sa.Table definitions
    finds nothing to change: a column or index added to one but not the other fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.handoff.store import metadata as handoff_metadata
    from bot.stores.audit import SQLAuditLog
    from bot.stores.tracker_store import _events_table
    from bot.triggers.store import metadata as triggers_metadata

    tracker_metadata = sa.MetaData()
    _events_table(tracker_metadata, "events")
    metadata = {"tracker": tracker_metadata, "audit": SQLAuditLog("sqlite://").metadata,
                "handoff": handoff_metadata, "triggers": triggers_metadata}[store]
    url = f"sqlite:///{tmp_path / 'compare.db'}"
    migrate.upgrade(url, [store])
    raw_tables = {migrate.VERSION_TABLE, "trigger_jobs"}  # the queue's table is plain SQL, not a sa.Table

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return (name if type_ == "table" else getattr(table, "name", None)) not in raw_tables

    engine = migrate.sync_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include, "compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_db_upgrade_from_a_projects_endpoints_yml(tmp_path: Path, monkeypatch, capsys):
    """`db upgrade --endpoints endpoints.yml`: the tracker store (Rasa keys, a custom table) and the audit log."""
    monkeypatch.setenv("TRACKER_DB", str(tmp_path / "trackers.db"))
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: ${TRACKER_DB}\n"
                         "  table_name: conversations\n", encoding="utf-8")
    assert main(["db", "current", "--endpoints", str(endpoints)]) == 3
    assert main(["db", "upgrade", "--endpoints", str(endpoints)]) == 0
    assert main(["db", "current", "--endpoints", str(endpoints)]) == 0
    out = capsys.readouterr().out
    assert f"tracker: sqlite+aiosqlite:///{tmp_path / 'trackers.db'}" in out and "audit: sqlite:///" in out
    tables = sa.inspect(sa.create_engine(f"sqlite:///{tmp_path / 'trackers.db'}")).get_table_names()
    assert "conversations" in tables
    assert "kefu_workbench_models" in tables  # the workbench's state: in the tracker's database
    assert f"workbench: sqlite+aiosqlite:///{tmp_path / 'trackers.db'}" in out
    assert (tmp_path / "audit.db").exists()  # the audit log's default: next to endpoints.yml
    assert main(["db", "upgrade", "--endpoints", str(endpoints), "--url", "sqlite://"]) == 1
    assert main(["db", "current", "--endpoints", str(tmp_path / "missing.yml")]) == 1


@pytest.mark.postgres
def test_an_app_user_without_ddl_rights_runs_after_the_owner_migrates(postgres_server, postgres_url, monkeypatch):
    """Production split: the schema owner runs `db upgrade`; the servers' user may only read and write rows
    (PostgreSQL 15 gives PUBLIC no CREATE on schema public)."""
    from bot.handoff.store import SQLHandoffStore

    postgres_server.execute("DROP ROLE IF EXISTS kefu_app", "CREATE ROLE kefu_app LOGIN PASSWORD 'app-secret'",
                            database="kefu_test")
    app_url = postgres_url.replace("kefu:kefu-test-secret@", "kefu_app:app-secret@")

    async def use_store() -> Any:
        store = SQLHandoffStore(app_url)
        try:
            await store.create({"id": "h1", "conversation_id": "s1", "reason": "r", "queue": "q"})
            return await store.get("h1")
        finally:
            await store.close()

    with pytest.raises(StoreError, match="permission denied") as error:
        asyncio.run(use_store())
    assert "python -m bot db upgrade --url '" in str(error.value) and "app-secret" not in str(error.value)

    assert main(["db", "upgrade", "--url", postgres_url, "--store", "handoff"]) == 0  # as the owner
    postgres_server.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO kefu_app",
                            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kefu_app", database="kefu_test")
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    assert asyncio.run(use_store())["conversation_id"] == "s1"
    postgres_server.execute("DROP OWNED BY kefu_app", "DROP ROLE kefu_app", database="kefu_test")
