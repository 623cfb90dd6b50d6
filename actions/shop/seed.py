"""Generate the demo sports shop: catalogue, customers, a year of orders.

Deterministic for a given (seed, now): every random draw comes from one
`random.Random(seed)` in a fixed order. Structure the recommender can learn:
customers prefer one or two sports and a price band, seasons move categories
(swimming in summer, jackets in winter, 11.11 and 6.18 peaks), baskets pair a
primary item with complements (running shoes → socks, bottle), and durable
items are rarely bought twice. Rows go in with bulk executemany inserts.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import delete
from sqlalchemy.orm import Session

from actions.shop import catalog, models as m, rules
from actions.shop.base import SHOP_TZ
from actions.shop.sql import bulk_insert, create_schema, make_engine

logger = logging.getLogger(__name__)

DEMO_ORDERS = Path(__file__).resolve().parent.parent / "data" / "demo_orders.json"
CARRIERS = (("顺丰", "SF", "SF Express"), ("中通", "ZT", "ZTO Express"), ("圆通", "YT", "YTO Express"), ("京东", "JD", "JD Logistics"))
CITIES = (("上海", "Shanghai"), ("北京", "Beijing"), ("深圳", "Shenzhen"), ("杭州", "Hangzhou"), ("成都", "Chengdu"),
          ("武汉", "Wuhan"), ("广州", "Guangzhou"), ("南京", "Nanjing"), ("西安", "Xi'an"), ("重庆", "Chongqing"))
DISTRICTS = ("朝阳区", "浦东新区", "南山区", "西湖区", "武侯区", "洪山区", "天河区", "鼓楼区", "雁塔区", "渝中区")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass(frozen=True)
class SeedSize:
    products_per_category: int = 24
    customers: int = 2000
    orders: int = 21000


FULL = SeedSize()
SMALL = SeedSize(products_per_category=8, customers=120, orders=900)


@dataclass(frozen=True)
class SeedReport:
    products: int
    customers: int
    orders: int
    statuses: dict[str, int]
    seconds: float


def default_now() -> datetime:
    """Today 10:00 shop time: reruns on the same day give the same shop."""
    today = datetime.now(SHOP_TZ).date()
    return datetime(today.year, today.month, today.day, 10, 0, tzinfo=SHOP_TZ)


def seed_shop(url: str, *, seed: int = 42, size: SeedSize = FULL, now: Optional[datetime] = None,
              include_demo_orders: bool = True) -> SeedReport:
    """Replace the shop at `url` with a freshly generated one."""
    import time

    start = time.perf_counter()
    now = now or default_now()
    rng = random.Random(seed)
    data = _generate(rng, size, now)
    if include_demo_orders and DEMO_ORDERS.exists():
        _add_demo_orders(data, now)
    _add_variants_and_templates(data, random.Random(seed + 1))  # own generator: the rest stays as before
    engine = make_engine(url)
    try:
        create_schema(engine)
        with Session(engine) as s, s.begin():
            for model in reversed(m.Base.metadata.sorted_tables):
                s.execute(delete(model))
            for model, key in (
                (m.Category, "categories"), (m.Product, "products"), (m.Customer, "customers"),
                (m.ChannelIdentity, "identities"), (m.Order, "orders"), (m.OrderLine, "lines"),
                (m.Payment, "payments"), (m.Shipment, "shipments"), (m.TrackingEvent, "tracking"),
                (m.AfterSale, "after_sales"), (m.Refund, "refunds"), (m.Coupon, "coupons"),
                (m.PointsEntry, "points"), (m.VariantStock, "variants"), (m.CouponTemplateRow, "coupon_templates"),
            ):
                bulk_insert(s, model, data[key])
    finally:
        engine.dispose()
    statuses: dict[str, int] = {}
    for o in data["orders"]:
        statuses[o["status"]] = statuses.get(o["status"], 0) + 1
    report = SeedReport(len(data["products"]), len(data["customers"]), len(data["orders"]), statuses,
                        time.perf_counter() - start)
    logger.info("Seeded shop %s: %d products, %d customers, %d orders in %.1fs", url.split("@")[-1],
                report.products, report.customers, report.orders, report.seconds)
    return report


# --- generation ---------------------------------------------------------------------------

def _add_variants_and_templates(data: dict[str, list[dict[str, Any]]], rng: random.Random) -> None:
    """Stock per size and colour for sized products (some sold out), and shop.yml's coupon templates."""
    from actions.shop.config import shop_config

    data["variants"] = []
    for p in data["products"]:
        sizes = [s for s in p.get("sizes") or () if s != "均码"]
        if not sizes or len(p.get("colours") or ()) == 0:
            continue
        total = 0
        for colour in p["colours"]:
            for size in sizes:
                units = 0 if p["stock"] == 0 or rng.random() < 0.12 else rng.randint(1, 30)
                data["variants"].append(dict(sku=p["sku"], size=size, colour=colour, stock=units))
                total += units
        p["stock"] = total
    data["coupon_templates"] = [
        dict(code=t.code, title_zh=t.title.zh, title_en=t.title.en, amount_cents=t.amount_cents,
             threshold_cents=t.threshold_cents, valid_days=t.valid_days, category=t.category,
             terms_zh=t.terms.zh, terms_en=t.terms.en, points_cost=t.points_cost)
        for t in shop_config().coupon_templates.values()
    ]


