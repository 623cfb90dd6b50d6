"""The outbox relay as a server feature: the shop's state changes (``order_cancelled``,
``return_requested``, ...) read through the ``ports: outbox`` port of endpoints.yml and
published onto the event broker, where the trigger engine (and any other consumer) sees them.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings

logger = logging.getLogger(__name__)


class OutboxRelayFeature(BaseFeature):
    name = "shop_outbox"

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.relay: Any = None
        self.running = False

    async def start(self, context: FeatureContext) -> None:
        from bot.relay import outbox_relay_for_project

        self.relay = None
        try:
            self.relay = outbox_relay_for_project(getattr(context.agent, "event_broker", None), self.settings)
        except Exception:  # a bad `ports:` or `shop:` section must not stop the bot from serving
            logger.exception("Shop outbox relay not started")
            return
        if self.relay is not None:
            logger.info("Shop outbox relay started (every %.1fs).", self.relay.interval)

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self._run,) if self.relay is not None else ()

    async def _run(self, stop: asyncio.Event) -> None:
        self.running = True
        try:
            await self.relay.run(stop)
        finally:
            self.running = False

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.close()

    def health(self) -> FeatureHealth:
        return FeatureHealth(ok=self.relay is None or self.running, detail={"running": self.running})


def outbox_relay_feature(settings: ProjectSettings) -> OutboxRelayFeature | None:
    return OutboxRelayFeature(settings) if settings.root is not None else None
