"""Dashboard benchmark: rollups worth N conversations / 10·N tracker events, then the page's data route.

The dashboard reads only ``analytics_rollups`` (bot/analytics/schema.py), so the history
is generated as the rollup rows the ingester would have written for it — per day,
channel (2) and customer segment (4): conversations, resolution, fallbacks,
escalations by reason (8), intents (60), unanswered questions (a long tail of
``--questions`` distinct texts per day), timing sums, ratings by score, by agent (12)
and by intent (20), NPS/CES, orders, recommendations by product (50) — plus the
hourly rows of the hourly metrics — and 0.1 paid orders per conversation (LTV and retention
read the orders table). Each conversation stands for 10 tracker events;
the ingest rate is measured separately on real broker bodies (``--ingest``) through
the real ingester into a SQLite file. The rows are made by the real ``RollupBuffer``,
so their shape (day, month, hour rows; ``*`` cells) is the production shape.

Then it times ``GET /dashboard/api/metrics`` over real HTTP against the real app on
127.0.0.1 (a supervisor JWT: routing, auth, the SQL, the figures, JSON) for the ranges a shop
uses: the last 7, 30, 90 and 365 days, the last 30 days for one channel and one
segment, and the last day (hourly). Pin the process to 2 cores with ``taskset -c 0,1``.

    taskset -c 0,1 .venv/bin/python benchmarks/dashboard.py --conversations 1000000 \\
        --out benchmarks/results/dashboard.json
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHANNELS = ("socketio", "wechat")
SEGMENTS = ("vip", "new", "regular", "dormant")
REASONS = ("asked_for_human", "angry", "complaint", "repeated_fallback", "action_failed", "vip", "urgent", "unanswered")
INTENTS = tuple(f"intent_{i:02d}" for i in range(60))
AGENTS = tuple(f"agent_{i:02d}" for i in range(12))
PRODUCTS = tuple(f"p{i:03d}" for i in range(50))
EVENTS_PER_CONVERSATION = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def generate(db: Path, conversations: int, days: int, questions: int, end: dt.date, seed: int = 7) -> dict[str, Any]:
    """Rollup rows as the ingester writes them (the real ``RollupBuffer``: day, month, hour and ``*`` cells)."""
    from sqlalchemy import create_engine

    from bot.analytics.schema import metadata
    from bot.analytics.store import Bucket, RollupBuffer

    engine = create_engine(f"sqlite:///{db}")
    metadata.create_all(engine)
    engine.dispose()
    rng = random.Random(seed)
    combos = [(c, s) for c in CHANNELS for s in SEGMENTS]
    per_cell = conversations / (days * len(combos))
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    sql = ("INSERT INTO analytics_rollups (grain, bucket, channel, segment, metric, dim, n, total) "
           "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, total = total + excluded.total")
    started = time.perf_counter()
    buffer = RollupBuffer()

    def write() -> None:
        con.executemany(sql, [(*k, int(v[0]), float(v[1])) for k, v in buffer.take().items()])
        con.commit()

    for d in range(days):
        day = (end - dt.timedelta(days=days - 1 - d)).isoformat()
        for channel, segment in combos:
            n = max(1, int(rng.gauss(per_cell, per_cell * 0.1)))
            bucket = Bucket(day, f"{day}T12", channel, segment)

            def add(metric: str, dim: str, count: int, total: float = 0.0) -> None:
                buffer.add(bucket, metric, dim, count, total)

            turns = n * 4
            escalated = int(n * 0.12)
            for hour in range(24):  # the hourly metrics, spread over the day
                hourly = Bucket(day, f"{day}T{hour:02d}", channel, segment)
                for metric, total in (("conversations", n), ("user_turns", turns), ("fallback", int(turns * 0.08))):
                    buffer.add(hourly, metric, "", total // 24 + (1 if hour < total % 24 else 0))
            add("ended", "", n)
            add("bot_resolved", "", int(n * 0.72))
            add("fcr", "", int(n * 0.66))
            add("frt_bot", "", n, n * 1.2)
            add("resolution_time", "", int(n * 0.8), n * 0.8 * 240)
            for reason in REASONS:
                add("escalated", reason, max(1, escalated // len(REASONS)))
            add("queue_wait", "", escalated, escalated * 45.0)
            add("frt_human", "", escalated, escalated * 70.0)
            add("handling", "", escalated, escalated * 420.0)
            for intent in INTENTS:
                add("intent", intent, max(1, turns // len(INTENTS) + rng.randint(-3, 3)))
            for _ in range(questions):
                add("kb_miss", f"question {rng.randint(0, questions * 20)} about orders and delivery", rng.randint(1, 3))
            for intent in INTENTS[:20]:
                add("repeated", intent, rng.randint(0, 3))
            ratings = int(n * 0.3)
            for score in range(1, 6):
                add("csat", str(score), ratings // 5, ratings // 5 * score)
                for agent in AGENTS + ("bot",):
                    add("csat_agent", f"{agent}|{score}", rng.randint(0, 5), score * 2.0)
                for intent in INTENTS[:20]:
                    add("csat_intent", f"{intent}|{score}", rng.randint(0, 5), score * 2.0)
            for score in range(0, 11):
                add("nps", str(score), rng.randint(0, 5), score * 2.0)
            for score in range(1, 8):
                add("ces", str(score), rng.randint(0, 5), score * 2.0)
            add("orders", "", int(n * 0.1), n * 0.1 * 189.0)
            add("converted", "", int(n * 0.08), n * 0.08 * 189.0)
            for product in PRODUCTS:
                add("rec_shown", product, rng.randint(0, 20))
                add("rec_clicked", product, rng.randint(0, 4))
        write()
    # paid orders (LTV and retention read them when the page asks): 10 % of conversations, 60 % of
    # them from returning customers
    order_rows = []
    customers = max(1, conversations // 15)
    for i in range(conversations // 10):
        d = rng.randrange(days)
        paid_at = dt.datetime.combine(end - dt.timedelta(days=days - 1 - d), dt.time(12), dt.timezone.utc).timestamp()
        channel, segment = combos[rng.randrange(len(combos))]
        order_rows.append((f"o{i}", f"cust{rng.randrange(customers)}", paid_at + rng.uniform(-40000, 40000),
                           round(rng.uniform(20, 400), 2), None, channel, segment))
    con.executemany("INSERT INTO analytics_orders (order_id, customer_id, paid_at, amount, conversation_id, channel, "
                    "segment) VALUES (?,?,?,?,?,?,?)", order_rows)
    con.commit()
    con.execute("ANALYZE")
    con.commit()
    rows = con.execute("SELECT grain, COUNT(*) FROM analytics_rollups GROUP BY grain").fetchall()
    con.close()
    return {"rollup_rows": dict(rows), "orders": len(order_rows), "generate_s": round(time.perf_counter() - started, 1),
            "db_mb": round(db.stat().st_size / 2 ** 20, 1)}


async def measure_ingest(events: int) -> dict[str, Any]:
    """Real broker bodies through the real ingester into a SQLite file: events per second."""
    from bot.analytics.config import AnalyticsConfig
    from bot.analytics.ingest import Ingester
    from bot.analytics.store import AnalyticsStore

    with tempfile.TemporaryDirectory() as tmp:
        store = AnalyticsStore(f"sqlite:///{Path(tmp) / 'ingest.db'}")
        await store.open()
        ingester = Ingester(store, AnalyticsConfig())
        rng = random.Random(3)
        t0 = 1_790_000_000.0
        bodies = []
        for i in range(events // EVENTS_PER_CONVERSATION):
            sender, ts = f"s{i}", t0 + i * 5
            channel = CHANNELS[i % 2]
            for turn in range(EVENTS_PER_CONVERSATION // 2):
                intent = rng.choice(INTENTS[:10] + ("nlu_fallback",))
                bodies.append({"event": "user", "sender_id": sender, "timestamp": ts + turn * 2,
                               "input_channel": channel, "parse_data": {"intent": {"name": intent}}})
                bodies.append({"event": "bot", "sender_id": sender, "timestamp": ts + turn * 2 + 1, "metadata": {}})
        started = time.perf_counter()
        for body in bodies:
            await ingester.handle(body)
        await ingester.flush()
        took = time.perf_counter() - started
        await store.close()
    return {"events": len(bodies), "seconds": round(took, 2), "events_per_s": round(len(bodies) / took, 1)}


def serve(db: Path, secret: str) -> tuple[str, Any]:
    """The real app with the analytics feature on 127.0.0.1, in a thread with its own event loop."""
    from benchmarks._serve import serve_in_thread
    from bot.analytics.config import AnalyticsConfig, SurveyConfig
    from bot.analytics.feature import AnalyticsFeature
    from bot.server.app import create_app

    def make_app() -> Any:
        feature = AnalyticsFeature(AnalyticsConfig(survey=SurveyConfig(enabled=False)), f"sqlite:///{db}")
        return create_app(None, jwt_secret=secret, features=[feature])

    return serve_in_thread(make_app)


def measure(db: Path, end: dt.date, repeats: int) -> dict[str, Any]:
    """Sequential GETs over real HTTP (keep-alive), as one supervisor refreshing the page."""
    import httpx
    import jwt

    secret = "benchmark-secret-0123456789abcdef0123"
    token = jwt.encode({"user": {"username": "sup", "role": "supervisor"}, "exp": int(time.time()) + 3600},
                       secret, algorithm="HS256")
    base, _ = serve(db, secret)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def query(days: int, **extra: str) -> str:
        start = end - dt.timedelta(days=days - 1)
        params = "&".join(f"{k}={v}" for k, v in extra.items())
        return f"/dashboard/api/metrics?start={start}&end={end}" + (f"&{params}" if params else "")

    cases = {"last_7_days": query(7), "last_30_days": query(30), "last_90_days": query(90),
             "last_365_days": query(365), "last_30_days_wechat": query(30, channel="wechat"),
             "last_30_days_segment_vip": query(30, segment="vip"), "last_day_hourly": query(1)}
    results: dict[str, Any] = {}
    started = time.perf_counter()
    warm = client.get(cases["last_30_days"])  # opens the store, as the first page view on a running server does
    assert warm.status_code == 200, warm.text
    # (a store with orders but no per-customer rollups builds them once here: bot/analytics/customer_rollups.py)
    results["first_request_ms"] = round((time.perf_counter() - started) * 1000, 1)
    for name, path in cases.items():
        times, server_ms = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            resp = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200, resp.text
            server_ms.append(resp.json()["took_ms"])
        results[name] = {"path": path, "requests": repeats, "median_ms": round(statistics.median(times), 1),
                         "p95_ms": round(percentile(times, 95), 1), "p99_ms": round(percentile(times, 99), 1),
                         "max_ms": round(max(times), 1), "handler_median_ms": round(statistics.median(server_ms), 1),
                         "response_kb": round(len(resp.content) / 1024, 1),
                         "conversations": resp.json()["figures"]["conversations"]}
        print(f"{name:28s} median {results[name]['median_ms']:7.1f} ms  p95 {results[name]['p95_ms']:7.1f} ms"
              f"  handler {results[name]['handler_median_ms']:7.1f} ms", flush=True)
    client.close()
    return results


async def build_customer_rollups(db: Path) -> int:
    """The per-customer order rollups for the generated orders (bulk-inserted, so not incremental):
    what the analytics feature's start does once for such a store."""
    from bot.analytics import customer_rollups
    from bot.analytics.store import AnalyticsStore

    store = AnalyticsStore(f"sqlite:///{db}")
    await store.open()
    try:
        return await customer_rollups.rebuild(store)  # always from scratch: a reused file may hold a partial build
    finally:
        await store.close()


