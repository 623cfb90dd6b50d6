"""The analytics feature's view of Customer 360 (``bot/customers``), when that feature runs.

Two things the dashboard needs from it: a conversation's **segment** (the customer's first
``customers.yml`` segment, in file order) and **who is the same person** — the ids Customer 360
has proven belong to one customer (the shop's customer id, WeChat openids, widget and
conversation ids), so an order of shop customer 42 converts the conversation of the WeChat
openid that Customer 360 linked to 42. Without the feature the dashboard falls back to the
``ports: profile`` port's ``segment`` field and matches orders by the conversation's own id.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# Identity kinds whose values the analytics rows are keyed by (customer_id / sender_id).
MATCHED_KINDS = ("shop_customer", "wechat_openid", "widget", "conversation")
# Where a conversation's or order's id is looked up, most specific first.
LOOKUP_KINDS = ("shop_customer", "wechat_openid", "widget", "conversation")


class CustomerDirectory(Protocol):
    async def segment_of(self, channel: str | None, customer_id: str) -> str | None: ...

    async def same_customer(self, customer_id: str) -> list[str]: ...

    async def health(self, segment: str | None, day_ends: list[float]) -> dict[str, Any] | None: ...


class Customer360Directory:
    """Over the customers feature (read lazily: it starts before analytics, and may be stopped)."""

    def __init__(self, feature: Any) -> None:
        self.feature = feature

    @property
    def service(self) -> Any:
        return getattr(self.feature, "service", None)

    async def _record(self, value: str) -> str | None:
        service = self.service
        if service is None or not value:
            return None
        for kind in LOOKUP_KINDS:
            found = await service.find(kind, value)
            if found:
                return found
        return None

    async def segment_of(self, channel: str | None, customer_id: str) -> str | None:
        cid = await self._record(customer_id)
        if cid is None:
            return None
        tags = (await self.service.get(cid, history=0)).get("tags") or []
        return str(tags[0]) if tags else None

    async def same_customer(self, customer_id: str) -> list[str]:
        cid = await self._record(customer_id)
        if cid is None:
            return []
        record = await self.service.get(cid, history=0)
        return sorted({str(i["value"]) for i in record.get("identities") or [] if i["kind"] in MATCHED_KINDS}
                      - {customer_id})

    async def health(self, segment: str | None, day_ends: list[float]) -> dict[str, Any] | None:
        service = self.service
        if service is None:
            return None
        return await service.health_overview(segment, day_ends)
