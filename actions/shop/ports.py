"""The demo shop behind kefu's ports (bot/ports.py), named in endpoints.yml::

    ports:
      profile: {type: actions.shop.ports.ShopProfilePort}
      outbox: {type: actions.shop.ports.ShopOutboxPort}
      compensation: {type: actions.shop.ports.ShopCompensationPort}

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
from actions.shop.config import shop_config
from actions.shop.loyalty import membership

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
            points = await shop.points(customer.id)
        except Exception as e:  # no shop configured, shop down: the handoff goes on without a profile
            logger.debug("No shop profile for %s: %s", sender_id, e)
            return None
        lifetime = sum(o.total_cents - o.discount_cents for o in orders if o.status not in ("cancelled",))
        open_cases = [
            {"order_id": o.id, "kind": a.kind, "status": a.status, "reason": a.reason}
            for o in orders for a in o.after_sales if a.status not in ("closed", "completed", "rejected")
        ]
        member = membership(shop_config(), points)
        return {
            "tier": member.tier.code, "priority_service": member.tier.priority_service,
            "customer_id": customer.id, "name": customer.name, "orders": len(orders),
            "lifetime_value_cents": lifetime, "open_after_sales": open_cases,
            "recent_orders": [{"id": o.id, "status": o.status, "total_cents": o.total_cents} for o in orders[:5]],
            # the handoff queue puts "vip" first; a tier with priority service (shop.yml) is honoured the same way
            "vip": lifetime >= self.vip_lifetime_value_cents or member.tier.priority_service,
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


class ShopErasurePort:
    """The shop's side of a PIPL/GDPR request (kefu's `ports: erasure`, bot/privacy).

    `identities` resolves a customer id, a phone or a channel id (openid) to the customer
    and their channel ids; `export` returns the customer, channel ids, orders (with the
    shipping name/phone/address), coupons and points; `erase` *anonymises* rather than
    deletes: orders, payments and refunds are accounting records the shop must keep, so
    they stay with their amounts and statuses while every personal field is blanked (the
    customer's name and phone, the orders' recipient, phone and address, the channel ids,
    the outbox events' sender and payload). Same database as `ShopOutboxPort`.
    """

    ERASED_NAME = "已删除 (erased)"

    def __init__(self, project_root: str | Path = ".", *, url: Optional[str] = None) -> None:
        outbox = ShopOutboxPort(project_root)  # the same url rules (endpoints.yml `shop:`, KEFU_SHOP_URL)
        self.url = url or outbox.url
        self.path = outbox.path if url is None else None
        self._engine: Any = None

    def _db(self) -> Any:
        if self._engine is None:
            from actions.shop.sql import make_engine

            if self.path is not None and not self.path.exists():
                return None
            self._engine = make_engine(self.url)
        return self._engine

    def _customer_id(self, conn: Any, key: str) -> Optional[int]:
        from sqlalchemy import select

        from actions.shop import models as m

        if key.isdigit():
            found = conn.execute(select(m.Customer.id).where(m.Customer.id == int(key))).scalar()
            if found is not None:
                return int(found)
        found = conn.execute(select(m.ChannelIdentity.customer_id).where(m.ChannelIdentity.external_id == key)).scalar()
        if found is None:
            found = conn.execute(select(m.Customer.id).where(m.Customer.phone == key)).scalar()
        return int(found) if found is not None else None

    def _identities(self, key: str) -> Optional[dict[str, Any]]:
        from sqlalchemy import select

        from actions.shop import models as m

        engine = self._db()
        if engine is None:
            return None
        with engine.connect() as conn:
            cid = self._customer_id(conn, str(key))
            if cid is None:
                return None
            ids = conn.execute(select(m.ChannelIdentity.channel, m.ChannelIdentity.external_id)
                               .where(m.ChannelIdentity.customer_id == cid)).all()
        return {"customer_id": str(cid), "sender_ids": sorted({external for _, external in ids}),
                "channels": [{"channel": channel, "id": external} for channel, external in ids]}

    def _export(self, key: str) -> Optional[dict[str, Any]]:
        from sqlalchemy import select

        from actions.shop import models as m
        from actions.shop.base import to_json

        engine = self._db()
        if engine is None:
            return None
        with engine.connect() as conn:
            cid = self._customer_id(conn, str(key))
            if cid is None:
                return None

            def rows(statement: Any) -> list[dict[str, Any]]:
                return [to_json(dict(r._mapping)) for r in conn.execute(statement).all()]

            order_ids = select(m.Order.id).where(m.Order.customer_id == cid)
            return {
                "customer": rows(select(m.Customer.__table__).where(m.Customer.id == cid))[0],
                "channel_identities": rows(select(m.ChannelIdentity.__table__).where(m.ChannelIdentity.customer_id == cid)),
                "orders": rows(select(m.Order.__table__).where(m.Order.customer_id == cid).order_by(m.Order.created_at)),
                "after_sales": rows(select(m.AfterSale.__table__).where(m.AfterSale.order_id.in_(order_ids))),
                "refunds": rows(select(m.Refund.__table__).where(m.Refund.order_id.in_(order_ids))),
                "coupons": rows(select(m.Coupon.__table__).where(m.Coupon.customer_id == cid)),
                "points": rows(select(m.PointsEntry.__table__).where(m.PointsEntry.customer_id == cid)),
                "outbox_events": rows(select(m.OutboxEvent.__table__).where(m.OutboxEvent.customer_id == cid)),
            }

    def _erase(self, key: str) -> dict[str, Any]:
        from sqlalchemy import delete, update

        from actions.shop import models as m

        engine = self._db()
        if engine is None:
            return {"customer": 0}
        with engine.begin() as conn:
            cid = self._customer_id(conn, str(key))
            if cid is None:
                return {"customer": 0}
            conn.execute(update(m.Customer).where(m.Customer.id == cid)
                         .values(name=self.ERASED_NAME, phone=f"erased-{cid}"))
            identities = conn.execute(delete(m.ChannelIdentity).where(m.ChannelIdentity.customer_id == cid)).rowcount
            orders = conn.execute(update(m.Order).where(m.Order.customer_id == cid)
                                  .values(ship_name="", ship_phone="", ship_address="")).rowcount
            outbox = conn.execute(update(m.OutboxEvent).where(m.OutboxEvent.customer_id == cid)
                                  .values(sender_id=None, payload={})).rowcount
        return {"customer": 1, "anonymised": True, "channel_identities": int(identities or 0),
                "orders_blanked": int(orders or 0), "outbox_events_blanked": int(outbox or 0)}

    async def identities(self, customer_id: str) -> Optional[dict[str, Any]]:
        return await asyncio.to_thread(self._identities, customer_id)

    async def export(self, customer_id: str) -> Optional[dict[str, Any]]:
        return await asyncio.to_thread(self._export, customer_id)

    async def erase(self, customer_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._erase, customer_id)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class ShopCompensationPort:
    """Compensation coupons for resolved complaints, within shop.yml's per-role limits.

    The seam for the agent console: a console route (bot/handoff) that knows the agent's
    verified role calls ``compensate``; until it exists, `python -m actions.shop compensate`
    does the same. One coupon per case: a repeated call returns the first coupon.
    """

    def __init__(self, project_root: str | Path = ".", *, store: Optional[ShopStore] = None) -> None:
        self.project_root = Path(project_root)
        self.store = store

    async def compensate(self, customer_id: int | str, *, amount_cents: int, role: str, agent: str,
                         case_id: str) -> dict[str, Any]:
        from datetime import datetime, timezone

        from actions.loyalty import coupon_text
        from actions.shop.loyalty import compensate

        config = shop_config()
        result = await compensate(self.store or get_shop(), config, int(customer_id), amount_cents=int(amount_cents),
                                  role=role, agent=agent, case_id=case_id, now=datetime.now(timezone.utc))
        limit = config.compensation_limits_cents.get(role)
        message = None
        if result.coupon is not None:
            value = config.money(result.coupon.amount_cents)
            message = {"zh": f"非常抱歉给您带来不便，送您一张{value}的补偿券：" + coupon_text("zh", result.coupon, result.template),
                       "en": f"We're sorry for the trouble. Here is a {value} compensation coupon: "
                             + coupon_text("en", result.coupon, result.template)}
        return {"ok": result.ok, "code": result.code, "limit_cents": limit,
                "limit": config.money(limit) if limit is not None else None,
                "coupon_code": result.coupon.code if result.coupon else None,
                "amount_cents": result.coupon.amount_cents if result.coupon else None, "new": result.new,
                "message": message}