def _season(spec: catalog.CategorySpec, month: int) -> float:
    return 1.0 + spec.seasonality * math.cos(2 * math.pi * (month - spec.peak_month) / 12)


def _generate(rng: random.Random, size: SeedSize, now: datetime) -> dict[str, list[dict[str, Any]]]:
    utc_now = now.astimezone(timezone.utc)
    data: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "categories", "products", "customers", "identities", "orders", "lines", "payments", "shipments",
        "tracking", "after_sales", "refunds", "coupons", "points")}
    for spec in catalog.CATEGORIES:
        data["categories"].append(dict(code=spec.code, name_zh=spec.zh, name_en=spec.en, size_chart=spec.size_chart,
                                       returnable=spec.returnable, exchangeable=spec.exchangeable))

    # Catalogue: per category, products sorted by price; Zipf popularity over a shuffled rank.
    by_cat: dict[str, list[dict[str, Any]]] = {}
    pop_cum: dict[str, list[float]] = {}
    words = list(itertools.product(catalog.BRANDS, catalog.MODEL_WORDS))
    for ci, spec in enumerate(catalog.CATEGORIES):
        lo, hi = spec.price_yuan
        items = []
        for j in range(size.products_per_category):
            brand, (w_zh, w_en) = words[(ci * 7 + j * 5) % len(words)]
            price = int(lo + (hi - lo) * (j + rng.random()) / size.products_per_category)
            price = max(lo, price // 10 * 10 + 9)
            sku = f"{spec.code[:3].upper()}-{ci:02d}{j:03d}"
            colours = rng.sample(catalog.COLOURS, k=rng.randint(1, 3))
            stock = 0 if rng.random() < 0.06 else rng.randint(5, 400)
            items.append(dict(
                sku=sku, category=spec.code, brand=brand,
                title_zh=f"{brand}{w_zh}{spec.zh}{j + 1:02d}", title_en=f"{brand} {w_en} {spec.en} {j + 1:02d}",
                attributes={"material": rng.choice(("网布", "涤纶", "尼龙", "橡胶", "TPU")),
                            "level": rng.choice(("入门", "进阶", "专业"))},
                sizes=list(spec.sizes), colours=colours, price_cents=price * 100, stock=stock,
                images=[f"https://img.kefu-demo.shop/p/{sku}.jpg"],
            ))
        by_cat[spec.code] = items
        ranks = list(range(len(items)))
        rng.shuffle(ranks)
        weights = [1.0 / (r + 1) ** 0.9 for r in ranks]
        pop_cum[spec.code] = list(itertools.accumulate(weights))
        data["products"].extend(items)

    # Customers: preferred sports, price band, activity.
    cust: list[tuple[int, tuple[str, ...], float]] = []
    phones: set[str] = set()
    for cid in range(1, size.customers + 1):
        while True:
            phone = f"1{rng.choice('3456789')}{rng.randrange(10 ** 9):09d}"
            if phone not in phones:
                phones.add(phone)
                break
        created = utc_now - timedelta(days=rng.randint(200, 900))
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.5 else "")
        data["customers"].append(dict(id=cid, name=name, phone=phone, created_at=created))
        if rng.random() < 0.7:
            openid = "o" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", k=27))
            data["identities"].append(dict(customer_id=cid, channel="wechat", external_id=openid))
        prefs = tuple(rng.sample(catalog.PRIMARY, k=1 if rng.random() < 0.55 else 2))
        cust.append((cid, prefs, rng.random()))  # band in [0, 1): cheap → premium
    activity = list(itertools.accumulate(rng.lognormvariate(0, 0.7) for _ in cust))

    # Days: last 365 days, weighted by shopping festivals.
    days = [utc_now - timedelta(days=d) for d in range(365)]
    day_w = []
    for d in days:
        local = d.astimezone(SHOP_TZ)
        boost = 3.0 if (local.month, local.day) in ((11, 11), (6, 18)) else 1.6 if (
            (local.month == 11 and 1 <= local.day <= 12) or (local.month == 6 and 1 <= local.day <= 18)) else 1.0
        day_w.append(boost * (1.15 if local.weekday() >= 5 else 1.0))
    day_cum = list(itertools.accumulate(day_w))

    owned: dict[int, set[str]] = {}
    seq: dict[str, int] = {}
    order_rows = []
    for _ in range(size.orders):
        ci = bisect.bisect(activity, rng.random() * activity[-1])
        cid, prefs, band = cust[ci]
        created = days[bisect.bisect(day_cum, rng.random() * day_cum[-1])] - timedelta(seconds=rng.randint(0, 86000))
        if created > utc_now:
            created = utc_now - timedelta(minutes=rng.randint(1, 600))
        order_rows.append((created, cid, prefs, band))
    order_rows.sort(key=lambda r: r[0])

    def pick(code: str, band: float, have: set[str]) -> dict[str, Any]:
        items = by_cat[code]
        cum = pop_cum[code]
        for _attempt in range(4):
            if rng.random() < 0.6:  # price band: products are sorted by price
                j = min(len(items) - 1, max(0, int(band * len(items) + rng.gauss(0, len(items) * 0.12))))
            else:
                j = bisect.bisect(cum, rng.random() * cum[-1])
            item = items[min(j, len(items) - 1)]
            if item["sku"] not in have or code in catalog.CONSUMABLES:
                return item
        return item

    for index, (created, cid, prefs, band) in enumerate(order_rows):
        if index >= len(order_rows) - 3:  # the newest orders: still awaiting payment
            created = utc_now - timedelta(minutes=20 * (len(order_rows) - index))
        month = created.astimezone(SHOP_TZ).month
        have = owned.setdefault(cid, set())
        if rng.random() < 0.8:
            cands = list(prefs)
        else:
            cands = list(catalog.PRIMARY)
        w = [_season(catalog.BY_CODE[c], month) for c in cands]
        primary_cat = rng.choices(cands, weights=w)[0]
        primary = pick(primary_cat, band, have)
        basket = [primary]
        p_index = by_cat[primary_cat].index(primary)
        for comp, prob in catalog.COMPLEMENTS.get(primary_cat, ()):
            if rng.random() < prob:
                comp_items = by_cat[comp]
                if rng.random() < 0.6:  # this model's usual partner
                    item = comp_items[(p_index * 7 + 3) % len(comp_items)]
                else:
                    item = pick(comp, band, have)
                if item not in basket:
                    basket.append(item)
        have.update(i["sku"] for i in basket)
        _add_order(data, rng, seq, cid, created, basket, utc_now, pending=index >= len(order_rows) - 3)
    _add_coupons_and_points(data, rng, utc_now)
    return data