async def measure_customer_value(db: Path, end: dt.date, repeats: int) -> dict[str, Any]:
    """Buyers/LTV/retention for the last 365 days, in-process: the per-customer rollups (what the page
    uses) against the pass over the orders they replaced — same data, same load, same figures."""
    from bot.analytics.store import AnalyticsStore, Filters

    store = AnalyticsStore(f"sqlite:///{db}")
    await store.open()
    start = end - dt.timedelta(days=364)
    f = Filters(start.isoformat(), end.isoformat())
    start_ts = dt.datetime.combine(start, dt.time(), dt.timezone.utc).timestamp()
    end_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc).timestamp()
    out: dict[str, Any] = {}
    try:
        for name, call in (("rollups", lambda: store.customer_value(f)),
                           ("scan_of_orders", lambda: store.customer_value_scan(f, start_ts, end_ts))):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                figures = await call()
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {"median_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 95), 1),
                         "figures": figures}
    finally:
        await store.close()
    assert out["rollups"]["figures"] == out["scan_of_orders"]["figures"], out
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--questions", type=int, default=40, help="distinct unanswered questions per day and cell")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--ingest", type=int, default=20_000, help="tracker events for the ingest-rate measurement")
    parser.add_argument("--db", type=Path, default=None, help="keep the generated database here")
    parser.add_argument("--reuse", action="store_true", help="measure an existing --db without generating it again")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    end = dt.date(2026, 12, 6)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "dashboard.db"
        if args.reuse and db.exists():
            con = sqlite3.connect(db)
            rows = dict(con.execute("SELECT grain, COUNT(*) FROM analytics_rollups GROUP BY grain").fetchall())
            orders = con.execute("SELECT COUNT(*) FROM analytics_orders").fetchone()[0]
            con.close()
            generated = {"reused": str(db), "rollup_rows": rows, "orders": orders,
                         "db_mb": round(db.stat().st_size / 2 ** 20, 1)}
        else:
            for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                leftover.unlink(missing_ok=True)
            print(f"generating rollups for {args.conversations:,} conversations over {args.days} days…", flush=True)
            generated = generate(db, args.conversations, args.days, args.questions, end)
        started = time.perf_counter()
        built = asyncio.run(build_customer_rollups(db))
        generated["customer_rollups"] = {"orders": built, "build_s": round(time.perf_counter() - started, 1)}
        print(generated, flush=True)
        load_before = os.getloadavg()
        results = measure(db, end, args.repeats)
        customer_value = asyncio.run(measure_customer_value(db, end, args.repeats))
        print(json.dumps({"customer_value_365_days": customer_value}), flush=True)
        ingest = asyncio.run(measure_ingest(args.ingest)) if args.ingest else None
    out = {
        "command": "taskset -c 0,1 .venv/bin/python benchmarks/dashboard.py " + " ".join(sys.argv[1:]),
        "conversations": args.conversations, "tracker_events": args.conversations * EVENTS_PER_CONVERSATION,
        "days": args.days, "generated": generated, "requests": results, "ingest": ingest,
        "customer_value_365_days": customer_value,
        "cpus": len(os.sched_getaffinity(0)), "loadavg_before": load_before, "loadavg": os.getloadavg(),
        "target": "p95 <= 500 ms on 2 cores",
    }
    print(json.dumps({"ingest": ingest}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
