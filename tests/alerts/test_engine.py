"""Alert rules over a known history: exactly when each fires, that it fires once, and when it clears.

Messages go through the real processor hook into the signal store (memory, and a real
redis-server), handoffs and ratings into a real SQLite handoff store; the clock is the
test's, so every evaluation time is exact. Windows count whole minutes, so events are
placed a few seconds into their minute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.alerts.config import parse_alerts
from bot.alerts.engine import AlertEngine
from bot.alerts.ratings import HandoffRatings
from bot.alerts.signals import (MemoryAlertState, MemorySignals, RedisAlertState, RedisSignals, SignalHook,
                                retention_minutes)
from bot.handoff.store import SQLHandoffStore
from bot.shared.events import UserUttered
from bot.shared.tracker import DialogueStateTracker

T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def at(minute: float, second: float = 5.0) -> float:
    return T0 + minute * 60 + second


RULES = {
    "rules": [
        {"name": "complaints_up", "kind": "complaint_spike", "window_minutes": 10, "baseline_minutes": 60,
         "factor": 2, "min_count": 3, "intents": ["complaint"], "negative_sentiment": False},
        {"name": "csat_low", "kind": "csat_drop", "window_minutes": 60, "threshold": 3.5, "min_ratings": 3},
        {"name": "queue_slow", "kind": "queue_wait", "max_wait_minutes": 5},
        {"name": "escalations_high", "kind": "escalation_rate", "window_minutes": 60, "threshold": 0.5,
         "min_conversations": 4},
    ]
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def stores(request: pytest.FixtureRequest) -> Any:
    config = parse_alerts(RULES)
    if request.param == "memory":
        return MemorySignals(retention_minutes(config)), MemoryAlertState()
    redis_url = request.getfixturevalue("redis_url")
    from bot.stores._common import redis_client

    client = redis_client(redis_url)
    return RedisSignals(client, retention_minutes(config)), RedisAlertState(client)


@pytest_asyncio.fixture
async def world(stores: Any, tmp_path: Path) -> Any:
    signals, state = stores
    config = parse_alerts(RULES)
    clock = Clock()
    handoffs = SQLHandoffStore(f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}")
    sent: list[dict[str, Any]] = []

    async def notify(event: dict[str, Any]) -> None:
        sent.append(event)

    engine = AlertEngine(config, signals, state, handoff_store=handoffs, ratings=[HandoffRatings(handoffs)],
                         notify=notify, clock=clock)
    hook = SignalHook(config, signals, clock)
    yield engine, hook, clock, handoffs, sent
    await handoffs.close()
    await signals.close()


async def say(hook: SignalHook, clock: Clock, when: float, sender: str, intent: str,
              sentiment: str = "neutral") -> None:
    clock.now = when
    tracker = DialogueStateTracker(sender)
    tracker.update(UserUttered("…", parse_data={"intent": {"name": intent, "confidence": 0.9},
                                                "sentiment": {"label": sentiment, "score": -0.8}}))
    assert await hook.after_user_message(None, tracker, None) is False  # never handles the turn


def states(transitions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t["rule"], t["state"]) for t in transitions]


@pytest.mark.asyncio
async def test_complaint_spike_fires_once_at_the_threshold_and_clears(world):
    engine, hook, clock, _, sent = world
    for minute in (0, 10, 20, 30, 40, 50):  # the usual rate: 6 per hour, 1 per 10 minutes
        await say(hook, clock, at(minute), f"base-{minute}", "complaint")
    await say(hook, clock, at(55), "happy", "greet", "positive")  # neither complaint nor negative
    await say(hook, clock, at(65), "c1", "complaint")
    await say(hook, clock, at(65, 30), "c2", "greet", "negative")  # counts? not for this rule: intents only
    await say(hook, clock, at(66), "c3", "complaint")
    assert await engine.evaluate(at(70, 0)) == []  # 2 complaints < max(min_count 3, 2 x usual 1)

    await say(hook, clock, at(68), "c4", "complaint")
    fired = await engine.evaluate(at(70, 0))
    assert states(fired) == [("complaints_up", "firing")]
    assert fired[0]["value"] == 3 and fired[0]["detail"]["expected"] == 1.0
    assert "3" in fired[0]["message"]["en"] and "投诉" in fired[0]["message"]["zh"]
    assert await engine.evaluate(at(71, 0)) == []  # still holds: no second alert
    assert [a["rule"] for a in (await engine.state.active()).values()] == ["complaints_up"]

    cleared = await engine.evaluate(at(77, 0))  # window 67..76: only minute 68's complaint is left
    assert states(cleared) == [("complaints_up", "cleared")]
    assert await engine.state.active() == {}
    assert [e["alert"]["state"] for e in sent] == ["firing", "cleared"]
    assert all(e["type"] == "alert" for e in sent)
    recent = await engine.state.recent()
    assert [r["state"] for r in recent] == ["cleared", "firing"]


@pytest.mark.asyncio
async def test_negative_sentiment_counts_when_the_rule_says_so(stores, tmp_path):
    signals, state = stores
    config = parse_alerts({"rules": [{"name": "angry", "kind": "complaint_spike", "window_minutes": 5,
                                      "baseline_minutes": 60, "factor": 3, "min_count": 2,
                                      "intents": ["complaint"], "negative_sentiment": True}]})
    clock = Clock()
    hook = SignalHook(config, signals, clock)
    engine = AlertEngine(config, signals, state, clock=clock)
    await say(hook, clock, at(1), "a", "order_status", "negative")
    assert await engine.evaluate(at(3, 0)) == []
    await say(hook, clock, at(2), "b", "complaint", "negative")  # both: counted once
    assert states(await engine.evaluate(at(3, 0))) == [("angry", "firing")]
    assert (await engine.state.active())["angry"]["value"] == 2
    await signals.close()


@pytest.mark.asyncio
async def test_queue_wait_fires_after_the_limit_and_clears_when_claimed(world):
    engine, _, _, handoffs, sent = world
    row = await handoffs.create({"conversation_id": "waiting-1", "reason": "request_human", "queue": "general",
                                 "created_at": at(100, 0)})
    assert await engine.evaluate(at(105, 0)) == []  # exactly 5 minutes is not over 5
    fired = await engine.evaluate(at(105, 30))
    assert states(fired) == [("queue_slow", "firing")] and fired[0]["value"] == 5.5
    assert await engine.evaluate(at(108, 0)) == []
    assert await handoffs.try_assign(row["id"], "alice")
    assert states(await engine.evaluate(at(109, 0))) == [("queue_slow", "cleared")]
    assert [e["alert"]["rule"] for e in sent] == ["queue_slow", "queue_slow"]


@pytest.mark.asyncio
async def test_csat_drop_needs_enough_ratings_below_the_threshold(world):
    engine, _, _, handoffs, _ = world

    async def rated(conversation: str, stars: int, minute: float) -> None:
        row = await handoffs.create({"conversation_id": conversation, "reason": "complaint", "queue": "general",
                                     "created_at": at(minute - 5), "status": "resolved",
                                     "resolved_at": at(minute), "csat_pending": True})
        assert await handoffs.set_csat(row["id"], stars)

    await rated("r1", 5, 200)
    await rated("r2", 2, 210)
    assert await engine.evaluate(at(215, 0)) == []  # 3.5 average, and only 2 ratings
    await rated("r3", 2, 220)
    fired = await engine.evaluate(at(221, 0))
    assert states(fired) == [("csat_low", "firing")]
    assert fired[0]["value"] == 3.0 and fired[0]["detail"]["count"] == 3
    await rated("r4", 5, 230)  # (5 + 2 + 2 + 5) / 4 = 3.5: not below 3.5
    assert states(await engine.evaluate(at(231, 0))) == [("csat_low", "cleared")]


@pytest.mark.asyncio
async def test_escalation_rate_is_escalations_over_conversations(world):
    engine, hook, clock, handoffs, _ = world
    for i, minute in enumerate((300, 301, 302, 303)):
        await say(hook, clock, at(minute), f"conv-{i}", "greet")
        await say(hook, clock, at(minute, 20), f"conv-{i}", "order_status")  # the same conversation again
    await handoffs.create({"conversation_id": "conv-0", "reason": "complaint", "queue": "general",
                           "created_at": at(304), "status": "resolved"})
    assert await engine.evaluate(at(310, 0)) == []  # 1 / 4 conversations
    await handoffs.create({"conversation_id": "conv-1", "reason": "request_human", "queue": "general",
                           "created_at": at(305), "status": "resolved"})
    fired = await engine.evaluate(at(310, 0))
    assert states(fired) == [("escalations_high", "firing")]
    assert fired[0]["value"] == 0.5 and fired[0]["detail"] == {"count": 4, "escalations": 2}
    assert states(await engine.evaluate(at(361, 0))) == [("escalations_high", "cleared")]  # the window moved on


@pytest.mark.asyncio
async def test_a_rule_whose_data_cannot_be_read_keeps_its_state(world):
    engine, _, _, handoffs, sent = world
    await handoffs.create({"conversation_id": "w", "reason": "request_human", "queue": "general",
                           "created_at": at(400, 0)})
    assert states(await engine.evaluate(at(410, 0))) == [("queue_slow", "firing")]
    await handoffs.close()

    class Broken:
        async def list(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("db down")

    engine.handoff_store = Broken()
    assert await engine.evaluate(at(411, 0)) == []  # neither cleared nor fired again
    assert "queue_slow" in await engine.state.active()
    assert "queue_slow: ConnectionError" in engine.errors
    assert len(sent) == 1
