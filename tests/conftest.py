"""Root conftest: offline model hubs, repository paths."""
from __future__ import annotations

import os
from typing import Iterator
from pathlib import Path

import pytest

from tests.redis_server import INSTALL_HINT, RedisServer, find_redis_server, redis_skipped
from tests import postgres_server as pg

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
RASA_EXAMPLES = REPO_ROOT.parent / "shared" / "benchmarks" / "rasa_examples"

#: the suite's longest tests (minutes each: the public projects' trainings, DIET 150-200 epochs
#: as they configure it), started first so that the two xdist workers finish together
#: instead of one of them starting a three-minute training near the end
LONGEST_FIRST = ("tests/integration/test_rasa_projects.py::test_rasa_project_trains_and_passes_test_stories",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("[")[0] not in LONGEST_FIRST)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def require_shared(path: Path) -> Path:
    """A folder of ``../shared`` (public data the repository does not ship).

    Missing on a fresh clone: the test is skipped with the reason. Under ``CI=true`` it
    is required, so CI never passes by skipping.
    """
    if path.exists():
        return path
    message = (f"{path} not found: these tests use the public Rasa projects and data sets in ../shared/, "
               "which a clone of this repository alone does not have")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (required under CI=true)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def rasa_examples() -> Path:
    return require_shared(RASA_EXAMPLES)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (FAILS when missing, see module doc)."""
    if find_redis_server() is None:
        if redis_skipped():
            pytest.skip("redis-server not installed and KEFU_SKIP_REDIS=1")
        pytest.fail(f"redis-server not found; tests marked 'redis' need it. {INSTALL_HINT}")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of an empty Redis (flushed before each test)."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """One PostgreSQL server for the whole session (FAILS when missing unless KEFU_SKIP_POSTGRES=1)."""
    if pg.find_pg_bin() is None:
        if pg.postgres_skipped():
            pytest.skip("PostgreSQL not installed and KEFU_SKIP_POSTGRES=1")
        pytest.fail(f"PostgreSQL not found; tests marked 'postgres' need it. {pg.INSTALL_HINT}")
    with pg.PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: pg.PostgresServer) -> str:
    """``postgresql+psycopg://`` URL of an empty database (its schema dropped before each test)."""
    return postgres_server.reset_database("kefu_test")


@pytest.fixture(autouse=True)
def _restore_actions_package() -> Iterator[None]:
    """Agents import a project's ``actions`` package (tests use several projects);
    put the repository's own ``actions`` package and ``sys.path`` back afterwards."""
    import sys

    path_before = list(sys.path)
    modules_before = {k: v for k, v in sys.modules.items() if k == "actions" or k.startswith("actions.")}
    yield
    current = {k for k in sys.modules if k == "actions" or k.startswith("actions.")}
    if current != set(modules_before) or any(sys.modules.get(k) is not v for k, v in modules_before.items()):
        for name in current:
            del sys.modules[name]
        sys.modules.update(modules_before)
    if sys.path != path_before:
        sys.path[:] = path_before
