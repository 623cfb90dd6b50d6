"""Product resolution (`actions/shop/products.py` ProductFinder) over the full demo catalogue.

Builds the index once (timed), then resolves shopper phrasings — full titles, partial
titles, homophone typos, typed pinyin, English titles, messages naming no product —
and records per-message wall and CPU time (p50/p95/p99, ms) and how often the first
match is the intended product. Run with `nice -n 10`.

Usage: .venv/bin/python benchmarks/shop_products.py [--n 400] [--out benchmarks/results/shop_products.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actions.shop.products import ProductFinder, pinyin  # noqa: E402
from actions.shop.seed import FULL, seed_shop  # noqa: E402
from actions.shop.sql import SqlShopStore  # noqa: E402

HOMOPHONES = {"磐": "盘", "疾": "急", "锋": "峰", "极": "急", "迅": "讯", "灵": "零", "领": "岭", "巅": "颠"}


def phrasings(product, rng: random.Random) -> list[tuple[str, str]]:
    title = product.title_zh
    typo = "".join(HOMOPHONES.get(ch, ch) for ch in title)
    return [
        ("full_title", f"{title}多少钱"),
        ("partial_title", f"{title[len(product.brand):]}还有货吗"),
        ("homophone", f"{typo}有42码吗"),
        ("pinyin", pinyin(title)),
        ("english", f"how much is the {product.title_en.lower()}"),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400, help="products sampled for phrasings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shop_products.json"))
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/shop.db"
        seed_shop(url, size=FULL)
        store = SqlShopStore(url)
        products = asyncio.run(store.products())
        asyncio.run(store.close())
    start = time.perf_counter()
    finder = ProductFinder(products)
    build_ms = (time.perf_counter() - start) * 1000
    sample = rng.sample(products, min(args.n, len(products)))
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    top1: dict[str, int] = {}
    for product in sample:
        for kind, text in phrasings(product, rng) + [("no_product", "你们几点下班")]:
            t0, c0 = time.perf_counter(), time.process_time()
            found = finder.search(text)
            wall.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            cpu.setdefault(kind, []).append((time.process_time() - c0) * 1000)
            ok = (not found) if kind == "no_product" else bool(found) and found[0].product.sku == product.sku
            top1[kind] = top1.get(kind, 0) + int(ok)
    result = {
        "command": "nice -n 10 .venv/bin/python benchmarks/shop_products.py --n %d" % args.n,
        "catalogue_products": len(products), "sampled": len(sample), "index_build_ms": round(build_ms, 1),
        "load_average_after": os.getloadavg(),
        "per_phrasing": {
            kind: {"top1_correct": round(top1[kind] / len(wall[kind]), 3),
                   "wall_ms": {"p50": round(statistics.median(wall[kind]), 2), "p95": round(pct(wall[kind], 0.95), 2),
                               "p99": round(pct(wall[kind], 0.99), 2)},
                   "cpu_ms": {"p50": round(statistics.median(cpu[kind]), 2), "p99": round(pct(cpu[kind], 0.99), 2)}}
            for kind in wall
        },
    }
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
