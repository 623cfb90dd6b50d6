"""Conversation-end survey ratings (bot-only conversations) count toward the CSAT-drop alert.

The ratings are given through the real survey (goodbye prompt, the shopper's stars) into a
real SQLite analytics store; handoff ratings go to a real SQLite handoff store; the alert
engine reads both through ``RATING_SOURCES`` as the feature wires them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.alerts.config import parse_alerts
from bot.alerts.engine import AlertEngine
from bot.alerts.ratings import RATING_SOURCES, SurveyRatings
from bot.alerts.signals import MemoryAlertState, MemorySignals, retention_minutes
from bot.analytics.config import AnalyticsConfig, SurveyConfig
from bot.analytics.ingest import Ingester
from bot.analytics.store import AnalyticsStore
from bot.analytics.survey import SurveyHook, SurveyService
from bot.handoff.store import SQLHandoffStore
from bot.shared.events import BotUttered, UserUttered
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker
from tests.analytics.history import T0, bot, user

RULES = {"rules": [{"name": "csat_low", "kind": "csat_drop", "window_minutes": 60, "threshold": 3.5,
                    "min_ratings": 3}]}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def said(text: str, intent: str, ts: float, entities: list | None = None) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, entities or [],
                       {"intent": {"name": intent}, "entities": entities or [], "language": "en"}, timestamp=ts)


class _Peer:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


@pytest.mark.asyncio
async def test_a_drop_in_bot_only_csat_fires_the_alert(tmp_path: Path) -> None:
    clock = Clock(T0 + 60)
    store = AnalyticsStore(f"sqlite:///{tmp_path / 'analytics.db'}")
    await store.open()
    handoffs = SQLHandoffStore(f"sqlite+aiosqlite:///{tmp_path / 'handoff.db'}")
    config = AnalyticsConfig(survey=SurveyConfig())
    ingester = Ingester(store, config)
    survey = SurveyService(config.survey, store, ingester, clock)
    hook = SurveyHook(survey)
    try:
        async def rate(sender: str, stars: int, minute: float) -> None:
            """A bot-only conversation that ends with goodbye and the shopper's stars."""
            start = T0 + minute * 60
            for body in (user(sender, start, "greet"), bot(sender, start + 1)):
                await ingester.handle(body)
            clock.now = start + 5
            tracker = DialogueStateTracker(sender, [])
            for event in (said("hi", "greet", start), BotUttered("hello"), said("bye", "goodbye", start + 4)):
                tracker.update(event)
            out = CollectingOutputChannel()
            await hook.after_turn(None, tracker, out)
            assert out.messages[-1]["custom"]["type"] == "csat"
            clock.now = start + 10
            tracker.update(said(str(stars), "csat", start + 10, [{"entity": "rating", "value": stars}]))
            assert await hook.after_user_message(None, tracker, out) is True

        # The feature's wiring: the "survey" row reads the analytics feature's store.
        peers = {"analytics": _Peer(store=store), "handoff": _Peer(service=_Peer(store=handoffs))}
        sources = [RATING_SOURCES[name](peers) for name in parse_alerts(RULES).rating_sources]
        assert [s.name for s in sources] == ["handoff", "survey"]  # both count by default
        assert RATING_SOURCES["survey"]({}) is None  # no analytics feature: no survey source
        alerts = parse_alerts(RULES)
        engine = AlertEngine(alerts, MemorySignals(retention_minutes(alerts)), MemoryAlertState(),
                             handoff_store=handoffs, ratings=sources, clock=clock)

        # One handoff rating of 5 (an agent's conversation), then bot-only ratings 4, 2, 1.
        row = await handoffs.create({"conversation_id": "h1", "reason": "complaint", "queue": "general",
                                     "created_at": T0, "status": "resolved", "resolved_at": T0 + 60,
                                     "csat_pending": True})
        assert await handoffs.set_csat(row["id"], 5)
        await rate("s1", 4, 2)
        clock.now = T0 + 5 * 60
        assert await engine.evaluate() == []  # (5 + 4) / 2 and only 2 ratings
        await rate("s2", 2, 6)
        await rate("s3", 1, 8)
        assert [(r.value, r.source) for r in sorted(await SurveyRatings(store).ratings(T0, T0 + 3600),
                                                     key=lambda r: r.at)] == [(4.0, "survey"), (2.0, "survey"),
                                                                               (1.0, "survey")]
        clock.now = T0 + 10 * 60
        fired = await engine.evaluate()
        assert [(t["rule"], t["state"]) for t in fired] == [("csat_low", "firing")]
        assert fired[0]["value"] == 3.0 and fired[0]["detail"]["count"] == 4  # (5 + 4 + 2 + 1) / 4

        # Handoff ratings alone would not have fired: the bot-only drop is what the alert saw.
        only_handoff = AlertEngine(alerts, MemorySignals(retention_minutes(alerts)), MemoryAlertState(),
                                   handoff_store=handoffs, ratings=[sources[0]], clock=clock)
        assert await only_handoff.evaluate() == []
    finally:
        await handoffs.close()
        await store.close()
