"""MessageProcessor on a real trained model (tests/data/projects/turnbot).

The project is NLU-less, so every message is an ``/intent{...}`` message: the
processor's regex bypass is exercised on each turn. The model is trained once per
module into a temporary folder.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.agent import Agent
from bot.dialogue import processor as processor_module
from bot.dialogue.processor import ACTION_FAILED_METADATA, MessageProcessor
from bot.model.training import train
from bot.shared.endpoints import EndpointConfig, Endpoints
from bot.shared.events import (
    ActionExecuted,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    SessionStarted,
    UserUttered,
)
from bot.shared.message import CollectingOutputChannel, UserMessage
from tests.redis_server import free_port

PROJECT = Path(__file__).resolve().parent.parent / "data" / "projects" / "turnbot"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("turnbot-models")
    result = train(root=PROJECT, out=out)
    assert result.model_path is not None and result.model_path.is_file()
    return result.model_path


async def _agent(model_path: Path, **kwargs: Any) -> Agent:
    agent = Agent(project_root=PROJECT, **kwargs)
    await agent.load_model(model_path)
    return agent


def _texts(replies: list[dict] | None) -> list[str]:
    return [r.get("text") for r in replies or []]


def _turns(tracker: Any) -> list[tuple[str, str]]:
    """(kind, text) of user and bot events in order."""
    out = []
    for event in tracker.events:
        if isinstance(event, UserUttered):
            out.append(("user", event.text))
        elif isinstance(event, BotUttered):
            out.append(("bot", event.text))
    return out


def _slow_runs() -> list[tuple]:
    return sys.modules["actions.actions"].SLOW_RUNS


# ---------------------------------------------------------------- /intent bypass
@pytest.mark.asyncio
async def test_processor_intent_message_bypasses_nlu_and_fills_slots(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        replies = await agent.handle_text('/set_name{"name": "Ann"}', "s1")
        assert _texts(replies) == ["Nice to meet you, Ann."]
        tracker = await agent.get_tracker("s1")
        assert tracker.get_slot("name") == "Ann"
        assert tracker.latest_message.intent_name == "set_name"
        assert [(e["entity"], e["value"]) for e in tracker.latest_message.entities] == [("name", "Ann")]
        assert _texts(await agent.handle_text("/greet", "s1")) == ["Hello Ann!"]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_unknown_intent_message_gets_no_nlu_intent(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text("/no_such_intent", "s2")
        tracker = await agent.get_tracker("s2")
        assert tracker.latest_message.intent_name in (None, "nlu_fallback")
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_form_asks_and_submits(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        assert _texts(await agent.handle_text("/order", "f1")) == ["Which size?"]
        tracker = await agent.get_tracker("f1")
        assert tracker.active_loop_name == "order_form"
        assert tracker.get_slot("requested_slot") == "size"
        assert _texts(await agent.handle_text('/inform{"size": "L"}', "f1")) == ["Ordered size L."]
        tracker = await agent.get_tracker("f1")
        assert tracker.get_slot("size") == "L"
        assert tracker.active_loop_name is None
    finally:
        await agent.close()


# ---------------------------------------------------------------- sessions
@pytest.mark.asyncio
async def test_processor_starts_session_on_first_message(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text("/greet", "new1")
        tracker = await agent.get_tracker("new1")
        events = list(tracker.events)
        starts = [i for i, e in enumerate(events) if isinstance(e, SessionStarted)]
        first_user = next(i for i, e in enumerate(events) if isinstance(e, UserUttered))
        assert len(starts) == 1 and starts[0] < first_user
        # the session start ends with a listen before the user's message
        assert isinstance(events[first_user - 1], ActionExecuted)
        assert events[first_user - 1].action_name == "action_listen"
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_starts_new_session_after_expiry_and_carries_slots(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text('/set_name{"name": "Bo"}', "exp1")
        tracker = await agent.get_tracker("exp1")
        assert sum(isinstance(e, SessionStarted) for e in tracker.events) == 1
        # a second message within the 60 minutes keeps the session
        await agent.handle_text("/greet", "exp1")
        full = await agent.tracker_store.retrieve_full_tracker("exp1")
        assert sum(isinstance(e, SessionStarted) for e in full.events) == 1

        real_time = time.time
        monkeypatch.setattr(processor_module, "time", SimpleNamespace(time=lambda: real_time() + 2 * 3600))
        replies = await agent.handle_text("/greet", "exp1")
        full = await agent.tracker_store.retrieve_full_tracker("exp1")
        assert sum(isinstance(e, SessionStarted) for e in full.events) == 2
        # carry_over_slots_to_new_session: true keeps the name
        assert _texts(replies) == ["Hello Bo!"]
        tracker = await agent.get_tracker("exp1")
        assert tracker.get_slot("name") == "Bo"
    finally:
        await agent.close()


# ---------------------------------------------------------------- paused conversations
@pytest.mark.asyncio
async def test_processor_paused_conversation_records_message_without_reply(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text("/greet", "p1")
        await agent.append_events("p1", [ConversationPaused()])
        replies = await agent.handle_text('/set_name{"name": "Cy"}', "p1")
        assert replies == []
        tracker = await agent.get_tracker("p1")
        assert tracker.is_paused()
        assert tracker.latest_message.text == '/set_name{"name": "Cy"}'
        assert tracker.latest_action_name != "utter_name"

        await agent.append_events("p1", [ConversationResumed()])
        replies = await agent.handle_text("/greet", "p1")
        assert len(replies) == 1 and replies[0]["text"].startswith("Hello ")
        tracker = await agent.get_tracker("p1")
        assert not tracker.is_paused()
    finally:
        await agent.close()


# ---------------------------------------------------------------- circuit breaker
class _LoopingEnsemble:
    """A policy ensemble that never predicts action_listen."""

    def __init__(self, domain: Any, action: str) -> None:
        self.index = list(domain.action_names_or_texts).index(action)
        self.calls = 0

    def predict(self, tracker: Any, domain: Any) -> Any:
        self.calls += 1
        return SimpleNamespace(
            max_confidence_index=self.index,
            max_confidence=1.0,
            policy_name="LoopingPolicy",
            events=[],
            probabilities=[],
        )


@pytest.mark.asyncio
async def test_processor_circuit_breaker_stops_looping_policy(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.model.loader import LoadedModel
    from bot.stores.lock_store import InMemoryLockStore
    from bot.stores.tracker_store import InMemoryTrackerStore

    model = LoadedModel.load(model_path)
    try:
        ensemble = _LoopingEnsemble(model.domain, "utter_slow_done")
        processor = MessageProcessor(
            model.domain,
            InMemoryTrackerStore(model.domain),
            InMemoryLockStore(),
            ensemble=ensemble,
            max_number_of_predictions=3,
        )
        with caplog.at_level(logging.WARNING, logger="bot.dialogue.processor"):
            replies = await asyncio.wait_for(
                processor.handle_message(UserMessage("/greet", CollectingOutputChannel(), "loop1")), 10
            )
        assert _texts(replies) == ["Slow done."] * 3
        assert ensemble.calls == 3
        assert "Circuit breaker" in caplog.text
        tracker = await processor.get_tracker("loop1")
        assert tracker.latest_action_name == "action_listen"
        # the next message is handled (and bounded) too
        replies = await processor.handle_message(UserMessage("/greet", CollectingOutputChannel(), "loop1"))
        assert len(replies) == 3
    finally:
        model.close()


# ---------------------------------------------------------------- custom actions
@pytest.mark.asyncio
async def test_processor_runs_custom_action_in_process_and_sets_slot(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        assert _texts(await agent.handle_text("/count", "ca1")) == ["Count 1"]
        assert _texts(await agent.handle_text("/count", "ca1")) == ["Count 2"]
        tracker = await agent.get_tracker("ca1")
        assert tracker.get_slot("order_count") == 2.0
        assert agent.processor.action_executor is not None
    finally:
        await agent.close()


def _closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


async def _assert_fallback_then_recovery(agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.dialogue.processor"):
        replies = await agent.handle_text("/count", "down1")
    assert _texts(replies) == ["Sorry, something went wrong. Please try again."]
    assert "action_count" in caplog.text and "failed" in caplog.text
    tracker = await agent.get_tracker("down1")
    failed = [e for e in tracker.events if isinstance(e, ActionExecuted) and e.action_name == "action_count"]
    assert failed and (failed[-1].metadata or {}).get(ACTION_FAILED_METADATA) is True
    assert tracker.latest_action_name == "action_listen"
    # the same and another conversation go on
    assert _texts(await agent.handle_text("/greet", "down1")) == ["Hello None!"]
    assert _texts(await agent.handle_text('/set_name{"name": "Di"}', "down2")) == ["Nice to meet you, Di."]


@pytest.mark.asyncio
async def test_processor_action_server_down_gives_fallback_reply(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoints = Endpoints(
        action_endpoint=EndpointConfig(url=f"http://127.0.0.1:{_closed_port()}/webhook", kwargs={"timeout": 2})
    )
    agent = await _agent(model_path, endpoints=endpoints)
    try:
        assert agent.processor.action_executor is None
        await _assert_fallback_then_recovery(agent, caplog)
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_slow_action_server_times_out_with_fallback_reply(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(65536)
            await asyncio.sleep(5)
        finally:
            writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoints = Endpoints(action_endpoint=EndpointConfig(url=f"http://127.0.0.1:{port}/webhook", kwargs={"timeout": 0.5}))
    agent = await _agent(model_path, endpoints=endpoints)
    try:
        started = time.monotonic()
        await _assert_fallback_then_recovery(agent, caplog)
        assert time.monotonic() - started < 4, "the action timeout (0.5 s) was not applied"
    finally:
        await agent.close()
        server.close()


# ---------------------------------------------------------------- per-conversation lock
@pytest.mark.asyncio
async def test_processor_serialises_messages_of_one_conversation(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        _slow_runs().clear()
        first, second = '/slow{"name": "one"}', '/slow{"name": "two"}'
        r1, r2, r3 = await asyncio.gather(
            agent.handle_text(first, "lock1"),
            agent.handle_text(second, "lock1"),
            agent.handle_text('/slow{"name": "other"}', "lock2"),
        )
        runs = {sender: [] for sender in ("lock1", "lock2")}
        for sender, enter, leave in _slow_runs():
            runs[sender].append((enter, leave))
        assert len(runs["lock1"]) == 2 and len(runs["lock2"]) == 1
        (a_in, a_out), (b_in, b_out) = sorted(runs["lock1"])
        assert a_out <= b_in, "two messages of one conversation overlapped"
        # another conversation is not blocked by lock1's lock
        c_in, c_out = runs["lock2"][0]
        assert c_in < b_in, "lock2 waited for lock1's messages"

        tracker = await agent.get_tracker("lock1")
        turns = _turns(tracker)
        assert turns == [
            ("user", first), ("bot", f"Slow {first}"), ("bot", "Slow done."),
            ("user", second), ("bot", f"Slow {second}"), ("bot", "Slow done."),
        ]
        assert _texts(r1) == [f"Slow {first}", "Slow done."]
        assert _texts(r2) == [f"Slow {second}", "Slow done."]
        assert _texts(r3) == ['Slow /slow{"name": "other"}', "Slow done."]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_handles_a_client_message_id_once(model_path: Path) -> None:
    """A client re-sending its message (same message id), while the first attempt still runs or
    after it was stored, is not handled twice; a message id never stored is handled."""
    agent = await _agent(model_path)
    try:
        _slow_runs().clear()
        text = '/slow{"name": "retry"}'

        def message(message_id: str) -> UserMessage:
            return UserMessage(text, CollectingOutputChannel(), "retry1", message_id=message_id)

        first, racing = await asyncio.gather(agent.handle_message(message("m-1")),
                                             agent.handle_message(message("m-1")))
        late = await agent.handle_message(message("m-1"))
        other = await agent.handle_message(message("m-2"))
        assert _texts(first) == [f"Slow {text}", "Slow done."]
        assert racing == [] and late == []  # the retries got no second answer
        assert _texts(other) == [f"Slow {text}", "Slow done."]
        tracker = await agent.get_tracker("retry1")
        assert [e.message_id for e in tracker.events if isinstance(e, UserUttered)] == ["m-1", "m-2"]
        assert len([run for run in _slow_runs() if run[0] == "retry1"]) == 2
    finally:
        await agent.close()


# ---------------------------------------------------------------- behaviours matching Rasa 3.6
@pytest.mark.asyncio
async def test_processor_paused_conversation_still_extracts_slots(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text("/greet", "p2")
        await agent.append_events("p2", [ConversationPaused()])
        assert await agent.handle_text('/set_name{"name": "Cy"}', "p2") == []
        tracker = await agent.get_tracker("p2")
        assert tracker.get_slot("name") == "Cy"
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_logs_policy_events_before_the_action(model_path: Path) -> None:
    agent = await _agent(model_path)
    try:
        await agent.handle_text("/greet", "order1")
        tracker = await agent.get_tracker("order1")
        kinds = [e.as_dict()["event"] for e in tracker.events]
        user = kinds.index("user")
        assert kinds[user : user + 4] == ["user", "user_featurization", "action", "bot"]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_processor_conversation_stays_on_its_channel(model_path: Path) -> None:
    """Issue #15: a REST caller who knows a WeChat shopper's openid (the conversation id) must
    not write into that shopper's conversation, nor read the bot's answers in it."""
    from bot.server.app import create_app
    from connectors.rest import RestInput

    agent = await _agent(model_path)
    try:
        wechat = UserMessage('/set_name{"name": "Ann"}', None, "oShopper", input_channel="wechat")
        assert _texts(await agent.handle_message(wechat)) == ["Nice to meet you, Ann."]
        events_before = len((await agent.get_tracker("oShopper")).events)
        app = create_app(agent, input_channels=[RestInput()])
        _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "oShopper", "message": "/greet"})
        assert resp.status == 403, resp.text
        assert resp.json["reason"] == "ConversationOfAnotherChannel" and "Ann" not in resp.text
        assert len((await agent.get_tracker("oShopper")).events) == events_before  # nothing recorded
        _, own = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "rest-1", "message": "/greet"})
        assert own.status == 200 and _texts(own.json)  # a conversation of its own is served as always
        # the shopper's own channel goes on as before
        again = UserMessage("/greet", None, "oShopper", input_channel="wechat")
        assert _texts(await agent.handle_message(again)) == ["Hello Ann!"]
        # a REST caller squatting an openid first does not lock the WeChat shopper out
        _, squat = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "oVictim", "message": "/greet"})
        assert squat.status == 200
        victim = UserMessage('/set_name{"name": "Bo"}', None, "oVictim", input_channel="wechat")
        assert _texts(await agent.handle_message(victim)) == ["Nice to meet you, Bo."]
        _, after = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "oVictim", "message": "/greet"})
        assert after.status == 403 and "Bo" not in after.text
    finally:
        await agent.close()



@pytest.mark.asyncio
async def test_processor_without_nlu_parses_on_the_loop_and_predicts_off_it(model_path: Path) -> None:
    import threading

    from bot.model.loader import LoadedModel
    from bot.stores.lock_store import InMemoryLockStore
    from bot.stores.tracker_store import InMemoryTrackerStore

    model = LoadedModel.load(model_path)
    try:
        assert model.nlu is None  # turnbot has no pipeline
        processor = MessageProcessor(model.domain, InMemoryTrackerStore(model.domain), InMemoryLockStore(),
                                     ensemble=model.ensemble)
        threads: dict[str, list[str]] = {"parse": [], "predict": []}
        parse, predict = processor._parse_sync, processor._predict_sync

        def recording_parse(text: str) -> dict:
            threads["parse"].append(threading.current_thread().name)
            return parse(text)

        def recording_predict(tracker):  # type: ignore[no-untyped-def]
            threads["predict"].append(threading.current_thread().name)
            return predict(tracker)

        processor._parse_sync = recording_parse  # type: ignore[method-assign]
        processor._predict_sync = recording_predict  # type: ignore[method-assign]
        assert (await processor.parse_text("/greet"))["intent"]["name"] == "greet"
        assert (await processor.parse_text("hello"))["intent"]["name"] is None
        replies = await processor.handle_message(UserMessage('/greet{"name": "Ann"}', CollectingOutputChannel(), "p1"))
        assert _texts(replies) == ["Hello Ann!"]
        loop_thread = threading.current_thread().name
        assert threads["parse"] == [loop_thread] * 3
        assert threads["predict"] and loop_thread not in threads["predict"]
    finally:
        model.close()
