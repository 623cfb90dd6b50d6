"""Broker events → conversation facts and rollups, one event at a time (incrementally).

Reads what already flows on the event broker: Rasa tracker events (``user``, ``bot``,
``action``, ``session_started`` with ``sender_id``), the handoff's ``handoff_requested``/
``handoff_assigned``/``handoff_resolved``/``csat_submitted``, the shop outbox's
``order_paid`` and the behaviour events ``recommendation_shown``/``recommendation_clicked``.
A conversation is one tracker session; it ends when its session restarts, when the
same sender writes after ``conversation_timeout_minutes`` of silence, or when the
sweep (:meth:`Ingester.close_idle`) finds it idle that long. Every figure is added to
the rollup bucket of the conversation's start (orders: of the payment), so a day's
figures are final once its conversations ended. Docs: docs/dashboard.md.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Awaitable, Callable

from bot.analytics import customer_rollups
from bot.analytics.config import AnalyticsConfig
from bot.analytics.schema import conversations
from bot.analytics.store import AnalyticsStore, Bucket, RollupBuffer, day_of, hour_of

logger = logging.getLogger(__name__)

FALLBACK_ACTIONS = frozenset({"action_default_fallback", "action_two_stage_fallback"})
FALLBACK_INTENTS = frozenset({"nlu_fallback"})
FALLBACK_LOOP = 2  # consecutive fallback turns: the bot did not resolve the conversation
SURVEY_COMMENT_INTENT = "survey_comment"  # the widget's comment box sends /survey_comment{"comment": "..."}
FLUSH_S = 1.0  # buffered rollup increments are written at least this often while events arrive
FLUSH_CELLS = 5000  # ... or when this many rollup cells are pending
SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}

# (channel, customer or sender id) → segment; None: no segment. The feature builds it from the
# project's ``ports: profile`` port (the profile's ``segment`` field: Customer 360 fills it).
SegmentOf = Callable[["str | None", str], Awaitable["str | None"]]


def profile_segment_of(port: Any) -> SegmentOf:
    """A :data:`SegmentOf` over a :class:`bot.ports.ProfilePort`: the profile's ``segment``."""

    async def segment_of(channel: str | None, customer_id: str) -> str | None:
        profile = await port.profile(channel, customer_id)
        segment = (profile or {}).get("segment")
        return str(segment) if segment else None

    return segment_of


def normalise_question(text: str) -> str:
    """Unanswered questions are counted by their lower-cased, space-collapsed text (max 200 chars),
    phones, openids and e-mails masked: rollups are aggregates that no erasure reaches."""
    from bot.shared.masking import mask_text

    return re.sub(r"\s+", " ", mask_text((text or "").strip()).lower())[:200]


def customer_of(body: dict[str, Any]) -> str | None:
    """The shop's customer id a verified widget identity carries (``metadata.identity``), else None."""
    identity = ((body.get("metadata") or {}).get("identity") or {}) if isinstance(body.get("metadata"), dict) else {}
    if isinstance(identity, dict) and identity.get("verified") and identity.get("customer_id"):
        return str(identity["customer_id"])
    return None


