from __future__ import annotations

import asyncio

from bot.dialogue.actions.faq import ACTION_ANSWER_FAQ_NAME, create_faq_action, faq_payload
from bot.knowledge.base import KnowledgeBase
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.holder import KnowledgeHolder
from bot.knowledge.loader import load_entries
from bot.shared.domain import Domain
from bot.shared.events import BotUttered, SlotSet, UserUttered
from bot.shared.tracker import DialogueStateTracker

DOMAIN = """
version: "3.1"
intents: [faq]
entities: [faq_id]
slots:
  language: {type: text, mappings: [{type: custom}]}
  kb_unanswered: {type: float, mappings: [{type: custom}]}
responses:
  utter_default:
    - text: 没听懂
actions: [action_answer_faq]
"""


def _run(holder, text, entities=(), language=None):
    domain = Domain.from_yaml(DOMAIN)
    tracker = DialogueStateTracker("u1", domain.slots)
    if language:
        tracker.update(SlotSet("language", language))
    tracker.update(UserUttered(text, {"name": "faq", "confidence": 1.0}, list(entities)))
    from bot.shared.nlg import TemplatedNaturalLanguageGenerator

    action = create_faq_action(lambda: holder)
    assert action.name() == ACTION_ANSWER_FAQ_NAME
    return asyncio.run(action.run(None, TemplatedNaturalLanguageGenerator(domain.responses), tracker, domain)), tracker


def _holder(kb_dir, encoder, **cfg):
    config = KnowledgeConfig(**cfg)
    kb = KnowledgeBase.build(load_entries(kb_dir).entries, config, encoder)
    return KnowledgeHolder(kb, kb_dir, config, encoder)


def test_faq_action_answers_in_shoppers_language_with_kb_metadata(kb_dir, encoder):
    events, _ = _run(_holder(kb_dir, encoder), "下单以后多久发货呀", language="en")
    bot = events[0]
    assert isinstance(bot, BotUttered) and bot.text == "We ship within 24 hours of payment."
    assert bot.metadata["kb"]["id"] == "shipping_time" and bot.metadata["kb"]["outcome"] == "answer"
    assert not bot.metadata["kb"]["language_fallback"]


def test_faq_action_language_fallback_is_flagged(kb_dir, encoder):
    events, _ = _run(_holder(kb_dir, encoder), "x", [{"entity": "faq_id", "value": "size_guide"}], language="en")
    assert events[0].text == "商品页有尺码表。"
    assert events[0].metadata["kb"]["language_fallback"] is True
    assert events[0].data["buttons"][0]["payload"] == "/size_advice"


def test_faq_action_clarify_buttons_answer_directly(kb_dir, encoder):
    holder = _holder(kb_dir, encoder, answer_threshold=0.99, clarify_threshold=0.05, clarify_margin=1.0)
    events, _ = _run(holder, "付款和发票", language="zh")
    bot = events[0]
    assert bot.text == "您是想问:" and bot.metadata["kb"]["outcome"] == "clarify"
    payload = bot.data["buttons"][0]["payload"]
    entry_id = bot.metadata["kb"]["options"][0]
    assert payload == faq_payload(entry_id)
    from bot.nlu.regex_interpreter import parse_intent_message

    parsed = parse_intent_message(payload)
    events, _ = _run(holder, payload, parsed["entities"], language="zh")
    assert events[0].metadata["kb"] == {**events[0].metadata["kb"], "id": entry_id, "outcome": "answer", "via": "faq_id"}


def test_faq_action_no_answer_utters_default_and_counts(kb_dir, encoder):
    events, _ = _run(_holder(kb_dir, encoder), "今天北京天气怎么样", language="zh")
    assert events[0].text == "没听懂" and events[0].metadata["kb"]["outcome"] == "no_answer"
    assert events[0].metadata["kb"]["unanswered_count"] == 1
    assert any(isinstance(e, SlotSet) and e.key == "kb_unanswered" and e.value == 1.0 for e in events)


def test_faq_action_without_kb_falls_back(kb_dir, encoder):
    events, _ = _run(None, "多久发货")
    assert events[0].metadata["kb"]["reason"] == "no_kb"
