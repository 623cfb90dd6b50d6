"""Offline recommendation quality on the seeded shop (hit-rate@10, NDCG@10).

Holds out each customer's last order (customers with ≥ 2 orders), fits on the
rest, and scores our recommender against a popularity and an item
co-occurrence baseline. Usage:
    .venv/bin/python benchmarks/recommendation_quality.py [--db shop.db] [--out results/reco.json]
Seeds a fresh shop (seed 42) into a temp file when --db is not given.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actions.shop.recommend import Recommender  # noqa: E402
from actions.shop.seed import seed_shop  # noqa: E402
from actions.shop.sql import SqlShopStore  # noqa: E402

K = 10


def metrics(ranked: list[str], truth: set[str]) -> tuple[float, float]:
    hit = 1.0 if truth & set(ranked[:K]) else 0.0
    dcg = sum(1 / math.log2(i + 2) for i, s in enumerate(ranked[:K]) if s in truth)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(truth), K)))
    return hit, dcg / idcg if idcg else 0.0


async def evaluate(url: str) -> dict:
    store = SqlShopStore(url)
    baskets = await store.baskets()
    products = await store.products()
    await store.close()
    by_customer = defaultdict(list)
    for b in baskets:
        by_customer[b.customer_id].append(b)
    train, test = [], []
    for cid, bs in by_customer.items():
        bs.sort(key=lambda b: b.created_at)
        if len(bs) < 2:
            train.extend(bs)
            continue
        train.extend(bs[:-1])
        test.append((cid, [s for b in bs[:-1] for s in b.skus], set(bs[-1].skus)))
    start = time.perf_counter()
    model = Recommender(products).fit(train)
    fit_s = time.perf_counter() - start
    results = {}
    for name, fn in (
        ("popularity", lambda h: model.popular(K, exclude=h)),
        ("item_cooccurrence", lambda h: model.cooccurrence(h, K)),
        ("kefu_recommender", lambda h: [r.sku for r in model.recommend(h, K)]),
    ):
        hits = ndcgs = 0.0
        t0 = time.perf_counter()
        for _cid, history, truth in test:
            h, n = metrics(fn(history), truth)
            hits += h
            ndcgs += n
        results[name] = {"hit_rate@10": round(hits / len(test), 4), "ndcg@10": round(ndcgs / len(test), 4),
                         "ms_per_user": round((time.perf_counter() - t0) * 1000 / len(test), 3)}
    base = results["popularity"]["hit_rate@10"] or 1e-9
    return {"customers_evaluated": len(test), "train_orders": len(train), "fit_seconds": round(fit_s, 3),
            "results": results,
            "lift_vs_popularity_hit_rate": round(results["kefu_recommender"]["hit_rate@10"] / base, 3),
            "target_lift": 1.5}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="existing shop SQLite file (default: seed a fresh one)")
    parser.add_argument("--out", default="results/recommendation_quality.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db:
            url = f"sqlite:///{args.db}"
        else:
            url = f"sqlite:///{tmp}/shop.db"
            seed_shop(url, seed=42)
        report = asyncio.run(evaluate(url))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0 if report["lift_vs_popularity_hit_rate"] >= report["target_lift"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
