"""Scale: build time, memory and query latency with N synthetic FAQ entries.

Synthetic entries combine shop vocabulary templates (one zh phrasing each). Embedding
N texts dominates the build; ``--random-vectors`` skips it (index-only numbers, e.g. 1M).
Writes benchmarks/results/kb_scale_<N>.json.
Usage: python benchmarks/kb_scale.py --entries 100000 [--random-vectors]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRODUCTS = ["跑鞋", "篮球鞋", "瑜伽垫", "运动手表", "羽毛球拍", "速干T恤", "登山包", "泳镜", "护膝", "哑铃",
            "足球", "网球拍", "骑行头盔", "滑雪服", "跳绳", "运动内衣", "冲锋衣", "健身手套", "乒乓球拍", "水壶"]
TOPICS = ["多久发货", "怎么退货", "尺码偏大吗", "有保修吗", "能开发票吗", "包邮吗", "怎么清洗", "防水吗",
          "适合新手吗", "有哪些颜色", "什么时候补货", "能用优惠券吗", "是正品吗", "重量多少", "适合几岁"]
BRANDS = ["A", "B", "C", "D", "E", "F", "G", "H"]


def synthetic_entries(n: int):
    from bot.knowledge.entries import Answer, Entry

    rng = random.Random(0)
    out = []
    for i in range(n):
        p, t, b = rng.choice(PRODUCTS), rng.choice(TOPICS), rng.choice(BRANDS)
        out.append(Entry(f"e{i}", "synthetic", {"zh": (f"{b}{i % 997}款{p}{t}",)}, {"zh": Answer(f"答案 {i}")}))
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    import numpy as np

    from bot.embeddings import get_encoder
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--random-vectors", action="store_true")
    ap.add_argument("--exact-max", type=int, default=None)
    args = ap.parse_args()
    cfg = KnowledgeConfig() if args.exact_max is None else KnowledgeConfig(exact_max=args.exact_max)
    cfg = cfg.with_updates(calibration=(4.6, 6.6, -3.4))  # skip the leave-one-out fit at this size
    encoder = get_encoder()
    rss0 = rss_mb()
    entries = synthetic_entries(args.entries)
    texts = [e.questions["zh"][0] for e in entries]
    t0 = time.perf_counter()
    vectors = None
    if args.random_vectors:
        v = np.random.default_rng(0).standard_normal((len(texts), 512)).astype(np.float32)
        vectors = v / np.linalg.norm(v, axis=1, keepdims=True)
    kb = KnowledgeBase.build(entries, cfg, encoder, vectors=vectors)
    build_s = time.perf_counter() - t0
    rng = random.Random(1)
    queries = [f"{rng.choice(PRODUCTS)}{rng.choice(TOPICS)}呀" for _ in range(args.queries)]
    with_embed, without_embed, embed_only = [], [], []
    for q in queries:
        t = time.perf_counter()
        kb.search(q)
        with_embed.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        qvec = encoder.encode([q])[0]
        embed_only.append((time.perf_counter() - t) * 1000)
        qvec = qvec / np.linalg.norm(qvec)
        t = time.perf_counter()
        kb._rank(qvec, kb.lexical.transform(q))
        without_embed.append((time.perf_counter() - t) * 1000)

    def pct(xs, p):
        return round(float(np.percentile(xs, p)), 2)

    result = {
        "entries": args.entries, "index_kind": kb.metadata["index_kind"], "random_vectors": args.random_vectors,
        "build_seconds": round(build_s, 1), "rss_increase_mb": round(rss_mb() - rss0, 1), "peak_rss_mb": round(rss_mb(), 1),
        "query_ms_with_embedding": {"p50": pct(with_embed, 50), "p99": pct(with_embed, 99)},
        "query_ms_without_embedding": {"p50": pct(without_embed, 50), "p99": pct(without_embed, 99)},
        "embedding_ms": {"p50": pct(embed_only, 50), "p99": pct(embed_only, 99)},
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks/results" / f"kb_scale_{args.entries}{'_random' if args.random_vectors else ''}_{kb.metadata['index_kind']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
