"""Load a merchant's export (JSON Lines, JSON or CSV) into the shop, idempotently.

Schema (docs/shop.md has examples):
- JSON Lines / JSON list: one record per line/item with `kind`:
  `product` {sku, category, title_zh, title_en?, brand?, price, stock, sizes?, colours?, images?, attributes?}
  `customer` {phone, name?, wechat_openid?}
  `order` {order_id, phone, status, created_at, address, lines: [{sku, quantity, unit_price, size?, colour?}],
           paid_at?, shipped_at?, delivered_at?, cancelled_at?, carrier?, tracking_number?}
- CSV: the header decides: `sku,...` → products (sizes/colours `|`-separated);
  `order_id,...` → one row per order line (order columns repeat on each row).
Every row is validated first; bad rows are reported with their line and reason,
good rows load in one transaction. Natural keys (sku, phone, order id) make a
second import of the same file change nothing.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from actions.shop import models as m
from actions.shop.base import ShopDataError
from actions.shop.config import ShopConfig, shop_config
from actions.shop.rules import ORDER_STATUSES
from actions.shop.loyalty import points_for
from actions.shop.sql import _outbox, create_schema, make_engine

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    points_earned: int = 0  # purchase points of imported orders that reached the rule's status (once per order)

    def as_dict(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": [{"line": line, "reason": reason} for line, reason in self.rejected]}


class _Bad(ValueError):
    pass


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; malformed lines become records with `_error`."""
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = reader.fieldnames or []
        if "order_id" in fields:
            kind = "order_line"
        elif "sku" in fields:
            kind = "product"
        else:
            raise ShopDataError(f"{path}:1: CSV header has neither `order_id` nor `sku`. "
                                "Fix: use the product or order-line columns from docs/shop.md.")
        return [(reader.line_num, {**row, "kind": kind}) for row in reader]
    if suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                out.append((n, {"_error": f"invalid JSON ({e.msg})"}))
        return out
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ShopDataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}). Fix the syntax or export as .jsonl.") from e
        items = data if isinstance(data, list) else [
            {**r, "kind": kind.rstrip("s")} for kind, rows in data.items() if isinstance(rows, list) for r in rows]
        # Line of each item: where its JSON text starts (best effort for pretty-printed files).
        return [(i + 1, r) for i, r in enumerate(items)]
    raise ShopDataError(f"{path}: unknown file type '{suffix}'. Fix: export as .jsonl, .json or .csv.")


def import_file(url: str, path: str | Path, config: Optional[ShopConfig] = None) -> ImportReport:
    """Validate against the shop's configuration (shop.yml: categories, order-id and phone formats), then load.

    The configuration's categories and coupon templates are written first, so an export
    loads into an empty database.
    """
    global _config
    _config = config or shop_config()
    path = Path(path)
    if not path.exists():
        raise ShopDataError(f"{path}: file not found. Fix: pass the path of the merchant export.")
    records = read_records(path)
    report = ImportReport()
    engine = make_engine(url)
    try:
        create_schema(engine)
        with Session(engine) as s, s.begin():
            _write_configuration(s, _config)
            known_skus = set(s.execute(select(m.Product.sku)).scalars())
            products, customers, orders = [], [], {}
            for line, rec in records:
                try:
                    if "_error" in rec:
                        raise _Bad(rec["_error"])
                    kind = rec.get("kind")
                    if kind == "product":
                        p = _product(rec)
                        known_skus.add(p["sku"])
                        products.append(p)
                    elif kind == "customer":
                        customers.append(_customer(rec))
                    elif kind == "order":
                        o = _order(rec, known_skus)
                        orders[o["id"]] = (line, o)
                    elif kind == "order_line":
                        _order_line(rec, known_skus, orders, line)
                    else:
                        raise _Bad(f"unknown kind {kind!r} (valid: product, customer, order)")
                except _Bad as e:
                    report.rejected.append((line, str(e)))
            for p in products:
                variants = p.pop("variants")
                if variants:
                    p["stock"] = sum(v["stock"] for v in variants)
                _upsert(s, m.Product, p["sku"], p, report)
                if variants:
                    s.flush()
                    s.execute(delete(m.VariantStock).where(m.VariantStock.sku == p["sku"]))
                    for v in variants:
                        s.add(m.VariantStock(sku=p["sku"], **v))
            for c in customers:
                _upsert_customer(s, c, report)
            for _line, o in orders.values():
                _upsert_order(s, o, report)
                report.points_earned += _earn_purchase_points(s, o)
    finally:
        engine.dispose()
    for line, reason in report.rejected:
        logger.warning("%s:%d: rejected: %s", path, line, reason)
    return report


