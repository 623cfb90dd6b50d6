"""One behaviour suite run against both `ShopStore` implementations (SQL and HTTP), the SQL one on
a SQLite file and on a real PostgreSQL server."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, func, select, text

from actions.shop import models as m
from actions.shop.base import ShopStore, ShopUnavailable
from actions.shop.http import HttpShopStore
from actions.shop.sql import SqlShopStore
from tests.shop.conftest import NOW
from tests.shop.shop_api_server import ShopApiServer


@pytest.fixture(params=["sql", "http", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, shop_url: str) -> Iterator[tuple[ShopStore, str]]:
    if request.param == "postgres":
        shop_url = request.getfixturevalue("postgres_shop_url")
    if request.param in ("sql", "postgres"):
        s = SqlShopStore(shop_url)
        yield s, shop_url
        asyncio.run(s.close())
    else:
        with ShopApiServer(shop_url, token="t0ken") as server:
            yield HttpShopStore(server.base_url, token="t0ken"), shop_url


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def scalar(url: str, sql: str) -> Any:
    engine = create_engine(url)
    with engine.connect() as c:
        value = c.execute(text(sql)).scalar()
    engine.dispose()
    return value


def test_store_find_order_returns_lines_shipment_and_tracking(store) -> None:
    s, _ = store
    order = run(s.find_order("E20261120004"))
    assert order.status == "shipped" and order.carrier == "中通" and order.tracking_number == "78612188820419"
    assert order.lines[0].category == "yoga" and order.latest_event.text_zh.endswith("成都转运中心】")
    assert run(s.find_order("E99999999999")) is None


def test_store_customer_by_identity_and_recent_orders(store) -> None:
    s, _ = store
    customer = run(s.customer_by_identity("wechat", "demo-wechat-openid"))
    assert customer is not None and customer.phone == "13812345678"
    recent = run(s.recent_orders(customer.id, 3))
    assert [o.id for o in recent] == ["E20261101001"]
    assert run(s.customer_by_identity("wechat", "nobody")) is None


def test_store_cancel_restores_stock_and_coupons_and_writes_outbox(store) -> None:
    s, url = store
    stock_before = scalar(url, "select stock from products where sku='YOGA-PANT-BK-M'")
    result = run(s.cancel_order("E20261122005", sender_id="chat-1", now=NOW))
    assert result.ok and result.order.status == "cancelled"
    assert result.event["event"] == "order_cancelled" and result.event["data"]["refund_cents"] == 42800
    assert scalar(url, "select stock from products where sku='YOGA-PANT-BK-M'") == stock_before + 1
    assert scalar(url, "select count(*) from outbox where event='order_cancelled' and sender_id='chat-1'") == 1
    assert scalar(url, "select count(*) from refunds where order_id='E20261122005' and status='processing'") == 1
    again = run(s.cancel_order("E20261122005", sender_id="chat-1", now=NOW))
    assert not again.ok and again.code == "already_cancelled"


def test_store_shipped_order_cannot_be_cancelled_and_nothing_changes(store) -> None:
    s, url = store
    result = run(s.cancel_order("E20261119009", sender_id="chat-1", now=NOW))
    assert (result.ok, result.code) == (False, "already_shipped")
    assert scalar(url, "select status from orders where id='E20261119009'") == "shipped"
    assert scalar(url, "select count(*) from outbox") == 0


def test_store_return_creates_record_and_event(store) -> None:
    s, url = store
    result = run(s.request_after_sale("E20261117003", "return", "尺码不合适", sender_id="chat-2", now=NOW))
    assert result.ok and result.days_left == 4 and result.event["event"] == "return_requested"
    # socks are excluded from returns: only the shoes are refunded
    assert result.event["data"]["skus"] == ["BB-SKY-WH-43"]
    assert scalar(url, "select reason from after_sales where order_id='E20261117003'") == "尺码不合适"
    late = run(s.request_after_sale("E20261101001", "return", "x", sender_id=None, now=NOW))
    assert late.code == "window_passed"


def test_store_change_address_only_before_shipment(store) -> None:
    s, url = store
    ok = run(s.change_address("E20261122005", "上海市浦东新区世纪大道100号", sender_id="c", now=NOW))
    assert ok.ok and ok.event["data"]["address_masked"].endswith("****")
    assert "世纪大道100号" not in str(ok.event)  # personal data never leaves in events
    refused = run(s.change_address("E20261117003", "北京市朝阳区1号", sender_id="c", now=NOW))
    assert refused.code == "already_delivered"


def test_store_coupons_points_products_baskets(store) -> None:
    s, _ = store
    baskets = run(s.baskets())
    assert len(baskets) > 300 and all(b.skus for b in baskets)
    products = run(s.products(["YOGA-MAT6-PU"]))
    assert [p.sku for p in products] == ["YOGA-MAT6-PU"]
    cid = baskets[0].customer_id
    assert isinstance(run(s.coupons(cid)), list) and run(s.points(cid))


def test_sql_store_down_raises_shop_unavailable(tmp_path) -> None:
    s = SqlShopStore(f"sqlite:///{tmp_path}/missing/dir/shop.db", create=False)
    with pytest.raises(ShopUnavailable, match="shop: url"):
        run(s.find_order("E20261101001"))


def test_sql_store_slow_database_times_out(shop_url: str, monkeypatch) -> None:
    s = SqlShopStore(shop_url, timeout=0.05)
    import actions.shop.sql as sql

    original = sql.load_orders

    def slow(connection, order_ids):
        import time
        time.sleep(0.3)
        return original(connection, order_ids)

    monkeypatch.setattr(sql, "load_orders", slow)
    with pytest.raises(ShopUnavailable, match="within 0.1s|within 0.0s|did not answer"):
        run(s.find_order("E20261101001"))


def test_http_store_wrong_token_and_server_down(shop_url: str) -> None:
    with ShopApiServer(shop_url, token="right") as server:
        with pytest.raises(ShopUnavailable, match="token"):
            run(HttpShopStore(server.base_url, token="wrong").find_order("E20261101001"))
        server.slow_seconds = 0.5
        with pytest.raises(ShopUnavailable, match="in time"):
            run(HttpShopStore(server.base_url, token="right", timeout=0.1).find_order("E20261101001"))
        base = server.base_url
    with pytest.raises(ShopUnavailable, match="unreachable"):
        run(HttpShopStore(base, token="right", timeout=0.5).find_order("E20261101001"))


def test_store_orders_keeps_the_given_order_and_drops_unknown_ids(store) -> None:
    s, _ = store
    found = run(s.orders(["E20261120004", "E99999999999", "E20261101001", "E20261120004"]))
    assert [o.id for o in found] == ["E20261120004", "E20261101001"]
    assert found[0] == run(s.find_order("E20261120004"))  # the same full view as one by one
    assert run(s.orders([])) == []


def test_store_orders_by_phone_light_rows_are_the_same_orders(store) -> None:
    s, url = store
    phone = scalar(url, "select ship_phone from orders group by ship_phone order by count(*) desc, ship_phone limit 1")
    full = run(s.orders_by_phone(phone, limit=20))
    light = run(s.orders_by_phone(phone, limit=20, details=False))
    assert len(full) >= 2
    assert [(o.id, o.customer_id, o.ship_name, o.created_at) for o in light] == \
        [(o.id, o.customer_id, o.ship_name, o.created_at) for o in full]
    assert all(o.lines for o in full)


def test_sql_store_light_phone_rows_carry_no_lines(shop_url: str) -> None:
    s = SqlShopStore(shop_url)
    light = run(s.orders_by_phone("13812345678", limit=20, details=False))
    run(s.close())
    assert light and all(o.lines == () and o.tracking == () and o.carrier is None for o in light)


def test_sql_store_loads_any_number_of_orders_in_three_statements(shop_url: str) -> None:
    """No query per order (N+1): the order rows with the latest shipment, lines, history."""
    from sqlalchemy import event

    s = SqlShopStore(shop_url)
    engine = create_engine(shop_url)
    with engine.connect() as c:
        ids = [r[0] for r in c.execute(text("select order_id from shipments order by order_id limit 12"))]
    engine.dispose()
    statements: list[str] = []
    event.listen(s.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    one = run(s.orders(ids[:1]))
    assert len(statements) == 3
    statements.clear()
    many = run(s.orders(ids))
    assert len(statements) == 3 and len(many) == 12
    assert all(o.tracking_number and o.tracking for o in many)  # shipments and tracking came along
    assert many[0] == one[0]
    run(s.close())


def test_sql_store_bulk_reads_are_not_cut_by_the_shopper_timeout(shop_url: str, monkeypatch) -> None:
    """Fitting the recommender reads the whole history: a short `shop: timeout` must not fail it."""
    import actions.shop.sql as sql

    s = SqlShopStore(shop_url, timeout=0.05)
    original = sql.SqlShopStore._in_thread
    timeouts: list[float] = []

    async def spy(self, work, what, timeout=None):
        timeouts.append(self.timeout if timeout is None else timeout)
        return await original(self, work, what, timeout)

    monkeypatch.setattr(sql.SqlShopStore, "_in_thread", spy)
    assert run(s.baskets()) and run(s.products())
    assert timeouts == [sql.BULK_TIMEOUT_S, sql.BULK_TIMEOUT_S]
    run(s.baskets(1))
    assert timeouts[-1] == 0.05  # a shopper's own history keeps the short timeout
    run(s.close())


def test_store_orders_by_phone_keep_applies_the_rule_and_returns_full_views(store) -> None:
    s, url = store
    phone = scalar(url, "select ship_phone from orders group by ship_phone order by count(*) desc, ship_phone limit 1")
    seen: list[list] = []

    def newest_two(rows: list) -> list:
        seen.append(rows)
        return rows[:2]

    kept = run(s.orders_by_phone(phone, limit=20, keep=newest_two))
    everything = run(s.orders_by_phone(phone, limit=20))
    assert [o.id for o in seen[0]] == [o.id for o in everything]
    assert kept == everything[:2] and all(o.lines for o in kept)
    assert run(s.orders_by_phone(phone, limit=20, keep=lambda rows: [])) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sql_store_two_workers_cancelling_one_order_cancel_it_once(backend: str, request: pytest.FixtureRequest) -> None:
    """Two action-server workers (their own engines) cancel one order at the same moment: one wins,
    the stock comes back once, one outbox event and one refund are written."""
    url = request.getfixturevalue("postgres_shop_url" if backend == "postgres" else "shop_url")
    stock_before = scalar(url, "select stock from products where sku='YOGA-PANT-BK-M'")
    workers = [SqlShopStore(url, timeout=30.0, create=False) for _ in range(4)]

    async def race() -> list[Any]:
        return await asyncio.gather(*(w.cancel_order("E20261122005", sender_id=f"chat-{i}", now=NOW)
                                      for i, w in enumerate(workers)))

    try:
        results = run(race())
    finally:
        for worker in workers:
            run(worker.close())
    assert sorted(r.ok for r in results) == [False, False, False, True]
    assert {r.code for r in results if not r.ok} <= {"already_cancelled", "already_shipped"}
    assert scalar(url, "select stock from products where sku='YOGA-PANT-BK-M'") == stock_before + 1
    assert scalar(url, "select count(*) from outbox where event='order_cancelled'") == 1
    assert scalar(url, "select count(*) from refunds where order_id='E20261122005'") == 1