def _order_id(seq: dict[str, int], created: datetime) -> str:
    day = created.astimezone(SHOP_TZ).strftime("%Y%m%d")
    n = seq.get(day, 99) + 1
    if n > 999:
        raise ValueError(f"more than 900 orders on {day}: order ids are E + date + 3 digits")
    seq[day] = n
    return f"E{day}{n:03d}"


def _add_order(data: dict[str, list[dict[str, Any]]], rng: random.Random, seq: dict[str, int], cid: int,
               created: datetime, basket: list[dict[str, Any]], now: datetime, pending: bool = False) -> None:
    customer = data["customers"][cid - 1]
    oid = _order_id(seq, created)
    age = (now - created).total_seconds() / 86400
    r = rng.random()
    if age < 0.5:
        status = "pending_payment" if r < 0.35 else "paid"
    elif age < 2:
        status = "paid" if r < 0.5 else "shipped"
    elif age < 4:
        status = "shipped" if r < 0.6 else "delivered"
    else:
        status = "delivered"
    if pending:
        status = "pending_payment"
    if status != "pending_payment" and rng.random() < 0.05:
        status = "cancelled"
    if status == "delivered":
        if age < 15 and rng.random() < 0.08:
            status = "after_sales"
        elif age >= 15 and rng.random() < 0.03:
            status = "refunded"
    city, city_en = rng.choice(CITIES)
    address = f"{city}市{rng.choice(DISTRICTS)}{rng.choice(('幸福路', '人民路', '建设路', '中山路', '解放路'))}{rng.randint(1, 300)}号{rng.randint(1, 30)}栋{rng.randint(101, 2505)}室"
    lines = []
    gross = 0
    for item in basket:
        qty = 2 if item["category"] in catalog.CONSUMABLES and rng.random() < 0.25 else 1
        size = rng.choice(item["sizes"]) if item["sizes"] else "均码"
        data["lines"].append(dict(order_id=oid, sku=item["sku"], size=size, colour=rng.choice(item["colours"]),
                                  quantity=qty, unit_price_cents=item["price_cents"]))
        gross += qty * item["price_cents"]
        lines.append(item)
    discount = 0
    coupon_code = None
    if gross >= 19900 and rng.random() < 0.15:
        discount = 2000 if gross < 49900 else 5000
        coupon_code = f"C{oid[1:]}"
        data["coupons"].append(dict(code=coupon_code, customer_id=cid, title_zh=f"满{(discount * 10) // 100 - 1}减{discount // 100}",
                                    title_en=f"¥{discount // 100} off", threshold_cents=discount * 10 - 100,
                                    amount_cents=discount, category=None, valid_from=created - timedelta(days=20),
                                    valid_until=created + timedelta(days=10),
                                    used_order_id=None if status in ("cancelled", "pending_payment") else oid))
    total = gross - discount
    paid_at = None if status == "pending_payment" or (status == "cancelled" and rng.random() < 0.5) else created + timedelta(minutes=rng.randint(1, 20))
    shipped_at = delivered_at = cancelled_at = None
    if status == "cancelled":
        cancelled_at = created + timedelta(hours=rng.randint(1, 20))
    if status in ("shipped", "delivered", "after_sales", "refunded"):
        shipped_at = (paid_at or created) + timedelta(hours=rng.randint(4, 30))
        if shipped_at > now:
            shipped_at = now - timedelta(minutes=30)
    if status in ("delivered", "after_sales", "refunded"):
        delivered_at = min(shipped_at + timedelta(hours=rng.randint(30, 70)), now - timedelta(minutes=10))
    data["orders"].append(dict(id=oid, customer_id=cid, status=status, created_at=created, paid_at=paid_at,
                               shipped_at=shipped_at, delivered_at=delivered_at, cancelled_at=cancelled_at,
                               ship_name=customer["name"], ship_phone=customer["phone"], ship_address=address,
                               coupon_code=coupon_code, discount_cents=discount, total_cents=total))
    if paid_at is not None:
        data["payments"].append(dict(order_id=oid, method=rng.choice(("wechat_pay", "alipay", "card")), amount_cents=total,
                                     status="refunded" if status in ("cancelled", "refunded") else "paid", paid_at=paid_at))
    if status == "cancelled" and paid_at is not None:
        data["refunds"].append(dict(order_id=oid, amount_cents=total, status="completed", reason="order cancelled",
                                    requested_at=cancelled_at, completed_at=cancelled_at + timedelta(days=1)))
    if shipped_at is not None:
        carrier, prefix, _en = rng.choice(CARRIERS)
        sid = len(data["shipments"]) + 1
        data["shipments"].append(dict(id=sid, order_id=oid, carrier=carrier,
                                      tracking_number=f"{prefix}{rng.randrange(10 ** 12):012d}",
                                      shipped_at=shipped_at, eta=shipped_at + timedelta(days=3)))
        hub, hub_en = rng.choice(CITIES)
        steps = [(shipped_at, f"【{hub}】{carrier} 已揽收", f"Picked up by {_en} in {hub_en}"),
                 (shipped_at + timedelta(hours=14), f"快件到达【{city}转运中心】", f"Arrived at the {city_en} sorting centre")]
        if delivered_at is not None:
            steps.append((delivered_at - timedelta(hours=3), f"【{city}】快递员正在派件", f"Out for delivery in {city_en}"))
            steps.append((delivered_at, "已签收，感谢使用", "Delivered. Thank you"))
        for t, zh, en in steps:
            if t <= now:
                data["tracking"].append(dict(shipment_id=sid, time=t, text_zh=zh, text_en=en))
    if status == "after_sales":
        kind = "return" if rng.random() < 0.6 else "exchange"
        data["after_sales"].append(dict(order_id=oid, kind=kind, reason=rng.choice(("尺码不合适", "不喜欢颜色", "质量问题")),
                                        status="requested", created_at=min(delivered_at + timedelta(days=2), now)))
    if status == "refunded":
        req = delivered_at + timedelta(days=3)
        data["after_sales"].append(dict(order_id=oid, kind="return", reason="尺码不合适", status="completed", created_at=req))
        data["refunds"].append(dict(order_id=oid, amount_cents=total, status="completed", reason="return",
                                    requested_at=req, completed_at=req + timedelta(days=4)))
    if delivered_at is not None and status != "refunded":
        data["points"].append(dict(customer_id=cid, delta=rules.points_for_order(total), reason=f"purchase:{oid}",
                                   created_at=delivered_at, expires_at=rules.points_expiry(delivered_at)))


