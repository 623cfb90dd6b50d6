"""The conversation-end survey: goodbye and inactivity prompts, answers, once a day, sampling, events."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.api import dashboard_payload
from bot.analytics.config import AnalyticsConfig, SurveyConfig
from bot.analytics.ingest import Ingester
from bot.analytics.store import AnalyticsStore, Filters
from bot.analytics.survey import SurveyHook, SurveyService, comment_from, sampled
from bot.shared.events import BotUttered, Event, UserUttered
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker
from bot.stores.tracker_store import InMemoryTrackerStore
from tests.analytics.history import T0, bot, user
from tests.handoff.helpers import CapturingChannel, ChannelProvider, outputs

DAY = "2026-11-02"


def said(text: str, intent: str, language: str = "en", entities: list | None = None, ts: float = T0) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, entities or [],
                       {"intent": {"name": intent}, "entities": entities or [], "language": language}, timestamp=ts)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _service(tmp_path: Path, **survey: Any) -> tuple[SurveyService, Clock]:
    store = AnalyticsStore(f"sqlite:///{tmp_path / 'analytics.db'}")
    await store.open()
    config = AnalyticsConfig(survey=SurveyConfig(**survey))
    ingester = Ingester(store, config)
    for body in (user("s1", T0, "greet"), bot("s1", T0 + 1), user("s2", T0, "greet", "wechat"), bot("s2", T0 + 2)):
        await ingester.handle(body)
    clock = Clock(T0 + 60)
    return SurveyService(config.survey, store, ingester, clock), clock


def _tracker(sender: str, language: str = "en", *extra: Event) -> DialogueStateTracker:
    tracker = DialogueStateTracker(sender, [])
    for event in (said("hi", "greet", language), BotUttered("hello"), *extra, said("bye", "goodbye", language)):
        tracker.update(event)
    return tracker


@pytest.mark.asyncio
async def test_goodbye_then_stars_comment_and_nps_are_recorded(tmp_path: Path) -> None:
    service, _ = await _service(tmp_path, nps=True)
    hook, out, tracker = SurveyHook(service), CollectingOutputChannel(), _tracker("s1")
    try:
        await hook.after_turn(None, tracker, out)
        ask = out.messages[-1]["custom"]
        assert ask["type"] == "csat" and ask["scale"] == 5 and ask["min"] == 1 and ask["intent"] == "csat"
        assert ask["text"].startswith("How would you rate")
        assert tracker.events[-1].metadata["survey"]["step"] == "csat"

        tracker.update(said('/csat{"rating": 5}', "csat", entities=[{"entity": "rating", "value": 5}]))
        assert await hook.after_user_message(None, tracker, out) is True
        assert out.messages[-1]["custom"]["type"] == "survey_comment"
        assert tracker.events[-1].metadata["survey"] == {"id": ask["survey_id"], "kind": "csat", "score": 5,
                                                         "next": "comment"}
        tracker.update(said("Fast and friendly", "thank"))
        assert await hook.after_user_message(None, tracker, out) is True
        nps = out.messages[-1]["custom"]
        assert nps["type"] == "csat" and nps["min"] == 0 and nps["scale"] == 10 and nps["entity"] == "nps"
        tracker.update(said("9", "nlu_fallback"))
        assert await hook.after_user_message(None, tracker, out) is True
        assert out.messages[-1]["text"] == "Thanks for your feedback! Ask me anything else any time."
        # a later message is an ordinary message again
        tracker.update(said("where is my order", "order_status"))
        assert await hook.after_user_message(None, tracker, out) is False

        figures = (await dashboard_payload(service.store, Filters(DAY, DAY)))["figures"]
        assert figures["csat"] == 5.0 and figures["surveys"] == 1 and figures["nps"] == 100.0
        by_agent = (await dashboard_payload(service.store, Filters(DAY, DAY)))["tables"]["csat_by_agent"]
        assert by_agent == [{"agent": "bot", "ratings": 1, "csat": 5.0, "nps": 100.0, "ces": None}]
        rows = await service.store.surveys_between(Filters(DAY, DAY))
        assert [(r["csat"], r["comment"], r["nps"], r["step"]) for r in rows] == [(5, "Fast and friendly", 9, "done")]
        # the tracker stays Rasa JSON: every event round-trips
        state = json.loads(json.dumps(tracker.current_state()))
        for event in tracker.events:
            assert Event.from_parameters(event.as_dict()).as_dict() == event.as_dict()
        assert state["latest_message"]["intent"]["name"] == "order_status"

        # the same customer says goodbye again the same day: not asked twice
        asked = len(out.messages)
        tracker.update(said("bye", "goodbye"))
        await hook.after_turn(None, tracker, out)
        assert len(out.messages) == asked
    finally:
        await service.store.close()


@pytest.mark.asyncio
async def test_chinese_prompt_and_a_question_instead_of_a_rating_ends_the_wait(tmp_path: Path) -> None:
    service, _ = await _service(tmp_path)
    hook, out, tracker = SurveyHook(service), CollectingOutputChannel(), _tracker("s1", "zh")
    try:
        await hook.after_turn(None, tracker, out)
        assert out.messages[-1]["custom"]["text"] == "本次对话已结束，请为我们的服务打分（回复 1-5 星）。"
        tracker.update(said("我的订单到哪了", "order_status", "zh"))
        assert await hook.after_user_message(None, tracker, out) is False  # the bot answers the question
        tracker.update(said("5", "nlu_fallback", "zh"))
        assert await hook.after_user_message(None, tracker, out) is False  # the survey is closed
        assert (await dashboard_payload(service.store, Filters(DAY, DAY)))["figures"]["surveys"] == 0
    finally:
        await service.store.close()


@pytest.mark.asyncio
async def test_no_survey_after_a_handoff_or_without_goodbye_or_when_disabled(tmp_path: Path) -> None:
    service, _ = await _service(tmp_path)
    out = CollectingOutputChannel()
    try:
        handed = _tracker("s1", "en", BotUttered("agent here", {}, {"handoff_id": "h1", "agent_id": "ann"}))
        await SurveyHook(service).after_turn(None, handed, out)
        tracker = DialogueStateTracker("s1", [])
        tracker.update(said("hi", "greet"))
        await SurveyHook(service).after_turn(None, tracker, out)
        assert out.messages == []
    finally:
        await service.store.close()
    off, _ = await _service(tmp_path / "off", enabled=False) if (tmp_path / "off").mkdir() is None else None
    try:
        await SurveyHook(off).after_turn(None, _tracker("s1"), out)
        assert out.messages == []
    finally:
        await off.store.close()


@pytest.mark.asyncio
async def test_inactivity_survey_goes_through_the_output_registry(tmp_path: Path) -> None:
    service, clock = await _service(tmp_path, ask_on=["inactivity"], inactivity_minutes=10)
    widget, wechat = CapturingChannel(), CapturingChannel()
    service.outputs = outputs(ChannelProvider("socketio", widget), ChannelProvider("wechat", wechat))
    trackers = InMemoryTrackerStore(None)

    class AgentWithStore:  # the two Agent methods the survey uses, over a real tracker store
        tracker_store = trackers

        async def append_events(self, sender_id: str, events: list[Event]) -> None:
            tracker = await trackers.retrieve(sender_id) or DialogueStateTracker(sender_id, [])
            for event in events:
                tracker.update(event)
            await trackers.save(tracker)

    for sender, text, language in (("s1", "hi", "en"), ("s2", "你好", "zh")):
        tracker = DialogueStateTracker(sender, [])
        tracker.update(said(text, "greet", language))
        await trackers.save(tracker)
    service.agent = AgentWithStore()
    try:
        assert await service.ask_idle_conversations(600) == 0  # one minute idle: too early
        clock.now = T0 + 11 * 60
        assert await service.ask_idle_conversations(600) == 2
        assert widget.sent[0][0] == "s1" and widget.sent[0][1]["custom"]["text"].startswith("How would")
        assert wechat.sent[0][0] == "s2" and wechat.sent[0][1]["custom"]["text"].startswith("本次对话已结束")
        assert (await trackers.retrieve("s2")).events[-1].metadata["survey"]["trigger"] == "inactivity"
        assert await service.ask_idle_conversations(600) == 0  # asked once
    finally:
        await service.store.close()


def test_sampling_is_stable_and_near_the_rate() -> None:
    draws = [sampled(f"customer-{i}", DAY, 0.3) for i in range(2000)]
    assert 0.26 < sum(draws) / len(draws) < 0.34
    assert draws == [sampled(f"customer-{i}", DAY, 0.3) for i in range(2000)]
    assert not any(sampled(f"customer-{i}", DAY, 0.0) for i in range(100))


def test_comment_answers() -> None:
    class M:
        def __init__(self, text: str) -> None:
            self.text = text

    assert comment_from(M('/survey_comment{"comment": "  great "}')) == (True, "great")
    assert comment_from(M("跳过")) == (True, None)
    assert comment_from(M("/greet")) == (False, None)
    assert comment_from(M("slow delivery")) == (True, "slow delivery")