_config: ShopConfig  # the configuration of the import running now (set by import_file)


def _write_configuration(s: Session, config: ShopConfig) -> None:
    """Categories and coupon templates from shop.yml (upserted: a second import changes nothing)."""
    for c in config.categories:
        s.merge(m.Category(code=c.code, name_zh=c.name.zh, name_en=c.name.en, size_chart=c.size_chart,
                           returnable=c.returnable, exchangeable=c.exchangeable))
    for t in config.coupon_templates.values():
        s.merge(m.CouponTemplateRow(code=t.code, title_zh=t.title.zh, title_en=t.title.en, amount_cents=t.amount_cents,
                                    threshold_cents=t.threshold_cents, valid_days=t.valid_days, category=t.category,
                                    terms_zh=t.terms.zh, terms_en=t.terms.en, points_cost=t.points_cost))
    s.flush()


# --- validation ---------------------------------------------------------------------------

def _req(rec: dict[str, Any], key: str) -> Any:
    value = rec.get(key)
    if value in (None, ""):
        raise _Bad(f"missing `{key}`")
    return value


def _money(value: Any, key: str) -> int:
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise _Bad(f"`{key}` {value!r} is not a number") from e
    if d < 0:
        raise _Bad(f"`{key}` is negative")
    return int(d * 100)


def _int(value: Any, key: str, minimum: int = 0) -> int:
    try:
        n = int(str(value))
    except ValueError as e:
        raise _Bad(f"`{key}` {value!r} is not a whole number") from e
    if n < minimum:
        raise _Bad(f"`{key}` must be at least {minimum}")
    return n


def _time(value: Any, key: str) -> Optional[datetime]:
    if value in (None, ""):
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError as e:
        raise _Bad(f"`{key}` {value!r} is not an ISO 8601 time") from e
    if t.tzinfo is None:
        raise _Bad(f"`{key}` {value!r} has no time zone (add +08:00)")
    return t


def _list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    return [v for v in (value if isinstance(value, list) else str(value).split("|")) if v]


def _phone(value: Any) -> str:
    phone = str(value or "").strip().replace(" ", "").replace("-", "")
    if not _config.phone_re.fullmatch(phone):
        raise _Bad(f"phone {_masked(phone)} does not match the shop's phone format {_config.phone_pattern!r} (shop.yml)")
    return phone


def _masked(phone: str) -> str:
    return f"'{phone[:3]}…'" if phone else "''"


def _product(rec: dict[str, Any]) -> dict[str, Any]:
    category = _req(rec, "category")
    codes = [c.code for c in _config.categories]
    if category not in codes:
        raise _Bad(f"unknown category {category!r} (valid, from shop.yml: {', '.join(sorted(codes))})")
    variants = []
    for i, v in enumerate(rec.get("variants") or []):
        if not isinstance(v, dict):
            raise _Bad(f"variants[{i}] must be {{size, colour, stock}}")
        variants.append(dict(size=str(v.get("size") or ""), colour=str(v.get("colour") or ""),
                             stock=_int(v.get("stock", 0), f"variants[{i}].stock")))
    return dict(sku=str(_req(rec, "sku")).strip(), category=category, title_zh=str(_req(rec, "title_zh")),
                title_en=str(rec.get("title_en") or rec["title_zh"]), brand=str(rec.get("brand") or ""),
                attributes=rec.get("attributes") if isinstance(rec.get("attributes"), dict) else {},
                sizes=_list(rec.get("sizes")), colours=_list(rec.get("colours")),
                price_cents=_money(_req(rec, "price"), "price"), stock=_int(rec.get("stock", 0), "stock"),
                images=_list(rec.get("images")), variants=variants)


