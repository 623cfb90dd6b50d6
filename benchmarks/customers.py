"""Customer 360 on the demo shop: incremental update latency, full recompute rate, timeline page
latency, and churn AUC of the health score against recency alone.

Data: the demo shop (``python -m actions.shop seed``: 2 010 customers, 21 010 orders, one year)
turned into shop events (order_paid with categories, price band within the category — tertiles of
the category's prices — discount/coupon; order_cancelled; return/exchange requests), plus generated
behaviour events (product views and add-to-carts in the days before each order, recommendation
shows/clicks with a per-customer click affinity, random browsing). Seeded RNG: same run, same data.

1. **Incremental**: every shop event and ``--behaviour`` behaviour events through
   ``CustomerService.ingest`` in time order (one SQLite transaction each: resolve identity, store
   the event once, fold, rescore health, re-tag, history), timed per event → p50/p95/p99.
2. **Full recompute**: ``recompute_all`` over every customer from the stored events → customers/s,
   and the time that rate gives for 100 000 customers (an extrapolation, said so in the JSON).
3. **Timeline**: one customer with 1 000 timeline items; pages of 50 (first page, then cursors)
   read with ``CustomerService.timeline`` and serialised to JSON as the route does → p50/p95.
4. **Churn AUC**: cutoff = last order day − 90 days. Health and profile are computed from events
   before the cutoff only (behaviour events tied to a later order are dropped: no leakage);
   churned = no order in the held-out 90 days, among customers with an order before the cutoff.
   AUC of (100 − health) and of recency (days since last order), bootstrap 95 % CI of the
   difference, per-component AUCs, and the weights used (``bot/customers/default_health.yml``).

Usage: .venv/bin/python benchmarks/customers.py [--shop-url sqlite:////tmp/shop.db] [--behaviour 100000]
       [--out benchmarks/results/customers.json] [--figures docs/figures]
Without --shop-url the demo shop is seeded into a temporary file first (~20 s).
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.customers import profile as prof  # noqa: E402
from bot.customers.health import score as health_score  # noqa: E402
from bot.customers.rules import load_rules  # noqa: E402
from bot.customers.service import CustomerService  # noqa: E402
from bot.customers.store import CustomerStore  # noqa: E402

DAY = 86400.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _ts(dt: Any) -> float:
    if dt is None:
        return None  # type: ignore[return-value]
    if isinstance(dt, str):
        from datetime import datetime
        dt = datetime.fromisoformat(dt)
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def shop_events(url: str) -> tuple[list[tuple[float, str, str, dict[str, Any], str | None]], float]:
    """(ts, customer, type, data, source order) for the shop's history, and the last order time."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as c:
        products = c.execute(sa.text("select sku, category, price_cents from products")).all()
        by_cat: dict[str, list[int]] = defaultdict(list)
        for _, cat, price in products:
            by_cat[cat].append(price)
        cuts = {cat: (sorted(p)[len(p) // 3], sorted(p)[2 * len(p) // 3]) for cat, p in by_cat.items()}
        band = {sku: ("low" if price < cuts[cat][0] else "mid" if price < cuts[cat][1] else "high")
                for sku, cat, price in products}
        category = {sku: cat for sku, cat, _ in products}
        lines: dict[str, list[str]] = defaultdict(list)
        for order_id, sku in c.execute(sa.text("select order_id, sku from order_lines")):
            lines[order_id].append(sku)
        events: list[tuple[float, str, str, dict[str, Any], str | None]] = []
        last = 0.0
        for oid, cid, status, paid, cancelled, discount, coupon, total in c.execute(sa.text(
                "select id, customer_id, status, paid_at, cancelled_at, discount_cents, coupon_code, total_cents "
                "from orders")):
            if paid is not None:
                ts = _ts(paid)
                last = max(last, ts)
                skus = lines.get(oid, [])
                events.append((ts, str(cid), "order_paid", {
                    "order_id": oid, "total_cents": total, "discount_cents": discount, "coupon_code": coupon,
                    "categories": sorted({category[s] for s in skus if s in category}),
                    "price_bands": [band[s] for s in skus if s in band]}, oid))
            if cancelled is not None:
                events.append((_ts(cancelled), str(cid), "order_cancelled", {"order_id": oid}, oid))
        for oid, cid, kind, created in c.execute(sa.text(
                "select a.order_id, o.customer_id, a.kind, a.created_at from after_sales a join orders o "
                "on o.id = a.order_id")):
            events.append((_ts(created), str(cid), f"{kind}_requested", {"order_id": oid}, oid))
    engine.dispose()
    events.sort(key=lambda e: e[0])
    return events, last


def behaviour_events(orders: list[tuple[float, str, str, dict[str, Any], str | None]], target: int,
                     start: float, end: float, seed: int = 7) -> list[tuple[float, str, str, dict[str, Any], str | None]]:
    """Views/carts before each order, recommendation shows/clicks, random browsing: ``target`` events."""
    rng = random.Random(seed)
    customers = sorted({e[1] for e in orders})
    affinity = {c: rng.betavariate(1.5, 6) for c in customers}
    out: list[tuple[float, str, str, dict[str, Any], str | None]] = []
    paid = [e for e in orders if e[2] == "order_paid"]
    per_order = max(1, target // (2 * max(1, len(paid))))
    for ts, cid, _, data, oid in paid:
        for _ in range(rng.randint(1, 2 * per_order)):
            out.append((ts - rng.uniform(600, 3 * DAY), cid, "product_viewed", {"category": (data["categories"] or ["-"])[0]}, oid))
        if rng.random() < 0.6:
            out.append((ts - rng.uniform(60, 3600), cid, "cart_item_added", {}, oid))
    while len(out) < target:
        cid = rng.choice(customers)
        ts = rng.uniform(start, end)
        kind = rng.choice(("product_viewed", "product_viewed", "recommendation_shown"))
        out.append((ts, cid, kind, {}, None))
        if kind == "recommendation_shown" and rng.random() < affinity[cid]:
            out.append((ts + 5, cid, "recommendation_clicked", {}, None))
    out = out[:target]
    out.sort(key=lambda e: e[0])
    return out


async def incremental(store_url: str, rules: Any, events: list[Any]) -> dict[str, Any]:
    now = {"t": 0.0}
    service = CustomerService(CustomerStore(store_url), rules, clock=lambda: now["t"])
    await service.open()
    times: list[float] = []
    by_type: dict[str, list[float]] = defaultdict(list)
    load0 = os.getloadavg()
    started = time.perf_counter()
    for i, (ts, cid, kind, data, _) in enumerate(events):
        now["t"] = ts
        event = prof.CustomerEvent(f"e{i}", kind, ts, data, ("shop_customer", cid))
        t0 = time.perf_counter()
        await service.ingest(event, proof="shop_event")
        dt = (time.perf_counter() - t0) * 1000
        times.append(dt)
        by_type["order" if kind == "order_paid" else "behaviour" if kind not in prof.AFTER_SALES else "after_sales"].append(dt)
    wall = time.perf_counter() - started
    await service.close()
    return {"events": len(times), "wall_s": round(wall, 1), "events_per_s": round(len(times) / wall, 1),
            "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3), "p99_ms": round(pct(times, 99), 3),
            "max_ms": round(max(times), 1), "median_by_kind_ms": {k: round(statistics.median(v), 3) for k, v in by_type.items()},
            "p99_by_kind_ms": {k: round(pct(v, 99), 3) for k, v in by_type.items()},
            "loadavg_before": load0, "loadavg_after": os.getloadavg()}


async def recompute(store_url: str, rules: Any, now: float) -> dict[str, Any]:
    service = CustomerService(CustomerStore(store_url), rules, clock=lambda: now)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    count = await service.recompute_all(batch=500)
    wall = time.perf_counter() - t0
    import sqlalchemy as sa
    from bot.customers import tables as t
    with service.store.transaction() as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar()
    await service.close()
    rate = count / wall
    return {"customers": count, "stored_events": n_events, "wall_s": round(wall, 2),
            "customers_per_s": round(rate, 1), "events_per_s": round(n_events / wall, 1),
            "extrapolated_100k_customers_min": round(100_000 / rate / 60, 2),
            "note": "100k figure extrapolated from this rate at the demo shop's events per customer",
            "loadavg_before": load0, "loadavg_after": os.getloadavg()}


async def timeline(store_url: str, rules: Any, items: int = 1000, reads: int = 300) -> dict[str, Any]:
    rng = random.Random(3)
    service = CustomerService(CustomerStore(store_url), rules, clock=lambda: 1.8e9)
    key = ("shop_customer", "timeline-bench")
    kinds = ("order_paid", "product_viewed", "conversation_started", "handoff_requested", "csat_submitted",
             "return_requested", "recommendation_clicked")
    for i in range(items):
        kind = rng.choice(kinds)
        data = {"order_id": f"E{i}", "total_cents": 1000, "rating": 4, "reason": "complaint",
                "summary": "Shopper wants a refund for order E%d; bot tried the order look-up." % i}
        await service.ingest(prof.CustomerEvent(f"tl{i}", kind, 1.7e9 + i * 3600, data, key), proof="shop_event")
    cid = await service.find(*key)
    assert cid is not None
    first, later = [], []
    cursors: list[Any] = [None]
    page = await service.timeline(cid, limit=50)
    while page["next"]:
        ts, _, seq = page["next"].rpartition(":")
        cursors.append((float(ts), int(seq)))
        page = await service.timeline(cid, before=cursors[-1], limit=50)
    for i in range(reads):
        cursor = None if i % 2 == 0 else rng.choice(cursors[1:])
        t0 = time.perf_counter()
        page = await service.timeline(cid, before=cursor, limit=50)
        json.dumps(page, ensure_ascii=False)
        dt = (time.perf_counter() - t0) * 1000
        (first if cursor is None else later).append(dt)
    await service.close()
    both = first + later
    return {"items": items, "pages_of_50": len(cursors), "reads": reads,
            "p50_ms": round(pct(both, 50), 3), "p95_ms": round(pct(both, 95), 3),
            "first_page_p95_ms": round(pct(first, 95), 3), "later_page_p95_ms": round(pct(later, 95), 3),
            "note": "service + JSON serialisation, as the route does; HTTP framing not included"}


def churn(events: list[Any], rules: Any, last_order: float, bootstrap: int = 500) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score, roc_curve

    cutoff = last_order - 90 * DAY
    order_ts = {e[4]: e[0] for e in events if e[2] == "order_paid"}
    states: dict[str, dict[str, Any]] = defaultdict(dict)
    future_orders: set[str] = set()
    for ts, cid, kind, data, source in events:
        if ts >= cutoff:
            if kind == "order_paid":
                future_orders.add(cid)
            continue
        if source is not None and order_ts.get(source, 0.0) >= cutoff:
            continue  # a view tied to an order after the cutoff: would leak the label
        prof.apply(states[cid], prof.CustomerEvent("x", kind, ts, data))
    rows = []
    for cid, state in states.items():
        if not state.get("orders"):
            continue
        p = prof.derive(state, cutoff)
        h = health_score(rules.health, p)
        rows.append((cid, cid not in future_orders, h.score, p["days_since_last_order"],
                     {name: comp["normalised"] for name, comp in h.components.items()}))
    y = [int(r[1]) for r in rows]
    health_risk = [100 - r[2] for r in rows]
    recency = [r[3] for r in rows]
    auc_h, auc_r = roc_auc_score(y, health_risk), roc_auc_score(y, recency)
    rng = random.Random(11)
    diffs = []
    for _ in range(bootstrap):
        idx = [rng.randrange(len(rows)) for _ in rows]
        yy = [y[i] for i in idx]
        if 0 < sum(yy) < len(yy):
            diffs.append(roc_auc_score(yy, [health_risk[i] for i in idx]) - roc_auc_score(yy, [recency[i] for i in idx]))
    diffs.sort()
    components = {}
    for comp in rules.health.components:
        vals = [r[4].get(comp.name) for r in rows]
        if all(v is not None for v in vals) and len(set(vals)) > 1:
            components[comp.name] = round(roc_auc_score(y, [100 - v for v in vals]), 4)
        else:
            components[comp.name] = None  # no signal in the demo history (no chats, CSAT, ...)
    curves = {"health": roc_curve(y, health_risk), "recency": roc_curve(y, recency)}
    return {"cutoff": cutoff, "holdout_days": 90, "customers": len(rows), "churned": sum(y),
            "churn_rate": round(sum(y) / len(y), 4), "auc_health": round(auc_h, 4), "auc_recency": round(auc_r, 4),
            "auc_difference": round(auc_h - auc_r, 4),
            "auc_difference_ci95": [round(diffs[int(0.025 * len(diffs))], 4), round(diffs[int(0.975 * len(diffs))], 4)],
            "auc_by_component": components,
            "weights": {c.name: {"signal": c.signal, "low": c.low, "high": c.high, "weight": c.weight,
                                 "missing": c.missing} for c in rules.health.components},
            "_curves": {k: (v[0].tolist(), v[1].tolist()) for k, v in curves.items()}}


def figures(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    c = results["churn"]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (fpr, tpr) in c.pop("_curves").items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {c['auc_' + name]:.3f})")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Churn in the held-out 90 days (demo shop)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    roc = out / "customers_churn_roc.png"
    fig.savefig(roc, dpi=110)
    plt.close(fig)
    inc = results["incremental"]
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    labels = ["p50", "p95", "p99"]
    ax.bar(labels, [inc["p50_ms"], inc["p95_ms"], inc["p99_ms"]], color="#2563eb")
    ax.axhline(20, color="#b3261e", ls="--", lw=1, label="target p99 20 ms")
    ax.set_ylabel("ms per event")
    ax.set_title(f"Incremental profile + health update ({inc['events']} events)")
    ax.legend()
    fig.tight_layout()
    lat = out / "customers_incremental_latency.png"
    fig.savefig(lat, dpi=110)
    plt.close(fig)
    return [str(roc), str(lat)]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="c360-bench-"))
    shop_url = args.shop_url
    if shop_url is None:
        from actions.shop.seed import seed_shop
        shop_url = f"sqlite:///{tmp / 'shop.db'}"
        seed_shop(shop_url)
    rules = load_rules(None)  # kefu's defaults = the demo project's health.yml / customers.yml
    shop, last = shop_events(shop_url)
    start = min(e[0] for e in shop)
    behaviour = behaviour_events(shop, args.behaviour, start, last)
    merged = sorted(shop + behaviour, key=lambda e: e[0])
    results: dict[str, Any] = {
        "command": "benchmarks/customers.py " + " ".join(sys.argv[1:]),
        "data": {"shop_events": len(shop), "behaviour_events": len(behaviour), "customers": len({e[1] for e in shop}),
                 "orders_paid": sum(1 for e in shop if e[2] == "order_paid")},
        "store": "SQLite file (WAL), aiosqlite",
    }
    print(json.dumps(results["data"]), flush=True)
    results["churn"] = churn(merged, rules, last)
    print("churn", {k: v for k, v in results["churn"].items() if not k.startswith("_")}, flush=True)
    store_url = f"sqlite:///{tmp / 'customers.db'}"
    results["incremental"] = await incremental(store_url, rules, merged)
    print("incremental", results["incremental"], flush=True)
    results["recompute"] = await recompute(store_url, rules, last)
    print("recompute", results["recompute"], flush=True)
    results["timeline"] = await timeline(f"sqlite:///{tmp / 'timeline.db'}", rules)
    print("timeline", results["timeline"], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shop-url", default=None, help="a seeded demo shop (default: seed one into a temp dir)")
    parser.add_argument("--behaviour", type=int, default=100_000, help="generated behaviour events (issue: 1 000 000)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "customers.json"))
    parser.add_argument("--figures", default=str(Path(__file__).parents[1] / "docs" / "figures"))
    parser.add_argument("--recompute-store", default=None,
                        help="only re-measure the full recompute on an existing customer store (updates --out)")
    args = parser.parse_args()
    if args.recompute_store:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
        last = max(float(e) for e in [results["churn"]["cutoff"] + 90 * DAY])
        results["recompute"] = asyncio.run(recompute(args.recompute_store, load_rules(None), last))
        results["recompute"]["command"] = "benchmarks/customers.py " + " ".join(sys.argv[1:])
        print("recompute", results["recompute"])
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    results = asyncio.run(main_async(args))
    results["figures"] = figures(results, Path(args.figures))
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
