"""Presence, loads, live queue and notifications shared by several workers through one real Redis.

Two ``HandoffService`` instances on one SQLite file and one Redis stand in for two
Sanic workers (or two machines).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.handoff.presence import InMemoryPresence


async def escalate(service: Any, sender: str, language: str = "en") -> dict[str, Any]:
    from bot.handoff import Escalation
    from bot.shared.events import UserUttered
    from bot.shared.tracker import DialogueStateTracker

    tracker = DialogueStateTracker(sender, [])
    tracker.update(UserUttered("a human please", {"name": "request_human", "confidence": 1.0}, [],
                               {"language": language}, input_channel="test"))
    return await service.escalate(tracker, Escalation("request_human"), None, None)


async def two_workers(config: Any) -> tuple[Any, Any]:
    from bot.handoff import HandoffService

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    a = HandoffService(config, profile_provider=no_profile)
    b = HandoffService(config, profile_provider=no_profile)
    await a.start()
    await b.start()
    return a, b


def redis_config(config_factory: Any, redis_url: str, **overrides: Any) -> Any:
    return config_factory(queue={"type": "redis", "url": redis_url, "prefix": "kefu:test:"}, **overrides)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.redis
def test_presence_agent_on_worker_a_notified_of_handoff_escalated_on_worker_b(config_factory: Any,
                                                                              redis_url: str) -> None:
    async def scenario() -> None:
        a, b = await two_workers(redis_config(config_factory, redis_url))
        seen_on_a: list[dict[str, Any]] = []

        async def console(event: dict[str, Any]) -> None:  # alice's websocket lives on worker A
            seen_on_a.append(event)

        a.subscribe(console)
        await a.set_status("alice", "online")
        h = await escalate(b, "shopper-b")  # the shopper's message landed on worker B
        assert h["status"] == "assigned" and h["agent_id"] == "alice"  # B saw A's online agent
        await wait_for(lambda: any(e["type"] == "handoff_assigned" for e in seen_on_a))
        assigned = [e for e in seen_on_a if e["type"] == "handoff_assigned"]
        assert len(assigned) == 1 and assigned[0]["agent_id"] == "alice"
        assert assigned[0]["handoff"]["conversation_id"] == "shopper-b"
        assert (await a.agent_view("alice"))["load"] == 1  # the load B reserved is A's load too
        await a.close()
        await b.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_presence_claim_race_across_workers_has_one_winner(config_factory: Any, redis_url: str) -> None:
    from bot.handoff import HandoffError

    async def scenario() -> None:
        a, b = await two_workers(redis_config(config_factory, redis_url, auto_assign=False))
        h = await escalate(a, "race")
        await a.set_status("alice", "online")
        await b.set_status("sue", "online")
        results = await asyncio.gather(a.claim(h["id"], "alice"), b.claim(h["id"], "sue"), return_exceptions=True)
        wins = [r for r in results if isinstance(r, dict)]
        losses = [r for r in results if isinstance(r, HandoffError)]
        assert len(wins) == 1 and len(losses) == 1 and losses[0].status == 409
        winner = wins[0]["agent_id"]
        assert (await a.store.get(h["id"]))["agent_id"] == winner
        views = {v["id"]: v["load"] for v in await b.agent_views()}
        assert views["alice"] + views["sue"] == 1 and views[winner] == 1  # the loser's reservation was released
        assert await a.queue.position(h["id"]) is None and await b.queue.ordered() == []
        await a.close()
        await b.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_presence_concurrent_routing_never_overfills_an_agent(config_factory: Any, redis_url: str) -> None:
    agents = [{"id": "solo", "name": "Solo", "skills": ["general"], "languages": ["en"],
               "max_concurrent": 2}]

    async def scenario() -> None:
        a, b = await two_workers(redis_config(config_factory, redis_url, agents=agents))
        await a.set_status("solo", "online")
        await asyncio.gather(*(escalate(a if i % 2 else b, f"s{i}") for i in range(6)))
        assigned = await a.store.list(("assigned",))
        assert len(assigned) == 2 and {h["agent_id"] for h in assigned} == {"solo"}
        assert len(await b.queue.ordered()) == 4
        assert (await b.agent_view("solo"))["load"] == 2
        await a.close()
        await b.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_presence_expires_without_heartbeat_and_requeues_once(config_factory: Any, redis_url: str) -> None:
    async def scenario() -> None:
        a, b = await two_workers(redis_config(config_factory, redis_url, presence_ttl_s=0.4))
        try:
            await expire_scenario(a, b)
        finally:
            await a.close()
            await b.close()

    async def expire_scenario(a: Any, b: Any) -> None:
        await a.set_status("alice", "online")
        await b.set_status("sue", "online")
        h = await escalate(a, "crash", language="zh")  # only alice speaks zh
        assert h["agent_id"] == "alice"
        seen_on_b: list[dict[str, Any]] = []

        async def console(event: dict[str, Any]) -> None:
            seen_on_b.append(event)

        b.subscribe(console)
        for _ in range(8):  # sue's console keeps beating, alice's browser crashed
            await asyncio.sleep(0.1)
            assert await b.heartbeat("sue")
        await wait_for(lambda: any(e["type"] == "agent_status" and e["agent"]["id"] == "alice" for e in seen_on_b))
        views = {v["id"]: v for v in await a.agent_views()}
        assert views["alice"]["status"] == "away" and views["alice"]["load"] == 0
        assert views["sue"]["status"] == "online"
        stored = await a.store.get(h["id"])
        assert stored["status"] == "queued" and stored["agent_id"] is None
        assert await a.queue.position(h["id"]) == 1
        audit = [r for r in await a.store.audit_log(handoff_id=h["id"]) if r["action"] == "requeue_presence_expired"]
        assert len(audit) == 1  # both workers sweep; exactly one requeued it
        assert not await a.heartbeat("alice")  # a late beat does not revive an expired agent

    asyncio.run(scenario())


def test_presence_in_memory_ttl_follows_the_clock() -> None:
    now = [1000.0]
    presence = InMemoryPresence(ttl_s=30, clock=lambda: now[0])

    async def scenario() -> None:
        await presence.set_online("alice")
        assert await presence.reserve("alice", "h1", limit=1)
        assert not await presence.reserve("alice", "h2", limit=1)  # at her limit
        now[0] += 20
        assert await presence.heartbeat("alice")
        now[0] += 20
        assert await presence.expired(["alice"]) == []  # the beat moved the deadline
        now[0] += 31
        assert (await presence.snapshot(["alice"]))["alice"] == (False, {"h1"})
        assert await presence.expired(["alice"]) == ["alice"]
        assert await presence.expired(["alice"]) == []  # reported once
        assert not await presence.reserve("alice", "h3", limit=None)  # away agents get no new work

    asyncio.run(scenario())


def test_presence_config_from_endpoints_redis_lock_store(tmp_path: Path) -> None:
    from bot.handoff import HandoffConfig

    (tmp_path / "config.yml").write_text("handoff:\n  agents: []\n", encoding="utf-8")
    (tmp_path / "endpoints.yml").write_text("lock_store:\n  type: redis\n  url: cache.local\n  port: 6380\n  db: 2\n",
                                            encoding="utf-8")
    config = HandoffConfig.from_project(tmp_path)
    assert config.queue == {"type": "redis", "url": "redis://cache.local:6380/2"}
