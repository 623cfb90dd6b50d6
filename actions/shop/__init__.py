"""The shop data layer used by the demo actions (rasa_sdk only; never imports `bot`).

`get_shop()` returns the process-wide `ShopStore` configured by the `shop:` key of
endpoints.yml (or `KEFU_SHOP_URL`):

    shop:
      type: sql                     # sql (default) | http
      url: sqlite:///shop.db        # any SQLAlchemy URL, or the merchant API base URL for http
      token: ${SHOP_API_TOKEN}      # http only: sent as `Authorization: Bearer <token>`
      timeout: 2.0                  # seconds before the shopper is told the shop is unavailable
      outbox_interval: 2.0          # sql only: seconds between relays of the outbox to the event broker (0: off)
      attempts_url: redis://...     # where failed order verifications are counted (default: the shop's sql url)
      attempts_max: 5               # failures per order / per phone within attempts_window (seconds, 3600)

With no configuration the demo shop `shop.db` in the working directory is used,
and generated (small, about a second) when it does not exist yet.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Optional

from actions.shop.base import (
    SHOP_TZ,
    ChangeResult,
    OrderView,
    ShopDataError,
    ShopError,
    ShopStore,
    ShopUnavailable,
    mask_address,
    mask_phone,
)

logger = logging.getLogger(__name__)

DEFAULT_DB = "shop.db"
_store: Optional[ShopStore] = None
_lock = threading.Lock()

__all__ = [
    "SHOP_TZ", "ChangeResult", "OrderView", "ShopDataError", "ShopError", "ShopStore", "ShopUnavailable",
    "configure_shop", "get_shop", "load_shop_config", "mask_address", "mask_phone", "store_from_config",
]


def load_shop_config(endpoints_path: str | Path = "endpoints.yml") -> dict[str, Any]:
    """The `shop:` section of endpoints.yml (with ${ENV} substituted); env KEFU_SHOP_URL wins."""
    if os.environ.get("KEFU_SHOP_URL"):
        url = os.environ["KEFU_SHOP_URL"]
        kind = "http" if url.startswith(("http://", "https://")) else "sql"
        return {"type": kind, "url": url, "token": os.environ.get("KEFU_SHOP_TOKEN")}
    path = Path(endpoints_path)
    if not path.exists():
        return {}
    from ruamel.yaml import YAML  # rasa_sdk depends on ruamel.yaml

    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except Exception as e:  # noqa: BLE001 - any YAML error is a config error here
        raise ShopDataError(f"{path}: cannot read the `shop:` section ({e}). Fix the YAML syntax.") from e
    section = data.get("shop") or {}
    if not isinstance(section, dict):
        raise ShopDataError(f"{path}: `shop:` must be a mapping with type/url/token/timeout.")
    return {k: _env(v) for k, v in section.items()}


def _env(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m.group(1), ""), value)
    return value


def store_from_config(config: dict[str, Any]) -> ShopStore:
    """Build the store a `shop:` section describes."""
    kind = (config.get("type") or "sql").lower()
    timeout = float(config.get("timeout") or 2.0)
    known = {"type", "url", "token", "timeout", "auto_seed", "outbox_interval",
             "attempts_url", "attempts_max", "attempts_window"}  # the last three: actions/shop/attempts.py
    unknown = set(config) - known
    if unknown:
        raise ShopDataError(f"endpoints.yml `shop:` has unknown keys {sorted(unknown)}; valid keys: {sorted(known)}.")
    if kind == "http":
        from actions.shop.http import HttpShopStore

        if not config.get("url"):
            raise ShopDataError("endpoints.yml `shop:` with type http needs `url` (the merchant API base URL).")
        return HttpShopStore(config["url"], token=config.get("token"), timeout=timeout)
    if kind != "sql":
        raise ShopDataError(f"endpoints.yml `shop: type: {kind}` is unknown; valid types: sql, http.")
    from actions.shop.sql import SqlShopStore

    url = config.get("url") or f"sqlite:///{DEFAULT_DB}"
    if config.get("auto_seed", True) and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        ensure_demo_shop(url)
    store = SqlShopStore(url, timeout=timeout)
    store.sync_coupon_templates(coupon_template_views())
    return store


def coupon_template_views() -> list:
    """shop.yml's coupon templates as the store's values (synced into a SQL shop when it opens)."""
    from actions.shop.base import CouponTemplateView
    from actions.shop.config import shop_config

    return [CouponTemplateView(t.code, t.title.zh, t.title.en, t.amount_cents, t.threshold_cents, t.valid_days,
                               t.category, t.terms.zh, t.terms.en, t.points_cost)
            for t in shop_config().coupon_templates.values()]


def ensure_demo_shop(url: str) -> None:
    """Seed a small demo shop when the SQLite file is missing (first run of the demo)."""
    path = Path(url[len("sqlite:///"):])
    if path.exists():
        return
    from actions.shop.seed import SMALL, seed_shop

    logger.warning("Shop database %s is missing: generating a small demo shop "
                   "(run `python -m actions.shop seed` for the full one).", path)
    tmp = path.with_name(path.name + ".seeding")
    tmp.unlink(missing_ok=True)
    seed_shop(f"sqlite:///{tmp}", size=SMALL)
    try:
        tmp.replace(path)  # atomic: concurrent workers never see a half-seeded file
    except OSError:
        tmp.unlink(missing_ok=True)


def get_shop() -> ShopStore:
    """The process-wide store, built on first use from endpoints.yml."""
    global _store
    with _lock:
        if _store is None:
            _store = store_from_config(load_shop_config())
        return _store


def configure_shop(store: Optional[ShopStore]) -> None:
    """Install a store (tests, embedding apps); None resets to the configured default."""
    global _store
    with _lock:
        _store = store
