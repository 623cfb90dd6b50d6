from __future__ import annotations

import logging

import pytest

from bot.dialogue.actions.defaults import ActionSessionStart
from bot.dialogue.actions.factory import action_for_name_or_text
from bot.dialogue.actions.forms import FormAction
from bot.dialogue.actions.remote import RemoteAction
from bot.dialogue.actions.responses import ActionBotResponse, ActionRetrieveResponse
from bot.shared import constants as c
from bot.shared.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from bot.shared.exceptions import ActionNotFound
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker

from tests.dialogue.actions.conftest import FakeDomain, FakeNLG

RESPONSES = {
    "utter_greet": [{"text": "Hi {name}!", "buttons": [{"title": "yes", "payload": "/affirm"}]}],
    "utter_default": [{"text": "Sorry, I didn't get that."}],
    "utter_restart": [{"text": "Restarted."}],
    "utter_faq/shipping_time": [{"text": "3-5 days."}],
    "utter_photo": [{"text": "look", "image": "http://x/y.png", "custom": {"k": 1}}],
}


def make_domain(**kwargs) -> FakeDomain:
    kwargs.setdefault("responses", RESPONSES)
    kwargs.setdefault("slots", {"name": {"type": "text", "mappings": [{"type": "from_entity", "entity": "name"}]}})
    kwargs.setdefault("entities", ["name"])
    kwargs.setdefault("intents", ["greet", "faq"])
    kwargs.setdefault("actions", ["action_check_order"])
    kwargs.setdefault("forms", {"order_form": {"required_slots": ["name"]}})
    return FakeDomain(**kwargs)


def make_tracker(domain: FakeDomain, events=()) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("u1", list(events), slots=domain.slots)


async def run(action, domain, tracker, **kwargs):
    return await action.run(CollectingOutputChannel(), FakeNLG(domain.responses), tracker, domain, **kwargs)


def test_action_for_name_or_text_resolves_kinds() -> None:
    domain = make_domain()
    assert isinstance(action_for_name_or_text("utter_greet", domain), ActionBotResponse)
    assert isinstance(action_for_name_or_text("utter_faq", _with_action(domain, "utter_faq")), ActionRetrieveResponse)
    assert isinstance(action_for_name_or_text("order_form", domain), FormAction)
    assert isinstance(action_for_name_or_text("action_check_order", domain), RemoteAction)
    assert action_for_name_or_text("action_listen", domain).name() == "action_listen"


def test_action_for_name_or_text_unknown_lists_close_names() -> None:
    domain = make_domain()
    with pytest.raises(ActionNotFound) as info:
        action_for_name_or_text("utter_gret", domain)
    assert "utter_greet" in str(info.value)


@pytest.mark.asyncio
async def test_bot_response_renders_data_and_metadata() -> None:
    domain = make_domain()
    tracker = make_tracker(domain, [SlotSet("name", "Ann")])
    events = await run(ActionBotResponse("utter_greet"), domain, tracker)
    assert len(events) == 1 and isinstance(events[0], BotUttered)
    assert events[0].text == "Hi Ann!"
    assert events[0].data["buttons"] == [{"title": "yes", "payload": "/affirm"}]
    assert events[0].metadata["utter_action"] == "utter_greet"

    photo = (await run(ActionBotResponse("utter_photo"), domain, tracker))[0]
    assert photo.data["image"] == "http://x/y.png"
    assert photo.data["attachment"] == "http://x/y.png"
    assert photo.data["custom"] == {"k": 1}


@pytest.mark.asyncio
async def test_bot_response_missing_logs_error_and_returns_nothing(caplog) -> None:
    domain = make_domain()
    with caplog.at_level(logging.ERROR):
        events = await run(ActionBotResponse("utter_missing"), domain, make_tracker(domain))
    assert events == []
    assert "utter_missing" in caplog.text


@pytest.mark.asyncio
async def test_retrieval_action_uses_response_selector_output() -> None:
    domain = make_domain()
    parse = {
        "intent": {"name": "faq", "confidence": 0.9},
        "entities": [],
        "response_selector": {"faq": {"response": {"utter_action": "utter_faq/shipping_time"}}},
    }
    tracker = make_tracker(domain, [UserUttered("when?", parse["intent"], [], parse_data=parse)])
    action = action_for_name_or_text("utter_faq", _with_action(domain, "utter_faq"))
    events = await run(action, domain, tracker)
    assert [e.text for e in events] == ["3-5 days."]
    assert action.name() == "utter_faq"


def _with_action(domain: FakeDomain, name: str) -> FakeDomain:
    domain.user_actions.append(name)
    return domain


@pytest.mark.asyncio
async def test_restart_utters_and_restarts() -> None:
    domain = make_domain()
    events = await run(action_for_name_or_text("action_restart", domain), domain, make_tracker(domain))
    assert [type(e) for e in events] == [BotUttered, Restarted]


