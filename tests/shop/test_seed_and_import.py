"""Seeding (deterministic, every lifecycle state, structure) and idempotent imports."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from actions.shop.importer import import_file
from actions.shop.rules import ORDER_STATUSES
from actions.shop.seed import seed_shop
from tests.shop.conftest import NOW, TINY

DATA = Path(__file__).resolve().parents[1] / "data" / "shop"


def rows(url: str, sql: str) -> list:
    engine = create_engine(url)
    with engine.connect() as c:
        out = c.execute(text(sql)).all()
    engine.dispose()
    return out


def test_seed_is_deterministic_and_covers_every_state(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    report = seed_shop(a, seed=3, size=TINY, now=NOW)
    seed_shop(b, seed=3, size=TINY, now=NOW)
    query = "select id, status, total_cents from orders order by id"
    assert rows(a, query) == rows(b, query)
    assert set(report.statuses) == set(ORDER_STATUSES)
    assert report.products >= 15 * TINY.products_per_category


def test_seed_has_co_purchase_structure(seeded_db: Path) -> None:
    url = f"sqlite:///{seeded_db}"
    pairs = rows(url, """select count(distinct a.order_id) from order_lines a join order_lines b on a.order_id=b.order_id
                         join products pa on pa.sku=a.sku join products pb on pb.sku=b.sku
                         where pa.category='running_shoes' and pb.category='socks'""")[0][0]
    shoes = rows(url, """select count(distinct l.order_id) from order_lines l join products p on p.sku=l.sku
                         where p.category='running_shoes'""")[0][0]
    assert shoes > 10 and pairs / shoes > 0.3  # socks go with running shoes far above chance


def test_import_loads_good_rows_reports_bad_ones_and_is_idempotent(shop_url: str) -> None:
    first = import_file(shop_url, DATA / "export.jsonl")
    assert first.inserted == 3  # product, customer, order E20261120901
    assert [line for line, _ in first.rejected] == [2, 4, 6, 7, 8]
    reasons = dict(first.rejected)
    assert "unknown category" in reasons[2] and "phone" in reasons[4] and "order-id format 'E\\\\d{11}'" in reasons[6]
    assert "invalid JSON" in reasons[7] and "tracking_number" in reasons[8]
    assert "12345" not in reasons[4]  # phones are not echoed into reports and logs
    snapshot = rows(shop_url, "select * from orders order by id"), rows(shop_url, "select * from order_lines order by id")
    second = import_file(shop_url, DATA / "export.jsonl")
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 3)
    assert (rows(shop_url, "select * from orders order by id"), rows(shop_url, "select * from order_lines order by id")) == snapshot
    assert rows(shop_url, "select c.phone from channel_identities i join customers c on c.id=i.customer_id "
                          "where i.external_id='o-merchant-1'") == [("13700001111",)]


def test_import_csv_groups_lines_into_orders(shop_url: str) -> None:
    report = import_file(shop_url, DATA / "orders.csv")
    assert report.inserted == 1 and [line for line, _ in report.rejected] == [4]
    assert rows(shop_url, "select total_cents from orders where id='E20261121901'") == [(15900 + 2 * 3900,)]
    again = import_file(shop_url, DATA / "orders.csv")
    assert (again.inserted, again.updated) == (0, 0)
