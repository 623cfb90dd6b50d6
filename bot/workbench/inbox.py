"""The review inbox: messages the bot handled badly, from real traffic, grouped by meaning.

A user message is an inbox item when its intent is ``nlu_fallback`` or below the confidence
threshold, when the knowledge base could not answer it (or had to ask which entry was
meant), when it was the last message before a handoff, or when it belongs to a conversation
rated 1-2. Similar items form one group (the NLU's sentence encoder, ``bot/embeddings.py``,
then agglomerative clustering under a cosine-distance threshold), counted and sorted most
frequent first, each with the intents and FAQ entries it most likely belongs to.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bot.workbench.annotate import text_key
from bot.workbench.conversations import FALLBACK_INTENT, csat_rating

REASONS = ("fallback", "low_confidence", "kb_no_answer", "kb_clarify", "handoff", "low_csat")
LOW_CSAT = 2
MAX_TEXTS = 2000  # unique texts clustered per request (the newest first)


@dataclass
class Item:
    text: str
    conversation_id: str
    timestamp: float
    reasons: set[str] = field(default_factory=set)
    intent: str | None = None
    confidence: float = 0.0
    ranking: list[dict[str, Any]] = field(default_factory=list)
    faq: list[str] = field(default_factory=list)


def collect_items(conversations: dict[str, list[dict[str, Any]]], low_confidence: float,
                  handled: dict[str, Any] | None = None) -> list[Item]:
    """Every inbox item of these conversations (event dicts), minus texts already handled."""
    handled = handled or {}
    items: list[Item] = []
    for cid, events in conversations.items():
        current: Item | None = None
        conversation_items: list[Item] = []
        csat_pending = False
        rating: int | None = None
        for e in events:
            kind = e.get("event")
            if kind == "user":
                text = (e.get("text") or "").strip()
                if csat_pending:
                    csat_pending = False
                    r = csat_rating(e)
                    if r is not None:
                        rating = r
                        current = None
                        continue
                if not text or text.startswith("/"):
                    current = None
                    continue
                parse = e.get("parse_data") or {}
                intent = parse.get("intent") or {}
                current = Item(text, cid, float(e.get("timestamp") or 0.0), intent=intent.get("name"),
                               confidence=float(intent.get("confidence") or 0.0),
                               ranking=list(parse.get("intent_ranking") or [])[:5])
                if current.intent == FALLBACK_INTENT:
                    current.reasons.add("fallback")
                    alternatives = [r for r in current.ranking if r.get("name") != FALLBACK_INTENT]
                    current.ranking = alternatives
                elif current.confidence < low_confidence:
                    current.reasons.add("low_confidence")
                conversation_items.append(current)
            elif kind == "bot" and current is not None:
                meta = e.get("metadata") or {}
                kb = meta.get("kb") if isinstance(meta, dict) else None
                if isinstance(kb, dict):
                    if kb.get("outcome") == "no_answer":
                        current.reasons.add("kb_no_answer")
                    elif kb.get("outcome") == "clarify":
                        current.reasons.add("kb_clarify")
                        current.faq.extend(str(o) for o in kb.get("options") or [])
                    if kb.get("id"):
                        current.faq.append(str(kb["id"]))
                if isinstance(meta, dict) and meta.get("handoff") == "csat":
                    csat_pending = True
            elif kind == "pause" and current is not None:
                current.reasons.add("handoff")
        if rating is not None and rating <= LOW_CSAT:
            for item in conversation_items:  # the whole conversation goes to review
                item.reasons.add("low_csat")
        items.extend(i for i in conversation_items if i.reasons and text_key(i.text) not in handled)
    return items


def cluster_labels(vectors: np.ndarray, distance: float) -> np.ndarray:
    """Agglomerative clustering (average linkage, cosine) cut at ``distance``."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                    linkage="average")
    return model.fit_predict(vectors)


def group_items(items: list[Item], encode: Callable[[list[str]], np.ndarray], distance: float,
                max_texts: int = MAX_TEXTS) -> list[dict[str, Any]]:
    """Groups of similar items, most frequent first, with candidate intents and FAQ entries."""
    by_key: dict[str, list[Item]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i.timestamp, reverse=True):
        by_key[text_key(item.text)].append(item)
    keys = list(by_key)[:max_texts]
    if not keys:
        return []
    texts = [by_key[k][0].text for k in keys]
    vectors = np.asarray(encode(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-9)
    labels = cluster_labels(vectors, distance)
    groups: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[int(label)].append(index)
    out = []
    for members in groups.values():
        centroid = vectors[members].mean(axis=0)
        representative = members[int(np.argmax(vectors[members] @ centroid))]
        messages = []
        reasons: Counter[str] = Counter()
        intents: dict[str, float] = defaultdict(float)
        faqs: Counter[str] = Counter()
        count = 0
        for m in members:
            group_items_ = by_key[keys[m]]
            count += len(group_items_)
            for it in group_items_:
                reasons.update(it.reasons)
                for r in it.ranking:
                    if r.get("name") and r.get("name") != FALLBACK_INTENT:
                        intents[str(r["name"])] += float(r.get("confidence") or 0.0)
                faqs.update(it.faq)
            first = group_items_[0]
            messages.append({"text": first.text, "count": len(group_items_), "intent": first.intent,
                             "confidence": round(first.confidence, 4),
                             "conversations": sorted({i.conversation_id for i in group_items_})[:5],
                             "reasons": sorted(set().union(*(i.reasons for i in group_items_)))})
        messages.sort(key=lambda m: -m["count"])
        total = sum(intents.values()) or 1.0
        suggestions = [{"intent": name, "score": round(score / total, 3)}
                       for name, score in sorted(intents.items(), key=lambda kv: -kv[1])[:3]]
        out.append({
            "id": text_key(texts[representative]),
            "representative": texts[representative],
            "count": count,
            "unique": len(members),
            "reasons": dict(reasons.most_common()),
            "messages": messages[:50],
            "suggested_intents": suggestions,
            "suggested_faq": [{"id": k, "count": v} for k, v in faqs.most_common(3)],
            # Spread over many intents with none dominant: maybe something the bot was never taught.
            "new_intent_candidate": count >= 3 and (not suggestions or suggestions[0]["score"] < 0.5),
        })
    out.sort(key=lambda g: (-g["count"], g["representative"]))
    return out
