"""The SQL tracker store on a real PostgreSQL server: Rasa's endpoint keys and concurrent writers.

The behaviour suite itself (save, retrieve, sessions, restart) runs on PostgreSQL from
test_tracker_store.py; this file covers what only PostgreSQL has.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from bot.shared.events import ActionExecuted
from bot.shared.exceptions import ConfigError
from bot.stores.tracker_store import SQLTrackerStore, create_tracker_store
from tests.postgres_server import PASSWORD, SUPERUSER, PostgresServer
from tests.stores.test_tracker_store import dicts, first_turn

pytestmark = pytest.mark.postgres


def rasa_endpoint(server: PostgresServer, **keys: Any) -> SimpleNamespace:
    """``tracker_store:`` as a Rasa 3 endpoints.yml writes it (type SQL, dialect postgresql, ...)."""
    kwargs = {"dialect": "postgresql", "port": server.port, "username": SUPERUSER, "password": PASSWORD, **keys}
    return SimpleNamespace(url=server.host, type="SQL", token=None, kwargs=kwargs)


@pytest.mark.asyncio
async def test_rasa_keys_with_login_db_create_the_database(postgres_server: PostgresServer, domain):
    postgres_server.execute('DROP DATABASE IF EXISTS "rasa_trackers" WITH (FORCE)')
    store = create_tracker_store(rasa_endpoint(postgres_server, db="rasa_trackers", login_db="postgres"), domain)
    assert isinstance(store, SQLTrackerStore)
    assert store.url.startswith("postgresql+psycopg://") and store.engine.url.database == "rasa_trackers"
    try:
        await store.save(first_turn("ana", domain))
        again = create_tracker_store(rasa_endpoint(postgres_server, db="rasa_trackers", login_db="postgres"), domain)
        restored = await again.retrieve("ana")  # the database exists now: login_db is a no-op
        assert restored is not None and restored.get_slot("name") == "小王"
        await again.close()
    finally:
        await store.close()
        postgres_server.execute('DROP DATABASE IF EXISTS "rasa_trackers" WITH (FORCE)')


@pytest.mark.asyncio
async def test_rasa_keys_without_login_db_name_the_missing_database(postgres_server: PostgresServer, domain):
    from bot.shared.exceptions import StoreError

    store = create_tracker_store(rasa_endpoint(postgres_server, db="no_such_db"), domain)
    with pytest.raises(StoreError, match="SQL tracker store") as error:
        await store.retrieve("ana")
    assert "no_such_db" in str(error.value) and PASSWORD not in str(error.value)
    await store.close()


def test_rasa_url_may_carry_the_port(postgres_server: PostgresServer, domain):
    endpoint = SimpleNamespace(url=f"{postgres_server.host}:{postgres_server.port}", type="SQL", token=None,
                               kwargs={"dialect": "postgresql", "db": "kefu", "username": "u", "password": "p",
                                       "port": 1, "query": {"sslmode": "disable"}})
    store = create_tracker_store(endpoint, domain)
    assert store.engine.url.port == postgres_server.port and store.engine.url.query == {"sslmode": "disable"}


def test_login_db_is_refused_for_sqlite(tmp_path, domain):
    endpoint = SimpleNamespace(url=None, type="SQL", token=None,
                               kwargs={"dialect": "sqlite", "db": str(tmp_path / "x.db"), "login_db": "postgres"})
    store = create_tracker_store(endpoint, domain)
    with pytest.raises(ConfigError, match="login_db"):
        asyncio.run(store.retrieve("ana"))


@pytest.mark.asyncio
async def test_two_workers_saving_one_conversation_store_each_event_once(postgres_url: str, domain):
    """No lock store: two workers save the same new turn at once; the per-sender lock keeps one copy."""
    workers = [SQLTrackerStore(domain, url=postgres_url) for _ in range(2)]
    try:
        tracker = first_turn("bo", domain)
        await workers[0].save(tracker)
        for round_ in range(5):
            tracker.update(ActionExecuted(f"utter_{round_}", timestamp=1_700_000_100.0 + round_))
            await asyncio.gather(*(w.save(tracker) for w in workers))
        stored = await workers[1].retrieve_full_tracker("bo")
        assert dicts(stored) == dicts(tracker)
    finally:
        for worker in workers:
            await worker.close()


@pytest.mark.asyncio
async def test_postgres_rows_use_rasas_columns(postgres_url: str, postgres_server: PostgresServer, domain):
    import psycopg

    store = SQLTrackerStore(domain, url=postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    await store.save(first_turn("cy", domain))
    await store.close()
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port, user=SUPERUSER, password=PASSWORD,
                         dbname="kefu_test") as connection:
        rows = connection.execute("SELECT type_name, timestamp, intent_name, action_name FROM events "
                                  "ORDER BY id").fetchall()
        indexes = {r[0] for r in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
    assert [r[0] for r in rows] == ["action", "user", "slot", "action", "bot", "action"]
    assert rows[0][1] == 1_700_000_000.0 and rows[1][2] == "order_status" and rows[3][3] == "utter_order"
    assert {"ix_events_sender_id_id", "ix_events_sender_id_type_name"} <= indexes


@pytest.mark.asyncio
async def test_a_rasa_endpoints_yml_runs_unchanged(postgres_server: PostgresServer, domain, monkeypatch):
    """The tracker_store section of a Rasa 3 project's endpoints.yml, password from the environment."""
    from bot.shared.endpoints import endpoints_from_yaml

    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    postgres_server.execute('DROP DATABASE IF EXISTS "rasa_yml" WITH (FORCE)')
    endpoints = endpoints_from_yaml(
        "tracker_store:\n  type: SQL\n  dialect: postgresql\n"
        f"  url: {postgres_server.host}\n  port: {postgres_server.port}\n  db: rasa_yml\n"
        f"  username: {SUPERUSER}\n  password: ${{DB_PASSWORD}}\n  login_db: postgres\n",
        "endpoints.yml")
    store = create_tracker_store(endpoints.tracker_store, domain)
    try:
        await store.save(first_turn("dee", domain))
        assert await store.keys() == ["dee"]
    finally:
        await store.close()
        postgres_server.execute('DROP DATABASE IF EXISTS "rasa_yml" WITH (FORCE)')


def test_the_test_server_runs_unprivileged_on_loopback_and_cleans_up(postgres_server: PostgresServer):
    """tests/postgres_server.py itself: 127.0.0.1 and a socket in its folder, never root, nothing left behind.

    (A second server of its own; ``postgres_server`` only brings the missing-PostgreSQL skip/fail rule.)"""
    import os
    import socket

    server = PostgresServer().start()
    directory = server.directory
    assert directory is not None
    try:
        assert (server.socket_dir / f".s.PGSQL.{server.port}").exists()
        owner = os.stat(directory / "data" / "postmaster.pid").st_uid
        assert owner != 0 if os.geteuid() == 0 else owner == os.geteuid()
        with socket.create_connection((server.host, server.port), timeout=5):
            pass
        import psycopg

        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host=server.host, port=server.port, user=SUPERUSER, password="wrong", dbname="postgres")
    finally:
        server.stop()
    assert not directory.exists()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1).close()
