"""The demo shop behind kefu's ports: customer profiles and the outbox, from a seeded shop."""
from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine, text

from actions.shop.ports import ShopOutboxPort, ShopProfilePort
from actions.shop.sql import SqlShopStore
from bot.ports import OutboxPort, ProfilePort


def _identity(url: str) -> tuple[str, str, int]:
    """(channel, external id, customer id) of a customer with orders."""
    engine = create_engine(url)
    with engine.connect() as c:
        row = c.execute(text("select i.channel, i.external_id, i.customer_id from channel_identities i "
                             "where exists (select 1 from orders o where o.customer_id = i.customer_id) "
                             "order by i.id")).first()
    engine.dispose()
    return row[0], row[1], row[2]


def test_shop_profile_port_gives_orders_value_and_open_cases(shop_url: str, tmp_path: Path) -> None:
    channel, external_id, customer_id = _identity(shop_url)

    async def scenario() -> tuple:
        store = SqlShopStore(shop_url)
        port = ShopProfilePort(tmp_path, store=store, vip_lifetime_value_cents=1)
        found = await port.profile(channel, external_id)
        unknown = await port.profile(channel, "nobody-knows-me")
        await store.close()
        return port, found, unknown

    port, found, unknown = asyncio.run(scenario())
    assert isinstance(port, ProfilePort)
    assert unknown is None
    assert found["customer_id"] == customer_id and found["orders"] >= 1
    assert set(found) == {"customer_id", "name", "orders", "lifetime_value_cents", "open_after_sales",
                          "recent_orders", "vip", "tier", "priority_service"}
    assert len(found["recent_orders"]) <= 5 and set(found["recent_orders"][0]) == {"id", "status", "total_cents"}
    assert found["vip"] is (found["lifetime_value_cents"] >= 1 or found["priority_service"])


def test_shop_profile_port_without_a_shop_gives_none(tmp_path: Path) -> None:
    class Down:
        async def customer_by_identity(self, channel: str, external_id: str) -> None:
            raise ConnectionError("shop down")

    assert asyncio.run(ShopProfilePort(tmp_path, store=Down()).profile("rest", "x")) is None  # type: ignore[arg-type]


def test_shop_outbox_port_reads_the_shop_section_of_the_project(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KEFU_SHOP_URL", raising=False)
    monkeypatch.delenv("KEFU_SHOP_OUTBOX_INTERVAL", raising=False)
    (tmp_path / "endpoints.yml").write_text("shop:\n  url: sqlite:///data/shop.db\n  outbox_interval: 0.5\n")
    port = ShopOutboxPort(tmp_path)
    assert isinstance(port, OutboxPort)
    assert port.interval == 0.5 and port.path == tmp_path / "data" / "shop.db"
    assert asyncio.run(port.pending(10)) == []  # not seeded yet: nothing, and no empty file created
    assert not port.path.exists()

    (tmp_path / "endpoints.yml").write_text("shop:\n  type: http\n  url: https://merchant.example/api\n")
    assert ShopOutboxPort(tmp_path).interval == 0  # the merchant publishes its own events
    monkeypatch.setenv("KEFU_SHOP_OUTBOX_INTERVAL", "7")
    (tmp_path / "endpoints.yml").unlink()
    assert ShopOutboxPort(tmp_path).interval == 7.0


def test_shop_outbox_port_hands_out_events_until_marked(shop_url: str, tmp_path: Path) -> None:
    db = shop_url[len("sqlite:///"):]
    (tmp_path / "endpoints.yml").write_text(f"shop:\n  url: sqlite:///{db}\n")
    engine = create_engine(shop_url)
    with engine.begin() as c:
        c.execute(text("delete from outbox"))
        c.execute(text("insert into outbox (event, sender_id, customer_id, order_id, payload, created_at) "
                       "values ('order_cancelled', 's', 7, 'E1', '{}', '2026-11-23 02:00:00.000000')"))
    engine.dispose()

    async def scenario() -> tuple:
        port = ShopOutboxPort(tmp_path)
        first = await port.pending(10)
        await port.mark_published([e["outbox_id"] for e in first])
        second = await port.pending(10)
        await port.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert [e["event"] for e in first] == ["order_cancelled"] and first[0]["outbox_id"]
    assert second == []
