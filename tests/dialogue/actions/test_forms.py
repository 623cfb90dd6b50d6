from __future__ import annotations

import pytest

from bot.dialogue.actions.factory import action_for_name_or_text
from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.forms import FormAction
from bot.dialogue.actions.inprocess import create_executor
from bot.shared import constants as c
from bot.shared.events import ActionExecuted, ActiveLoop, BotUttered, SlotSet, UserUttered
from bot.shared.exceptions import ActionExecutionRejection
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker

from tests.dialogue.actions.conftest import FakeDomain, FakeNLG

RESPONSES = {
    "utter_ask_order_id": [{"text": "Your order id?"}],
    "utter_ask_phone": [{"text": "Your phone?"}],
    "utter_ask_order_form_note": [{"text": "A note for the gift?"}],
}


def _from_text(slot: str) -> dict:
    return {"type": "from_text", "conditions": [{"active_loop": "order_form", "requested_slot": slot}]}


def make_domain(with_validation: bool = False) -> FakeDomain:
    return FakeDomain(
        intents=["request_order", "gift_order", "inform", "chitchat"],
        entities=["order_id"],
        slots={
            "order_id": {"type": "text", "mappings": [{"type": "from_entity", "entity": "order_id"}]},
            "phone": {"type": "text", "mappings": [_from_text("phone")]},
            "note": {"type": "text", "mappings": [_from_text("note")]},
            "gift": {
                "type": "any",
                "mappings": [{"type": "from_trigger_intent", "intent": "gift_order", "value": True}],
            },
        },
        responses=RESPONSES,
        actions=["validate_order_form"] if with_validation else [],
        forms={"order_form": {"required_slots": ["order_id", "phone"]}},
    )


def user(text: str, intent: str, entities: list | None = None) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, entities or [])


class Conversation:
    """Plays the processor's part: extract slots after each user message, run the form."""

    def __init__(self, domain: FakeDomain, executor=None) -> None:
        self.domain = domain
        self.executor = executor
        self.nlg = FakeNLG(domain.responses)
        self.tracker = DialogueStateTracker.from_events("u1", [ActionExecuted("action_listen")], slots=domain.slots)

    async def say(self, message: UserUttered) -> list:
        self.tracker.update(message)
        extracted = await ActionExtractSlots(None, self.executor).run(
            CollectingOutputChannel(), self.nlg, self.tracker, self.domain
        )
        self.tracker.update_with_events(extracted)
        return extracted

    async def run_form(self) -> list:
        form = action_for_name_or_text("order_form", self.domain, None, self.executor)
        assert isinstance(form, FormAction)
        events = await form.run(CollectingOutputChannel(), self.nlg, self.tracker, self.domain)
        self.tracker.update_with_events([*events, ActionExecuted("order_form"), ActionExecuted("action_listen")])
        return events


def texts(events) -> list[str]:
    return [e.text for e in events if isinstance(e, BotUttered)]


@pytest.mark.asyncio
async def test_form_asks_fills_and_deactivates() -> None:
    conv = Conversation(make_domain())
    await conv.say(user("track my order", "request_order"))
    events = await conv.run_form()
    assert events[0] == ActiveLoop("order_form")
    assert SlotSet(c.REQUESTED_SLOT, "order_id") in events
    assert texts(events) == ["Your order id?"]

    await conv.say(user("E1", "inform", [{"entity": "order_id", "value": "E1"}]))
    events = await conv.run_form()
    assert SlotSet("order_id", "E1") in events
    assert SlotSet(c.REQUESTED_SLOT, "phone") in events
    assert texts(events) == ["Your phone?"]

    await conv.say(user("13800138000", "inform"))
    events = await conv.run_form()
    assert SlotSet("phone", "13800138000") in events
    assert events[-2:] == [SlotSet(c.REQUESTED_SLOT, None), ActiveLoop(None)]
    assert conv.tracker.active_loop_name is None


@pytest.mark.asyncio
async def test_form_prefilled_slot_is_skipped() -> None:
    conv = Conversation(make_domain())
    await conv.say(user("track E7", "request_order", [{"entity": "order_id", "value": "E7"}]))
    events = await conv.run_form()
    assert SlotSet("order_id", "E7") in events
    assert SlotSet(c.REQUESTED_SLOT, "phone") in events
    assert texts(events) == ["Your phone?"]


@pytest.mark.asyncio
async def test_form_rejects_when_requested_slot_not_extracted() -> None:
    conv = Conversation(make_domain())
    await conv.say(user("track", "request_order"))
    await conv.run_form()
    await conv.say(user("what a nice day", "chitchat"))
    with pytest.raises(ActionExecutionRejection) as info:
        await conv.run_form()
    assert info.value.action_name == "order_form"


@pytest.mark.asyncio
async def test_form_resumes_after_interruption_and_reasks() -> None:
    conv = Conversation(make_domain())
    await conv.say(user("track", "request_order"))
    await conv.run_form()
    # the user digressed, another action answered; the form is predicted again
    conv.tracker.update_with_events([ActionExecuted("utter_chitchat")])
    form = action_for_name_or_text("order_form", conv.domain)
    events = await form.run(CollectingOutputChannel(), conv.nlg, conv.tracker, conv.domain)
    assert texts(events) == ["Your order id?"]
    assert ActiveLoop(None) not in events


@pytest.mark.asyncio
async def test_form_validation_action_rejects_value_and_reasks(action_package_path: str) -> None:
    executor = create_executor(action_package_path)
    conv = Conversation(make_domain(with_validation=True), executor)
    await conv.say(user("track", "request_order"))
    await conv.run_form()
    await conv.say(user("X9", "inform", [{"entity": "order_id", "value": "X9"}]))
    events = await conv.run_form()
    assert SlotSet("order_id", None) in events
    assert texts(events) == ["That order id looks wrong.", "Your order id?"]
    assert conv.tracker.get_slot("order_id") is None
    assert conv.tracker.get_slot(c.REQUESTED_SLOT) == "order_id"


@pytest.mark.asyncio
async def test_form_validation_action_extends_required_slots(action_package_path: str) -> None:
    executor = create_executor(action_package_path)
    conv = Conversation(make_domain(with_validation=True), executor)
    await conv.say(user("a gift order", "gift_order"))
    events = await conv.run_form()
    # from_trigger_intent fills `gift` once the form is active
    assert SlotSet("gift", True) in events
    assert texts(events) == ["Your order id?"]

    await conv.say(user("E1", "inform", [{"entity": "order_id", "value": "E1"}]))
    await conv.run_form()
    await conv.say(user("13800138000", "inform"))
    events = await conv.run_form()
    # the validator's required_slots added `note`, so the form keeps going
    assert conv.tracker.get_slot(c.REQUESTED_SLOT) == "note"
    assert texts(events) == ["A note for the gift?"]
    assert ActiveLoop(None) not in events

    await conv.say(user("wrap it nicely", "inform"))
    events = await conv.run_form()
    assert conv.tracker.get_slot("note") == "wrap it nicely"
    assert ActiveLoop(None) in events