class Ingester:
    """Applies broker bodies to the store. One lock per process keeps a conversation's updates in order."""

    def __init__(self, store: AnalyticsStore, config: AnalyticsConfig, segment_of: SegmentOf | None = None,
                 directory: Any = None) -> None:
        """``directory``: :class:`bot.analytics.directory.CustomerDirectory` (Customer 360), or None."""
        self.store = store
        self.config = config
        self.segment_of = segment_of
        self.directory = directory
        self.timeout_s = config.conversation_timeout_minutes * 60.0
        self.survey_intents = frozenset({config.survey.intent, SURVEY_COMMENT_INTENT})
        self._lock = asyncio.Lock()
        self.rollups = RollupBuffer()
        self.clock = time.monotonic
        self._flushed_at = self.clock()

    async def flush(self) -> None:
        """Write the buffered rollup increments (the sweep, each answer, stop; at most every FLUSH_S)."""
        pending = self.rollups.take()
        self._flushed_at = self.clock()
        try:
            await self.store.write_rollups(pending)
        except Exception:
            for key, (n, total) in pending.items():  # keep them for the next flush
                cell = self.rollups.pending.setdefault(key, [0, 0.0])
                cell[0] += n
                cell[1] += total
            raise

    async def handle(self, body: dict[str, Any]) -> None:
        """The broker subscriber: one body (unknown kinds are ignored)."""
        kind = body.get("event")
        handler = _HANDLERS.get(str(kind))
        if handler is None:
            return
        async with self._lock:
            async with self.store.begin() as conn:
                await handler(self, conn, body)
        if len(self.rollups) >= FLUSH_CELLS or self.clock() - self._flushed_at >= FLUSH_S:
            await self.flush()

    # --- conversations ---------------------------------------------------------------
    async def _segment(self, channel: str | None, customer_id: str) -> str:
        if self.segment_of is None:
            return ""
        try:
            return str(await self.segment_of(channel, customer_id) or "")[:64]
        except Exception:
            logger.exception("Segment lookup failed; counting the conversation without a segment.")
            return ""

    async def _conversation(self, conn: Any, body: dict[str, Any], open_new: bool = True) -> dict[str, Any] | None:
        """The sender's open conversation at the body's time; a new one when none is open (or it timed out)."""
        sender = str(body.get("sender_id") or "")
        if not sender:
            return None
        ts = float(body.get("timestamp") or 0.0)
        current = await self.store.latest_conversation(conn, sender)
        if current is not None and current["ended_at"] is None and ts - current["last_event_at"] > self.timeout_s:
            await self._finish(conn, current)
            current = None
        if current is not None and current["ended_at"] is None:
            return current
        if not open_new:
            return None
        customer = customer_of(body) or sender
        channel = str(body.get("input_channel") or "")[:64]
        row = {"id": f"{sender}@{int(ts)}", "sender_id": sender, "customer_id": customer, "channel": channel,
               "segment": await self._segment(channel or None, customer), "started_at": ts, "day": day_of(ts), "hour": hour_of(ts),
               "last_event_at": ts, "user_turns": 0, "fallbacks": 0, "fallback_streak": 0,
               "max_fallback_streak": 0, "escalated": False, "resolved": False, "repeated": False,
               "converted": False}
        row = {**{c.name: None for c in conversations.c}, **row}
        if current is not None and current["id"] == row["id"]:
            row["id"] += f".{current['user_turns'] + 1}"
        await self.store.insert_conversation(conn, row)
        self.rollups.add(Bucket.of(row), "conversations")
        return row

    async def _touch(self, conn: Any, conv: dict[str, Any], ts: float, **values: Any) -> None:
        values["last_event_at"] = max(ts, conv["last_event_at"])
        conv.update(values)
        await self.store.update_conversation(conn, conv["id"], **values)

    async def _finish(self, conn: Any, conv: dict[str, Any]) -> None:
        """The conversation ended: resolution by the bot, resolution time, first-contact resolution."""
        bucket = Bucket.of(conv)
        ended = conv["last_event_at"]
        values: dict[str, Any] = {"ended_at": ended}
        self.rollups.add(bucket, "ended")
        if not conv["escalated"] and conv["user_turns"] > 0 and conv["max_fallback_streak"] < FALLBACK_LOOP:
            values["resolved"] = True
            self.rollups.add(bucket, "bot_resolved")
            self.rollups.add(bucket, "resolution_time", total=ended - conv["started_at"])
        elif conv["escalated"] and conv["resolved_at"] is not None:
            values["resolved"] = True
        if values.get("resolved") and not conv["repeated"]:
            self.rollups.add(bucket, "fcr")
        conv.update(values)
        await self.store.update_conversation(conn, conv["id"], **values)

    async def close_idle(self, now: float) -> int:
        """End every conversation idle for the timeout (the feature's sweep); returns how many."""
        ended = 0
        for conv in await self.store.idle_open(now - self.timeout_s):
            async with self._lock:
                async with self.store.begin() as conn:
                    fresh = await self.store.conversation(conn, conv["id"])
                    if fresh is not None and fresh["ended_at"] is None:
                        await self._finish(conn, fresh)
                        ended += 1
        await self.flush()
        return ended

    # --- tracker events ------------------------------------------------------------------
    async def on_session_started(self, conn: Any, body: dict[str, Any]) -> None:
        current = await self.store.latest_conversation(conn, str(body.get("sender_id") or ""))
        if current is not None and current["ended_at"] is None:
            await self._finish(conn, current)

    async def on_user(self, conn: Any, body: dict[str, Any]) -> None:
        intent = ((body.get("parse_data") or {}).get("intent") or {}).get("name") or ""
        survey_answer = intent in self.survey_intents
        conv = await self._conversation(conn, body, open_new=not survey_answer)
        if conv is None:
            return
        ts = float(body.get("timestamp") or 0.0)
        if survey_answer:  # a rating is not an inquiry: no intent figure, no turn
            await self._touch(conn, conv, ts)
            return
        bucket = Bucket.of(conv)
        turns = conv["user_turns"] + 1
        values: dict[str, Any] = {"user_turns": turns}
        if conv["first_user_at"] is None:
            values["first_user_at"] = ts
        if conv["fallback_turn"] != conv["user_turns"]:  # the previous turn had no fallback: the streak ends
            values["fallback_streak"] = 0
        self.rollups.add(bucket, "user_turns")
        if intent:
            self.rollups.add(bucket, "intent", intent)
        if intent and conv["first_intent"] is None and intent not in FALLBACK_INTENTS:
            values["first_intent"] = intent
            await self._repeat_check(conn, conv, intent)
        await self._touch(conn, conv, ts, **values)
        if intent in FALLBACK_INTENTS:
            await self._fallback(conn, conv, ts)

    async def _repeat_check(self, conn: Any, conv: dict[str, Any], intent: str) -> None:
        window = self.config.repeat_window_days * 86400.0
        earlier = await self.store.earlier_same_intent(conn, conv["customer_id"], intent,
                                                       conv["started_at"] - window, conv["started_at"], conv["id"])
        if earlier is None or earlier["repeated"]:
            return
        await self.store.update_conversation(conn, earlier["id"], repeated=True)
        bucket = Bucket.of(earlier)
        self.rollups.add(bucket, "repeated", intent)
        if earlier["ended_at"] is not None and earlier["resolved"]:
            self.rollups.add(bucket, "fcr", n=-1)  # it was not resolved at first contact after all

    async def _fallback(self, conn: Any, conv: dict[str, Any], ts: float) -> None:
        """At most one fallback per user turn (an NLU fallback and the fallback action are one turn)."""
        if conv["fallback_turn"] == conv["user_turns"]:
            return
        streak = conv["fallback_streak"] + 1
        await self._touch(conn, conv, ts, fallbacks=conv["fallbacks"] + 1, fallback_streak=streak,
                          max_fallback_streak=max(streak, conv["max_fallback_streak"]),
                          fallback_turn=conv["user_turns"])
        self.rollups.add(Bucket.of(conv), "fallback")

    async def on_action(self, conn: Any, body: dict[str, Any]) -> None:
        if body.get("name") not in FALLBACK_ACTIONS:
            return
        conv = await self._conversation(conn, body, open_new=False)
        if conv is not None:
            await self._fallback(conn, conv, float(body.get("timestamp") or 0.0))

    async def on_bot(self, conn: Any, body: dict[str, Any]) -> None:
        conv = await self._conversation(conn, body, open_new=False)
        if conv is None:
            return
        ts = float(body.get("timestamp") or 0.0)
        meta = body.get("metadata") or {}
        bucket = Bucket.of(conv)
        values: dict[str, Any] = {}
        if conv["first_bot_at"] is None and conv["first_user_at"] is not None:
            values["first_bot_at"] = ts
            self.rollups.add(bucket, "frt_bot", total=ts - conv["first_user_at"])
        if isinstance(meta, dict) and meta.get("agent_id") and conv["first_agent_at"] is None \
                and conv["handoff_created_at"] is not None:
            values["first_agent_at"] = ts
            self.rollups.add(bucket, "frt_human", total=ts - conv["handoff_created_at"])
        await self._touch(conn, conv, ts, **values)
        kb = meta.get("kb") if isinstance(meta, dict) else None
        if isinstance(kb, dict) and kb.get("outcome") == "no_answer":
            self.rollups.add(bucket, "kb_miss", normalise_question(str(kb.get("query") or "")))
            await self._fallback(conn, conv, ts)

    # --- handoff ----------------------------------------------------------------------------
    async def on_handoff_requested(self, conn: Any, body: dict[str, Any]) -> None:
        conv = await self._conversation(conn, body)
        if conv is None or conv["escalated"]:
            return
        ts = float(body.get("timestamp") or 0.0)
        await self._touch(conn, conv, ts, escalated=True, handoff_id=str(body.get("handoff_id") or ""),
                          handoff_created_at=ts)
        self.rollups.add(Bucket.of(conv), "escalated", str(body.get("reason") or "unknown"))

    async def _handoff_conversation(self, conn: Any, body: dict[str, Any]) -> dict[str, Any] | None:
        conv = await self.store.latest_conversation(conn, str(body.get("sender_id") or ""))
        if conv is None or not conv["escalated"] or conv["handoff_id"] != str(body.get("handoff_id") or ""):
            return None
        return conv

    async def on_handoff_assigned(self, conn: Any, body: dict[str, Any]) -> None:
        conv = await self._handoff_conversation(conn, body)
        if conv is None or conv["assigned_at"] is not None:
            return
        ts = float(body.get("timestamp") or 0.0)
        await self._touch(conn, conv, ts, assigned_at=ts, agent_id=str(body.get("agent_id") or "") or None)
        self.rollups.add(Bucket.of(conv), "queue_wait", total=ts - conv["handoff_created_at"])

    async def on_handoff_resolved(self, conn: Any, body: dict[str, Any]) -> None:
        conv = await self._handoff_conversation(conn, body)
        if conv is None or conv["resolved_at"] is not None:
            return
        ts = float(body.get("timestamp") or 0.0)
        bucket = Bucket.of(conv)
        if conv["assigned_at"] is not None:
            self.rollups.add(bucket, "handling", total=ts - conv["assigned_at"])
        self.rollups.add(bucket, "resolution_time", total=ts - conv["started_at"])
        await self._touch(conn, conv, ts, resolved_at=ts, agent_id=conv["agent_id"] or body.get("agent_id"))

    async def on_csat_submitted(self, conn: Any, body: dict[str, Any]) -> None:
        """The handoff's CSAT (the same rollups as the conversation-end survey's)."""
        conv = await self._handoff_conversation(conn, body)
        try:
            score = int(body.get("rating"))
        except (TypeError, ValueError):
            return
        if conv is None:
            return
        await self.record_rating(conn, conv, "csat", score, str(body.get("agent_id") or conv["agent_id"] or ""))

    async def record_rating(self, conn: Any, conv: dict[str, Any], kind: str, score: int, agent_id: str = "") -> bool:
        """One answer (csat 1-5, nps 0-10, ces 1-7) into the conversation's bucket: overall, by agent, by intent."""
        low, high = SCALES[kind]
        if not low <= score <= high:
            return False
        bucket = Bucket.of(conv)
        self.rollups.add(bucket, kind, str(score), total=score)
        self.rollups.add(bucket, f"{kind}_agent", f"{agent_id or 'bot'}|{score}", total=score)
        self.rollups.add(bucket, f"{kind}_intent", f"{conv['first_intent'] or 'none'}|{score}", total=score)
        return True

    # --- shop and recommendations -------------------------------------------------------------
    async def on_order_paid(self, conn: Any, body: dict[str, Any]) -> None:
        data = body.get("data") or {}
        order_id = str(body.get("order_id") or data.get("order_id") or body.get("event_id") or "")
        customer = str(body.get("customer_id") or body.get("sender_id") or "")
        if not order_id or not customer or await self.store.has_order(conn, order_id):
            return
        ts = float(body.get("timestamp") or 0.0)
        amount = data.get("amount")
        if amount is None and data.get("total_cents") is not None:
            amount = float(data["total_cents"]) / 100.0
        amount = float(amount or 0.0)
        window = self.config.order_window_days * 86400.0
        also: list[str] = []
        if self.directory is not None:  # the same person on other channels (Customer 360 identities)
            try:
                also = await self.directory.same_customer(customer)
            except Exception:
                logger.exception("Customer 360 lookup failed; matching the order by its customer id only.")
        conv = await self.store.unconverted_before(conn, customer, ts - window, ts, also)
        previous = await self.store.previous_order(conn, customer, ts)
        segment = conv["segment"] if conv else await self._segment(None, customer)
        await self.store.insert_order(conn, {"order_id": order_id, "customer_id": customer, "paid_at": ts,
                                             "amount": amount, "conversation_id": conv["id"] if conv else None,
                                             "channel": conv["channel"] if conv else "", "segment": segment})
        await customer_rollups.add_order(conn, self.rollups, order_id, customer, ts, amount,
                                         conv["channel"] if conv else "", segment)
        paid = Bucket.at(ts, conv["channel"] if conv else "", segment)
        self.rollups.add(paid, "orders", total=amount)
        if previous is not None:  # a repurchase: days since the customer's previous paid order
            self.rollups.add(paid, "repurchase", total=(ts - previous) / 86400.0)
        if conv is not None:
            await self.store.update_conversation(conn, conv["id"], converted=True)
            self.rollups.add(Bucket.of(conv), "converted", total=amount)
            if conv.get("rec_clicked_at") is not None:  # a recommendation clicked in the chat, then the order
                self.rollups.add(Bucket.of(conv), "rec_ordered", total=amount)

    async def _behaviour(self, conn: Any, body: dict[str, Any], metric: str) -> None:
        ts = float(body.get("timestamp") or 0.0)
        sender = str(body.get("sender_id") or "")
        conv = await self.store.latest_conversation(conn, sender) if sender else None
        bucket = Bucket.of(conv) if conv is not None and ts - conv["last_event_at"] <= self.timeout_s \
            else Bucket.at(ts)
        product = str((body.get("data") or {}).get("product_id") or "")
        self.rollups.add(bucket, metric, product)

    async def on_recommendation_shown(self, conn: Any, body: dict[str, Any]) -> None:
        await self._behaviour(conn, body, "rec_shown")

    async def on_recommendation_clicked(self, conn: Any, body: dict[str, Any]) -> None:
        await self._behaviour(conn, body, "rec_clicked")
        sender = str(body.get("sender_id") or "")
        conv = await self.store.latest_conversation(conn, sender) if sender else None
        ts = float(body.get("timestamp") or 0.0)
        if conv is not None and conv.get("rec_clicked_at") is None and ts - conv["last_event_at"] <= self.timeout_s:
            await self.store.update_conversation(conn, conv["id"], rec_clicked_at=ts)
            self.rollups.add(Bucket.of(conv), "rec_click_conversations")


_HANDLERS: dict[str, Callable[[Ingester, Any, dict[str, Any]], Awaitable[None]]] = {
    "session_started": Ingester.on_session_started,
    "user": Ingester.on_user,
    "bot": Ingester.on_bot,
    "action": Ingester.on_action,
    "handoff_requested": Ingester.on_handoff_requested,
    "handoff_assigned": Ingester.on_handoff_assigned,
    "handoff_resolved": Ingester.on_handoff_resolved,
    "csat_submitted": Ingester.on_csat_submitted,
    "order_paid": Ingester.on_order_paid,
    "recommendation_shown": Ingester.on_recommendation_shown,
    "recommendation_clicked": Ingester.on_recommendation_clicked,
}
