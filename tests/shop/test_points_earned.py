"""Issue #20 point 3: purchase points earned when the shop reports an order delivered, once per order.

Where order statuses enter kefu: `ShopStore.set_order_status` (the SQL store, and the merchant API's
`POST /orders/{id}/status` against the reference server), through `loyalty.order_status_reported`
(the `python -m actions.shop order` command), and the importer. Every balance is computed from the
order's own amount by shop.yml's rule (1 point per yuan paid), never a fixed number.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from actions.shop import coupon_template_views
from actions.shop.config import shop_config
from actions.shop.http import HttpShopStore
from actions.shop.importer import import_file
from actions.shop.loyalty import award, order_status_reported
from actions.shop.sql import SqlShopStore
from tests.shop.conftest import NOW
from tests.shop.shop_api_server import ShopApiServer

ROOT = Path(__file__).resolve().parents[2]


def _order_in(url: str, status: str) -> tuple[str, int, int]:
    """(order id, customer id, amount paid in cents) of an order now in `status`."""
    engine = create_engine(url)
    with engine.connect() as c:
        row = c.execute(text("select id, customer_id, total_cents - discount_cents from orders where status = :s "
                             "and total_cents - discount_cents >= 10000 order by id limit 1"), {"s": status}).one()
    engine.dispose()
    return row[0], row[1], row[2]


def _balance(store: Any, customer_id: int) -> int:
    return sum(e.delta for e in asyncio.run(store.points(customer_id)))


def _outbox(url: str, order_id: str) -> list[tuple[str, Any]]:
    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(text("select event, payload from outbox where order_id = :o order by id"), {"o": order_id}).all()
    engine.dispose()
    return [(r[0], json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows]


def _report_twice(store: Any, url: str) -> dict[str, Any]:
    """Report a shipped order delivered twice and a pending one paid; what the store answered."""
    config = shop_config()
    order_id, customer_id, paid = _order_in(url, "shipped")
    pending_id, pending_customer, _ = _order_in(url, "pending_payment")
    before, pending_before = _balance(store, customer_id), _balance(store, pending_customer)

    async def go() -> tuple:
        first = await order_status_reported(store, config, order_id, "delivered", now=NOW)
        again = await order_status_reported(store, config, order_id, "delivered", now=NOW)
        paid_only = await order_status_reported(store, config, pending_id, "paid", now=NOW)
        unknown = await order_status_reported(store, config, "E00000000000", "delivered", now=NOW)
        return first, again, paid_only, unknown

    first, again, paid_only, unknown = asyncio.run(go())
    return {"paid": paid, "before": before, "after": _balance(store, customer_id),
            "first": (first[0].ok, first[0].code, first[0].order.status, first[0].event["event"], first[1]),
            "again": (again[0].code, again[1]), "paid_only": (paid_only[0].code, paid_only[1]),
            "pending_delta": _balance(store, pending_customer) - pending_before,
            "unknown": (unknown[0].ok, unknown[0].code, unknown[1]), "order_id": order_id}


def test_a_delivered_order_earns_its_purchase_points_once_on_sql_and_over_the_merchant_api(
        seeded_db: Path, tmp_path: Path) -> None:
    urls = []
    for name in ("sql.db", "api.db"):
        shutil.copy(seeded_db, tmp_path / name)
        urls.append(f"sqlite:///{tmp_path / name}")
    sql = SqlShopStore(urls[0])
    direct = _report_twice(sql, urls[0])
    asyncio.run(sql.close())
    with ShopApiServer(urls[1]) as api:
        http = HttpShopStore(api.base_url, token="secret")
        over_http = _report_twice(http, urls[1])
        asyncio.run(http.close())
    assert direct == over_http
    expected = int(direct["paid"] // 100 * shop_config().points_rules["purchase"].per_currency_unit)
    assert direct["first"] == (True, "ok", "delivered", "order_delivered", expected)
    assert direct["after"] == direct["before"] + expected
    assert direct["again"] == ("unchanged", 0)
    assert direct["paid_only"] == ("ok", 0) and direct["pending_delta"] == 0  # the demo earns on delivery
    assert direct["unknown"] == (False, "unknown_order", 0)
    # the shop's outbox tells the journeys (order_delivered) and carries the ledger's points_earned, once
    for url in urls:
        assert [e for e, _ in _outbox(url, direct["order_id"])] == ["order_delivered"]
        engine = create_engine(url)
        with engine.connect() as c:
            rows = c.execute(text("select payload from outbox where event = 'points_earned' and customer_id = "
                                  "(select customer_id from orders where id = :o)"), {"o": direct["order_id"]}).all()
        engine.dispose()
        payloads = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
        assert payloads == [{"kind": "purchase", "points": expected}]


def test_reviews_and_shares_earn_by_their_rules_with_exact_balances(shop_url: str) -> None:
    store = SqlShopStore(shop_url)
    config = shop_config()
    _, customer_id, _ = _order_in(shop_url, "delivered")
    before = _balance(store, customer_id)
    review, share = config.points_rules["review"], config.points_rules["share"]

    async def go() -> list[int]:
        added = []
        for i in range(review.daily_max + 1):
            added.append(await award(store, config, customer_id, "review", ref=f"r{i}", now=NOW))
        added.append(await award(store, config, customer_id, "review", ref="r0", now=NOW))  # the same review again
        added.append(await award(store, config, customer_id, "share", ref="s1", now=NOW))
        return added

    added = asyncio.run(go())
    assert added == [review.points] * review.daily_max + [0, 0, share.points]
    assert _balance(store, customer_id) == before + review.points * review.daily_max + share.points
    asyncio.run(store.close())


def test_import_earns_purchase_points_when_an_order_arrives_delivered_once(tmp_path: Path, shop_url: str) -> None:
    store = SqlShopStore(shop_url)
    store.sync_coupon_templates(coupon_template_views())
    sku = asyncio.run(store.products())[0].sku
    asyncio.run(store.close())
    order = {"kind": "order", "order_id": "E20261120901", "phone": "13700001111", "status": "shipped",
             "created_at": "2026-11-20T10:00:00+08:00", "address": "上海市徐汇区漕溪北路1号",
             "lines": [{"sku": sku, "quantity": 2, "unit_price": "199.50"}],
             "paid_at": "2026-11-20T10:05:00+08:00", "shipped_at": "2026-11-21T09:00:00+08:00",
             "carrier": "SF", "tracking_number": "SF100"}
    customer = {"kind": "customer", "phone": "13700001111", "name": "李雷"}
    shipped = tmp_path / "shipped.jsonl"
    shipped.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (customer, order)), encoding="utf-8")
    delivered = tmp_path / "delivered.jsonl"
    delivered.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (
        customer, {**order, "status": "delivered", "delivered_at": "2026-11-22T15:00:00+08:00"})), encoding="utf-8")

    assert import_file(shop_url, shipped).points_earned == 0  # not delivered yet
    first = import_file(shop_url, delivered)
    again = import_file(shop_url, delivered)
    expected = int(399 * shop_config().points_rules["purchase"].per_currency_unit)  # 2 × 199.50 paid
    assert (first.points_earned, again.points_earned) == (expected, 0)
    store = SqlShopStore(shop_url)
    customer_id = asyncio.run(store.customer_by_phone("13700001111")).id
    entries = asyncio.run(store.points(customer_id))
    asyncio.run(store.close())
    assert [(e.delta, e.reason) for e in entries] == [(expected, "purchase:E20261120901")]


def test_order_command_reports_delivery_and_prints_the_points(shop_url: str) -> None:
    order_id, _, paid = _order_in(shop_url, "shipped")
    base = [sys.executable, "-m", "actions.shop", "order", order_id, "delivered", "--url", shop_url]
    first = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=60)
    again = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=60)
    expected = int(paid // 100 * shop_config().points_rules["purchase"].per_currency_unit)
    assert first.returncode == 0 and f"{expected} points earned" in first.stdout, first.stderr
    assert again.returncode == 0 and "(already); 0 points earned" in again.stdout
    wrong = subprocess.run([sys.executable, "-m", "actions.shop", "order", "E00000000000", "delivered", "--url", shop_url],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "unknown_order" in wrong.stderr and "Fix:" in wrong.stderr


def test_a_shop_that_earns_on_payment_and_a_wrong_status_named_with_its_line(shop_url: str) -> None:
    import pytest

    from actions.shop.base import ShopDataError
    from actions.shop.config import parse_shop_config

    on_paid = parse_shop_config("points:\n  rules:\n    purchase: {per_currency_unit: 2, on: paid}\n")
    order_id, customer_id, paid = _order_in(shop_url, "pending_payment")
    store = SqlShopStore(shop_url)
    before = _balance(store, customer_id)
    change, added = asyncio.run(order_status_reported(store, on_paid, order_id, "paid", now=NOW))
    _, on_delivery = asyncio.run(order_status_reported(store, on_paid, order_id, "delivered", now=NOW))
    assert (change.code, added, on_delivery) == ("ok", paid // 100 * 2, 0)
    assert _balance(store, customer_id) == before + paid // 100 * 2
    asyncio.run(store.close())
    with pytest.raises(ShopDataError, match=r"shop.yml:3: points rule purchase: `on: shipped`.*Fix: write `on: delivered`"):
        parse_shop_config("points:\n  rules:\n    purchase: {per_currency_unit: 1, on: shipped}\n")
