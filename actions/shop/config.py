"""The shop's own configuration (`shop.yml` next to domain.yml): what makes one shop differ from another.

Name, currency, the order-id and phone formats, categories with their sizes and the
words shoppers use for them, colours, coupon templates, points rules, membership
tiers and the compensation limits per role. The actions, the importer and the NLU
generator (`python -m actions.shop nlu`) read it, so another shop changes this file,
not code. A project without `shop.yml` gets the demo sports shop's values
(`DEFAULT_SHOP_YML`). Errors name the file, the line and the fix.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from actions.shop.base import ShopDataError

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("shop.yml")  # in the project folder the bot runs from, like endpoints.yml
ENV_PATH = "KEFU_SHOP_CONFIG"


@dataclass(frozen=True)
class Text:
    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.zh


@dataclass(frozen=True)
class CategoryConfig:
    code: str
    name: Text
    size_chart: str = "none"  # shoes | apparel | none (size advice)
    sizes: tuple[str, ...] = ()
    returnable: bool = True
    exchangeable: bool = True
    words: tuple[str, ...] = ()  # how shoppers name it (zh and en), for NLU lookups and product search


@dataclass(frozen=True)
class CouponTemplate:
    code: str
    title: Text
    amount_cents: int
    threshold_cents: int = 0
    valid_days: int = 7
    category: Optional[str] = None
    terms: Text = Text("", "")
    points_cost: Optional[int] = None  # redeemable for points when set


@dataclass(frozen=True)
class PointsRule:
    kind: str  # purchase | review | share | ...
    points: int = 0  # fixed points per occurrence
    per_currency_unit: float = 0.0  # points per whole currency unit paid (purchase)
    daily_max: Optional[int] = None  # occurrences per day that earn
    on: str = "delivered"  # purchase: the reported order status that earns (paid | delivered)


@dataclass(frozen=True)
class Tier:
    code: str
    name: Text
    min_points: int  # lifetime earned points
    benefits: Text = Text("", "")
    priority_service: bool = False


@dataclass(frozen=True)
class ShopConfig:
    name: Text
    currency_code: str
    currency_symbol: str
    order_id_pattern: str
    phone_pattern: str
    product_page_pattern: Optional[str]  # regex with a `sku` group, matched against the widget's page path
    categories: tuple[CategoryConfig, ...]
    colours: dict[str, str]  # zh → en
    coupon_templates: dict[str, CouponTemplate]
    compensation_limits_cents: dict[str, int]  # role → largest compensation coupon
    points_rules: dict[str, PointsRule]
    points_expire_days: int
    tiers: tuple[Tier, ...]
    path: Optional[Path] = None
    _compiled: dict[str, re.Pattern] = field(default_factory=dict, compare=False, repr=False)

    @property
    def order_id_re(self) -> re.Pattern:
        return self._compiled.setdefault("order", re.compile(self.order_id_pattern))

    def sku_from_page(self, path: str) -> Optional[str]:
        if not self.product_page_pattern or not path:
            return None
        m = self._compiled.setdefault("page", re.compile(self.product_page_pattern)).search(path)
        return m.group("sku") if m else None

    @property
    def phone_re(self) -> re.Pattern:
        return self._compiled.setdefault("phone", re.compile(self.phone_pattern))

    def money(self, cents: int) -> str:
        return f"{self.currency_symbol}{cents / 100:.2f}"

    def category(self, code: Optional[str]) -> Optional[CategoryConfig]:
        return next((c for c in self.categories if c.code == code), None)

    def tier_for(self, lifetime_points: int) -> Tier:
        eligible = [t for t in self.tiers if lifetime_points >= t.min_points]
        return max(eligible, key=lambda t: t.min_points) if eligible else self.tiers[0]

    def next_tier(self, lifetime_points: int) -> Optional[Tier]:
        above = [t for t in self.tiers if t.min_points > lifetime_points]
        return min(above, key=lambda t: t.min_points) if above else None


class _Reader:
    """Typed reads of a ruamel round-trip tree, errors with file and line."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path

    def fail(self, node: Any, key: Any, message: str, fix: str) -> ShopDataError:
        line = None
        try:
            if key is not None and hasattr(node, "lc"):
                line = node.lc.key(key)[0] + 1 if isinstance(node, dict) else node.lc.item(key)[0] + 1
            elif hasattr(node, "lc"):
                line = node.lc.line + 1
        except Exception:  # noqa: BLE001 - a line number is a courtesy
            line = None
        where = f"{self.path or 'shop.yml'}" + (f":{line}" if line else "")
        return ShopDataError(f"{where}: {message}. Fix: {fix}")

    def mapping(self, node: Any, key: str, *, required: bool = False) -> dict:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None:
            if required:
                raise self.fail(node, None, f"`{key}` is missing", f"add a `{key}:` mapping")
            return {}
        if not isinstance(value, dict):
            raise self.fail(node, key, f"`{key}` must be a mapping", f"write `{key}:` followed by indented keys")
        return value

    def text(self, node: Any, key: str, default: Optional[Text] = None) -> Text:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None:
            if default is not None:
                return default
            raise self.fail(node, None, f"`{key}` is missing", f"add `{key}: {{zh: ..., en: ...}}`")
        if isinstance(value, str):
            return Text(value, value)
        if not isinstance(value, dict) or not value.get("zh") or not value.get("en"):
            raise self.fail(node, key, f"`{key}` needs a zh and an en text", f"write `{key}: {{zh: ..., en: ...}}`")
        return Text(str(value["zh"]), str(value["en"]))

    def number(self, node: Any, key: str, default: Any = None, *, minimum: float = 0) -> Any:
        value = node.get(key, default) if isinstance(node, dict) else default
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(node, key, f"`{key}` must be a number >= {minimum:g}, not {value!r}",
                            f"write e.g. `{key}: {max(minimum, 1):g}`")
        return value

    def pattern(self, node: Any, key: str, default: str) -> str:
        value = str(node.get(key, default)) if isinstance(node, dict) else default
        try:
            re.compile(value)
        except re.error as e:
            raise self.fail(node, key, f"`{key}` is not a valid regular expression ({e})",
                            "write a Python regex such as 'E\\d{11}' (quote it in YAML)") from e
        return value


