"""Customer 360 at the issue's scale (#17 point 6), on SQLite and on PostgreSQL.

Data: the demo shop (``python -m actions.shop seed``: 2 010 customers, 21 010 orders, one year)
turned into shop events (order_paid with categories, price band within the category — tertiles of
the category's prices — discount/coupon; order_cancelled; return/exchange requests), plus
``--behaviour`` (default 1 000 000) generated behaviour events (product views and add-to-carts in
the days before each order, recommendation shows/clicks with a per-customer click affinity, random
browsing). Seeded RNG: same shop file, same data. Every phase rebuilds the events from the shop
file (a few seconds) and works on its own store (a SQLite file in ``--workdir``, or a database on
the PostgreSQL server the script starts), so phases run separately (each under ``flock``).

Phases (``--phases``, in this order):

* ``prepare`` — the history (every event but the last ``--sample``) bulk-inserted into the store
  (set-up: executemany / COPY, not the measured path), then ``recompute_all`` builds every
  profile from it: timed, the full recompute of the demo shop with its 1 M events.
* ``incremental`` — the last ``--sample`` events (time order: every kind, spread across the
  customers) through ``CustomerService.ingest`` one by one — the ingest path (resolve identity,
  store once, fold, rescore health, re-tag, history; one transaction each) — on top of that
  history, timed per event → p50/p95/p99, and where the slowest 1 % spent their time.
* ``load100k`` — set-up of ``recompute`` (may run outside the lock): 100 000 customers
  (``--customers``): the demo shop's customers with their full history plus generated ones, each
  a copy of a demo customer's order history with ``--generated-behaviour`` behaviour events,
  bulk-inserted. ``recompute`` loads it itself when this did not run (always on PostgreSQL).
* ``recompute`` — ``recompute_all`` over those 100 000 customers, timed (wall and CPU-seconds, of
  this process and, on PostgreSQL, of the server).
* ``timeline`` — a customer with 1 000 timeline items (ingested through the service) in the
  prepared store; the real app (``create_app`` + ``CustomersFeature``, audit log on) on
  127.0.0.1; ``GET /customers/<id>/timeline`` pages of 50 (first page and cursors) over HTTP
  with keep-alive, an agent's token → p50/p95.
* ``churn`` — health vs recency AUC on the held-out last 90 days (no store).

Usage:
  python -m actions.shop seed --url sqlite:////tmp/c360/shop.db
  flock /work/bench.lock python benchmarks/customers.py --shop-url sqlite:////tmp/c360/shop.db \\
      --workdir /tmp/c360 --backend sqlite --phases prepare,incremental
  flock /work/bench.lock python benchmarks/customers.py ... --backend sqlite --phases recompute,timeline,churn
  flock /work/bench.lock python benchmarks/customers.py ... --backend postgresql --phases all
Results merge into ``--out`` (``results[backend][phase]``), with the load average before/after.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
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
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bot.customers import profile as prof  # noqa: E402
from bot.customers import tables as t  # noqa: E402
from bot.customers.health import score as health_score  # noqa: E402
from bot.customers.rules import load_rules  # noqa: E402
from bot.customers.service import CustomerService, new_id  # noqa: E402
from bot.customers.store import CustomerStore, dumps  # noqa: E402

DAY = 86400.0
Event = tuple[float, str, str, dict[str, Any], "str | None"]  # (ts, shop customer, type, data, source order)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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



# -- the data ----------------------------------------------------------------------------
def dataset(shop_url: str, behaviour: int) -> dict[str, Any]:
    shop, last = shop_events(shop_url)
    start = min(e[0] for e in shop)
    more = behaviour_events(shop, behaviour, start, last)
    merged = sorted(shop + more, key=lambda e: e[0])
    return {"shop": shop, "behaviour": len(more), "merged": merged, "start": start, "last": last}


def as_rows(events: list[Event], owner: dict[str, str], prefix: str) -> Iterator[tuple[Any, ...]]:
    """c360_events rows (id, customer_id, identity_kind, identity_value, type, ts, data)."""
    for i, (ts, cid, kind, data, _) in enumerate(events):
        yield (f"{prefix}{i}", owner[cid], "shop_customer", cid, kind, ts, dumps(data))


EVENT_COLUMNS = ("id", "customer_id", "identity_kind", "identity_value", "type", "ts", "data")


def bulk_load(store: CustomerStore, customers: dict[str, float], rows: Iterator[tuple[Any, ...]],
              owner: dict[str, str]) -> int:
    """Set-up, not the measured path: customer rows, their shop_customer identities and their events,
    inserted in bulk (SQLite executemany; PostgreSQL COPY). Profiles are built by recompute_all."""
    store.open()
    n = 0
    with store.transaction() as conn:
        conn.execute(t.customers.insert(), [
            {"id": owner[cid], "created_at": first, "updated_at": first, "state": "{}", "profile": "{}",
             "tags": "[]", "health": "{}"} for cid, first in customers.items()])
        conn.execute(t.identities.insert(), [
            {"kind": "shop_customer", "value": cid, "customer_id": owner[cid], "origin_customer_id": owner[cid],
             "proof": "shop_event", "linked_at": first} for cid, first in customers.items()])
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY c360_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        else:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(dict(zip(EVENT_COLUMNS, row)))
                if len(chunk) == 20000:
                    conn.execute(t.events.insert(), chunk)
                    n += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(t.events.insert(), chunk)
                n += len(chunk)
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    return n


def first_seen(events: list[Event]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ts, cid, *_ in events:
        if cid not in out:
            out[cid] = ts
    return out


class ServerCPU:
    """CPU-seconds of a PostgreSQL server: the postmaster's own and reaped children's time, plus the
    live backends' (from /proc; the server runs as another user, /proc/PID/stat is readable)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.pid = int((data_dir / "postmaster.pid").read_text().split()[0]) if data_dir else None

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ppid, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
            if int(entry) == self.pid:
                total += utime + stime + cutime + cstime
            elif ppid == self.pid:
                total += utime + stime
        return total / tick


