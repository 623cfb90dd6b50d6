"""``action_answer_faq``: answer a shopper's question from the FAQ knowledge base.

Three outcomes (thresholds in config.yml ``knowledge:``): answer in the shopper's
language; clarify ("您是想问:") with buttons whose payloads answer directly
(``/faq{"faq_id": "<id>"}``); or no answer, which utters ``utter_default`` and
counts toward escalation. Every bot message carries ``{"kb": {...}}`` metadata so
the tracker shows which entry answered.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from bot.dialogue.actions.base import Action, create_bot_utterance, generate_response
from bot.nlu.language import conversation_language
from bot.shared.events import BotUttered, Event, FollowupAction, SlotSet

logger = logging.getLogger(__name__)

ACTION_ANSWER_FAQ_NAME = "action_answer_faq"
FAQ_ID_ENTITY = "faq_id"
FAQ_INTENT = "faq"
UNANSWERED_SLOT = "kb_unanswered"  # counted when the domain declares it (float/any slot)
CLARIFY_TEXT = {"zh": "您是想问:", "en": "Did you mean:"}
NO_ANSWER_TEXT = {"zh": "抱歉，这个问题我暂时回答不了，可以换个说法，或输入「人工」联系客服。",
                  "en": "Sorry, I can't answer that yet. Try rephrasing, or type \"agent\" to reach a person."}

KnowledgeProvider = Callable[[], Any]  # returns a KnowledgeHolder (or None)


def faq_payload(entry_id: str, intent: str = FAQ_INTENT) -> str:
    return f"/{intent}" + json.dumps({FAQ_ID_ENTITY: entry_id}, ensure_ascii=False)


def _latest_text_and_faq_id(tracker: Any) -> tuple[str, str | None]:
    message = tracker.latest_message
    text = getattr(message, "text", None) or ""
    for e in getattr(message, "entities", None) or []:
        if e.get("entity") == FAQ_ID_ENTITY and e.get("value"):
            return text, str(e["value"])
    return text, None


def _domain_has_slot(domain: Any, name: str) -> bool:
    return any(getattr(s, "name", None) == name for s in getattr(domain, "slots", []) or [])


def answer_events(kb: Any, entry_id: str, language: str, score: float, outcome_via: str) -> list[Event]:
    """The BotUttered for an entry's answer (falls back to another language, says so)."""
    answer, answer_lang = kb.answer(entry_id, language)
    if answer is None:
        return []
    meta = {"id": entry_id, "score": round(float(score), 4), "outcome": "answer", "via": outcome_via,
            "language": answer_lang, "language_fallback": answer_lang != language}
    data: dict[str, Any] = {}
    if answer.buttons:
        data["buttons"] = [b.as_dict() for b in answer.buttons]
    if answer.images:
        data["image"] = answer.images[0]
    if answer.links or len(answer.images) > 1:
        data["custom"] = {"links": [dict(x) for x in answer.links], "images": list(answer.images)}
    return [BotUttered(answer.text, data, {"kb": meta})]


