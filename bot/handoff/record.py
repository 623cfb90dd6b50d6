"""The handoff record: who the shopper is, why, and everything said so far.

Built from the tracker at escalation time so the agent never asks the shopper
to repeat themselves: full transcript (timestamps, intents, confidence, KB
hits, actions), sentiment trend, a short automatic summary, profile summary.
"""
from __future__ import annotations

import logging
from typing import Any

from bot.handoff.rules import ACTION_FAILED_METADATA, IGNORED_ACTIONS

logger = logging.getLogger(__name__)


def transcript_from_tracker(tracker: Any) -> list[dict[str, Any]]:
    """Every user and bot message and every action run, oldest first."""
    lines: list[dict[str, Any]] = []
    for event in tracker.events:
        kind = getattr(event, "type_name", "")
        if kind == "user":
            parse = event.parse_data or {}
            intent = event.intent or {}
            lines.append({
                "type": "user", "text": event.text, "timestamp": event.timestamp,
                "intent": intent.get("name"), "confidence": intent.get("confidence"),
                "entities": [{"entity": e.get("entity"), "value": e.get("value")} for e in (event.entities or [])],
                "sentiment": parse.get("sentiment"), "urgency": parse.get("urgency"),
                "language": parse.get("language"), "message_id": event.message_id,
                "channel": event.input_channel,
            })
        elif kind == "bot":
            meta = event.metadata or {}
            line: dict[str, Any] = {"type": "bot", "text": event.text, "timestamp": event.timestamp}
            data = {k: v for k, v in (event.data or {}).items() if v}
            if data:
                line["data"] = data
            if meta.get("kb"):
                line["kb"] = meta["kb"]
            if meta.get("agent_id"):
                line["agent_id"] = meta["agent_id"]
            if meta.get("utter_action"):
                line["utter_action"] = meta["utter_action"]
            lines.append(line)
        elif kind == "action" and event.action_name not in IGNORED_ACTIONS:
            lines.append({
                "type": "action", "name": event.action_name, "timestamp": event.timestamp,
                "policy": event.policy, "confidence": event.confidence,
                "failed": bool((event.metadata or {}).get(ACTION_FAILED_METADATA)),
            })
        elif kind in ("pause", "resume"):
            lines.append({"type": kind, "timestamp": event.timestamp})
    return lines


def sentiment_trend(transcript: list[dict[str, Any]]) -> dict[str, Any]:
    """User-message sentiment scores and whether they got worse."""
    scores = [float((line.get("sentiment") or {}).get("score") or 0.0)
              for line in transcript if line["type"] == "user" and line.get("sentiment")]
    if not scores:
        return {"scores": [], "direction": "unknown", "latest": None}
    half = max(1, len(scores) // 2)
    early, late = sum(scores[:half]) / half, sum(scores[half:]) / max(1, len(scores) - half) if len(scores) > 1 else scores[0]
    direction = "worsening" if late < early - 0.1 else "improving" if late > early + 0.1 else "stable"
    return {"scores": scores, "direction": direction, "latest": scores[-1]}


def summarize(transcript: list[dict[str, Any]], reason: str, language: str) -> str:
    """One or two sentences: what the shopper wants, what the bot already tried."""
    users = [l for l in transcript if l["type"] == "user" and l.get("text")]
    asks = [u["text"] for u in users if not str(u["text"]).startswith("/")][-3:]
    intents = [u["intent"] for u in users if u.get("intent")]
    tried = []
    for line in transcript:
        if line["type"] == "action" and line["name"] not in tried:
            tried.append(line["name"] + (" (failed)" if line.get("failed") else ""))
    kb_hits = [l["kb"].get("entry_id") or l["kb"].get("id") for l in transcript if l.get("kb")]
    kb_hits = [k for k in kb_hits if k]
    if language == "zh":
        text = f"顾客诉求：{' / '.join(asks) or '（无）'}（意图：{', '.join(dict.fromkeys(intents)) or '未知'}）。"
        text += f"机器人已尝试：{', '.join(tried[-5:]) or '无'}。"
        if kb_hits:
            text += f"知识库命中：{', '.join(map(str, kb_hits[-3:]))}。"
        return text + f"转人工原因：{reason}。"
    text = f"Shopper wants: {' / '.join(asks) or '(nothing said)'} (intents: {', '.join(dict.fromkeys(intents)) or 'unknown'}). "
    text += f"Bot tried: {', '.join(tried[-5:]) or 'nothing'}. "
    if kb_hits:
        text += f"KB hits: {', '.join(map(str, kb_hits[-3:]))}. "
    return text + f"Escalated because: {reason}."