@pytest.mark.asyncio
async def test_session_start_carries_over_slots_and_metadata() -> None:
    domain = make_domain()
    tracker = make_tracker(domain, [SlotSet("name", "Ann")])
    events = await run(ActionSessionStart(), domain, tracker, metadata={"shop": "x"})
    assert events[0] == SessionStarted()
    assert SlotSet("name", "Ann") in events
    assert SlotSet(c.SESSION_START_METADATA_SLOT, {"shop": "x"}) in events
    assert events[-1] == ActionExecuted(c.ACTION_LISTEN_NAME)

    no_carry = make_domain(carry_over_slots=False)
    events = await run(ActionSessionStart(), no_carry, make_tracker(no_carry, [SlotSet("name", "Ann")]))
    assert events == [SessionStarted(), ActionExecuted(c.ACTION_LISTEN_NAME)]


@pytest.mark.asyncio
async def test_default_fallback_utters_and_reverts() -> None:
    domain = make_domain()
    events = await run(action_for_name_or_text("action_default_fallback", domain), domain, make_tracker(domain))
    assert events[0].text == "Sorry, I didn't get that."
    assert isinstance(events[1], UserUtteranceReverted)


@pytest.mark.asyncio
async def test_deactivate_loop_and_back_and_unlikely_intent() -> None:
    domain = make_domain()
    tracker = make_tracker(domain)
    assert await run(action_for_name_or_text("action_deactivate_loop", domain), domain, tracker) == [
        ActiveLoop(None),
        SlotSet(c.REQUESTED_SLOT, None),
    ]
    assert await run(action_for_name_or_text("action_back", domain), domain, tracker) == [
        UserUtteranceReverted(),
        UserUtteranceReverted(),
    ]
    assert await run(action_for_name_or_text("action_unlikely_intent", domain), domain, tracker) == []


@pytest.mark.asyncio
async def test_ask_affirmation_offers_second_intent_for_nlu_fallback() -> None:
    domain = make_domain()
    parse = {
        "intent": {"name": "nlu_fallback", "confidence": 0.3},
        "intent_ranking": [{"name": "nlu_fallback", "confidence": 0.3}, {"name": "greet", "confidence": 0.2}],
        "entities": [],
    }
    tracker = make_tracker(domain, [UserUttered("hm", parse["intent"], [], parse_data=parse)])
    events = await run(action_for_name_or_text("action_default_ask_affirmation", domain), domain, tracker)
    assert events[0].text == "Did you mean 'greet'?"
    assert events[0].data["buttons"][1]["payload"] == "/out_of_scope"


@pytest.mark.asyncio
async def test_send_text_uses_action_metadata() -> None:
    domain = make_domain()
    action = action_for_name_or_text("action_send_text", domain)
    events = await run(action, domain, make_tracker(domain), metadata={"message": {"text": "hello"}})
    assert [e.text for e in events] == ["hello"]


@pytest.mark.asyncio
async def test_two_stage_fallback_asks_affirmation_then_gives_up() -> None:
    domain = make_domain()
    fallback = {"intent": {"name": "nlu_fallback", "confidence": 0.3}, "entities": [], "intent_ranking": []}
    tracker = make_tracker(domain, [ActionExecuted("action_listen"), UserUttered("hm", fallback["intent"], [], parse_data=fallback)])
    action = action_for_name_or_text("action_two_stage_fallback", domain)
    first = await run(action, domain, tracker)
    assert first[0] == ActiveLoop("action_two_stage_fallback")
    assert isinstance(first[1], BotUttered) and "Did you mean" in first[1].text

    tracker.update_with_events([*first, ActionExecuted("action_listen"), UserUttered("hm", fallback["intent"], [], parse_data=fallback)])
    second = await run(action, domain, tracker)
    # two fallbacks in a row: give up with utter_default and deactivate
    assert ActiveLoop(None) in second
    assert any(isinstance(e, BotUttered) and e.text == "Sorry, I didn't get that." for e in second)


@pytest.mark.asyncio
async def test_session_start_reads_metadata_attribute_set_by_processor() -> None:
    domain = make_domain(carry_over_slots=False)
    action = action_for_name_or_text("action_session_start", domain)
    action.metadata = {"channel": "wechat"}
    events = await run(action, domain, make_tracker(domain))
    assert SlotSet(c.SESSION_START_METADATA_SLOT, {"channel": "wechat"}) in events


@pytest.mark.asyncio
async def test_bot_response_with_real_nlg_fills_slots() -> None:
    from bot.shared.nlg import TemplatedNaturalLanguageGenerator

    domain = make_domain()
    tracker = make_tracker(domain, [SlotSet("name", "Li")])
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    events = await ActionBotResponse("utter_greet").run(CollectingOutputChannel(), nlg, tracker, domain)
    assert events[0].text == "Hi Li!"
    assert events[0].data["buttons"] == [{"title": "yes", "payload": "/affirm"}]
