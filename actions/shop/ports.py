"""The demo shop behind kefu's ports (bot/ports.py), named in endpoints.yml::

    ports:
      profile: {type: actions.shop.ports.ShopProfilePort}
      outbox: {type: actions.shop.ports.ShopOutboxPort}

The engine builds these classes as ``cls(project_root=..., **options)``; they
match its protocols by shape, so this package still never imports `bot`.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from actions.shop import DEFAULT_DB, get_shop, load_shop_config
from actions.shop.base import ShopDataError, ShopStore

logger = logging.getLogger(__name__)

DEFAULT_VIP_LIFETIME_VALUE_CENTS = 500_000  # as bot/handoff/config.py `vip_lifetime_value_cents`


class ShopProfilePort:
    """Orders, lifetime value and open after-sales cases of a shopper, from the shop store."""

    def __init__(self, project_root: str | Path = ".", *,
                 vip_lifetime_value_cents: int = DEFAULT_VIP_LIFETIME_VALUE_CENTS,
                 store: Optional[ShopStore] = None) -> None:
        self.project_root = Path(project_root)
        self.vip_lifetime_value_cents = int(vip_lifetime_value_cents)
        self.store = store  # None: the process-wide store the actions use (`get_shop()`)

    async def profile(self, channel: Optional[str], sender_id: str) -> Optional[dict[str, Any]]:
        try:
            shop = self.store or get_shop()
            customer = await shop.customer_by_identity(channel or "", sender_id)
            if customer is None:
                return None
            orders = await shop.recent_orders(customer.id, limit=50)
        except Exception as e:  # no shop configured, shop down: the handoff goes on without a profile
            logger.debug("No shop profile for %s: %s", sender_id, e)
            return None
        lifetime = sum(o.total_cents - o.discount_cents for o in orders if o.status not in ("cancelled",))
        open_cases = [
            {"order_id": o.id, "kind": a.kind, "status": a.status, "reason": a.reason}
            for o in orders for a in o.after_sales if a.status not in ("closed", "completed", "rejected")
        ]
        return {
            "customer_id": customer.id, "name": customer.name, "orders": len(orders),
            "lifetime_value_cents": lifetime, "open_after_sales": open_cases,
            "recent_orders": [{"id": o.id, "status": o.status, "total_cents": o.total_cents} for o in orders[:5]],
            "vip": lifetime >= self.vip_lifetime_value_cents,
        }


class ShopOutboxPort:
    """The SQL shop's outbox table (written by the actions' transactions), for kefu's relay.

    The database comes from endpoints.yml `shop:` (or KEFU_SHOP_URL), a relative
    SQLite path taken from the project folder. `shop: outbox_interval` (seconds; 0
    turns the relay off) or KEFU_SHOP_OUTBOX_INTERVAL sets the pace. The HTTP
    adapter has no outbox: the merchant publishes its own events. Opens the
    database on first use, and not before it exists (the actions seed it).
    """

    def __init__(self, project_root: str | Path = ".", *, store: Any = None) -> None:
        root = Path(project_root)
        endpoints = root / "endpoints.yml"
        config = load_shop_config(endpoints)
        self.store: Any = store
        self._owns_store = store is None  # an injected store (tests, embedding apps) stays open
        self.path: Optional[Path] = None
        self.url = config.get("url") or f"sqlite:///{DEFAULT_DB}"
        raw = os.environ.get("KEFU_SHOP_OUTBOX_INTERVAL", config.get("outbox_interval"))
        try:
            self.interval: Optional[float] = None if raw is None else float(raw)
        except (TypeError, ValueError) as e:
            raise ShopDataError(f"{endpoints}: `shop: outbox_interval` must be a number of seconds, not {raw!r}. "
                                "Write e.g. `outbox_interval: 2.0` (0 turns it off).") from e
        kind = (config.get("type") or "sql").lower()
        if store is None and kind != "sql":
            logger.info("Shop data layer is type %s: no outbox to relay.", config.get("type"))
            self.interval = 0.0
        if self.url.startswith("sqlite:///") and self.url != "sqlite:///:memory:":
            path = Path(self.url[len("sqlite:///"):])
            self.path = path if path.is_absolute() else root / path
            self.url = f"sqlite:///{self.path}"

    def _open(self) -> Any:
        if self.store is None:
            from actions.shop.sql import SqlShopStore

            if self.path is not None and not self.path.exists():
                return None  # not seeded yet: the actions create it on first use
            self.store = SqlShopStore(self.url, create=False)
        return self.store

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        store = self._open()
        if store is None or not hasattr(store, "pending_outbox"):
            return []  # no database yet, or a store without an outbox (HTTP)
        return await asyncio.to_thread(store.pending_outbox, limit)

    async def mark_published(self, outbox_ids: Sequence[Any]) -> None:
        await asyncio.to_thread(self._open().mark_published, list(outbox_ids))

    async def close(self) -> None:
        if self.store is not None and self._owns_store:
            await self.store.close()
            self.store = None