def _customer(rec: dict[str, Any]) -> dict[str, Any]:
    return dict(phone=_phone(_req(rec, "phone")), name=str(rec.get("name") or ""),
                wechat_openid=str(rec.get("wechat_openid") or "") or None)


def _order_fields(rec: dict[str, Any]) -> dict[str, Any]:
    oid = str(_req(rec, "order_id")).strip().upper()
    if not _config.order_id_re.fullmatch(oid):
        raise _Bad(f"order_id {oid!r} does not match the shop's order-id format {_config.order_id_pattern!r} (shop.yml)")
    status = _req(rec, "status")
    if status not in ORDER_STATUSES:
        raise _Bad(f"unknown status {status!r} (valid: {', '.join(ORDER_STATUSES)})")
    created = _time(_req(rec, "created_at"), "created_at")
    shipped = _time(rec.get("shipped_at"), "shipped_at")
    if status in ("shipped", "delivered") and (shipped is None or not rec.get("tracking_number")):
        raise _Bad(f"status {status} needs shipped_at and tracking_number")
    if status == "delivered" and not rec.get("delivered_at"):
        raise _Bad("status delivered needs delivered_at")
    return dict(id=oid, phone=_phone(_req(rec, "phone")), name=str(rec.get("name") or ""), status=status,
                created_at=created, paid_at=_time(rec.get("paid_at"), "paid_at"), shipped_at=shipped,
                delivered_at=_time(rec.get("delivered_at"), "delivered_at"),
                cancelled_at=_time(rec.get("cancelled_at"), "cancelled_at"),
                ship_address=str(_req(rec, "address")), carrier=rec.get("carrier") or None,
                tracking_number=rec.get("tracking_number") or None, lines=[])


def _line(rec: dict[str, Any], known_skus: set[str]) -> dict[str, Any]:
    sku = str(_req(rec, "sku")).strip()
    if sku not in known_skus:
        raise _Bad(f"unknown sku {sku!r} (import the product first)")
    return dict(sku=sku, quantity=_int(_req(rec, "quantity"), "quantity", 1),
                unit_price_cents=_money(_req(rec, "unit_price"), "unit_price"),
                size=str(rec.get("size") or "均码"), colour=str(rec.get("colour") or ""))


def _order(rec: dict[str, Any], known_skus: set[str]) -> dict[str, Any]:
    o = _order_fields(rec)
    lines = rec.get("lines")
    if not isinstance(lines, list) or not lines:
        raise _Bad("order needs a non-empty `lines` list")
    o["lines"] = [_line(l, known_skus) for l in lines]
    return o


def _order_line(rec: dict[str, Any], known_skus: set[str], orders: dict[str, tuple[int, dict[str, Any]]], line: int) -> None:
    o = _order_fields(rec)
    l = _line(rec, known_skus)
    if o["id"] in orders:
        orders[o["id"]][1]["lines"].append(l)
    else:
        o["lines"] = [l]
        orders[o["id"]] = (line, o)


# --- upserts ------------------------------------------------------------------------------

def _upsert(s: Session, model: type, key: Any, values: dict[str, Any], report: ImportReport) -> Any:
    row = s.get(model, key)
    if row is None:
        row = model(**values)
        s.add(row)
        report.inserted += 1
        return row
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        for k, v in changed.items():
            setattr(row, k, v)
        report.updated += 1
    else:
        report.unchanged += 1
    return row


def _earn_purchase_points(s: Session, o: dict[str, Any]) -> int:
    """An imported order the shop reports delivered (or paid, by the rule's `on:`) earns its purchase
    points in the import's transaction, once per order (ledger reason `purchase:<order id>`, the same
    as `loyalty.order_status_reported`), so a re-import earns nothing twice."""
    rule = _config.points_rules.get("purchase")
    when = o.get(f"{rule.on}_at") if rule is not None else None
    if when is None or o["status"] in ("pending_payment", "cancelled", "refunded"):
        return 0
    order = s.get(m.Order, o["id"])
    reason = f"purchase:{o['id']}"[:64]
    if s.execute(select(m.PointsEntry.id).where(m.PointsEntry.customer_id == order.customer_id,
                                                m.PointsEntry.reason == reason)).first() is not None:
        return 0
    points = points_for(_config, "purchase", order.total_cents - order.discount_cents)
    if points <= 0:
        return 0
    s.add(m.PointsEntry(customer_id=order.customer_id, delta=points, reason=reason, created_at=when,
                        expires_at=when + timedelta(days=_config.points_expire_days)))
    _outbox(s, "points_earned", None, order.customer_id, order.id, when, {"kind": "purchase", "points": points})
    return points