# -- phases ------------------------------------------------------------------------------
async def phase_prepare(url: str, data: dict[str, Any], sample: int, rules: Any, cpu: ServerCPU) -> dict[str, Any]:
    history = data["merged"][:-sample]
    customers = first_seen(history)
    owner = {cid: new_id() for cid in customers}
    store = CustomerStore(url)
    t0 = time.perf_counter()
    n = bulk_load(store, customers, as_rows(history, owner, "h"), owner)
    load_s = time.perf_counter() - t0
    store.close()
    print(f"prepare: bulk-loaded {n} events of {len(customers)} customers in {load_s:.1f}s", flush=True)
    result = await timed_recompute(url, rules, history[-1][0], cpu)
    result.update({"history_events": n, "customers": len(customers), "bulk_load_s": round(load_s, 1)})
    return result


async def timed_recompute(url: str, rules: Any, now: float, cpu: ServerCPU) -> dict[str, Any]:
    service = CustomerService(CustomerStore(url), rules, clock=lambda: now)
    await service.open()
    gc.collect()
    load0, server0 = load(), cpu.seconds()
    c0, t0 = time.process_time(), time.perf_counter()
    count = await service.recompute_all(batch=500)
    wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    server1 = cpu.seconds()
    with service.store.transaction() as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar()
    await service.close()
    out = {"recomputed_customers": count, "stored_events": n_events, "wall_s": round(wall, 1),
           "process_cpu_s": round(cpu_s, 1), "customers_per_s": round(count / wall, 1),
           "events_per_s": round(n_events / wall, 1), "loadavg_before": load0, "loadavg_after": load()}
    if server0 is not None and server1 is not None:
        out["server_cpu_s"] = round(server1 - server0, 1)
    print("recompute", out, flush=True)
    return out


def sql_timer(engine: Any) -> dict[str, float]:
    """Where one event's time goes, from SQLAlchemy's public events: when the transaction began and
    ended (the store's thread), seconds in statements, and in COMMIT."""
    spent = {"sql": 0.0, "commit": 0.0, "begin": 0.0, "end": 0.0}
    started: dict[str, float] = {}

    @sa.event.listens_for(engine, "engine_connect")
    def _connect(*_: Any) -> None:  # engine.begin(): the first thing the store's thread does for an event
        spent["begin"] = time.perf_counter()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        started["sql"] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(*_: Any) -> None:
        spent["sql"] += time.perf_counter() - started["sql"]

    @sa.event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:  # fires just before the DBAPI commit; the connection is back at "checkin"
        started["commit"] = time.perf_counter()

    @sa.event.listens_for(engine, "checkin")
    def _checkin(*_: Any) -> None:
        spent["end"] = time.perf_counter()
        if "commit" in started:
            spent["commit"] += spent["end"] - started.pop("commit")

    return spent


