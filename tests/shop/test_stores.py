"""One behaviour suite run against both `ShopStore` implementations (SQL and HTTP)."""
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


@pytest.fixture(params=["sql", "http"])
def store(request: pytest.FixtureRequest, shop_url: str) -> Iterator[tuple[ShopStore, str]]:
    if request.param == "sql":
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

    original = sql._order_view

    def slow(session, order_id):
        import time
        time.sleep(0.3)
        return original(session, order_id)

    monkeypatch.setattr(sql, "_order_view", slow)
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
