"""Retrieval quality of the demo KB on held-out colloquial queries (zh and en separately).

Compares dense-only, lexical-only and the hybrid mix; writes benchmarks/results/kb_quality.json.
Usage: python benchmarks/kb_quality.py [--queries FILE] [--kb knowledge_base]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from bot.embeddings import get_encoder
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig
    from bot.knowledge.evaluate import evaluate, load_queries
    from bot.knowledge.loader import load_entries

    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", default=str(ROOT / "benchmarks/data/kb_heldout_queries.yml"))
    ap.add_argument("--kb", default=str(ROOT / "knowledge_base"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/kb_quality.json"))
    args = ap.parse_args()
    entries = load_entries(args.kb).entries
    queries = load_queries(args.queries)
    encoder = get_encoder()
    results = {}
    for name, (dw, lw) in {"dense_only": (1.0, 0.0), "lexical_only": (0.0, 1.0), "hybrid_default": (None, None)}.items():
        cfg = KnowledgeConfig() if dw is None else KnowledgeConfig(dense_weight=dw, lexical_weight=lw)
        report = evaluate(KnowledgeBase.build(entries, cfg, encoder), queries)
        results[name] = {"weights": [cfg.dense_weight, cfg.lexical_weight],
                         "overall": {k: report[k] for k in ("recall@1", "recall@3", "mrr", "answer_rate", "clarify_rate",
                                                            "no_answer_rate", "answer_correct_rate", "answer_wrong_rate")},
                         "by_language": report["by_language"],
                         "misses": report["misses"] if name == "hybrid_default" else len(report["misses"])}
        bl = report["by_language"]
        print(f"{name:15s} zh r@1 {bl['zh']['recall@1']:.3f} r@3 {bl['zh']['recall@3']:.3f} | en r@1 "
              f"{bl['en']['recall@1']:.3f} r@3 {bl['en']['recall@3']:.3f} | answer {report['answer_rate']:.2f} "
              f"(wrong {report['answer_wrong_rate']:.2f}) clarify {report['clarify_rate']:.2f} "
              f"no_answer {report['no_answer_rate']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
