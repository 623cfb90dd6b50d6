"""Action latency in-process: order look-up and recommendation p50/p99 (ms).

Runs `action_order_request` (status, verified by channel identity) and
`action_recommend` through rasa_sdk's ActionExecutor, exactly as the in-process
executor or an action server would, over a full seeded shop (20 000+ orders).
Usage: .venv/bin/python benchmarks/action_latency.py [--db shop.db] [--n 300] [--out results/action_latency.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rasa_sdk.executor import ActionExecutor  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from actions.shop import configure_shop  # noqa: E402
from actions.shop.seed import seed_shop  # noqa: E402
from actions.shop.sql import SqlShopStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 3)


async def bench(url: str, n: int) -> dict:
    store = SqlShopStore(url)
    configure_shop(store)
    domain = YAML(typ="safe").load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    ex = ActionExecutor()
    ex.register_package("actions")
    from sqlalchemy import text

    with store.engine.connect() as c:
        owners = c.execute(text("select i.external_id, o.id from channel_identities i join orders o on o.customer_id=i.customer_id")).all()
        n_orders = c.execute(text("select count(*) from orders")).scalar()
    rng = random.Random(1)
    sample = rng.sample(owners, min(n, len(owners)))

    def payload(action: str, sender: str, slots: dict) -> dict:
        latest = {"text": "x", "intent": {"name": "inform", "confidence": 1.0}, "entities": []}
        return {"next_action": action, "sender_id": sender, "version": "3.6.0", "domain": domain,
                "tracker": {"sender_id": sender, "slots": {"language": "zh", **slots}, "latest_message": latest,
                            "events": [], "paused": False, "followup_action": None, "active_loop": {},
                            "latest_action_name": "action_listen", "latest_input_channel": "wechat"}}

    results = {}
    for name, make in (
        ("order_lookup", lambda s, o: payload("action_order_request", s, {"order_id": o, "order_request": "status"})),
        ("recommendation", lambda s, o: payload("action_recommend", s, {})),
    ):
        await ex.run(make(*sample[0]))  # warm-up (fits the recommender once)
        times = []
        for sender, order_id in sample:
            t0 = time.perf_counter()
            await ex.run(make(sender, order_id))
            times.append((time.perf_counter() - t0) * 1000)
        results[name] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "n": len(times)}
    await store.close()
    return {"orders": n_orders, "mode": "in-process (rasa_sdk ActionExecutor)", "results": results, "target_p99_ms": 20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--out", default="results/action_latency.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{args.db}" if args.db else f"sqlite:///{tmp}/shop.db"
        if not args.db:
            seed_shop(url)
        report = asyncio.run(bench(url, args.n))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
