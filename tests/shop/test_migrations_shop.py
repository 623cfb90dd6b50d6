"""The demo shop's schema under Alembic, on a real SQLite file and a real PostgreSQL server.

The path that matters: a shop database made before migrations (``create_all``, no
version table, without the tables added since — coupon templates and issues, variant
stock, restock subscriptions, verification failures — and without the newer indexes)
goes through ``python -m actions.shop db upgrade``; every row is still there and
readable through ``SqlShopStore``, the missing tables and indexes exist, and the result
is exactly the schema ``actions/shop/models.py`` declares.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from actions.shop import migrate
from actions.shop import models as m
from actions.shop.cli import main
from actions.shop.sql import SqlShopStore, make_engine

NEWER_TABLES = ["coupon_issues", "coupon_templates", "variant_stock", "restock_subscriptions", "verification_failures"]
NEWER_INDEXES = [("ix_coupons_used_order_id", "coupons"), ("ix_orders_ship_phone", "orders")]
OLD_TABLES = ["customers", "products", "orders", "order_lines", "payments", "shipments", "after_sales", "coupons",
              "points_entries", "outbox"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded_url(request: pytest.FixtureRequest) -> str:
    """A private copy of the seeded demo shop."""
    return request.getfixturevalue("postgres_shop_url" if request.param == "postgres" else "shop_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'fresh.db'}"


def schema_diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), m.Base.metadata)
    finally:
        engine.dispose()
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == migrate.VERSION_TABLE)]


def counts(url: str, tables: list[str]) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
    finally:
        engine.dispose()


def make_pre_migration(url: str) -> None:
    """Turn a current shop database into one an older shop made: no version table, no newer tables/indexes."""
    engine = make_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
            for name in NEWER_TABLES:
                c.execute(sa.text(f"DROP TABLE {name}"))
            for index, _table in NEWER_INDEXES:
                c.execute(sa.text(f"DROP INDEX {index}"))
        inspector = sa.inspect(engine)
        assert not set(NEWER_TABLES) & set(inspector.get_table_names())
        assert "ix_orders_ship_phone" not in {i["name"] for i in inspector.get_indexes("orders")}
    finally:
        engine.dispose()


def test_a_fresh_database_gets_exactly_the_models_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert migrate.ensure_schema(engine) == "upgraded"
        assert migrate.ensure_schema(engine) == "current"
        assert migrate.current(engine).current == migrate.head()
    finally:
        engine.dispose()
    assert schema_diff(empty_url) == []  # the revisions and models.py agree, table by table, column by column


def test_a_pre_migration_shop_is_upgraded_with_its_rows_intact(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(seeded_url, OLD_TABLES)
    assert before["orders"] > 100 and before["customers"] > 10
    engine = make_engine(seeded_url)
    with engine.connect() as c:
        order_id = c.execute(sa.text("SELECT id FROM orders ORDER BY id LIMIT 1")).scalar_one()
    engine.dispose()
    order_before = asyncio.run(_read_order(seeded_url, order_id, create=False))
    make_pre_migration(seeded_url)
    assert main(["db", "current", "--url", seeded_url]) == 3  # behind: a deploy gate can tell
    assert "(none)" in capsys.readouterr().out

    assert main(["db", "upgrade", "--url", seeded_url]) == 0
    assert f"{migrate.head()}" in capsys.readouterr().out
    assert counts(seeded_url, OLD_TABLES) == before
    assert counts(seeded_url, NEWER_TABLES) == {t: 0 for t in NEWER_TABLES}
    assert schema_diff(seeded_url) == []  # the missing tables and indexes are back, nothing else changed
    assert main(["db", "current", "--url", seeded_url]) == 0
    assert asyncio.run(_read_order(seeded_url, order_id, create=True)) == order_before


async def _read_order(url: str, order_id: str, create: bool) -> Any:
    store = SqlShopStore(url, create=create)
    try:
        view = await store.find_order(order_id)
        assert view is not None
        return view
    finally:
        await store.close()


def test_check_mode_refuses_an_old_shop_database_naming_the_command(seeded_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make_pre_migration(seeded_url)
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    with pytest.raises(migrate.ShopSchemaError) as caught:
        SqlShopStore(seeded_url)
    assert "python -m actions.shop db upgrade --url" in str(caught.value)
    assert "(none)" in str(caught.value)
    if "@" in seeded_url:
        assert sa.engine.make_url(seeded_url).password not in str(caught.value)
    monkeypatch.delenv(migrate.MODE_ENV)
    assert main(["db", "upgrade", "--url", seeded_url]) == 0
    monkeypatch.setenv(migrate.MODE_ENV, "check")
    SqlShopStore(seeded_url).engine.dispose()  # current now: check mode starts


def test_downgrade_removes_the_tables_and_upgrade_recreates_them(empty_url: str) -> None:
    from alembic import command

    engine = make_engine(empty_url)
    try:
        migrate.ensure_schema(engine)
        with engine.begin() as c:
            command.downgrade(migrate.alembic_config(c), "base")
        assert not set(m.Base.metadata.tables) & set(sa.inspect(engine).get_table_names())
        assert migrate.ensure_schema(engine) == "upgraded"
    finally:
        engine.dispose()
    assert schema_diff(empty_url) == []
