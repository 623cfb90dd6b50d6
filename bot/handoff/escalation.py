"""Opening a handoff: build the record from the tracker, route it, pause the bot, tell the shopper.

Runs in the processor hook, under the shopper's conversation lock: it updates the
tracker in hand and answers on the turn's own output channel.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Awaitable, Callable

from bot.handoff import messages as msg
from bot.handoff.config import HandoffConfig
from bot.handoff.delivery import send_in_turn
from bot.handoff.handoffs import Handoff, HandoffRecords
from bot.handoff.notify import Notifier, post_webhook
from bot.handoff.queue import score
from bot.handoff.record import sentiment_trend, summarize, transcript_from_tracker
from bot.handoff.routing import Router
from bot.handoff.rules import Escalation
from bot.handoff.store import ASSIGNED, QUEUED
from bot.nlu.language import conversation_language
from bot.shared.message import OutputChannel

logger = logging.getLogger(__name__)


class Escalator:
    def __init__(self, config: HandoffConfig, records: HandoffRecords, queue: Any, router: Router,
                 notifier: Notifier, clock: Callable[[], float],
                 spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.config = config
        self.records = records
        self.queue = queue
        self.router = router
        self.notifier = notifier
        self.clock = clock
        self.spawn = spawn

    def skill_for(self, tracker: Any) -> str:
        for event in reversed(list(tracker.events)):
            if getattr(event, "type_name", "") == "user":
                intent = (event.intent or {}).get("name")
                if intent in self.config.skills_by_intent:
                    return self.config.skills_by_intent[intent]
        return self.config.default_skill

    async def escalate(self, tracker: Any, escalation: Escalation, output_channel: OutputChannel | None,
                       profile: dict[str, Any] | None = None) -> Handoff:
        """Create the handoff, pause the bot, tell the shopper what happens next (hook context)."""
        from bot.shared.events import BotUttered, ConversationPaused

        now = self.clock()
        language = conversation_language(tracker)
        channel = tracker.get_latest_input_channel() if hasattr(tracker, "get_latest_input_channel") else None
        transcript = transcript_from_tracker(tracker)
        skill = self.skill_for(tracker)
        # Customer 360's threshold actions (health.yml `routing:`): a skill group and extra priority.
        c360 = (profile or {}).get("customer360") or {}
        skill = c360.get("skill_group") or skill
        vip = bool(profile and profile.get("vip"))
        tags = [skill, language] + (["vip"] if vip else []) + (["urgent"] if escalation.urgent else [])
        priority = (2 if escalation.urgent else 0) + (1 if vip else 0) + (
            1 if escalation.reason in ("complaint", "negative_sentiment") else 0) + int(c360.get("routing_priority") or 0)
        hours = self.config.service_hours
        after_hours = hours is not None and not hours.is_open(now)
        record = {
            "conversation_id": tracker.sender_id, "channel": channel, "reason": escalation.reason,
            "reason_detail": escalation.detail, "language": language, "profile": profile,
            "sentiment_trend": sentiment_trend(transcript), "transcript": transcript,
            "summary": summarize(transcript, escalation.reason, language), "priority": priority,
            "skills": tags, "after_hours": after_hours,
        }
        values = {
            "id": uuid.uuid4().hex, "conversation_id": tracker.sender_id, "channel": channel, "status": QUEUED,
            "reason": escalation.reason, "priority": priority, "queue": f"{skill}:{language}", "language": language,
            "skills": tags, "tags": [], "customer_id": str(profile["customer_id"]) if profile and profile.get("customer_id") is not None else None,
            "after_hours": after_hours, "record": record, "notes": [], "created_at": now,
        }
        # Reserve an agent before the row exists, so the row is written once, already assigned
        # (one SQL write per escalation instead of insert + conditional update + queue add/remove).
        assigned_to = None
        if not after_hours and self.config.auto_assign:
            assigned_to = await self.router.reserve_agent(values["id"], values["queue"])
        if assigned_to is not None:
            values.update(status=ASSIGNED, agent_id=assigned_to.spec.id, assigned_at=self.clock())
        try:
            h = await self.records.create(values)
        except Exception:
            if assigned_to is not None:
                await self.router.roster.release(assigned_to.spec.id, values["id"])
            raise
        tracker.update(ConversationPaused())
        if assigned_to is not None:
            # The agent hears first; broker events and the shopper's notice follow.
            await self.notifier.notify({"type": "handoff_assigned", "handoff": h.summary(),
                                        "agent_id": assigned_to.spec.id})
            await self.notifier.publish("handoff_requested", h, reason=escalation.reason, detail=escalation.detail,
                                        summary=record["summary"])
            await self.notifier.publish("handoff_assigned", h, agent_id=assigned_to.spec.id)
            text = msg.text("assigned", language, self.config.messages, agent=assigned_to.spec.name)
        else:
            await self.queue.add(h.id, h.queue, score(priority, now))
            await self.notifier.publish("handoff_requested", h, reason=escalation.reason, detail=escalation.detail,
                                        summary=record["summary"])
            await self.notifier.notify({"type": "handoff_queued", "handoff": h.summary()})
            if after_hours:
                text = msg.text("after_hours", language, self.config.messages, hours=hours.label() if hours else "")
            else:
                position = await self.queue.position(h.id) or 1
                text = msg.text("queued", language, self.config.messages, ahead=position - 1,
                                wait=self.router.roster.estimated_wait_minutes(
                                    h.queue, position, self.config.avg_handle_time_s))
        if self.config.webhook_url:
            self.spawn(post_webhook(self.config.webhook_url, self.config.webhook_token, h))
        tracker.update(BotUttered(text, {}, {"handoff_id": h.id, "handoff": "notice"}))
        await send_in_turn(output_channel, tracker.sender_id, {"text": text})
        return h
