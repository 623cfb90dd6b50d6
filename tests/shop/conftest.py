"""A small seeded shop per session; tests that change it get their own copy."""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from actions.shop.base import SHOP_TZ
from actions.shop.seed import SeedSize, seed_shop

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHOP_TZ)  # the demo orders' reference time
TINY = SeedSize(products_per_category=6, customers=60, orders=500)


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    seed_shop(f"sqlite:///{path}", seed=7, size=TINY, now=NOW)
    return path


@pytest.fixture(scope="session")
def seeded_postgres_template(postgres_server: Any) -> str:
    """The same seeded shop in a PostgreSQL database that tests copy (CREATE DATABASE ... TEMPLATE)."""
    url = postgres_server.create_database("shop_template")
    seed_shop(url, seed=7, size=TINY, now=NOW)
    return "shop_template"


@pytest.fixture()
def postgres_shop_url(postgres_server: Any, seeded_postgres_template: str) -> str:
    """A private copy of the seeded shop on a real PostgreSQL server."""
    postgres_server.execute('DROP DATABASE IF EXISTS "shop_test" WITH (FORCE)',
                            f'CREATE DATABASE "shop_test" TEMPLATE "{seeded_postgres_template}"')
    return postgres_server.url("shop_test")


@pytest.fixture()
def shop_url(seeded_db: Path, tmp_path: Path) -> str:
    """A private copy of the seeded shop (SQLite URL)."""
    copy = tmp_path / "shop.db"
    shutil.copy(seeded_db, copy)
    return f"sqlite:///{copy}"
