"""Actions with the real Domain (YAML) and TemplatedNaturalLanguageGenerator."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.dialogue.actions.factory import action_for_name_or_text
from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.inprocess import create_executor
from bot.shared import constants as c
from bot.shared.domain import Domain
from bot.shared.events import ActionExecuted, ActiveLoop, BotUttered, SlotSet, UserUttered
from bot.shared.message import CollectingOutputChannel
from bot.shared.nlg import TemplatedNaturalLanguageGenerator
from bot.shared.tracker import DialogueStateTracker

DOMAIN_FILE = Path(__file__).resolve().parents[2] / "data" / "actions" / "domain.yml"


def user(text: str, intent: str, entities: list | None = None) -> UserUttered:
    return UserUttered(text, {"name": intent, "confidence": 1.0}, entities or [])


@pytest.mark.asyncio
async def test_real_domain_form_with_inprocess_validation(action_package_path: str) -> None:
    domain = Domain.load(DOMAIN_FILE)
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    executor = create_executor(action_package_path)
    channel = CollectingOutputChannel()
    tracker = DialogueStateTracker.from_events("u1", [ActionExecuted("action_listen")], slots=domain.slots)

    async def turn(message: UserUttered) -> list:
        tracker.update(message, domain)
        tracker.update_with_events(
            await ActionExtractSlots(None, executor).run(channel, nlg, tracker, domain), domain
        )
        form = action_for_name_or_text("order_form", domain, None, executor)
        events = await form.run(channel, nlg, tracker, domain)
        tracker.update_with_events([*events, ActionExecuted("order_form"), ActionExecuted("action_listen")], domain)
        return events

    events = await turn(user("gift order please", "gift_order"))
    assert events[0] == ActiveLoop("order_form")
    assert [e.text for e in events if isinstance(e, BotUttered)] == ["Your order id?"]
    events = await turn(user("X1", "inform", [{"entity": "order_id", "value": "X1"}]))
    assert [e.text for e in events if isinstance(e, BotUttered)] == ["That order id looks wrong.", "Your order id?"]
    await turn(user("E1", "inform", [{"entity": "order_id", "value": "E1"}]))
    events = await turn(user("13800138000", "inform"))
    assert tracker.get_slot(c.REQUESTED_SLOT) == "note"
    assert [e.text for e in events if isinstance(e, BotUttered)] == ["A note for the gift?"]
    events = await turn(user("red ribbon", "inform"))
    assert SlotSet(c.REQUESTED_SLOT, None) in events and ActiveLoop(None) in events
    assert tracker.active_loop_name is None
    assert tracker.get_slot("note") == "red ribbon"
