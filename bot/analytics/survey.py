"""The satisfaction survey after every conversation (bot-only or human), and reading the answers.

Reuses the handoff's CSAT contract: the prompt is a ``{"custom": {"type": "csat", ...}}``
message (the widget renders stars, WeChat renders ``custom.text``), the answer is the
shopper's next message read by :func:`bot.handoff.csat.rating_from` (the widget's
``/csat{"rating": n}`` payload, or plain "4" / "4 星"). The rating stays in the tracker
the Rasa way — the ``UserUttered`` with the ``csat`` intent and its entity — and the bot's
thanks carries ``metadata.survey`` ({id, kind, score}); the answer also goes to the
analytics rollups (the same figures as the handoff's CSAT).

When a conversation counts as ended (``analytics.survey.ask_on``): ``goodbye`` (the
shopper's message had one of ``goodbye_intents``: asked in the same turn),
``inactivity`` (no event for ``inactivity_minutes``) or ``session_end`` (the domain's
session expiration). Conversations with a handoff are rated by the handoff's CSAT and
are not asked again; a customer is asked at most once per UTC day; ``sample_rate``
picks a stable share of customer-days.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any, Callable

from bot.analytics.config import SurveyConfig
from bot.analytics.ingest import SURVEY_COMMENT_INTENT, Ingester
from bot.analytics.store import AnalyticsStore, day_of
from bot.handoff.csat import rating_from
from bot.handoff.delivery import send_in_turn
from bot.shared.outputs import SEND_DIRECT, OutputRegistry

logger = logging.getLogger(__name__)

MESSAGES: dict[str, dict[str, str]] = {
    "ask": {"zh": "本次对话已结束，请为我们的服务打分（回复 1-5 星）。",
            "en": "How would you rate this conversation? Reply 1-5 stars."},
    "comment": {"zh": "还有什么想告诉我们的吗？直接输入即可，回复“跳过”略过。",
                "en": "Anything you'd like to add? Just type it, or reply 'skip'."},
    "nps": {"zh": "您有多大可能向朋友推荐我们？（回复 0-10）",
            "en": "How likely are you to recommend us to a friend? Reply 0-10."},
    "ces": {"zh": "这次解决问题有多容易？（回复 1-7，1 = 非常容易，7 = 非常困难）",
            "en": "How easy was it to get help today? Reply 1 (very easy) to 7 (very hard)."},
    "thanks": {"zh": "感谢您的评价！有其他问题随时问我。", "en": "Thanks for your feedback! Ask me anything else any time."},
}
SKIP_WORDS = frozenset({"skip", "no", "none", "nothing", "n", "跳过", "没有", "不用", "无", "没了", "不"})
_PAYLOAD = re.compile(r"^/(\w+)\s*(\{.*\})?\s*$", re.S)
_NUMBER = re.compile(r"^\s*(\d{1,2})\s*(?:分|points?)?\s*$")
STEPS = ("csat", "comment", "nps", "ces")
SCALES = {"nps": (0, 10), "ces": (1, 7)}


def language_of(value: Any) -> str:
    return "en" if str(value or "").startswith("en") else "zh"


def score_from(message: Any, intent_name: str, entity: str, low: int, high: int) -> int | None:
    """An NPS/CES answer: the payload ``/intent{"entity": n}``, the intent's entity, or a plain number."""
    if message is None:
        return None
    text = (getattr(message, "text", None) or "").strip()
    values: list[Any] = []
    if (getattr(message, "intent", None) or {}).get("name") == intent_name:
        values += [e.get("value") for e in (getattr(message, "entities", None) or []) if e.get("entity") == entity]
    payload = _PAYLOAD.match(text)
    if payload and payload.group(1) == intent_name and payload.group(2):
        try:
            values.append(json.loads(payload.group(2)).get(entity))
        except (ValueError, AttributeError):
            pass
    plain = _NUMBER.match(text)
    if plain:
        values.append(plain.group(1))
    for value in values:
        try:
            number = int(float(value))
        except (TypeError, ValueError):
            continue
        if low <= number <= high:
            return number
    return None


def comment_from(message: Any) -> tuple[bool, str | None]:
    """``(answered, comment)``: the widget's ``/survey_comment{"comment": ...}``, a skip word, or free text."""
    text = (getattr(message, "text", None) or "").strip()
    payload = _PAYLOAD.match(text)
    if payload:
        if payload.group(1) != SURVEY_COMMENT_INTENT:
            return False, None  # a button or another intent: not an answer
        try:
            comment = str((json.loads(payload.group(2) or "{}") or {}).get("comment") or "").strip()
        except (ValueError, AttributeError):
            comment = ""
        return True, comment[:2000] or None
    if not text:
        return False, None
    if text.lower().strip(" .!。！") in SKIP_WORDS:
        return True, None
    return True, text[:2000]