def _add_coupons_and_points(data: dict[str, list[dict[str, Any]]], rng: random.Random, now: datetime) -> None:
    """Unused, still-valid coupons and a few points redemptions."""
    for c in data["customers"]:
        for k in range(rng.choice((0, 1, 1, 2, 3))):
            amount = rng.choice((1000, 2000, 3000, 5000, 10000))
            threshold = amount * rng.choice((0, 5, 10)) if amount < 10000 else 99900
            category = rng.choice((None, None, "running_shoes", "outdoor_jackets", "yoga"))
            zh = f"满{threshold // 100}减{amount // 100}" if threshold else f"{amount // 100}元无门槛券"
            en = f"¥{amount // 100} off orders over ¥{threshold // 100}" if threshold else f"¥{amount // 100} off, no minimum"
            data["coupons"].append(dict(code=f"K{c['id']:05d}{k}", customer_id=c["id"], title_zh=zh, title_en=en,
                                        threshold_cents=threshold, amount_cents=amount, category=category,
                                        valid_from=now - timedelta(days=rng.randint(1, 30)),
                                        valid_until=now + timedelta(days=rng.randint(-5, 60)), used_order_id=None))
        if rng.random() < 0.1:
            data["points"].append(dict(customer_id=c["id"], delta=-100, reason="redeemed at checkout",
                                       created_at=now - timedelta(days=rng.randint(1, 60)), expires_at=None))


