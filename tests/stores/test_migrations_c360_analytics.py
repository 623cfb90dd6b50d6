"""Customer 360's and the dashboard's tables under Alembic (branches ``customers`` and ``analytics``).

A database those stores made before migrations (``create_all``, with rows, a table and an
index missing as in an older build) goes through ``python -m bot db upgrade``: rows intact,
missing parts added, the schema equal to the stores' ``MetaData``, and the stores open it in
check mode. On a real SQLite file and a real PostgreSQL server.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.analytics import schema as a
from bot.cli import main
from bot.customers import tables as c
from bot.stores import migrate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'kefu.db'}"


def run(url: str, *statements: Any) -> list[Any]:
    engine = migrate.sync_engine(url)
    try:
        with engine.begin() as connection:
            return [connection.execute(s).all() if hasattr(s, "is_select") and s.is_select else connection.execute(s)
                    for s in statements]
    finally:
        engine.dispose()


def diff(url: str, metadata: sa.MetaData) -> list[Any]:
    engine = migrate.sync_engine(url)
    try:
        with engine.connect() as connection:
            found = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    ours = set(metadata.tables)
    return [d for d in found if not (d[0] == "remove_table" and d[1].name not in ours)
            and not (d[0] == "remove_index" and d[1].table.name not in ours)]


def make_pre_migration(url: str) -> None:
    engine = migrate.sync_engine(url)
    try:
        c.metadata.create_all(engine, tables=[t for t in c.metadata.sorted_tables if t.name != "c360_alerts"])
        a.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP INDEX ix_c360_events_identity"))
            connection.execute(sa.text("DROP INDEX ix_analytics_orders_paid"))
            connection.execute(c.customers.insert().values(id="cu1", created_at=1.0, updated_at=2.0, state="{}",
                                                           profile='{"name": "王芳"}', tags='["vip"]', health="{}"))
            connection.execute(c.identities.insert().values(kind="phone", value="13800001111", customer_id="cu1",
                                                            origin_customer_id="cu1", proof="shop", linked_at=1.0))
            connection.execute(c.events.insert().values(id="ev1", customer_id="cu1", identity_kind="phone",
                                                        identity_value="13800001111", type="order_paid", ts=3.0,
                                                        data="{}"))
            connection.execute(a.rollups.insert().values(grain="d", channel="*", segment="*", bucket="2026-12-07",
                                                         metric="csat", dim="", n=3, total=13.0))
            connection.execute(a.orders.insert().values(order_id="o1", customer_id="cu1", paid_at=5.0, amount=99.0))
    finally:
        engine.dispose()


def test_customer_and_analytics_databases_made_before_migrations_are_upgraded_with_rows_intact(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pre_migration(database_url)
    assert diff(database_url, c.metadata) != [] and diff(database_url, a.metadata) != []
    assert main(["db", "current", "--url", database_url, "--store", "customers", "--store", "analytics"]) == 3
    assert main(["db", "upgrade", "--url", database_url, "--store", "customers", "--store", "analytics"]) == 0
    assert diff(database_url, c.metadata) == []  # the missing table and index are there, nothing else changed
    assert diff(database_url, a.metadata) == []

    monkeypatch.setenv(migrate.MODE_ENV, "check")  # the stores accept the upgraded database as it is
    from bot.analytics.store import AnalyticsStore
    from bot.customers.store import CustomerStore

    store = CustomerStore(database_url)
    try:
        with store.transaction() as conn:
            assert store.owner(conn, "phone", "13800001111") == "cu1"
            assert conn.execute(sa.select(c.customers.c.profile)).scalar_one() == '{"name": "王芳"}'
            assert conn.execute(sa.select(sa.func.count()).select_from(c.events)).scalar_one() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(c.alerts)).scalar_one() == 0
    finally:
        store.close()

    async def analytics_rows() -> list[Any]:
        analytics = AnalyticsStore(database_url)
        await analytics.open()
        try:
            async with analytics.begin() as conn:
                rollups = (await conn.execute(sa.select(a.rollups.c.metric, a.rollups.c.n, a.rollups.c.total))).all()
                orders = (await conn.execute(sa.select(a.orders.c.order_id, a.orders.c.amount))).all()
            return [tuple(r) for r in rollups] + [tuple(r) for r in orders]
        finally:
            await analytics.close()

    assert asyncio.run(analytics_rows()) == [("csat", 3, 13.0), ("o1", 99.0)]


def test_the_stores_create_a_fresh_database_through_the_revisions(database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.analytics.store import AnalyticsStore
    from bot.customers.store import CustomerStore

    store = CustomerStore(database_url)
    store.open()
    store.close()

    async def open_analytics() -> None:
        analytics = AnalyticsStore(database_url)
        await analytics.open()
        await analytics.close()

    asyncio.run(open_analytics())
    states = {s.store: s.current for s in migrate.current(database_url, ["customers", "analytics"])}
    assert states == {"customers": "customers_0001", "analytics": "analytics_0002"}
    assert diff(database_url, c.metadata) == [] and diff(database_url, a.metadata) == []


def test_check_mode_refuses_a_customer_store_on_an_old_database(database_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.customers.store import CustomerStore
    from bot.shared.exceptions import StoreError

    make_pre_migration(database_url)
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    store = CustomerStore(database_url)
    try:
        with pytest.raises(StoreError) as caught:
            store.open()
    finally:
        store.close()
    assert "python -m bot db upgrade --url" in str(caught.value) and "--store customers" in str(caught.value)
