"""Who hears about a handoff: agent consoles (the bus), the event broker, the webhook."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from bot.handoff.agents import AgentRoster
from bot.handoff.handoffs import Handoff

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], Awaitable[None]]


class Notifier:
    """Console notifications reach every worker through ``bus``; broker events go to ``event_broker``."""

    def __init__(self, bus: Any, roster: AgentRoster, clock: Callable[[], float], event_broker: Any = None) -> None:
        self.bus = bus
        self.roster = roster
        self.clock = clock
        self.event_broker = event_broker
        self.listeners: set[Listener] = set()

    def subscribe(self, listener: Listener) -> None:
        self.listeners.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    async def notify(self, event: dict[str, Any]) -> None:
        """To every console on every worker (the bus); a bus failure must not fail the caller."""
        event = {"timestamp": self.clock(), **event}
        try:
            await self.bus.publish(event)
        except Exception:
            logger.exception("Could not publish a %s notification; dispatching locally only.", event.get("type"))
            await self.dispatch(event)

    async def dispatch(self, event: dict[str, Any]) -> None:
        """What the bus delivers to this worker: update the roster cache, then every local console."""
        if event.get("type") == "agent_status" and isinstance(event.get("agent"), dict):
            self.roster.heard_status(event["agent"])
        for listener in list(self.listeners):
            try:
                await listener(event)
            except Exception:
                logger.debug("A console listener failed; dropping it.", exc_info=True)
                self.listeners.discard(listener)

    async def publish(self, name: str, h: Handoff, **extra: Any) -> None:
        """A ``handoff_*``/``csat_submitted`` event on the broker (the trigger scheduler listens)."""
        if self.event_broker is None:
            return
        body = {"event": name, "sender_id": h.conversation_id, "handoff_id": h.id,
                "customer_id": h.customer_id, "timestamp": self.clock(), **extra}
        try:
            await self.event_broker.publish(body)
        except Exception:
            logger.exception("Could not publish %s for %s", name, h.id)


async def post_webhook(url: str, token: str | None, h: Handoff) -> None:
    """``handoff_requested`` to an external helpdesk, three tries with back-off."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"event": "handoff_requested", "handoff": h.as_dict()}
    for attempt in range(3):
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(url, json=body, headers=headers)
            if response.status_code < 500:
                return
        except httpx.HTTPError as e:
            logger.warning("Handoff webhook attempt %d failed: %s", attempt + 1, e)
        await asyncio.sleep(0.5 * 2 ** attempt)
    logger.error("Handoff webhook gave up for %s", h.id)
