"""Conversations as a trainer reads them: one summary per conversation (channel, dates,
intents, handoff, CSAT, customer) for search and filters, and the transcript with each
message's NLU result. Built from the tracker store's event dicts (``export_conversations``).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

FALLBACK_INTENT = "nlu_fallback"
_CSAT_TEXT = re.compile(r"^\s*([1-5])\s*(?:stars?|分|星)?\s*$", re.IGNORECASE)


@dataclass
class Summary:
    conversation_id: str
    channel: str | None = None
    customer: str | None = None
    started: float | None = None
    last: float | None = None
    messages: int = 0
    intents: list[str] = field(default_factory=list)
    fallbacks: int = 0
    low_confidence: int = 0
    kb_misses: int = 0
    handoff: bool = False
    csat: int | None = None
    first_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _intent(event: dict[str, Any]) -> tuple[str | None, float]:
    intent = (event.get("parse_data") or {}).get("intent") or {}
    return intent.get("name"), float(intent.get("confidence") or 0.0)


def customer_of(event: dict[str, Any]) -> str | None:
    metadata = event.get("metadata") or {}
    if not isinstance(metadata, dict):
        return None
    identity = metadata.get("identity")
    if isinstance(identity, dict) and identity.get("customer_id"):
        return str(identity["customer_id"])
    return str(metadata["customer_id"]) if metadata.get("customer_id") else None


def csat_rating(event: dict[str, Any], intent_name: str = "csat", entity_name: str = "rating") -> int | None:
    """A 1-5 rating from the message that answered a CSAT prompt (rating entity or plain "4")."""
    name, _ = _intent(event)
    values: list[Any] = []
    if name == intent_name:
        values += [e.get("value") for e in (event.get("parse_data") or {}).get("entities") or []
                   if e.get("entity") == entity_name]
    match = _CSAT_TEXT.match(event.get("text") or "")
    if match:
        values.append(match.group(1))
    text = event.get("text") or ""
    if text.startswith(f"/{intent_name}"):
        digits = re.findall(r"\d", text)
        values += digits[:1]
    for v in values:
        try:
            r = int(float(v))
        except (TypeError, ValueError):
            continue
        if 1 <= r <= 5:
            return r
    return None


def summarize(conversation_id: str, events: list[dict[str, Any]], low_confidence: float) -> Summary:
    s = Summary(conversation_id)
    intents: list[str] = []
    csat_pending = False
    for e in events:
        kind = e.get("event")
        ts = e.get("timestamp")
        if isinstance(ts, (int, float)):
            s.started = ts if s.started is None else min(s.started, ts)
            s.last = ts if s.last is None else max(s.last, ts)
        if kind == "user":
            if csat_pending:
                rating = csat_rating(e)
                csat_pending = False
                if rating is not None:
                    s.csat = rating
                    continue
            s.messages += 1
            s.channel = e.get("input_channel") or s.channel
            s.customer = customer_of(e) or s.customer
            if not s.first_text and not (e.get("text") or "").startswith("/"):
                s.first_text = (e.get("text") or "")[:120]
            name, confidence = _intent(e)
            if name:
                if name not in intents:
                    intents.append(name)
                if name == FALLBACK_INTENT:
                    s.fallbacks += 1
                elif confidence < low_confidence and not (e.get("text") or "").startswith("/"):
                    s.low_confidence += 1
        elif kind == "bot":
            meta = e.get("metadata") or {}
            kb = meta.get("kb") if isinstance(meta, dict) else None
            if isinstance(kb, dict) and kb.get("outcome") in ("no_answer", "clarify"):
                s.kb_misses += 1
            if isinstance(meta, dict) and meta.get("handoff") == "csat":
                csat_pending = True
        elif kind == "pause":
            s.handoff = True
        elif kind == "slot" and e.get("name") == "customer_id" and e.get("value"):
            s.customer = str(e["value"])
    s.intents = intents
    return s


@dataclass(frozen=True)
class ConversationFilter:
    intent: str | None = None
    channel: str | None = None
    since: float | None = None
    until: float | None = None
    csat_max: int | None = None
    handoff: bool | None = None
    customer: str | None = None
    text: str | None = None

    def matches(self, s: Summary, events: list[dict[str, Any]]) -> bool:
        if self.intent and self.intent not in s.intents:
            return False
        if self.channel and s.channel != self.channel:
            return False
        if self.since is not None and (s.last is None or s.last < self.since):
            return False
        if self.until is not None and (s.started is None or s.started > self.until):
            return False
        if self.csat_max is not None and (s.csat is None or s.csat > self.csat_max):
            return False
        if self.handoff is not None and s.handoff != self.handoff:
            return False
        if self.customer and s.customer != self.customer and s.conversation_id != self.customer:
            return False
        if self.text:
            needle = self.text.casefold()
            if not any(needle in (e.get("text") or "").casefold() for e in events if e.get("event") == "user"):
                return False
        return True


def filter_conversations(conversations: dict[str, list[dict[str, Any]]], flt: ConversationFilter,
                         low_confidence: float, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    rows = []
    for cid, events in conversations.items():
        s = summarize(cid, events, low_confidence)
        if flt.matches(s, events):
            rows.append(s)
    rows.sort(key=lambda s: s.last or 0.0, reverse=True)
    return {"total": len(rows), "conversations": [s.as_dict() for s in rows[offset:offset + limit]]}


def transcript(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of a conversation, each user message with its NLU result."""
    out: list[dict[str, Any]] = []
    for e in events:
        kind = e.get("event")
        if kind == "user":
            parse = e.get("parse_data") or {}
            out.append({"type": "user", "text": e.get("text"), "timestamp": e.get("timestamp"),
                        "channel": e.get("input_channel"),
                        "nlu": {"intent": parse.get("intent"), "entities": parse.get("entities") or [],
                                "intent_ranking": (parse.get("intent_ranking") or [])[:5],
                                "sentiment": parse.get("sentiment")}})
        elif kind == "bot":
            meta = e.get("metadata") or {}
            out.append({"type": "bot", "text": e.get("text"), "timestamp": e.get("timestamp"),
                        "kb": meta.get("kb") if isinstance(meta, dict) else None,
                        "data": {k: v for k, v in (e.get("data") or {}).items() if v}})
        elif kind == "action" and e.get("name") not in (None, "action_listen"):
            out.append({"type": "action", "name": e.get("name"), "policy": e.get("policy"),
                        "confidence": e.get("confidence"), "timestamp": e.get("timestamp")})
        elif kind == "pause":
            out.append({"type": "handoff", "timestamp": e.get("timestamp")})
    return out
