from __future__ import annotations

import pytest

from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.inprocess import create_executor
from bot.shared.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker

from tests.dialogue.actions.conftest import FakeDomain, FakeNLG


def make_domain() -> FakeDomain:
    return FakeDomain(
        intents=["inform", "book", "deny", "greet"],
        entities=["city", "size"],
        slots={
            "from_city": {"type": "text", "mappings": [{"type": "from_entity", "entity": "city", "role": "from"}]},
            "to_city": {"type": "text", "mappings": [{"type": "from_entity", "entity": "city", "role": "to"}]},
            "sizes": {"type": "list", "mappings": [{"type": "from_entity", "entity": "size"}]},
            "booked": {"type": "bool", "mappings": [{"type": "from_intent", "intent": "book", "value": True}]},
            "comment": {"type": "text", "mappings": [{"type": "from_text", "not_intent": ["greet", "deny"]}]},
            "answer": {
                "type": "text",
                "mappings": [
                    {"type": "from_text", "conditions": [{"active_loop": "survey", "requested_slot": "answer"}]}
                ],
            },
            "vip": {"type": "any", "mappings": [{"type": "custom", "action": "action_extract_vip"}]},
            "ghost": {"type": "text", "mappings": [{"type": "from_entity", "entity": "not_in_domain"}]},
        },
        forms={"survey": {"required_slots": ["answer"]}},
        actions=["action_extract_vip"],
    )


def tracker_with(domain: FakeDomain, *events) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("u1", [ActionExecuted("action_listen"), *events], slots=domain.slots)


async def extract(domain, tracker, executor=None) -> list:
    return await ActionExtractSlots(None, executor).run(
        CollectingOutputChannel(), FakeNLG({}), tracker, domain
    )


@pytest.mark.asyncio
async def test_extract_slots_entity_roles_list_and_intent() -> None:
    domain = make_domain()
    entities = [
        {"entity": "city", "value": "Berlin", "role": "from"},
        {"entity": "city", "value": "Paris", "role": "to"},
        {"entity": "size", "value": "S"},
        {"entity": "size", "value": "M"},
    ]
    tracker = tracker_with(domain, UserUttered("book Berlin to Paris S and M", {"name": "book"}, entities))
    events = await extract(domain, tracker)
    assert SlotSet("from_city", "Berlin") in events
    assert SlotSet("to_city", "Paris") in events
    assert SlotSet("sizes", ["S", "M"]) in events
    assert SlotSet("booked", True) in events
    assert SlotSet("comment", "book Berlin to Paris S and M") in events
    # mapping on an entity the domain lacks is skipped, and conditions keep `answer` empty
    assert not any(e.key in ("ghost", "answer") for e in events if isinstance(e, SlotSet))


@pytest.mark.asyncio
async def test_extract_slots_not_intent_blocks_and_unchanged_value_not_reset() -> None:
    domain = make_domain()
    tracker = tracker_with(domain, SlotSet("booked", True), UserUttered("hello", {"name": "greet"}))
    events = await extract(domain, tracker)
    assert not any(isinstance(e, SlotSet) and e.key == "comment" for e in events)

    tracker = tracker_with(domain, SlotSet("comment", "same"), UserUttered("same", {"name": "inform"}))
    assert not any(isinstance(e, SlotSet) and e.key == "comment" for e in await extract(domain, tracker))


@pytest.mark.asyncio
async def test_extract_slots_conditions_need_active_loop_and_requested_slot() -> None:
    domain = make_domain()
    tracker = tracker_with(
        domain,
        ActiveLoop("survey"),
        SlotSet("requested_slot", "answer"),
        UserUttered("very good", {"name": "inform"}),
    )
    events = await extract(domain, tracker)
    assert SlotSet("answer", "very good") in events

    other = tracker_with(
        domain, ActiveLoop("survey"), SlotSet("requested_slot", "other"), UserUttered("x", {"name": "inform"})
    )
    assert not any(isinstance(e, SlotSet) and e.key == "answer" for e in await extract(domain, other))


@pytest.mark.asyncio
async def test_extract_slots_custom_mapping_runs_action_keeps_only_slot_events(action_package_path) -> None:
    domain = make_domain()
    executor = create_executor(action_package_path)
    tracker = tracker_with(domain, UserUttered("hi", {"name": "greet"}))
    events = await extract(domain, tracker, executor)
    assert SlotSet("vip", True) in events
    assert all(isinstance(e, SlotSet) for e in events)


@pytest.mark.asyncio
async def test_extract_slots_custom_mapping_failure_is_not_fatal() -> None:
    domain = make_domain()
    tracker = tracker_with(domain, UserUttered("hi", {"name": "greet"}))
    # no endpoint and no executor: the custom action can't run, extraction still works
    events = await extract(domain, tracker)
    assert not any(isinstance(e, SlotSet) and e.key == "vip" for e in events)