# --- the hand-written demo orders (the ids README and test stories use) ----------------------

DEMO_CATEGORY = {"RUN-AIRFLY": "running_shoes", "OUT-STORM": "outdoor_jackets", "BB-SKY": "basketball_shoes",
                 "ACC-SOCK": "socks", "YOGA-MAT6": "yoga", "YOGA-PANT": "yoga", "BRA-HIGH": "fitness_apparel",
                 "BAD-PRO88": "badminton", "RUN-SHORT": "running_apparel", "RUN-TEE": "running_apparel",
                 "FIT-DB": "fitness_equipment", "OUT-HIKE": "hiking_shoes", "RUN-CARBON": "running_shoes"}
DEMO_OPENID = "demo-wechat-openid"


def demo_phone(masked: str) -> str:
    """The full phone behind a demo order's masked phone: 138****5678 → 13812345678."""
    return masked.replace("****", "1234")


def _add_demo_orders(data: dict[str, list[dict[str, Any]]], now: datetime) -> None:
    from actions.shop_data import load_orders  # the JSON reader shifts the dates to `now`

    orders = load_orders(DEMO_ORDERS, now.astimezone(SHOP_TZ).date())
    by_phone = {c["phone"]: c for c in data["customers"]}
    products = {p["sku"] for p in data["products"]}
    next_id = len(data["customers"]) + 1
    for order in orders.values():
        phone = demo_phone(order.phone_masked)
        customer = by_phone.get(phone)
        if customer is None:
            customer = dict(id=next_id, name="演示顾客", phone=phone, created_at=now - timedelta(days=400))
            if next_id == len(data["customers"]) + 1 - 0 and not any(i["external_id"] == DEMO_OPENID for i in data["identities"]):
                data["identities"].append(dict(customer_id=next_id, channel="wechat", external_id=DEMO_OPENID))
            data["customers"].append(customer)
            by_phone[phone] = customer
            next_id += 1
        status = order.status
        if order.refund is not None and order.refund.status == "processing" and status == "delivered":
            status = "after_sales"
            data["after_sales"].append(dict(order_id=order.order_id, kind="return",
                                            reason=order.refund.reason.zh if order.refund.reason else "退货",
                                            status="received", created_at=order.refund.requested_at))
        total = int(order.total * 100)
        data["orders"].append(dict(
            id=order.order_id, customer_id=customer["id"], status=status, created_at=order.created_at,
            paid_at=order.created_at + timedelta(minutes=2) if status != "pending_payment" else None,
            shipped_at=order.shipped_at, delivered_at=order.delivered_at, cancelled_at=order.cancelled_at,
            ship_name=customer["name"], ship_phone=phone, ship_address=order.address_masked.zh.replace("****", "88号"),
            coupon_code=None, discount_cents=0, total_cents=total))
        data["payments"].append(dict(order_id=order.order_id, method="wechat_pay", amount_cents=total,
                                     status="refunded" if status == "cancelled" else "paid",
                                     paid_at=order.created_at + timedelta(minutes=2)))
        for line in order.lines:
            base = "-".join(line.sku.split("-")[:2])
            if line.sku not in products:
                products.add(line.sku)
                data["products"].append(dict(
                    sku=line.sku, category=DEMO_CATEGORY.get(base, "running_shoes"), brand="疾风",
                    title_zh=line.name.zh, title_en=line.name.en, attributes={}, sizes=[line.size],
                    colours=[line.color.zh], price_cents=int(line.unit_price * 100), stock=50,
                    images=[f"https://img.kefu-demo.shop/p/{line.sku}.jpg"]))
            data["lines"].append(dict(order_id=order.order_id, sku=line.sku, size=line.size, colour=line.color.zh,
                                      quantity=line.quantity, unit_price_cents=int(line.unit_price * 100)))
        if order.carrier and order.shipped_at:
            sid = len(data["shipments"]) + 1
            data["shipments"].append(dict(id=sid, order_id=order.order_id, carrier=order.carrier,
                                          tracking_number=order.tracking_number or "", shipped_at=order.shipped_at,
                                          eta=order.shipped_at + timedelta(days=3)))
            for e in order.events:
                data["tracking"].append(dict(shipment_id=sid, time=e.time, text_zh=e.text.zh, text_en=e.text.en))
        if order.refund is not None:
            r = order.refund
            data["refunds"].append(dict(order_id=order.order_id, amount_cents=int(r.amount * 100), status=r.status,
                                        reason=r.reason.zh if r.reason else "", requested_at=r.requested_at,
                                        completed_at=r.completed_at))
