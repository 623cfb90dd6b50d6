"""Scale: build time, memory and query latency with N synthetic FAQ entries.

Synthetic entries combine shop vocabulary templates (one zh phrasing each). Embedding
N texts dominates the build; ``--random-vectors`` skips it (index-only numbers), and
``--embed-cache FILE.npy`` embeds once (batched, timed) and reuses the vectors for the
index variants (``--approximate hnsw|ivf``, ``--exact-max``), so 1M runs compare like with like.
Writes benchmarks/results/kb_scale_<N>[_random]_<kind>.json, with ANN recall@10 against exact search.
Usage: python benchmarks/kb_scale.py --entries 100000 [--random-vectors] [--embed-cache /tmp/v.npy]
"""
from __future__ import annotations

import argparse
import os
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


def cached_embeddings(encoder, texts: list[str], path: Path):
    """Vectors for ``texts`` from ``path`` or embedded now in batches (and saved); with the seconds it took."""
    import numpy as np

    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("n") == len(texts):
            return np.load(path), float(info["seconds"])
    t0 = time.perf_counter()
    out = np.zeros((len(texts), 512), dtype=np.float32)
    batch = 256
    for i in range(0, len(texts), batch):
        out[i : i + batch] = encoder.encode(texts[i : i + batch])
        if i % (batch * 400) == 0:
            print(f"embedded {i}/{len(texts)} in {time.perf_counter() - t0:.0f} s", flush=True)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    seconds = time.perf_counter() - t0
    np.save(path, out)
    meta.write_text(json.dumps({"n": len(texts), "seconds": seconds}))
    return out, seconds


def forget(encoder) -> None:
    """Empty the encoder's recent-text cache (whichever kind this version of bot/embeddings.py has)."""
    cache = getattr(encoder, "_cache", None)
    if cache is not None and hasattr(cache, "clear"):
        cache.clear()
    if hasattr(encoder, "_last"):
        encoder._last = None


