"""The tracker store and the audit log check/upgrade their schemas when the server starts.

Not on the first turn or the first transcript read: in ``KEFU_DB_MIGRATE=check`` mode an
out-of-date database stops the server before it accepts anyone, naming the command to
run; in the default mode the tables are current before the first request.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.server.app import create_app
from bot.shared.exceptions import StoreError
from bot.stores import migrate
from bot.stores.audit import SQLAuditLog
from bot.stores.tracker_store import SQLTrackerStore
from tests.server.conftest import FakeAgent


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'kefu.db'}"


def make_pre_migration(url: str) -> None:
    """Tracker and audit tables as kefu made them before migrations: no version table."""
    migrate.upgrade(url, ["tracker", "audit"])
    engine = migrate.sync_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
    finally:
        engine.dispose()


def app_on(url: str, tmp_path: Path) -> tuple[Any, SQLTrackerStore, SQLAuditLog]:
    agent = FakeAgent(models_dir=tmp_path)
    agent.tracker_store = SQLTrackerStore(url=url)
    audit = SQLAuditLog(url)
    return create_app(agent, audit=audit, name=f"startup_{abs(hash(url)) % 10_000}"), agent.tracker_store, audit


async def close(*stores: Any) -> None:
    for store in stores:
        await store.close()


@pytest.mark.asyncio
async def test_check_mode_refuses_to_start_on_an_old_database_naming_the_command(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pre_migration(database_url)
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    app, tracker, audit = app_on(database_url, tmp_path)
    try:
        with pytest.raises(StoreError) as caught:
            await app.asgi_client.get("/")
    finally:
        await close(tracker, audit)
    message = str(caught.value)
    assert "python -m bot db upgrade --url" in message and "--store tracker" in message
    password = sa.engine.make_url(database_url).password
    if password:
        assert password not in message
    assert migrate.current(database_url, ["tracker"])[0].current is None  # nothing was changed


@pytest.mark.asyncio
async def test_the_server_start_upgrades_both_stores_before_the_first_request(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pre_migration(database_url)
    monkeypatch.delenv(migrate.MODE_ENV, raising=False)
    states = {s.store: s.up_to_date for s in migrate.current(database_url, ["tracker", "audit"])}
    assert states == {"tracker": False, "audit": False}
    app, tracker, audit = app_on(database_url, tmp_path)
    try:
        _, response = await app.asgi_client.get("/")  # touches neither store
        assert response.status == 200
        states = {s.store: s.up_to_date for s in migrate.current(database_url, ["tracker", "audit"])}
        assert states == {"tracker": True, "audit": True}
    finally:
        await close(tracker, audit)


@pytest.mark.asyncio
async def test_check_mode_starts_on_a_current_database(database_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.upgrade(database_url, ["tracker", "audit"])
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    app, tracker, audit = app_on(database_url, tmp_path)
    try:
        _, response = await app.asgi_client.get("/")
        assert response.status == 200
    finally:
        await close(tracker, audit)


@pytest.mark.asyncio
async def test_prepare_stores_skips_components_without_a_schema() -> None:
    class NoSchema:
        pass

    assert await migrate.prepare_stores([None, NoSchema(), object()]) == 0
