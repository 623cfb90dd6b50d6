"""Issue #20: shop.yml, the stores' coupon/points/stock calls (SQL and the merchant HTTP API), compensation limits."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from actions.shop import coupon_template_views
from actions.shop.base import ShopDataError
from actions.shop.config import load_shop_yml, parse_shop_config, shop_config
from actions.shop.http import HttpShopStore
from actions.shop.importer import import_file
from actions.shop.loyalty import compensate, membership
from actions.shop.nlu import generate
from actions.shop.sql import SqlShopStore
from tests.shop.conftest import NOW
from tests.shop.shop_api_server import ShopApiServer

ROOT = Path(__file__).resolve().parents[2]
COSMETICS = ROOT / "examples" / "cosmetics"


# --------------------------------------------------------------------------- shop.yml
def test_demo_shop_yml_keeps_the_demo_values() -> None:
    config = load_shop_yml(ROOT / "shop.yml")
    assert config.order_id_re.fullmatch("E20261101001") and not config.order_id_re.fullmatch("E2026110100")
    assert config.phone_re.fullmatch("13812345678") and not config.phone_re.fullmatch("12812345678")
    assert len(config.categories) == 15 and config.money(12345) == "¥123.45"
    assert [t.code for t in config.tiers] == ["member", "silver", "gold"]
    assert config.tier_for(5000).priority_service and not config.tier_for(4999).priority_service


@pytest.mark.parametrize("text, where, what", [
    ("name: {zh: a, en: b}\nbogus: 1\n", ":2", "unknown key `bogus`"),
    ("formats:\n  order_id: 'E(\\d'\n", ":2", "not a valid regular expression"),
    ("coupons:\n  templates:\n    X:\n      title: {zh: a, en: b}\n      amount: -3\n", ":5", "`amount` must be a number"),
    ("catalog:\n  categories:\n    - {code: a, name: {zh: a, en: a}}\ncoupons:\n  templates:\n"
     "    X: {title: {zh: a, en: b}, amount: 1, category: nope}\n", ":6", "unknown category 'nope'"),
    ("tiers:\n  - {code: gold, name: {zh: 金, en: Gold}, min_points: 10}\n", ":2", "lowest tier must start at min_points 0"),
    ("formats:\n  product_page: '/p/(.+)'\n", ":2", "needs a named group `sku`"),
])
def test_bad_shop_yml_names_file_line_and_fix(text: str, where: str, what: str, tmp_path: Path) -> None:
    path = tmp_path / "shop.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ShopDataError) as e:
        load_shop_yml(path)
    message = str(e.value)
    assert message.startswith(f"{path}{where}:") and what in message and "Fix:" in message


def test_generated_nlu_file_is_up_to_date_with_shop_yml() -> None:
    result = subprocess.run([sys.executable, "-m", "actions.shop", "nlu", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_nlu_follows_the_configuration_and_avoids_overlaps() -> None:
    config = parse_shop_config("formats: {order_id: 'CS-\\d{8}', phone: '\\+?\\d{8,13}'}\n"
                               "catalog:\n  categories:\n    - {code: lips, name: {zh: 唇膏, en: lipsticks}}\n"
                               "  colours: {豆沙色: rosewood, 正红: red}\n")
    text = generate(config)
    assert "- CS-\\d{8}" in text and "- \\+?\\d{8,13}" in text and "- 唇膏" in text and "- rosewood" in text
    assert "- red\n" not in text  # too short for a boundary-free lookup
    other = ROOT / "nlu_data" / "nlu" / "lookups.yml"
    demo = generate(load_shop_yml(ROOT / "shop.yml"), [other])
    assert "    - 篮球\n" not in demo  # "篮球" would fire inside the product "篮球鞋"


def test_importer_reads_formats_and_categories_from_the_configuration(tmp_path: Path) -> None:
    config = load_shop_yml(COSMETICS / "shop.yml")
    export = tmp_path / "export.jsonl"
    rows = [
        {"kind": "product", "sku": "LIP-001", "category": "lipstick", "title_zh": "丝绒哑光唇膏", "price": 189, "stock": 3,
         "variants": [{"colour": "正红", "stock": 0}, {"colour": "豆沙色", "stock": 3}]},
        {"kind": "product", "sku": "RUN-1", "category": "running_shoes", "title_zh": "跑鞋", "price": 1},
        {"kind": "customer", "phone": "+85291234567", "name": "Mei"},
        {"kind": "customer", "phone": "13812345678x", "name": "bad"},
    ]
    export.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    report = import_file(url, export, config)
    reasons = dict(report.rejected)
    assert report.inserted >= 2 and set(reasons) == {2, 4}
    assert "unknown category 'running_shoes'" in reasons[2] and "lipstick" in reasons[2]
    assert "phone format" in reasons[4]
    store = SqlShopStore(url)
    lipstick = asyncio.run(store.products(["LIP-001"]))[0]
    assert lipstick.stock_of(colour="正红") == 0 and lipstick.stock_of(colour="豆沙色") == 3
    assert {t.code for t in asyncio.run(store.coupon_templates())} == set(config.coupon_templates)
    asyncio.run(store.close())
    assert import_file(url, export, config).inserted == 0  # idempotent


# --------------------------------------------------------------------------- the stores
def _customer_id(store: SqlShopStore) -> int:
    return asyncio.run(store.customer_by_identity("wechat", "demo-wechat-openid")).id


def _exercise(store, customer_id: int) -> dict:
    """The same calls against either store; returns what they answered."""
    async def go() -> dict:
        out = {}
        first = await store.issue_coupon(customer_id, "WELCOME20", issue_key="journey:welcome:c", issued_by="journey:welcome:c", now=NOW)
        again = await store.issue_coupon(customer_id, "WELCOME20", issue_key="journey:welcome:c", issued_by="journey:welcome:c", now=NOW)
        out["issue"] = (first.ok, first.new, again.new, first.coupon.code == again.coupon.code,
                        first.coupon.valid_until - first.coupon.valid_from == timedelta(days=30))
        out["unknown_template"] = (await store.issue_coupon(customer_id, "NOPE", issue_key="k", issued_by="x", now=NOW)).code
        redeemed = await store.redeem_coupon(first.coupon.code, "E20261101001", now=NOW)
        out["redeemed"] = (redeemed.ok, redeemed.event["event"], redeemed.event["data"]["journey"])
        out["redeem_twice_elsewhere"] = (await store.redeem_coupon(first.coupon.code, "E20261101002", now=NOW)).code
        out["earn"] = [await store.earn_points(customer_id, "share", ref=f"s{i}", points=5, now=NOW, daily_max=2)
                       for i in range(3)]
        poor = await store.redeem_points(customer_id, "PTS50", issue_key="p1", now=NOW)
        out["poor"] = (poor.ok, poor.code, poor.balance is not None)
        out["not_redeemable"] = (await store.redeem_points(customer_id, "CART10", issue_key="p2", now=NOW)).code
        product = (await store.products())[0]
        out["restock"] = [await store.subscribe_restock(product.sku, size=None, colour=None, sender_id="s-1",
                                                        customer_id=None, now=NOW) for _ in range(2)]
        await store.set_stock(product.sku, 0, now=NOW)
        back = await store.set_stock(product.sku, 4, now=NOW)
        out["back"] = [(e["event"], e["sender_id"], e["data"]["sku"]) for e in back] == [("back_in_stock", "s-1", product.sku)]
        return out

    return asyncio.run(go())


def test_sql_and_merchant_http_stores_answer_the_new_calls_alike(seeded_db: Path, tmp_path: Path) -> None:
    import shutil

    urls = []
    for name in ("sql.db", "api.db"):
        shutil.copy(seeded_db, tmp_path / name)
        urls.append(f"sqlite:///{tmp_path / name}")
    sql = SqlShopStore(urls[0])
    sql.sync_coupon_templates(coupon_template_views())
    customer_id = _customer_id(sql)
    direct = _exercise(sql, customer_id)
    asyncio.run(sql.close())
    with ShopApiServer(urls[1]) as api:
        api.store.sync_coupon_templates(coupon_template_views())
        http = HttpShopStore(api.base_url, token="secret")
        over_http = _exercise(http, customer_id)
        templates = asyncio.run(http.coupon_templates())
        asyncio.run(http.close())
    assert direct == over_http
    assert direct["issue"] == (True, True, False, True, True)
    assert direct["unknown_template"] == "unknown_template"
    assert direct["redeemed"] == (True, "coupon_redeemed", "welcome")
    assert direct["redeem_twice_elsewhere"] == "coupon_used"
    assert direct["earn"] == [5, 5, 0]  # daily_max 2
    assert direct["not_redeemable"] == "not_redeemable"
    assert direct["restock"] == [True, False] and direct["back"] is True
    assert {t.code for t in templates} == set(shop_config().coupon_templates)


def test_compensation_coupon_within_the_roles_limit_once_per_case(shop_url: str) -> None:
    store = SqlShopStore(shop_url)
    store.sync_coupon_templates(coupon_template_views())
    customer_id = _customer_id(store)
    config = shop_config()

    async def go():
        over = await compensate(store, config, customer_id, amount_cents=config.compensation_limits_cents["agent"] + 1,
                                role="agent", agent="alice", case_id="h1", now=NOW)
        stranger_role = await compensate(store, config, customer_id, amount_cents=100, role="trainer", agent="t",
                                         case_id="h1", now=NOW)
        ok = await compensate(store, config, customer_id, amount_cents=1500, role="agent", agent="alice", case_id="h1", now=NOW)
        twice = await compensate(store, config, customer_id, amount_cents=1500, role="agent", agent="alice", case_id="h1", now=NOW)
        bigger = await compensate(store, config, customer_id, amount_cents=8000, role="supervisor", agent="sam", case_id="h2", now=NOW)
        return over, stranger_role, ok, twice, bigger

    over, stranger_role, ok, twice, bigger = asyncio.run(go())
    asyncio.run(store.close())
    assert (over.ok, over.code) == (False, "over_limit")
    assert (stranger_role.ok, stranger_role.code) == (False, "role_not_allowed")
    assert ok.ok and ok.coupon.amount_cents == 1500 and ok.new
    assert twice.coupon.code == ok.coupon.code and not twice.new
    assert bigger.ok and bigger.coupon.amount_cents == 8000


def test_compensate_command_refuses_over_the_limit_with_the_fix(shop_url: str) -> None:
    customer_id = _customer_id(SqlShopStore(shop_url))
    base = [sys.executable, "-m", "actions.shop", "compensate", str(customer_id), "--role", "agent", "--agent", "alice",
            "--case", "h9", "--url", shop_url]
    refused = subprocess.run(base + ["--amount", "50"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "up to ¥20.00" in refused.stderr and "Fix:" in refused.stderr
    issued = subprocess.run(base + ["--amount", "20"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0 and "¥20.00" in issued.stdout


def test_membership_counts_lifetime_earned_points_not_the_balance() -> None:
    from actions.shop.base import PointsEntryView

    config = shop_config()
    entries = [PointsEntryView(6000, "purchase:x", NOW), PointsEntryView(-5500, "redeem:y", NOW)]
    member = membership(config, entries)
    assert member.tier.code == "gold" and member.lifetime_points == 6000 and member.next_tier is None
    silver = membership(config, [PointsEntryView(1200, "purchase:z", NOW)])
    assert silver.tier.code == "silver" and silver.points_to_next == 3800


def test_compensation_port_for_the_console_reports_the_limit(shop_url: str) -> None:
    from actions.shop.ports import ShopCompensationPort

    store = SqlShopStore(shop_url)
    store.sync_coupon_templates(coupon_template_views())
    port = ShopCompensationPort(ROOT, store=store)
    customer_id = _customer_id(store)
    refused = asyncio.run(port.compensate(customer_id, amount_cents=2001, role="agent", agent="alice", case_id="h5"))
    issued = asyncio.run(port.compensate(str(customer_id), amount_cents=2000, role="agent", agent="alice", case_id="h5"))
    asyncio.run(store.close())
    assert refused == {"ok": False, "code": "over_limit", "limit_cents": 2000, "limit": "¥20.00", "coupon_code": None,
                       "amount_cents": None, "new": False, "message": None}
    assert issued["ok"] and issued["amount_cents"] == 2000 and issued["coupon_code"] and issued["new"]
    # what the console sends the shopper: the code, its value and the template's terms, in both languages
    terms = shop_config().coupon_templates["COMP"].terms
    assert issued["coupon_code"] in issued["message"]["zh"] and "¥20.00" in issued["message"]["zh"]
    assert terms.zh in issued["message"]["zh"] and terms.en in issued["message"]["en"]


def test_demo_shop_yml_agrees_with_the_seeders_catalogue() -> None:
    """The demo keeps its values: shop.yml's categories are the seeder's (codes, names, sizes, return rules)."""
    from actions.shop import catalog

    config = load_shop_yml(ROOT / "shop.yml")
    assert [(c.code, c.name.zh, c.name.en, c.size_chart, c.sizes, c.returnable, c.exchangeable) for c in config.categories] == [
        (c.code, c.zh, c.en, c.size_chart, c.sizes, c.returnable, c.exchangeable) for c in catalog.CATEGORIES]
    assert config.colours == catalog.COLOURS_EN


def test_concurrent_issues_with_one_key_give_one_coupon(shop_url: str) -> None:
    from sqlalchemy import create_engine, text

    store = SqlShopStore(shop_url)
    store.sync_coupon_templates(coupon_template_views())
    customer_id = _customer_id(store)

    async def go():
        return await asyncio.gather(*(store.issue_coupon(customer_id, "CART10", issue_key="journey:abandoned_cart:reminder",
                                                         issued_by="journey:abandoned_cart:reminder", now=NOW)
                                      for _ in range(6)))

    results = asyncio.run(go())
    asyncio.run(store.close())
    assert len({r.coupon.code for r in results}) == 1 and sum(r.new for r in results) == 1
    engine = create_engine(shop_url)
    with engine.connect() as c:
        rows = c.execute(text("select count(*) from coupon_issues where issue_key = 'journey:abandoned_cart:reminder'")).scalar()
    engine.dispose()
    assert rows == 1