def tiled_vectors(path: Path, n: int):
    """n vectors from m real ones: copy k of vector j is vector j plus noise (cosine ~0.9 to it),
    renormalised. The embedding seconds are projected from the real run's per-text rate."""
    import numpy as np

    base = np.load(path, mmap_mode="r")
    info = json.loads(path.with_suffix(".json").read_text())
    m = base.shape[0]
    rng = np.random.default_rng(0)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, m):
        stop = min(n, start + m)
        block = np.array(base[: stop - start], dtype=np.float32)
        if start:
            block += rng.standard_normal(block.shape, dtype=np.float32) * 0.02
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out, float(info["seconds"]) * n / m


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
    ap.add_argument("--embed-cache", default=None, help="npy file: embed once, reuse for later runs")
    ap.add_argument("--approximate", choices=("hnsw", "ivf"), default=None)
    ap.add_argument("--hnsw-m", type=int, default=None)
    ap.add_argument("--ef-construction", type=int, default=None)
    ap.add_argument("--ef-search", type=int, default=None)
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--ivf-nlist", type=int, default=None)
    ap.add_argument("--sweep", default="", help="extra search settings 'depth:ef_or_nprobe,...' on the same index")
    ap.add_argument("--embed-only", action="store_true", help="fill --embed-cache and stop")
    ap.add_argument("--tile-from", default=None,
                    help="npy of real USE vectors for the first M entries; entry i gets vector[i %% M] plus "
                         "small noise (semi-synthetic 1M when embedding 1M texts is out of reach)")
    args = ap.parse_args()
    over = {k: v for k, v in {"exact_max": args.exact_max, "approximate": args.approximate, "hnsw_m": args.hnsw_m,
                              "hnsw_ef_construction": args.ef_construction, "hnsw_ef_search": args.ef_search,
                              "ivf_nprobe": args.nprobe, "ivf_nlist": args.ivf_nlist}.items() if v is not None}
    cfg = KnowledgeConfig(**over)
    cfg = cfg.with_updates(calibration=(4.6, 6.6, -3.4))  # skip the leave-one-out fit at this size
    encoder = get_encoder()
    rss0 = rss_mb()
    entries = synthetic_entries(args.entries)
    texts = [e.questions["zh"][0] for e in entries]
    t0 = time.perf_counter()
    vectors = None
    embed_s = None
    if args.random_vectors:
        v = np.random.default_rng(0).standard_normal((len(texts), 512)).astype(np.float32)
        vectors = v / np.linalg.norm(v, axis=1, keepdims=True)
    elif args.tile_from:
        vectors, embed_s = tiled_vectors(Path(args.tile_from), len(texts))
        t0 = time.perf_counter()
    elif args.embed_cache:
        vectors, embed_s = cached_embeddings(encoder, texts, Path(args.embed_cache))
        if args.embed_only:
            print(json.dumps({"entries": len(texts), "embed_seconds": round(embed_s, 1)}))
            return 0
        t0 = time.perf_counter()
    kb = KnowledgeBase.build(entries, cfg, encoder, vectors=vectors)
    build_s = time.perf_counter() - t0
    if embed_s is not None:
        build_s += embed_s
    rng = random.Random(1)
    queries = [f"{rng.choice(PRODUCTS)}{rng.choice(TOPICS)}呀" for _ in range(args.queries)]
    qvecs = encoder.encode(queries)
    qvecs = qvecs / np.linalg.norm(qvecs, axis=1, keepdims=True)
    exact_top10 = None
    exact_scan_ms = None
    if vectors is not None and kb.index is not None and kb.index.kind != "flat":
        t = time.perf_counter()
        exact_top10 = [set(np.argpartition(-(vectors @ q), 10)[:10].tolist()) for q in qvecs[:50]]
        exact_scan_ms = (time.perf_counter() - t) * 1000 / len(exact_top10)
    for q in queries[:10]:
        kb.search(q)  # warm-up (lazy lexical analyzer, FAISS buffers)

    def pct(xs, p):
        return round(float(np.percentile(xs, p)), 2)

    def measure() -> dict:
        with_embed, without_embed, embed_only, cpu_with = [], [], [], []
        for q, qvec in zip(queries, qvecs):
            forget(encoder)  # the encoder's cache of recent texts would hide the embedding cost
            c = time.process_time()
            t = time.perf_counter()
            kb.search(q)
            with_embed.append((time.perf_counter() - t) * 1000)
            cpu_with.append((time.process_time() - c) * 1000)
            forget(encoder)
            t = time.perf_counter()
            encoder.encode([q])
            embed_only.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            kb._rank(qvec, kb.lexical.transform(q))
            without_embed.append((time.perf_counter() - t) * 1000)
        recall = None
        if exact_top10 is not None:
            hits = 0
            for q, exact in zip(qvecs, exact_top10):
                _, ids = kb.index.search(q, max(10, kb.config.rerank_depth))
                hits += len(exact & set(int(i) for i in ids))
            recall = round(hits / (10 * len(exact_top10)), 4)
        return {"rerank_depth": kb.config.rerank_depth, "hnsw_ef_search": kb.config.hnsw_ef_search,
                "ivf_nprobe": kb.config.ivf_nprobe, "ann_recall_at_10_vs_exact": recall,
                "query_ms_with_embedding": {"p50": pct(with_embed, 50), "p99": pct(with_embed, 99)},
                "query_ms_without_embedding": {"p50": pct(without_embed, 50), "p99": pct(without_embed, 99)},
                "embedding_ms": {"p50": pct(embed_only, 50), "p99": pct(embed_only, 99)},
                # CPU time of a whole query (embedding included): what it costs without other load
                "query_cpu_ms_with_embedding": {"p50": pct(cpu_with, 50), "p99": pct(cpu_with, 99)}}

    main_run = measure()
    sweep = []
    for item in filter(None, args.sweep.split(",")):
        depth, knob = (int(x) for x in item.split(":"))
        kb.config = cfg.with_updates(rerank_depth=depth, hnsw_ef_search=knob, ivf_nprobe=knob)
        kb.index.tune(kb.config)
        sweep.append(measure())
        print(json.dumps(sweep[-1]), flush=True)
    result = {
        "entries": args.entries, "index_kind": kb.metadata["index_kind"], "random_vectors": args.random_vectors,
        "vectors": "random" if args.random_vectors else (f"tiled from {args.tile_from} (+noise)" if args.tile_from
                                                          else "USE embeddings of the synthetic texts"),
        "index_params": {k: v for k, v in cfg.__dict__.items() if k.startswith(("hnsw", "ivf", "exact", "approx"))},
        "embed_seconds": None if embed_s is None else round(embed_s, 1),
        "embed_seconds_projected": bool(args.tile_from),  # tiled: measured 100k rate x N, not run
        "index_and_lexical_seconds": round(build_s - (embed_s or 0.0), 1),
        "build_seconds": round(build_s, 1), "rss_increase_mb": round(rss_mb() - rss0, 1), "peak_rss_mb": round(rss_mb(), 1),
        "load_average_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
        "exact_numpy_scan_ms_per_query": None if exact_scan_ms is None else round(exact_scan_ms, 1),
        **main_run,
        "sweep": sweep,
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks/results" / f"kb_scale_{args.entries}{'_random' if args.random_vectors else ''}_{kb.metadata['index_kind']}{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