def sampled(customer_id: str, day: str, rate: float) -> bool:
    """A stable draw per customer and day: the same customer-day is always in or out."""
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"{customer_id}|{day}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < rate


def had_handoff(tracker: Any) -> bool:
    """The conversation's session involved a human (its CSAT comes from the handoff)."""
    events = tracker.events_after_latest_restart() if hasattr(tracker, "events_after_latest_restart") else tracker.events
    for event in reversed(list(events)):
        if getattr(event, "type_name", "") == "session_started":
            return False
        metadata = getattr(event, "metadata", None) or {}
        if isinstance(metadata, dict) and (metadata.get("handoff_id") or metadata.get("agent_id")):
            return True
    return False


class SurveyService:
    """Asks, reads answers and records them (store rows, rollups, tracker events)."""

    def __init__(self, config: SurveyConfig, store: AnalyticsStore, ingester: Ingester,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.ingester = ingester
        self.clock = clock
        self.outputs: OutputRegistry | None = None
        self.agent: Any = None

    def text(self, key: str, language: str) -> str:
        lang = language_of(language)
        return ((self.config.messages.get(key) or {}).get(lang)) or MESSAGES[key][lang]

    def steps(self) -> list[str]:
        return [s for s in STEPS if s == "csat" or getattr(self.config, s)]

    def prompt(self, step: str, language: str, survey_id: str) -> dict[str, Any]:
        """The message that asks ``step``: the handoff's ``csat`` custom payload (stars), or a comment box."""
        text = self.text("ask" if step == "csat" else step, language)
        if step == "comment":
            custom = {"type": "survey_comment", "text": text, "intent": SURVEY_COMMENT_INTENT, "entity": "comment",
                      "survey_id": survey_id}
        else:
            low, high = (1, 5) if step == "csat" else SCALES[step]
            custom = {"type": "csat", "text": text, "scale": high, "min": low, "intent": self.config.intent,
                      "entity": self.config.entity if step == "csat" else step, "survey_id": survey_id}
        return {"custom": custom}

    # --- asking -------------------------------------------------------------------------
    async def may_ask(self, conversation: dict[str, Any] | None, now: float) -> bool:
        if not self.config.enabled or conversation is None or conversation["escalated"]:
            return False
        if not conversation["user_turns"]:
            return False
        day = day_of(now)
        customer = conversation["customer_id"]
        if not sampled(customer, day, self.config.sample_rate):
            return False
        return not await self.store.survey_today(customer, day)

    async def _new_survey(self, conversation: dict[str, Any], language: str, trigger: str, now: float) -> str:
        survey_id = uuid.uuid4().hex
        await self.store.insert_survey({
            "id": survey_id, "sender_id": conversation["sender_id"], "conversation_id": conversation["id"],
            "customer_id": conversation["customer_id"], "channel": conversation["channel"] or "",
            "segment": conversation["segment"] or "", "language": language_of(language), "trigger": trigger,
            "day": day_of(now), "asked_at": now, "step": "csat", "intent": conversation["first_intent"]})
        return survey_id

    async def ask_in_turn(self, tracker: Any, output_channel: Any, language: str, trigger: str = "goodbye") -> bool:
        """Hook context (the shopper said goodbye): the prompt joins this turn's events and output."""
        from bot.shared.events import BotUttered

        if had_handoff(tracker):
            return False
        now = self.clock()
        async with self.store.engine.connect() as conn:
            conversation = await self.store.latest_conversation(conn, tracker.sender_id)
        if conversation is None:  # the broker has not delivered this turn yet: count it now
            conversation = {"id": f"{tracker.sender_id}@{int(now)}", "sender_id": tracker.sender_id,
                            "customer_id": tracker.sender_id, "channel": tracker.get_latest_input_channel() or "",
                            "segment": "", "escalated": False, "user_turns": 1, "first_intent": None}
        if not await self.may_ask(conversation, now):
            return False
        survey_id = await self._new_survey(conversation, language, trigger, now)
        message = self.prompt("csat", language, survey_id)
        tracker.update(BotUttered(None, message, {"survey": {"id": survey_id, "step": "csat", "trigger": trigger}}))
        await send_in_turn(output_channel, tracker.sender_id, message)
        return True

    async def ask_idle(self, conversation: dict[str, Any], trigger: str) -> str:
        """Outside a turn (inactivity, session end): through the output registry; returns what happened."""
        from bot.nlu.language import conversation_language
        from bot.shared.events import BotUttered

        now = self.clock()
        if self.agent is None or self.outputs is None or not await self.may_ask(conversation, now):
            return "skipped"
        sender = conversation["sender_id"]
        output = self.outputs.output_for(conversation["channel"] or None, sender)
        if output is None:
            return "no_channel"
        capabilities = self.outputs.capabilities(conversation["channel"] or None)
        if capabilities is not None and capabilities.send_window:
            path = await output.allowed_send_path(sender)  # type: ignore[attr-defined]
            if str(getattr(path, "value", path)) != SEND_DIRECT:
                return "window_closed"  # never a template message for a survey
        tracker = await self.agent.tracker_store.retrieve(sender)
        if tracker is not None and (had_handoff(tracker) or tracker.is_paused()):
            return "handoff"
        language = conversation_language(tracker) if tracker is not None else "zh"
        survey_id = await self._new_survey(conversation, language, trigger, now)
        message = self.prompt("csat", language, survey_id)
        await self.agent.append_events(sender, [BotUttered(None, message, {
            "survey": {"id": survey_id, "step": "csat", "trigger": trigger}})])
        deliver = getattr(output, "deliver_response", None)
        try:
            if deliver is not None:
                await deliver(sender, message)
            else:
                await output.send_response(sender, message)
        except Exception:
            logger.exception("Could not push the survey to a %s conversation.", conversation["channel"])
            return "failed"
        return "asked"

    # --- answers ---------------------------------------------------------------------------
    async def handle_answer(self, tracker: Any, output_channel: Any) -> bool:
        """Hook context: the shopper's message answers the open survey (True) or ends the wait (False)."""
        from bot.shared.events import BotUttered

        survey = await self.store.open_survey(tracker.sender_id)
        if survey is None:
            return False
        now = self.clock()
        message = tracker.latest_message
        expired = now - survey["asked_at"] > self.config.answer_window_minutes * 60
        step = survey["step"]
        value: Any = None
        if not expired:
            if step == "csat":
                value = rating_from(message, self.config.intent, self.config.entity)
            elif step == "comment":
                answered, value = comment_from(message)
                value = (value,) if answered else None
            else:
                value = score_from(message, self.config.intent, step, *SCALES[step])
        if value is None:
            async with self.store.begin() as conn:
                await self.store.update_survey(conn, survey["id"], step="closed")
            return False
        steps = self.steps()
        following = steps[steps.index(step) + 1] if steps.index(step) + 1 < len(steps) else "done"
        updates: dict[str, Any] = {"step": following, "answered_at": now}
        if step == "comment":
            updates["comment"] = value[0]
        else:
            updates[step] = value
        async with self.ingester._lock:
            async with self.store.begin() as conn:
                await self.store.update_survey(conn, survey["id"], **updates)
                conversation = await self.store.conversation(conn, survey["conversation_id"])
                if conversation is None:
                    conversation = await self.store.latest_conversation(conn, survey["sender_id"])
                if step != "comment" and conversation is not None:
                    await self.ingester.record_rating(conn, conversation, step, int(value))
        await self.ingester.flush()
        language = survey["language"]
        meta = {"survey": {"id": survey["id"], "kind": step,
                           "score": None if step == "comment" else int(value), "next": following}}
        reply = self.prompt(following, language, survey["id"]) if following != "done" \
            else {"text": self.text("thanks", language)}
        tracker.update(BotUttered(reply.get("text"), {k: v for k, v in reply.items() if k != "text"}, meta))
        await send_in_turn(output_channel, tracker.sender_id, reply)
        return True

    async def ask_idle_conversations(self, inactivity_s: float) -> int:
        """The sweep: every conversation idle for ``inactivity_s`` (within the answer window) not yet asked."""
        now = self.clock()
        asked = 0
        window = self.config.answer_window_minutes * 60
        for conversation in await self.store.idle_unsurveyed(now - inactivity_s - window, now - inactivity_s):
            if await self.ask_idle(conversation, "inactivity") == "asked":
                asked += 1
        return asked


class SurveyHook:
    """The analytics feature's processor hook: survey answers before the bot predicts, goodbye after the turn."""

    def __init__(self, service: SurveyService) -> None:
        self.service = service

    async def after_user_message(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        if tracker.is_paused():
            return False
        return await self.service.handle_answer(tracker, output_channel)

    async def after_turn(self, processor: Any, tracker: Any, output_channel: Any) -> None:
        from bot.nlu.language import conversation_language

        config = self.service.config
        if not config.enabled or "goodbye" not in config.ask_on or tracker.is_paused():
            return
        latest = tracker.latest_message
        intent = ((getattr(latest, "intent", None) or {}).get("name")) if latest is not None else None
        if intent not in config.goodbye_intents:
            return
        await self.service.ask_in_turn(tracker, output_channel, conversation_language(tracker), "goodbye")