def parse_shop_config(text: str, path: Optional[Path] = None) -> ShopConfig:
    """Parse shop.yml text; `ShopDataError` naming the file, line and fix on bad input."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text) or {}
    except YAMLError as e:
        raise ShopDataError(f"{path or 'shop.yml'}: not valid YAML ({e}). Fix the syntax.") from e
    r = _Reader(path)
    if not isinstance(data, dict):
        raise r.fail(data, None, "the file must be a mapping", "start with `name: {zh: ..., en: ...}`")
    known = {"version", "name", "currency", "formats", "catalog", "coupons", "points", "tiers"}
    for key in data:
        if key not in known:
            raise r.fail(data, key, f"unknown key `{key}`", f"use only {sorted(known)}")
    currency = r.mapping(data, "currency")
    formats = r.mapping(data, "formats")
    catalog = r.mapping(data, "catalog")
    categories = []
    raw_categories = catalog.get("categories") or []
    if not isinstance(raw_categories, list):
        raise r.fail(catalog, "categories", "`categories` must be a list", "write `- code: ...` items")
    for i, c in enumerate(raw_categories):
        if not isinstance(c, dict) or not c.get("code"):
            raise r.fail(raw_categories, i, "each category needs a `code`", "write `- code: running_shoes`")
        if c.get("size_chart", "none") not in ("shoes", "apparel", "none"):
            raise r.fail(c, "size_chart", f"size_chart {c.get('size_chart')!r} is unknown", "use shoes, apparel or none")
        categories.append(CategoryConfig(
            str(c["code"]), r.text(c, "name"), str(c.get("size_chart", "none")),
            tuple(str(s) for s in c.get("sizes") or ()), bool(c.get("returnable", True)),
            bool(c.get("exchangeable", True)), tuple(str(w) for w in c.get("words") or ())))
    codes = [c.code for c in categories]
    if len(set(codes)) != len(codes):
        raise r.fail(catalog, "categories", "category codes repeat", "give every category its own code")
    colours = {str(k): str(v) for k, v in r.mapping(catalog, "colours").items()}

    coupons = r.mapping(data, "coupons")
    templates: dict[str, CouponTemplate] = {}
    for code, tpl in r.mapping(coupons, "templates").items():
        if not isinstance(tpl, dict):
            raise r.fail(coupons["templates"], code, f"coupon template {code} must be a mapping",
                         "give title, amount, threshold, valid_days and terms")
        category = tpl.get("category")
        if category is not None and str(category) not in codes:
            raise r.fail(tpl, "category", f"coupon template {code} names unknown category {category!r}",
                         f"use one of {codes}")
        templates[str(code)] = CouponTemplate(
            str(code), r.text(tpl, "title"), int(round(r.number(tpl, "amount", minimum=0.01) * 100)),
            int(round(r.number(tpl, "threshold", 0) * 100)), int(r.number(tpl, "valid_days", 7, minimum=1)),
            str(category) if category is not None else None, r.text(tpl, "terms", Text("", "")),
            int(tpl["points_cost"]) if r.number(tpl, "points_cost", None, minimum=1) is not None else None)
    limits = {str(role): int(round(r.number(r.mapping(coupons, "compensation_limits"), role, minimum=0) * 100))
              for role in r.mapping(coupons, "compensation_limits")}

    points = r.mapping(data, "points")
    rules: dict[str, PointsRule] = {}
    for kind, rule in r.mapping(points, "rules").items():
        if not isinstance(rule, dict):
            raise r.fail(points["rules"], kind, f"points rule {kind} must be a mapping",
                         "write `points: 20` or `per_currency_unit: 1`")
        daily = r.number(rule, "daily_max", None, minimum=1)
        on = str(rule.get("on", "delivered"))
        if on not in ("paid", "delivered"):
            raise r.fail(rule, "on", f"points rule {kind}: `on: {on}` is not an order status that earns",
                         "write `on: delivered` (default) or `on: paid`")
        rules[str(kind)] = PointsRule(str(kind), int(r.number(rule, "points", 0)),
                                      float(r.number(rule, "per_currency_unit", 0)), int(daily) if daily else None, on)
    tiers = []
    raw_tiers = data.get("tiers") or []
    if not isinstance(raw_tiers, list):
        raise r.fail(data, "tiers", "`tiers` must be a list", "write `- code: gold` items")
    for i, tier in enumerate(raw_tiers):
        if not isinstance(tier, dict) or not tier.get("code"):
            raise r.fail(raw_tiers, i, "each tier needs a `code`", "write `- code: gold`")
        tiers.append(Tier(str(tier["code"]), r.text(tier, "name"), int(r.number(tier, "min_points", 0)),
                          r.text(tier, "benefits", Text("", "")), bool(tier.get("priority_service", False))))
    if not tiers:
        tiers = [Tier("member", Text("会员", "Member"), 0)]
    tiers.sort(key=lambda t: t.min_points)
    if tiers[0].min_points != 0:
        raise r.fail(raw_tiers, 0, "the lowest tier must start at min_points 0", "set `min_points: 0` on the first tier")
    return ShopConfig(
        name=r.text(data, "name", Text("小店", "Shop")),
        currency_code=str(currency.get("code", "CNY")), currency_symbol=str(currency.get("symbol", "¥")),
        order_id_pattern=r.pattern(formats, "order_id", r"E\d{11}"),
        phone_pattern=r.pattern(formats, "phone", r"1[3-9]\d{9}"),
        product_page_pattern=_page_pattern(r, formats),
        categories=tuple(categories), colours=colours, coupon_templates=templates,
        compensation_limits_cents=limits, points_rules=rules,
        points_expire_days=int(r.number(points, "expire_days", 365, minimum=1)), tiers=tuple(tiers), path=path,
    )


def _page_pattern(r: _Reader, formats: dict) -> Optional[str]:
    if formats.get("product_page") is None:
        return None
    pattern = r.pattern(formats, "product_page", "")
    if "(?P<sku>" not in pattern:
        raise r.fail(formats, "product_page", "`product_page` needs a named group `sku`",
                     "write e.g. '/p/(?P<sku>[A-Z]{3}-\\d{5})'")
    return pattern


_config: Optional[ShopConfig] = None
_lock = threading.Lock()


def load_shop_yml(path: Optional[str | Path] = None) -> ShopConfig:
    """Read shop.yml (`path`, else $KEFU_SHOP_CONFIG, else the project's); the demo's values without one."""
    target = Path(path or os.environ.get(ENV_PATH) or DEFAULT_PATH)
    if not target.exists():
        if path is not None or os.environ.get(ENV_PATH):
            raise ShopDataError(f"{target}: shop configuration not found. Fix: create it or unset {ENV_PATH}.")
        logger.info("No %s: using the demo shop's configuration.", target)
        return parse_shop_config(DEFAULT_SHOP_YML)
    return parse_shop_config(target.read_text(encoding="utf-8"), target)


def shop_config() -> ShopConfig:
    """The process-wide configuration, read once."""
    global _config
    with _lock:
        if _config is None:
            _config = load_shop_yml()
        return _config


def configure_shop_config(config: Optional[ShopConfig]) -> None:
    """Install a configuration (tests, a second shop); None re-reads shop.yml on next use."""
    global _config
    with _lock:
        _config = config


DEFAULT_SHOP_YML = """
name: {zh: 疾风运动, en: Jifeng Sports}
currency: {code: CNY, symbol: "¥"}
formats: {order_id: 'E\\d{11}', phone: '1[3-9]\\d{9}'}
tiers:
  - {code: member, name: {zh: 普通会员, en: Member}, min_points: 0}
"""
