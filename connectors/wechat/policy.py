"""Which send path WeChat allows now for an openid.

WeChat lets an Official Account push customer-service (客服) messages only for 48 hours
after the shopper's last message or interaction, and only a few of them in that window;
outside it only template (模板) / subscription messages reach the shopper, and nothing
does after they unsubscribe. The trigger scheduler asks :meth:`SendPolicy.allowed_send_path`
before a proactive send; the channel records every inbound message and every
customer-service send here.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from connectors.wechat.store import InMemoryWeChatStore, WeChatStore

__all__ = ["SendPath", "SendPolicy", "UserSendState"]

DEFAULT_WINDOW_SECONDS = 48 * 3600
DEFAULT_MAX_CUSTOMER_SERVICE = 5


class SendPath(str, enum.Enum):
    CUSTOMER_SERVICE = "customer_service"
    TEMPLATE = "template"
    NONE = "none"  # unsubscribed: no proactive message at all


@dataclass(frozen=True)
class UserSendState:
    last_inbound: float | None
    customer_service_sent: int
    opted_out: bool


class SendPolicy:
    """Per-openid window bookkeeping in a (shared) :class:`WeChatStore`."""

    def __init__(
        self,
        store: WeChatStore | None = None,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_customer_service: int = DEFAULT_MAX_CUSTOMER_SERVICE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store if store is not None else InMemoryWeChatStore()
        self.window_seconds = window_seconds
        self.max_customer_service = max_customer_service
        self.clock = clock

    @staticmethod
    def _key(openid: str) -> str:
        return f"user:{openid}"

    async def state(self, openid: str) -> UserSendState:
        data = await self.store.hgetall(self._key(openid))
        last = data.get("last_inbound")
        return UserSendState(
            last_inbound=float(last) if last else None,
            customer_service_sent=int(data.get("cs_sent", 0) or 0),
            opted_out=data.get("opted_out") == "1",
        )

    async def record_inbound(self, openid: str, at: float | None = None) -> None:
        """A shopper message or interaction opens a new window and resets the count."""
        await self.store.hset(
            self._key(openid),
            {"last_inbound": at if at is not None else self.clock(), "cs_sent": 0},
        )

    async def record_customer_service_send(self, openid: str) -> int:
        return await self.store.hincrby(self._key(openid), "cs_sent", 1)

    async def set_opted_out(self, openid: str, opted_out: bool) -> None:
        await self.store.hset(self._key(openid), {"opted_out": "1" if opted_out else "0"})

    async def allowed_send_path(self, openid: str) -> SendPath:
        """CUSTOMER_SERVICE within the window and under the cap, else TEMPLATE; NONE if opted out."""
        state = await self.state(openid)
        if state.opted_out:
            return SendPath.NONE
        if (
            state.last_inbound is not None
            and self.clock() - state.last_inbound < self.window_seconds
            and state.customer_service_sent < self.max_customer_service
        ):
            return SendPath.CUSTOMER_SERVICE
        return SendPath.TEMPLATE