async def phase_incremental(url: str, data: dict[str, Any], sample: int, rules: Any) -> dict[str, Any]:
    events = data["merged"][-sample:]
    data.clear()  # the process keeps only what a server would: no million-event list for the GC to walk
    gc.collect()
    now = {"t": events[0][0]}
    service = CustomerService(CustomerStore(url), rules, clock=lambda: now["t"])
    await service.open()
    spent = sql_timer(service.store.engine)
    rows = []
    load0 = load()
    c0, started = time.process_time(), time.perf_counter()
    for i, (ts, cid, kind, payload, _) in enumerate(events):
        now["t"] = ts
        event = prof.CustomerEvent(f"s{i}", kind, ts, payload, ("shop_customer", cid))
        sql0, commit0 = spent["sql"], spent["commit"]
        t0 = time.perf_counter()
        await service.ingest(event, proof="shop_event")
        t1 = time.perf_counter()
        sql, commit = (spent["sql"] - sql0) * 1000, (spent["commit"] - commit0) * 1000
        txn = (spent["end"] - spent["begin"]) * 1000
        rows.append(((t1 - t0) * 1000, sql, commit, kind, txn - sql - commit, (t1 - t0) * 1000 - txn))
    wall, cpu_s = time.perf_counter() - started, time.process_time() - c0
    load1 = load()
    with service.store.transaction() as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar()
    await service.close()
    times = [r[0] for r in rows]
    inside = [r[1] + r[2] + r[4] for r in rows]  # the store's thread: statements, commit, Python between them
    by_kind: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_kind["order" if r[3] == "order_paid" else "after_sales" if r[3] in prof.AFTER_SALES else "behaviour"].append(r[0])
    cut = pct(times, 99)
    slow = [r for r in rows if r[0] >= cut]
    share = lambda sel, k: round(statistics.mean(r[k] for r in sel), 3)  # noqa: E731
    out = {"events": len(rows), "customers_touched": len({e[1] for e in events}), "stored_events_after": n_events,
           "wall_s": round(wall, 1), "process_cpu_s": round(cpu_s, 1), "events_per_s": round(len(rows) / wall, 1),
           "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3), "p99_ms": round(cut, 3),
           "max_ms": round(max(times), 1),
           "in_transaction_p50_ms": round(pct(inside, 50), 3), "in_transaction_p99_ms": round(pct(inside, 99), 3),
           "median_by_kind_ms": {k: round(statistics.median(v), 3) for k, v in by_kind.items()},
           "p99_by_kind_ms": {k: round(pct(v, 99), 3) for k, v in by_kind.items()},
           "where_the_time_goes_ms": {
               name: {"total": share(sel, 0), "sql_statements": share(sel, 1), "commit": share(sel, 2),
                      "python_in_transaction": share(sel, 4), "thread_hops_and_loop": share(sel, 5)}
               for name, sel in (("all_events_mean", rows), ("slowest_1pct_mean", slow))},
           "loadavg_before": load0, "loadavg_after": load1}
    print("incremental", out, flush=True)
    return out


def generated(data: dict[str, Any], total: int, per_customer: int, seed: int = 5) -> tuple[dict[str, float], list[Event]]:
    """``total`` customers: the demo shop's own (their full history) plus copies of demo customers'
    order histories (orders, cancellations, after-sales) with ``per_customer`` behaviour events each."""
    rng = random.Random(seed)
    history = data["merged"]
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for e in data["shop"]:
        by_customer[e[1]].append(e)
    demo = sorted(by_customer)
    customers = first_seen(history)
    events: list[Event] = list(history)
    kinds = ("product_viewed", "product_viewed", "cart_item_added", "recommendation_shown", "recommendation_clicked")
    k = 0
    while len(customers) < total:
        cid = f"g{k}"
        source = by_customer[demo[k % len(demo)]]
        own = [(ts, cid, kind, d, None) for ts, _, kind, d, _ in source]
        own += [(rng.uniform(data["start"], data["last"]), cid, rng.choice(kinds), {}, None) for _ in range(per_customer)]
        own.sort(key=lambda e: e[0])
        customers[cid] = own[0][0]
        events.extend(own)
        k += 1
    return customers, events


