"""The analytics feature on a real agent: its hook, the in-process broker, the survey and the figures.

The tiny handoff bot (tests/handoff/data/project) has no goodbye intent, so this test names
``shoes`` as the conversation-ending intent; the survey's contract does not depend on the name.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.api import dashboard_payload
from bot.analytics.config import AnalyticsConfig, SurveyConfig
from bot.analytics.feature import AnalyticsFeature
from bot.analytics.store import Filters
from tests.handoff.conftest import handoff_model  # noqa: F401  (the session fixture: the bot trained once)
from tests.handoff.helpers import CapturingChannel, ChannelProvider, outputs


async def say(agent: Any, sender: str, text: str) -> list[dict]:
    from bot.shared.message import CollectingOutputChannel, UserMessage

    out = CollectingOutputChannel()
    await agent.handle_message(UserMessage(text, out, sender, input_channel="test"))
    return out.messages


@pytest.mark.slow  # trains the tiny handoff bot once per session (~40 s alone; shared with tests/handoff)
@pytest.mark.asyncio
async def test_goodbye_survey_and_figures_on_a_real_agent(handoff_model: Path, tmp_path: Path) -> None:  # noqa: F811
    from bot.agent import Agent
    from bot.feature import ProjectSettings
    from bot.server.features import FeatureSet
    from bot.stores.event_broker import InProcessEventBroker

    agent = Agent(event_broker=InProcessEventBroker(), action_package=None)
    await agent.load_model(handoff_model)
    config = AnalyticsConfig(survey=SurveyConfig(goodbye_intents=("shoes",), comment=False, ces=True))
    feature = AnalyticsFeature(config, f"sqlite:///{tmp_path / 'analytics.db'}")
    features = FeatureSet([feature])
    await features.start(agent, outputs(ChannelProvider("test", CapturingChannel())), ProjectSettings(root=None))
    try:
        assert (await say(agent, "s1", "hi"))[0]["text"] == "Hi! How can I help you today?"
        replies = await say(agent, "s1", "shoes")
        assert replies[0]["text"] == "Our bestseller is the Trail runner X."
        assert replies[-1]["custom"]["type"] == "csat" and replies[-1]["custom"]["scale"] == 5
        replies = await say(agent, "s1", '/csat{"rating": 4}')
        assert replies[-1]["custom"]["entity"] == "ces" and replies[-1]["custom"]["scale"] == 7
        replies = await say(agent, "s1", "2")
        assert replies[-1]["text"] == "Thanks for your feedback! Ask me anything else any time."
        # the next goodbye the same day asks nothing
        assert all("custom" not in r for r in await say(agent, "s1", "shoes"))

        tracker = await agent.get_tracker("s1")
        rating = [e for e in tracker.events if e.type_name == "user" and e.intent_name == "csat"]
        assert [e.entities[0]["value"] for e in rating] == [4]  # the Rasa way: intent + entity
        recorded = [e.metadata["survey"] for e in tracker.events if e.type_name == "bot" and "survey" in (e.metadata or {})]
        assert [(r.get("kind"), r.get("score")) for r in recorded] == [(None, None), ("csat", 4), ("ces", 2)]

        await feature.ingester.flush()
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        payload = await dashboard_payload(feature.store, Filters(today, today))
        figures = payload["figures"]
        assert figures["conversations"] == 1 and figures["csat"] == 4.0 and figures["ces"] == 2.0
        assert figures["escalation_rate"] == 0.0 and figures["frt_bot"] is not None
        assert payload["tables"]["top_intents"] == [{"name": "shoes", "count": 2}, {"name": "greet", "count": 1}]
        assert payload["tables"]["csat_by_intent"] == [{"intent": "greet", "ratings": 1, "csat": 4.0, "nps": None,
                                                         "ces": 2.0}]
        assert payload["tables"]["csat_by_agent"] == [{"agent": "bot", "ratings": 1, "csat": 4.0, "nps": None,
                                                        "ces": 2.0}]
    finally:
        await features.stop()
        await agent.close()
