"""When to escalate: each rule reads the tracker and returns the reason it fired.

Rules that look at the shopper's message (asking for a human, anger, urgency,
complaint, VIP on sensitive intents) run before the bot answers; rules that
look at what the bot did (fallbacks, unanswered KB questions, failing actions)
run after its turn. Only events since the last session start, restart or
handoff resume count, so a resolved handoff does not re-fire at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.handoff.config import HandoffConfig

ACTION_FAILED_METADATA = "kefu_action_failed"
FALLBACK_ACTIONS = {"action_default_fallback", "action_two_stage_fallback", "utter_default"}
IGNORED_ACTIONS = {"action_listen", "action_session_start", "action_extract_slots"}


@dataclass(frozen=True)
class Escalation:
    reason: str
    detail: str = ""
    urgent: bool = False


def recent_events(tracker: Any) -> list[Any]:
    """Events since the latest session start, restart or handoff resume."""
    events = list(tracker.events)
    start = 0
    for index, event in enumerate(events):
        if getattr(event, "type_name", "") in ("session_started", "restart", "resume"):
            start = index + 1
    return events[start:]


def check_user_message(tracker: Any, config: HandoffConfig, vip: bool = False) -> Escalation | None:
    """Rules on the latest user message (run before the bot answers)."""
    message = tracker.latest_message
    if message is None:
        return None
    intent = (message.intent or {}).get("name")
    parse = message.parse_data or {}
    if intent in config.request_human_intents:
        return Escalation("request_human", f"intent {intent}")
    urgency = parse.get("urgency") or {}
    score = float(urgency.get("score") or 0.0)
    if urgency.get("flag") is True and score >= config.urgency_threshold:
        return Escalation("urgent", f"urgency {score:.2f}", urgent=True)
    if vip and intent in config.vip_sensitive_intents:
        return Escalation("vip_sensitive", f"VIP customer, intent {intent}")
    if intent in config.complaint_intents:
        return Escalation("complaint", f"intent {intent}")
    sentiment = parse.get("sentiment") or {}
    s_score = sentiment.get("score")
    if sentiment.get("label") == "negative" and s_score is not None and float(s_score) <= config.sentiment_threshold:
        return Escalation("negative_sentiment", f"sentiment {float(s_score):.2f}")
    return None


def check_bot_turn(tracker: Any, config: HandoffConfig) -> Escalation | None:
    """Rules on what the bot did: fallbacks, unanswered KB questions, failed actions."""
    events = recent_events(tracker)
    if config.max_action_failures:
        failures: dict[str, int] = {}
        for event in events:
            if getattr(event, "type_name", "") == "action" and (event.metadata or {}).get(ACTION_FAILED_METADATA):
                failures[event.action_name] = failures.get(event.action_name, 0) + 1
        for name, count in failures.items():
            if count >= config.max_action_failures:
                return Escalation("action_failed", f"{name} failed {count} times")
    if config.max_unanswered:
        unanswered = sum(1 for e in events if getattr(e, "type_name", "") == "bot"
                         and "unanswered_count" in ((e.metadata or {}).get("kb") or {}))
        if unanswered >= config.max_unanswered:
            return Escalation("kb_unanswered", f"{unanswered} unanswered questions")
    if config.max_consecutive_fallbacks:
        streak = consecutive_fallback_turns(events)
        if streak >= config.max_consecutive_fallbacks:
            return Escalation("repeated_fallback", f"{streak} fallbacks in a row")
    return None


def consecutive_fallback_turns(events: list[Any]) -> int:
    """How many of the latest user turns ended in a fallback, counting back."""
    turns: list[bool] = []
    current: bool | None = None
    for event in events:
        kind = getattr(event, "type_name", "")
        if kind == "user":
            if current is not None:
                turns.append(current)
            current = False
            intent = (event.intent or {}).get("name")
            if intent == "nlu_fallback":
                current = True
        elif kind == "action" and current is not None and event.action_name not in IGNORED_ACTIONS:
            if event.action_name in FALLBACK_ACTIONS:
                current = True
        elif kind == "bot" and current is not None and (event.metadata or {}).get("utter_action") == "utter_default":
            current = True
    if current is not None:
        turns.append(current)
    streak = 0
    for fallback in reversed(turns):
        if not fallback:
            break
        streak += 1
    return streak