def load_100k(url: str, data: dict[str, Any], total: int, per_customer: int) -> dict[str, Any]:
    """Set-up of ``recompute``: the 100 000-customer store, bulk-loaded (not timed as the recompute)."""
    customers, events = generated(data, total, per_customer)
    owner = {cid: new_id() for cid in customers}
    store = CustomerStore(url)
    t0 = time.perf_counter()
    n = bulk_load(store, customers, as_rows(events, owner, "r"), owner)
    store.close()
    took = time.perf_counter() - t0
    print(f"load100k: bulk-loaded {n} events of {len(customers)} customers in {took:.1f}s", flush=True)
    return {"customers": len(customers), "generated_customers": sum(1 for c in customers if c.startswith("g")),
            "behaviour_events_per_generated_customer": per_customer, "events": n, "bulk_load_s": round(took, 1)}


def stored_customers(url: str) -> int:
    store = CustomerStore(url, checkpoint_interval=None)
    try:
        with store.transaction() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.customers)).scalar() or 0
    finally:
        store.close()


async def phase_recompute(url: str, data: dict[str, Any], total: int, per_customer: int, rules: Any,
                          cpu: ServerCPU, loaded: dict[str, Any] | None) -> dict[str, Any]:
    """The full recompute of the 100 000-customer store (loaded first unless ``load100k`` did it)."""
    if loaded is None:
        loaded = load_100k(url, data, total, per_customer)
    elif stored_customers(url) != loaded["customers"]:
        raise SystemExit(f"{url} does not hold the {loaded['customers']} customers 'load100k' recorded: run it again.")
    now = data["last"]
    data.clear()
    result = await timed_recompute(url, rules, now, cpu)
    return {**result, "store": loaded}


def serve(store_url: str, project: Path, secret: str) -> tuple[str, Any]:
    """The real app with the customers feature on 127.0.0.1, in a thread with its own event loop."""
    import types

    from benchmarks._serve import serve_in_thread
    from bot.customers.feature import CustomersFeature
    from bot.server.app import create_app
    from bot.server.features import project_settings
    from bot.stores.audit import SQLAuditLog

    (project / "endpoints.yml").write_text(f"customers:\n  url: {store_url}\n", encoding="utf-8")

    def make_app() -> Any:
        return create_app(types.SimpleNamespace(), jwt_secret=secret,
                          features=[CustomersFeature(project_settings(project))],
                          audit=SQLAuditLog(f"sqlite:///{project / 'audit.db'}"))

    # the server's life cycle: its before-start listeners start the customers feature (open the store)
    return serve_in_thread(make_app, run_before_start=True)


async def timeline_customer(url: str, rules: Any, items: int) -> str:
    """A customer with ``items`` timeline items, ingested through the service (idempotent: fixed ids)."""
    rng = random.Random(3)
    service = CustomerService(CustomerStore(url), rules, clock=lambda: 1.8e9)
    key = ("shop_customer", "timeline-bench")
    kinds = ("order_paid", "product_viewed", "conversation_started", "handoff_requested", "csat_submitted",
             "return_requested", "recommendation_clicked")
    for i in range(items):
        kind = rng.choice(kinds)
        data = {"order_id": f"E{i}", "total_cents": 1000, "rating": 4, "reason": "complaint",
                "summary": "Shopper wants a refund for order E%d; bot tried the order look-up." % i}
        await service.ingest(prof.CustomerEvent(f"tl{i}", kind, 1.7e9 + i * 3600, data, key), proof="shop_event")
    cid = await service.find(*key)
    await service.close()
    assert cid is not None
    return cid