class ActionAnswerFAQ(Action):
    """Built-in action; the processor passes a provider of the worker's knowledge holder."""

    def __init__(self, knowledge: KnowledgeProvider | Any = None, no_answer_response: str = "utter_default",
                 no_answer_followup: str | None = None) -> None:
        self._knowledge = knowledge
        self.no_answer_response = no_answer_response
        self.no_answer_followup = no_answer_followup

    def name(self) -> str:
        return ACTION_ANSWER_FAQ_NAME

    def _holder(self) -> Any:
        k = self._knowledge
        return k() if callable(k) and not hasattr(k, "current") else k

    async def run(self, output_channel: Any, nlg: Any, tracker: Any, domain: Any,
                  metadata: dict[str, Any] | None = None) -> list[Event]:
        text, faq_id = _latest_text_and_faq_id(tracker)
        language = conversation_language(tracker, text)
        holder = self._holder()
        if holder is None:
            logger.warning("action_answer_faq ran but no knowledge base is loaded; falling back.")
            return await self._no_answer(output_channel, nlg, tracker, domain, language,
                                         {"id": None, "score": 0.0, "outcome": "no_answer", "reason": "no_kb"})
        if faq_id:
            kb = holder.current
            if kb.get(faq_id) is not None:
                return answer_events(kb, faq_id, language, 1.0, "faq_id")
            logger.info("Unknown faq_id '%s' in the latest message; searching by text instead.", faq_id)
        kb, result = await holder.asearch(text, language)
        return await self.events_for_result(kb, result, output_channel, nlg, tracker, domain)

    async def events_for_result(self, kb: Any, result: Any, output_channel: Any, nlg: Any, tracker: Any,
                                domain: Any) -> list[Event]:
        language = result.language
        top = result.top
        base = {"id": top.entry_id if top else None, "score": round(result.score, 4), "outcome": result.outcome}
        if result.truncated:
            base["truncated"] = True
        if result.outcome == "answer" and top is not None:
            events = answer_events(kb, top.entry_id, language, result.score, "search")
            if result.truncated and events:
                events[0].metadata["kb"]["truncated"] = True
            return events
        if result.outcome == "clarify":
            buttons = [{"title": kb.get(c.entry_id).title_for(language), "payload": faq_payload(c.entry_id)}
                       for c in result.options]
            base["options"] = [c.entry_id for c in result.options]
            return [BotUttered(CLARIFY_TEXT.get(language, CLARIFY_TEXT["en"]), {"buttons": buttons}, {"kb": base})]
        if result.reason:
            base["reason"] = result.reason
        return await self._no_answer(output_channel, nlg, tracker, domain, language, base)

    async def _no_answer(self, output_channel: Any, nlg: Any, tracker: Any, domain: Any, language: str,
                         meta: dict[str, Any]) -> list[Event]:
        previous = tracker.get_slot(UNANSWERED_SLOT) if hasattr(tracker, "get_slot") else None
        count = int(previous or 0) + 1
        meta = {**meta, "unanswered_count": count}
        events: list[Event] = []
        message = None
        if self.no_answer_response and self.no_answer_response in (getattr(domain, "responses", None) or {}):
            message = await generate_response(nlg, self.no_answer_response, tracker, output_channel)
        if message:
            message["utter_action"] = self.no_answer_response
            bot = create_bot_utterance(message)
            bot.metadata["kb"] = meta
            events.append(bot)
        else:
            events.append(BotUttered(NO_ANSWER_TEXT.get(language, NO_ANSWER_TEXT["en"]), {}, {"kb": meta}))
        if _domain_has_slot(domain, UNANSWERED_SLOT):
            events.append(SlotSet(UNANSWERED_SLOT, float(count)))
        if self.no_answer_followup:
            events.append(FollowupAction(self.no_answer_followup))
        return events


def create_faq_action(knowledge: KnowledgeProvider | Any = None, **kwargs: Any) -> ActionAnswerFAQ:
    """What ``action_for_name_or_text`` returns for ``action_answer_faq``."""
    return ActionAnswerFAQ(knowledge, **kwargs)


async def try_answer_from_kb(knowledge: Any, tracker: Any, domain: Any, nlg: Any, output_channel: Any) -> list[Event] | None:
    """For the NLU-fallback path: KB events when it can answer or clarify, else ``None``."""
    holder = knowledge() if callable(knowledge) and not hasattr(knowledge, "current") else knowledge
    if holder is None:
        return None
    text, _ = _latest_text_and_faq_id(tracker)
    kb, result = await holder.asearch(text, conversation_language(tracker, text))
    if result.outcome == "no_answer":
        return None
    return await ActionAnswerFAQ(holder).events_for_result(kb, result, output_channel, nlg, tracker, domain)
