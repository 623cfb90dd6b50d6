"""The handoff store on a real SQLite file and a real PostgreSQL server: one behaviour suite.

Two store objects on one database stand for two workers (separate processes share nothing
but the database): claims, message ids and CSAT must hold across them.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from bot.handoff.store import ASSIGNED, QUEUED, RESOLVED, SQLHandoffStore


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], SQLHandoffStore]]:
    url = (request.getfixturevalue("postgres_url") if request.param == "postgres"
           else f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}")
    opened: list[SQLHandoffStore] = []

    def factory() -> SQLHandoffStore:
        store = SQLHandoffStore(url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


def handoff(handoff_id: str, conversation: str, **extra: Any) -> dict[str, Any]:
    return {"id": handoff_id, "conversation_id": conversation, "channel": "socketio", "reason": "complaint",
            "priority": 1, "queue": "after_sales:zh", "language": "zh", "skills": ["after_sales"], "tags": ["vip"],
            "customer_id": "42", "after_hours": False, "record": {"summary": "退款"}, "notes": [], **extra}


class TestSQLHandoffStore:
    @pytest.mark.asyncio
    async def test_rows_round_trip_json_and_booleans(self, make_store):
        store = make_store()
        created = await store.create(handoff("h1", "s1", after_hours=True, created_at=100.5))
        read = await store.get("h1")
        assert read == created
        assert read["skills"] == ["after_sales"] and read["record"] == {"summary": "退款"}
        assert read["after_hours"] is True and read["created_at"] == 100.5 and read["status"] == QUEUED
        assert [r["id"] for r in await store.list(after_hours=True)] == ["h1"]
        assert await store.list(after_hours=False) == []

    @pytest.mark.asyncio
    async def test_two_workers_claim_one_handoff_exactly_once(self, make_store):
        first, second = make_store(), make_store()
        await first.create(handoff("h2", "s2"))
        wins = await asyncio.gather(*[(first if i % 2 else second).try_assign("h2", f"agent-{i}") for i in range(10)])
        assert sum(wins) == 1
        row = await second.get("h2")
        assert row["status"] == ASSIGNED and row["agent_id"] == f"agent-{wins.index(True)}"

    @pytest.mark.asyncio
    async def test_a_message_id_is_stored_once_across_workers(self, make_store):
        first, second = make_store(), make_store()
        await first.create(handoff("h3", "s3"))
        results = await asyncio.gather(
            first.add_message("h3", "m1", "user", "你好", {"n": 1}),
            second.add_message("h3", "m1", "user", "你好", {"n": 1}))
        assert sorted(created for _, created in results) == [False, True]
        assert {row["seq"] for row, _ in results} == {results[0][0]["seq"]}
        await second.add_message("h3", "m2", "agent", "您好", agent_id="a1")
        stored = await first.messages("h3")
        assert [(m["message_id"], m["data"]) for m in stored] == [("m1", {"n": 1}), ("m2", {})]
        assert await first.messages("h3", after=stored[0]["seq"]) == stored[1:]

    @pytest.mark.asyncio
    async def test_resolve_then_rating_then_purge(self, make_store):
        store = make_store()
        await store.create(handoff("h4", "s4", created_at=10.0))
        assert await store.try_assign("h4", "a1") and await store.resolve("h4")
        pending = await store.csat_pending_for("s4")
        assert pending is not None and pending["csat_pending"] is True and pending["status"] == RESOLVED
        assert await store.set_csat("h4", 5) and not await store.set_csat("h4", 1)
        assert (await store.get("h4"))["csat"] == 5 and await store.csat_pending_for("s4") is None
        await store.update("h4", resolved_at=20.0)
        assert await store.purge_closed(cutoff=30.0, dry_run=True) == 1
        assert await store.purge_closed(cutoff=30.0) == 1 and await store.get("h4") is None

    @pytest.mark.asyncio
    async def test_erase_keeps_the_audit_trail_blanked(self, make_store):
        store = make_store()
        await store.create(handoff("h5", "s5"))
        await store.add_message("h5", "m1", "user", "我的电话 13812345678")
        await store.audit("agent:a1", "transcript.read", "h5", "s5", "read the transcript")
        assert await store.erase_customer(["s5"]) == 1
        assert await store.get("h5") is None and await store.messages("h5") == []
        (entry,) = await store.audit_log(handoff_id="h5")
        assert entry["conversation_id"] == "erased" and entry["detail"] == "" and entry["actor"] == "agent:a1"
