"""Fixtures for trigger tests: a test clock, a SQLite store, a real Redis queue, a recording sender."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from bot.triggers.clock import TestClock
from bot.triggers.engine import TriggerEngine
from bot.triggers.journeys import load_triggers_text
from bot.triggers.queue import RedisJobQueue, SQLJobQueue
from bot.triggers.senders import Outgoing
from bot.triggers.store import SQLTriggerStore

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_ts(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp()


class RecordingSender:
    """Counts deliveries per send id; like a real idempotent channel, a repeated send id is not re-delivered."""

    def __init__(self) -> None:
        self.delivered: list[Outgoing] = []
        self.attempts: dict[str, int] = {}
        self.block_at: int | None = None  # the Nth delivery never returns (a worker dying mid-send)
        self.blocked: dict[str, str] = {}  # customer -> skip reason (channel rule)

    async def check(self, outgoing: Outgoing) -> Any:
        from bot.triggers.guards import Verdict

        reason = self.blocked.get(outgoing.customer_id)
        return Verdict.skip(reason) if reason else None

    async def send(self, outgoing: Outgoing) -> str:
        self.attempts[outgoing.send_id] = self.attempts.get(outgoing.send_id, 0) + 1
        if all(o.send_id != outgoing.send_id for o in self.delivered):
            self.delivered.append(outgoing)
        if self.block_at is not None and len(self.delivered) == self.block_at:
            await asyncio.Event().wait()  # the scheduler "dies" here when cancelled
        return "test"

    def to(self, customer: str) -> list[Outgoing]:
        return [o for o in self.delivered if o.customer_id == customer]


TEST_TRIGGERS = """
settings:
  timezone: Asia/Shanghai
  quiet_hours: {start: "21:00", end: "09:00"}
  frequency_caps: {per_day: 1, per_week: 3}
journeys:
  abandoned_cart:
    entry:
      event: cart_item_added
    exit_on:
      - event: order_paid
    reentry: after_exit
    steps:
      - name: reminder
        delay: 48h
        response: utter_cart_reminder
        slots: {product: properties.product_name}
  delivered_survey:
    entry: {event: order_delivered}
    exit_on: [return_requested]
    steps:
      - name: ask
        delay: 2s
        response: utter_delivery_survey
  shipped_notice:
    priority: transactional
    entry: {event: order_shipped}
    steps:
      - name: notice
        delay: 1s
        response: utter_order_shipped
  welcome:
    entry: {event: subscribed}
    steps:
      - name: hello
        delay: 1h
        variants:
          - {name: A, weight: 1, response: utter_welcome_a}
          - {name: B, weight: 1, response: utter_welcome_b}
"""


# The cap tests backdate entry events so that steps 48 h later fall due at once; a backdated
# event starts a journey only within max_event_age (24 h by default), so they allow 3 days.
BACKDATING_TRIGGERS = TEST_TRIGGERS.replace("  frequency_caps:", "  max_event_age: 3d\n  frequency_caps:", 1)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(local_ts(2026, 11, 20, 10, 0))


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest_asyncio.fixture
async def store(tmp_path: Any) -> AsyncIterator[SQLTriggerStore]:
    s = SQLTriggerStore(f"sqlite+aiosqlite:///{tmp_path / 'triggers.db'}")
    await s.setup()
    yield s
    await s.close()


@pytest_asyncio.fixture
async def redis_queue(redis_url: str) -> AsyncIterator[RedisJobQueue]:
    q = RedisJobQueue(redis_url, prefix="test:triggers")
    yield q
    await q.close()


@pytest_asyncio.fixture
async def sql_queue(store: SQLTriggerStore) -> SQLJobQueue:
    return SQLJobQueue(store.engine)


def make_engine(store: Any, queue: Any, sender: Any, clock: TestClock, text: str = TEST_TRIGGERS, **kwargs: Any) -> TriggerEngine:
    return TriggerEngine(load_triggers_text(text), store, queue, sender, clock, **kwargs)


class Backend:
    """A store + queue pair on shared data; ``open()`` again simulates a restarted worker."""

    def __init__(self, name: str, tmp_path: Any, redis_url: str | None = None,
                 postgres_url: str | None = None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.postgres_url = postgres_url
        self._opened: list[Any] = []

    async def open(self) -> tuple[Any, Any]:
        if self.name == "redis":
            from bot.triggers.redis_store import RedisTriggerStore

            store: Any = RedisTriggerStore(self.redis_url, prefix="test:triggers")
            queue: Any = RedisJobQueue(self.redis_url, prefix="test:triggers")
            self._opened.extend([store, queue])
        else:
            store = SQLTriggerStore(self.postgres_url or f"sqlite+aiosqlite:///{self.tmp_path / 'triggers.db'}")
            await store.setup()
            queue = SQLJobQueue(store.engine)
            self._opened.append(store)
        return store, queue

    async def close(self) -> None:
        for thing in reversed(self._opened):
            try:
                await thing.close()
            except Exception:  # noqa: BLE001 - already closed by the test (a "killed" worker)
                pass


@pytest_asyncio.fixture(params=["sql", "redis", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: Any, tmp_path: Any) -> AsyncIterator[Backend]:
    """The embedded default (SQLite store + SQL queue), production with Redis (Redis store + Redis
    queue) and production with PostgreSQL (SQL store + SQL queue on a real server)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    pg_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    b = Backend(request.param, tmp_path, url, pg_url)
    yield b
    await b.close()
