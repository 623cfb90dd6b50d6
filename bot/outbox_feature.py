"""The shop's outbox relay as a server feature: the shop's state changes
(``order_cancelled``, ``return_requested``, ...) published onto the event broker."""
from __future__ import annotations

import logging
from typing import Any

from bot.feature import BaseFeature, FeatureContext, FeatureHealth, ProjectSettings

logger = logging.getLogger(__name__)


class ShopOutboxFeature(BaseFeature):
    name = "shop_outbox"

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.relay: Any = None

    async def start(self, context: FeatureContext) -> None:
        from bot.shop_cli import create_outbox_relay

        try:
            relay = create_outbox_relay(getattr(context.agent, "event_broker", None), self.settings.root)
        except Exception:  # a bad `shop:` section must not stop the bot from serving
            logger.exception("Shop outbox relay not started")
            return
        if relay is not None:
            relay.start()
            self.relay = relay
            logger.info("Shop outbox relay started (every %.1fs).", relay.interval)

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()

    def health(self) -> FeatureHealth:
        running = self.relay is not None and not self.relay.task.done()
        return FeatureHealth(ok=self.relay is None or running, detail={"running": running})


def shop_outbox_feature(settings: ProjectSettings) -> ShopOutboxFeature | None:
    return ShopOutboxFeature(settings) if settings.root is not None else None
