"""`HttpShopStore`: the shop interface over a merchant's own order API.

The merchant exposes the routes below (JSON in the `to_json` wire format of
`actions/shop/base.py`; `Authorization: Bearer <token>`); docs/shop.md lists them.
Business rules are still checked here first (`rules.py`) so a refusal needs no
round trip, and the merchant API re-checks them in its own transaction.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable, Optional, Sequence
from urllib.parse import quote

from actions.shop.base import (
    Basket,
    ChangeResult,
    CouponTemplateView,
    CouponView,
    CustomerView,
    IssueResult,
    OrderView,
    PointsEntryView,
    ProductView,
    ShopDataError,
    ShopUnavailable,
    from_json,
)

logger = logging.getLogger(__name__)


class HttpShopStore:
    """The `ShopStore` over HTTP (httpx; install it where the action server runs)."""

    def __init__(self, base_url: str, *, token: Optional[str] = None, timeout: float = 2.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
        self._httpx = httpx

    async def _call(self, method: str, path: str, *, params: Any = None, body: Any = None) -> Any:
        """JSON body of the answer; None on 404; `ShopUnavailable` on anything else."""
        try:
            response = await self._client.request(method, path, params=params, json=body)
        except self._httpx.TimeoutException as e:
            raise ShopUnavailable(f"Shop API {self.base_url} did not answer {method} {path} in time. "
                                  "Check the merchant API or raise `shop: timeout` in endpoints.yml.") from e
        except self._httpx.HTTPError as e:
            raise ShopUnavailable(f"Shop API {self.base_url} unreachable for {method} {path} ({type(e).__name__}). "
                                  "Check `shop: url` in endpoints.yml.") from e
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise ShopUnavailable(f"Shop API {self.base_url} refused the token ({response.status_code}). "
                                  "Check `shop: token` in endpoints.yml.")
        if response.status_code >= 400:
            raise ShopUnavailable(f"Shop API {self.base_url} answered {response.status_code} to {method} {path}.")
        try:
            return response.json()
        except ValueError as e:
            raise ShopUnavailable(f"Shop API {self.base_url} answered non-JSON to {method} {path}.") from e

    async def close(self) -> None:
        await self._client.aclose()

    async def find_order(self, order_id: str) -> Optional[OrderView]:
        return from_json(OrderView, await self._call("GET", f"/orders/{quote(order_id)}"))

    async def customer(self, customer_id: int) -> Optional[CustomerView]:
        return from_json(CustomerView, await self._call("GET", f"/customers/{int(customer_id)}"))

    async def customer_by_identity(self, channel: str, external_id: str) -> Optional[CustomerView]:
        data = await self._call("GET", "/customers", params={"channel": channel, "external_id": external_id})
        return from_json(CustomerView, data)

    async def customer_by_phone(self, phone: str) -> Optional[CustomerView]:
        return from_json(CustomerView, await self._call("GET", "/customers", params={"phone": phone}))

    async def recent_orders(self, customer_id: int, limit: int = 5) -> list[OrderView]:
        data = await self._call("GET", f"/customers/{int(customer_id)}/orders", params={"limit": limit})
        return [from_json(OrderView, o) for o in data or []]

    async def orders(self, order_ids: Sequence[str]) -> list[OrderView]:
        """One `GET /orders/{id}` per order, concurrently (the merchant API has no batch route)."""
        ids = list(dict.fromkeys(order_ids))
        found = await asyncio.gather(*(self.find_order(i) for i in ids))
        return [o for o in found if o is not None]

    async def orders_by_phone(
        self, phone: str, *, since: Optional[datetime] = None, limit: int = 20, details: bool = True,
        keep: Optional[Callable[[list[OrderView]], list[OrderView]]] = None,
    ) -> list[OrderView]:
        """`GET /orders?phone=&since=&limit=`; the merchant answers full views, `details` aside."""
        params: dict[str, Any] = {"phone": phone, "limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        orders = [from_json(OrderView, o) for o in await self._call("GET", "/orders", params=params) or []]
        return keep(orders) if keep is not None else orders

    async def coupons(self, customer_id: int) -> list[CouponView]:
        return [from_json(CouponView, c) for c in await self._call("GET", f"/customers/{int(customer_id)}/coupons") or []]

    async def points(self, customer_id: int) -> list[PointsEntryView]:
        return [from_json(PointsEntryView, p) for p in await self._call("GET", f"/customers/{int(customer_id)}/points") or []]

    async def products(self, skus: Optional[Sequence[str]] = None) -> list[ProductView]:
        params = [("sku", s) for s in skus] if skus is not None else None
        if skus is not None and not skus:
            return []
        return [from_json(ProductView, p) for p in await self._call("GET", "/products", params=params) or []]

    async def baskets(self, customer_id: Optional[int] = None) -> list[Basket]:
        params = {"customer_id": customer_id} if customer_id is not None else None
        return [from_json(Basket, b) for b in await self._call("GET", "/baskets", params=params) or []]

    async def _change(self, path: str, body: dict[str, Any]) -> ChangeResult:
        data = await self._call("POST", path, body=body)
        if data is None:
            return ChangeResult(False, "unknown_order")
        return from_json(ChangeResult, data)

    async def cancel_order(self, order_id: str, *, sender_id: Optional[str], now: datetime) -> ChangeResult:
        return await self._change(f"/orders/{quote(order_id)}/cancel", {"sender_id": sender_id, "now": now.isoformat()})

    async def change_address(self, order_id: str, address: str, *, sender_id: Optional[str], now: datetime) -> ChangeResult:
        return await self._change(f"/orders/{quote(order_id)}/address",
                                  {"address": address, "sender_id": sender_id, "now": now.isoformat()})

    async def request_after_sale(self, order_id: str, kind: str, reason: str, *, sender_id: Optional[str],
                                 now: datetime) -> ChangeResult:
        return await self._change(f"/orders/{quote(order_id)}/after-sales",
                                  {"kind": kind, "reason": reason, "sender_id": sender_id, "now": now.isoformat()})

    async def record_event(self, event: str, *, sender_id: Optional[str], customer_id: Optional[int],
                           payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        data = await self._call("POST", "/events", body={"event": event, "sender_id": sender_id,
                                                         "customer_id": customer_id, "payload": payload,
                                                         "now": now.isoformat()})
        return data or {}

    # -- stock, restock notices, coupons, points (issue #20; docs/shop.md lists the routes) --

    async def subscribe_restock(self, sku: str, *, size: Optional[str], colour: Optional[str], sender_id: str,
                                customer_id: Optional[int], now: datetime) -> bool:
        data = await self._call("POST", f"/products/{quote(sku)}/restock-subscriptions", body={
            "size": size, "colour": colour, "sender_id": sender_id, "customer_id": customer_id, "now": now.isoformat()})
        if data is None:
            raise ShopDataError(f"unknown product {sku!r}")
        return bool(data.get("new"))

    async def set_stock(self, sku: str, stock: int, *, size: Optional[str] = None, colour: Optional[str] = None,
                        now: datetime) -> list[dict[str, Any]]:
        data = await self._call("POST", f"/products/{quote(sku)}/stock", body={
            "stock": stock, "size": size, "colour": colour, "now": now.isoformat()})
        if data is None:
            raise ShopDataError(f"unknown product {sku!r}")
        return list(data.get("events") or [])

    async def set_order_status(self, order_id: str, status: str, *, now: datetime) -> ChangeResult:
        return await self._change(f"/orders/{quote(order_id)}/status", {"status": status, "now": now.isoformat()})

    async def coupon_templates(self) -> list[CouponTemplateView]:
        return [from_json(CouponTemplateView, t) for t in await self._call("GET", "/coupon-templates") or []]

    async def issue_coupon(self, customer_id: int, template: str, *, issue_key: str, issued_by: str, now: datetime,
                           amount_cents: Optional[int] = None) -> IssueResult:
        data = await self._call("POST", f"/customers/{int(customer_id)}/coupons", body={
            "template": template, "issue_key": issue_key, "issued_by": issued_by, "amount_cents": amount_cents,
            "now": now.isoformat()})
        return from_json(IssueResult, data) if data is not None else IssueResult(False, "unknown_customer")

    async def redeem_coupon(self, code: str, order_id: str, *, now: datetime) -> ChangeResult:
        return await self._change(f"/coupons/{quote(code)}/redeem", {"order_id": order_id, "now": now.isoformat()})

    async def earn_points(self, customer_id: int, kind: str, *, ref: str, points: int, now: datetime,
                          expires_at: Optional[datetime] = None, daily_max: Optional[int] = None) -> int:
        data = await self._call("POST", f"/customers/{int(customer_id)}/points", body={
            "kind": kind, "ref": ref, "points": points, "now": now.isoformat(),
            "expires_at": expires_at.isoformat() if expires_at else None, "daily_max": daily_max})
        if data is None:
            raise ShopDataError(f"unknown customer {customer_id}")
        return int(data.get("added") or 0)

    async def redeem_points(self, customer_id: int, template: str, *, issue_key: str, now: datetime) -> IssueResult:
        data = await self._call("POST", f"/customers/{int(customer_id)}/points/redeem", body={
            "template": template, "issue_key": issue_key, "now": now.isoformat()})
        return from_json(IssueResult, data) if data is not None else IssueResult(False, "unknown_customer")