def _customer_row(s: Session, phone: str, name: str, report: Optional[ImportReport]) -> m.Customer:
    row = s.execute(select(m.Customer).where(m.Customer.phone == phone)).scalar_one_or_none()
    if row is None:
        from datetime import timezone

        row = m.Customer(phone=phone, name=name or "顾客", created_at=datetime.now(timezone.utc))
        s.add(row)
        s.flush()
    return row


def _upsert_customer(s: Session, c: dict[str, Any], report: ImportReport) -> None:
    existing = s.execute(select(m.Customer).where(m.Customer.phone == c["phone"])).scalar_one_or_none()
    row = _customer_row(s, c["phone"], c["name"], None)
    changed = existing is None
    if existing is not None and c["name"] and row.name != c["name"]:
        row.name = c["name"]
        changed = True
    if c["wechat_openid"]:
        ident = s.execute(select(m.ChannelIdentity).where(m.ChannelIdentity.channel == "wechat",
                                                          m.ChannelIdentity.external_id == c["wechat_openid"])).scalar_one_or_none()
        if ident is None:
            s.add(m.ChannelIdentity(customer_id=row.id, channel="wechat", external_id=c["wechat_openid"]))
            changed = True
    if existing is None:
        report.inserted += 1
    elif changed:
        report.updated += 1
    else:
        report.unchanged += 1


def _upsert_order(s: Session, o: dict[str, Any], report: ImportReport) -> None:
    customer = _customer_row(s, o["phone"], o["name"], None)
    total = sum(l["unit_price_cents"] * l["quantity"] for l in o["lines"])
    values = dict(id=o["id"], customer_id=customer.id, status=o["status"], created_at=o["created_at"],
                  paid_at=o["paid_at"], shipped_at=o["shipped_at"], delivered_at=o["delivered_at"],
                  cancelled_at=o["cancelled_at"], ship_name=customer.name, ship_phone=o["phone"],
                  ship_address=o["ship_address"], coupon_code=None, discount_cents=0, total_cents=total)
    row = s.get(m.Order, o["id"])
    old_lines = sorted((l.sku, l.quantity, l.unit_price_cents, l.size, l.colour) for l in s.execute(
        select(m.OrderLine).where(m.OrderLine.order_id == o["id"])).scalars()) if row is not None else []
    new_lines = sorted((l["sku"], l["quantity"], l["unit_price_cents"], l["size"], l["colour"]) for l in o["lines"])
    shipment = s.execute(select(m.Shipment).where(m.Shipment.order_id == o["id"])).scalar_one_or_none() if row else None
    same_ship = (shipment.carrier, shipment.tracking_number) == (o["carrier"], o["tracking_number"]) if shipment else not o["tracking_number"]
    if row is not None and all(getattr(row, k) == v for k, v in values.items()) and old_lines == new_lines and same_ship:
        report.unchanged += 1
        return
    if row is None:
        s.add(m.Order(**values))
        report.inserted += 1
    else:
        for k, v in values.items():
            setattr(row, k, v)
        report.updated += 1
    s.flush()
    if old_lines != new_lines:
        s.execute(delete(m.OrderLine).where(m.OrderLine.order_id == o["id"]))
        for l in o["lines"]:
            s.add(m.OrderLine(order_id=o["id"], **l))
    if o["tracking_number"] and not same_ship:
        if shipment is None:
            s.add(m.Shipment(order_id=o["id"], carrier=o["carrier"] or "", tracking_number=o["tracking_number"],
                             shipped_at=o["shipped_at"] or o["created_at"], eta=None))
        else:
            shipment.carrier, shipment.tracking_number = o["carrier"] or "", o["tracking_number"]