def phase_timeline(url: str, rules: Any, items: int, reads: int, workdir: Path) -> dict[str, Any]:
    import httpx
    import jwt

    cid = asyncio.run(timeline_customer(url, rules, items))
    secret = "benchmark-secret-0123456789abcdef0123"
    token = jwt.encode({"user": {"username": "agent-1", "role": "agent"}, "exp": int(time.time()) + 3600},
                       secret, algorithm="HS256")
    project = Path(tempfile.mkdtemp(prefix="c360-timeline-", dir=workdir))
    base, _ = serve(url, project, secret)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    path = f"/customers/{cid}/timeline"
    cursors: list[str | None] = [None]
    shown = 0
    while True:
        resp = client.get(path, params={"limit": 50, **({"before": cursors[-1]} if cursors[-1] else {})})
        assert resp.status_code == 200, resp.text
        page = resp.json()
        shown += len(page["items"])
        if not page["next"]:
            break
        cursors.append(page["next"])
    rng = random.Random(4)
    first, later = [], []
    load0 = load()
    for i in range(reads):
        cursor = None if i % 2 == 0 else rng.choice(cursors[1:])
        t0 = time.perf_counter()
        resp = client.get(path, params={"limit": 50, **({"before": cursor} if cursor else {})})
        body = resp.json()
        dt = (time.perf_counter() - t0) * 1000
        assert resp.status_code == 200 and len(body["items"]) > 0, resp.text
        (first if cursor is None else later).append(dt)
    load1 = load()
    client.close()
    both = first + later
    out = {"items_shown": shown, "pages_of_50": len(cursors), "reads": reads, "response_kb": round(len(resp.content) / 1024, 1),
           "p50_ms": round(pct(both, 50), 3), "p95_ms": round(pct(both, 95), 3), "max_ms": round(max(both), 1),
           "first_page_p95_ms": round(pct(first, 95), 3), "later_page_p95_ms": round(pct(later, 95), 3),
           "how": "GET /customers/<id>/timeline?limit=50[&before=cursor] over HTTP (httpx, keep-alive) to the real app "
                  "(create_app + CustomersFeature, audit log on), agent's JWT; store holds the prepared history",
           "loadavg_before": load0, "loadavg_after": load1}
    print("timeline", out, flush=True)
    return out


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
    made = []
    c = results.get("churn") or {}
    if "_curves" in c:
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
        made.append(str(roc))
    runs = [(b, results[b]["incremental"]) for b in ("sqlite", "postgresql") if "incremental" in results.get(b, {})]
    if runs:
        fig, ax = plt.subplots(figsize=(5.6, 3.0))
        labels = ["p50", "p95", "p99"]
        width = 0.8 / len(runs)
        for k, (backend, inc) in enumerate(runs):
            ax.bar([i + k * width for i in range(3)], [inc["p50_ms"], inc["p95_ms"], inc["p99_ms"]], width,
                   label=backend)
        ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(3)], labels)
        ax.axhline(20, color="#b3261e", ls="--", lw=1, label="target p99 20 ms")
        ax.set_ylabel("ms per event")
        ax.set_title(f"Incremental update on 1 M events of history ({runs[0][1]['events']} events)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        lat = out / "customers_incremental_latency.png"
        fig.savefig(lat, dpi=110)
        plt.close(fig)
        made.append(str(lat))
    return made


PHASES = ("prepare", "incremental", "load100k", "recompute", "timeline", "churn")


class Backend:
    """Where the stores live: SQLite files in the work folder, or databases on a PostgreSQL server
    started for this run (tests/postgres_server.py) with production durability (fsync and
    synchronous commit on)."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind, self.workdir, self.server = kind, workdir, None

    def __enter__(self) -> "Backend":
        if self.kind == "postgresql":
            from tests.postgres_server import PostgresServer
            self.server = PostgresServer().start()
            self.server.execute("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET synchronous_commit = on",
                                "ALTER SYSTEM SET full_page_writes = on", "ALTER SYSTEM SET shared_buffers = '256MB'")
            self.server.halt()
            self.server.resume()
        return self

    def __exit__(self, *_: Any) -> None:
        if self.server is not None:
            self.server.stop()

    def url(self, name: str, fresh: bool) -> str:
        if self.server is not None:
            return (self.server.create_database(name) if fresh else self.server.url(name))
        path = self.workdir / f"{name}.db"
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def clone(self, source: str, name: str) -> str:
        """A fresh copy of the store ``source`` (so a phase that writes can run again on the same history)."""
        if self.server is not None:
            self.server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                                f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
            return self.server.url(name)
        import sqlite3
        url = self.url(name, fresh=True)
        with sqlite3.connect(self.workdir / f"{source}.db") as src, sqlite3.connect(self.workdir / f"{name}.db") as dst:
            src.backup(dst)
        return url

    def cpu(self) -> ServerCPU:
        return ServerCPU(self.server.directory / "data" if self.server is not None else None)

    def describe(self) -> str:
        if self.server is None:
            return "SQLite file (WAL, synchronous=NORMAL), sqlite3 driver, one worker thread"
        import psycopg
        with psycopg.connect(self.server.url("postgres").replace("postgresql+psycopg", "postgresql")) as c:
            version = c.execute("show server_version").fetchone()[0]
        return (f"PostgreSQL {version} on 127.0.0.1 (Debian package, initdb per run; fsync, synchronous_commit and "
                "full_page_writes on, shared_buffers 256MB), psycopg 3, one worker thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shop-url", required=True, help="a seeded demo shop (python -m actions.shop seed --url ...)")
    parser.add_argument("--workdir", default=None, help="where SQLite stores live between phases (default: a temp dir)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--phases", default="all", help=f"comma-separated, of {', '.join(PHASES)} (or all)")
    parser.add_argument("--behaviour", type=int, default=1_000_000, help="generated behaviour events (issue: 1 000 000)")
    parser.add_argument("--sample", type=int, default=5000, help="events ingested one by one in 'incremental'")
    parser.add_argument("--customers", type=int, default=100_000, help="customers in 'recompute'")
    parser.add_argument("--generated-behaviour", type=int, default=10,
                        help="behaviour events per generated customer in 'recompute'")
    parser.add_argument("--timeline-items", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=400, help="timeline pages read in 'timeline'")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "customers.json"))
    parser.add_argument("--figures", default=str(Path(__file__).parents[1] / "docs" / "figures"))
    args = parser.parse_args()
    phases = list(PHASES) if args.phases == "all" else [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PHASES)})")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="c360-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    rules = load_rules(None)  # kefu's defaults = the demo project's health.yml / customers.yml
    with Backend(args.backend, workdir) as backend:
        record(out, (args.backend, "store"), backend.describe())
        for phase in phases:
            data = dataset(args.shop_url, args.behaviour)
            record(out, ("data",), {"shop_events": len(data["shop"]), "behaviour_events": data["behaviour"],
                                    "events": len(data["merged"]), "customers": len({e[1] for e in data["shop"]}),
                                    "orders_paid": sum(1 for e in data["shop"] if e[2] == "order_paid")})
            print(phase, flush=True)
            command = "benchmarks/customers.py " + " ".join(sys.argv[1:])
            if phase == "prepare":
                r = asyncio.run(phase_prepare(backend.url("c360_history", True), data, args.sample, rules, backend.cpu()))
            elif phase == "incremental":
                r = asyncio.run(phase_incremental(backend.clone("c360_history", "c360_incremental"), data,
                                                  args.sample, rules))
            elif phase == "load100k":
                r = load_100k(backend.url("c360_100k", True), data, args.customers, args.generated_behaviour)
            elif phase == "recompute":
                # SQLite: the store 'load100k' left, when it ran; PostgreSQL: a fresh server, loaded here
                loaded = read_results(out).get(args.backend, {}).get("load100k") if backend.server is None else None
                r = asyncio.run(phase_recompute(backend.url("c360_100k", loaded is None), data, args.customers,
                                                args.generated_behaviour, rules, backend.cpu(), loaded))
            elif phase == "timeline":
                del data
                r = phase_timeline(backend.url("c360_history", False), rules, args.timeline_items, args.reads, workdir)
            else:
                r = churn(data["merged"], rules, data["last"])
                print("churn", {k: v for k, v in r.items() if not k.startswith("_")}, flush=True)
                results = read_results(out)
                results["churn"] = {**r, "command": command}
                made = figures(results, Path(args.figures))  # takes the ROC curves out
                results["figures"] = [os.path.relpath(f, Path(__file__).parents[1]) for f in made]
                out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                continue
            record(out, (args.backend, phase), {**r, "command": command})
    results = read_results(out)
    made = [os.path.relpath(f, Path(__file__).parents[1]) for f in figures(results, Path(args.figures))]
    results["figures"] = sorted(set(results.get("figures", [])) | set(made))
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def read_results(out: Path) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return results if ("sqlite" in results or "postgresql" in results) else {}  # an older layout: start over


def record(out: Path, path: tuple[str, ...], value: Any) -> None:
    """Set one entry of the results file, re-read just before: runs of other phases may have written it."""
    results = read_results(out)
    node = results
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
