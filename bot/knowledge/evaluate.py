"""Retrieval evaluation: recall@1/@3, MRR, outcome rates, per-topic results and misses."""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from bot.knowledge.base import KnowledgeBase
from bot.nlu.language import detect_language
from bot.shared.exceptions import TrainingDataError
from bot.shared.yaml_io import line_of, read_yaml_file, to_plain


def load_queries(path: str | Path) -> list[dict[str, Any]]:
    """``queries: [{topic: <entry id>, text: <question>}, ...]`` with file/line errors."""
    data = read_yaml_file(path)
    items = data.get("queries") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise TrainingDataError("Query file must have `queries:` as a list.", path, 1,
                                fix="Write `queries:` then `- {topic: shipping_time, text: ...}` items.")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "topic" not in item:
            raise TrainingDataError("Each query needs `topic` and `text`.", path, line_of(items, index=i))
        plain = to_plain(item)
        out.append({"topic": plain["topic"], "text": plain["text"], "language": plain.get("language")})
    return out


def _metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"queries": 0}
    outcomes = collections.Counter(r["outcome"] for r in rows)
    return {
        "queries": n,
        "recall@1": round(sum(r["rank"] == 1 for r in rows) / n, 4),
        "recall@3": round(sum(0 < r["rank"] <= 3 for r in rows) / n, 4),
        "mrr": round(sum(1.0 / r["rank"] for r in rows if r["rank"]) / n, 4),
        "answer_rate": round(outcomes["answer"] / n, 4),
        "clarify_rate": round(outcomes["clarify"] / n, 4),
        "no_answer_rate": round(outcomes["no_answer"] / n, 4),
        # answered with the right entry / answered with a wrong one
        "answer_correct_rate": round(sum(r["outcome"] == "answer" and r["rank"] == 1 for r in rows) / n, 4),
        "answer_wrong_rate": round(sum(r["outcome"] == "answer" and r["rank"] != 1 for r in rows) / n, 4),
    }


def evaluate(kb: KnowledgeBase, queries: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for q in queries:
        result = kb.search(q["text"], q.get("language"), top_k=10)
        ids = [c.entry_id for c in result.candidates]
        rank = ids.index(q["topic"]) + 1 if q["topic"] in ids else 0
        rows.append({"topic": q["topic"], "text": q["text"], "language": q.get("language") or detect_language(q["text"]),
                     "rank": rank, "outcome": result.outcome, "predicted": ids[:3],
                     "score": result.score, "elapsed_ms": result.elapsed_ms})
    by_lang = collections.defaultdict(list)
    by_topic = collections.defaultdict(list)
    for r in rows:
        by_lang[r["language"]].append(r)
        by_topic[r["topic"]].append(r)
    unknown = sorted(t for t in by_topic if kb.get(t) is None)
    return {
        **_metrics(rows),
        "by_language": {k: _metrics(v) for k, v in sorted(by_lang.items())},
        "per_topic": {k: _metrics(v) for k, v in sorted(by_topic.items())},
        "unknown_topics": unknown,
        "misses": [r for r in rows if r["rank"] != 1],
        "kb": {k: kb.metadata.get(k) for k in ("embedder", "entries", "phrasings", "index_kind", "calibration")},
    }
