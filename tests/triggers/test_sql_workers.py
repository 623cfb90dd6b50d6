"""Several workers on one SQL trigger store (a SQLite file, a real PostgreSQL server).

Each "worker" is a store with its own engine and connection pool, as separate processes
would have: a due job is leased to exactly one of them, and a frequency cap holds when
they reserve sends for one customer at the same moment.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest
import pytest_asyncio

from bot.triggers.queue import Job, SQLJobQueue
from bot.triggers.store import Reservation, SQLTriggerStore

WORKERS = 4


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def open_worker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], SQLTriggerStore]]:
    url = (request.getfixturevalue("postgres_url") if request.param == "postgres"
           else f"sqlite+aiosqlite:///{tmp_path / 'triggers.db'}")
    opened: list[SQLTriggerStore] = []

    def factory() -> SQLTriggerStore:
        store = SQLTriggerStore(url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.mark.asyncio
async def test_each_due_job_is_leased_to_one_worker(open_worker):
    stores = [open_worker() for _ in range(WORKERS)]
    for store in stores:  # every worker migrates at start; the lock lets one do it
        await store.setup()
    queues = [SQLJobQueue(store.engine) for store in stores]
    assert await queues[0].enqueue_many([Job(f"job-{i:03d}", due=float(i % 7)) for i in range(240)]) == 240
    claimed: dict[str, list[int]] = {}

    async def work(worker: int) -> None:
        while True:
            jobs = await queues[worker].claim(now=10.0, limit=9, lease_s=600.0)
            if not jobs:
                return
            for job in jobs:
                claimed.setdefault(job.id, []).append(worker)
            await asyncio.sleep(0)

    await asyncio.gather(*(work(w) for w in range(WORKERS)))
    assert len(claimed) == 240
    doubles = {job: workers for job, workers in claimed.items() if len(workers) > 1}
    assert doubles == {}
    assert await queues[1].size() == {"due": 0, "in_flight": 240}
    # An expired lease is claimable again (a worker died holding it), by one worker.
    again = await asyncio.gather(*(q.claim(now=1000.0, limit=300, lease_s=600.0) for q in queues))
    assert sorted(j.id for batch in again for j in batch) == sorted(claimed)


@pytest.mark.asyncio
@pytest.mark.parametrize("with_profile", [True, False])
async def test_a_daily_cap_of_one_holds_across_workers(open_worker, with_profile):
    stores = [open_worker() for _ in range(WORKERS)]
    for store in stores:
        await store.setup()
    if with_profile:  # a customer the store knows, and one it has never seen (no profile row)
        await stores[0].update_profile("c1", {"name": "Li"}, at=1.0)

    def reservation(i: int) -> Reservation:
        return Reservation(f"send-{i}", "c1", "cart", "remind", "a", "msg", transactional=False)

    results = await asyncio.gather(*(stores[i].reserve_sends([reservation(i)], 100.0, per_day=1, per_week=None)
                                     for i in range(WORKERS)))
    statuses = sorted(status for (status,) in results)
    assert statuses == ["frequency_cap_day"] * (WORKERS - 1) + ["reserved"]
    # The same send id again is "pending" (an idempotent retry), not a second reservation.
    winner = next(i for i, (status,) in enumerate(results) if status == "reserved")
    assert await stores[(winner + 1) % WORKERS].reserve_sends([reservation(winner)], 101.0, 1, None) == ["pending"]


@pytest.mark.asyncio
async def test_workers_racing_on_one_id_store_it_once(open_worker):
    """The same behaviour event, journey entry and profile change arriving at every worker at once."""
    from bot.triggers.events import BehaviourEvent
    from bot.triggers.store import Instance, SendRecord

    stores = [open_worker() for _ in range(WORKERS)]
    for store in stores:
        await store.setup()
    event = BehaviourEvent.from_dict({"id": "evt-1", "customer_id": "c7", "type": "order_paid", "timestamp": 50.0,
                                      "properties": {}})
    existing = await asyncio.gather(*(s.add_events([event]) for s in stores))
    assert sorted(existing) == [[]] + [["evt-1"]] * (WORKERS - 1)
    instance = Instance("c7:care:50", "c7", "care", 50.0, "c7")
    created = await asyncio.gather(*(s.create_instance(instance) for s in stores))
    assert sorted(created) == [False] * (WORKERS - 1) + [True]
    send = SendRecord("send-c7", "c7", "care", "day1", "a", "sent", 51.0, 52.0)
    converted = await asyncio.gather(*(s.record_conversion(send, f"evt-{i}", 60.0) for i, s in enumerate(stores)))
    assert sorted(converted) == [False] * (WORKERS - 1) + [True]
    await asyncio.gather(*(s.update_profile("c7", {f"k{i}": i}, at=70.0 + i) for i, s in enumerate(stores)))
    profile = await stores[0].get_profile("c7")
    assert {k: profile[k] for k in profile if k.startswith("k")} == {f"k{i}": i for i in range(WORKERS)}
    await asyncio.gather(*(s.stop_variant("care", "day1", "a", at=80.0 + i) for i, s in enumerate(stores)))
    assert list(await stores[1].stopped_variants()) == [("care", "day1", "a")]


@pytest.mark.asyncio
async def test_export_erase_and_purge_of_a_customer(open_worker):
    """Privacy and retention on the trigger tables (PIPL/GDPR): export all, erase to a tombstone, purge old events."""
    from bot.triggers.events import BehaviourEvent
    from bot.triggers.store import Instance

    store = open_worker()
    for i, ts in enumerate((10.0, 20.0, 500.0)):
        await store.add_event(BehaviourEvent.from_dict({"id": f"e{i}", "customer_id": "c9", "type": "order_paid",
                                                        "timestamp": ts, "properties": {"n": i}}))
    await store.add_event(BehaviourEvent.from_dict({"id": "other", "customer_id": "c8", "type": "order_paid",
                                                    "timestamp": 15.0, "properties": {}}))
    await store.update_profile("c9", {"city": "杭州"}, at=30.0)
    await store.create_instance(Instance("c9:care:10", "c9", "care", 10.0, "wx-c9", {"id": "e0"}))
    exported = await store.export_customer("c9")
    assert [e["id"] for e in exported["events"]] == ["e0", "e1", "e2"]
    assert exported["profile"]["city"] == "杭州" and exported["instances"][0]["body"]["sender_id"] == "wx-c9"
    assert await store.purge_events(cutoff=100.0, dry_run=True) == 3
    assert await store.purge_events(cutoff=100.0, batch=2) == 3
    assert [e.id for e in await store.events_for("c9")] == ["e2"] and await store.events_for("c8") == []
    counts = await store.erase_customer("c9", at=600.0)
    assert counts["events"] == 1 and counts["instances"] == 1 and counts["profile"] == 1
    profile = await store.get_profile("c9")
    assert profile == {"erased_at": 600.0, "opted_out": True}
