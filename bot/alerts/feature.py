"""Alerts as a server feature: built when the project has ``alerts.yml``.

It counts shopper messages (a processor hook), evaluates the rules every
``evaluate_every_s`` in a background task (with a shared ``store: redis`` only the
worker holding the lease evaluates), tells the supervisors' consoles through the handoff
notifier (its bus reaches every worker) and lists alerts at ``GET /alerts``
(``handoff:supervise``) and, for the console's own login, ``GET /handoff/api/alerts``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bot.alerts.config import FILENAME, AlertsConfig, load_alerts
from bot.alerts.engine import AlertEngine
from bot.alerts.ratings import RATING_SOURCES
from bot.alerts.signals import SignalHook, create_stores
from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings

logger = logging.getLogger(__name__)


class AlertsFeature(BaseFeature):
    name = "alerts"

    def __init__(self, config: AlertsConfig, *, enable_api: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.enable_api = enable_api
        self.clock = clock
        self.signals, self.state = create_stores(config)
        self.hook = SignalHook(config, self.signals, clock)
        self.engine: AlertEngine | None = None
        self.handoff: Any = None  # the handoff service, when that feature runs
        self._failures = 0

    def blueprints(self) -> Sequence[Any]:
        from bot.alerts.api import create_alerts_blueprint

        return (create_alerts_blueprint(self, api_route=self.enable_api),)

    def hooks(self) -> Sequence[Any]:
        counted = any(r.kind in ("complaint_spike", "escalation_rate") for r in self.config.rules)
        return (self.hook,) if counted else ()  # no rule counts messages: no work in the turn

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self.run,)

    async def start(self, context: FeatureContext) -> None:
        handoff = context.peers.get("handoff")
        self.handoff = getattr(handoff, "service", None)
        sources = [s for s in (RATING_SOURCES[name](context.peers) for name in self.config.rating_sources)
                   if s is not None]
        notify = self.handoff.notifier.notify if self.handoff is not None else None
        if self.handoff is None:
            logger.warning("Alerts: no handoff feature, so no console to notify and no queue or CSAT to watch; "
                           "alerts are listed at GET /alerts only.")
        self.engine = AlertEngine(self.config, self.signals, self.state,
                                  handoff_store=self.handoff.store if self.handoff is not None else None,
                                  ratings=sources, notify=notify, clock=self.clock)

    async def evaluate_once(self) -> list[dict[str, Any]]:
        """One round when this worker holds the lease (always, with the memory store)."""
        assert self.engine is not None, "start() first"
        if not await self.state.lead(self.config.evaluate_every_s * 2.5):
            return []
        return await self.engine.evaluate()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.evaluate_once()
                self._failures = 0
            except Exception as e:
                self._failures += 1
                logger.warning("Alert evaluation failed (%s); retrying in %.0fs.", type(e).__name__,
                               self.config.evaluate_every_s)
            try:
                await asyncio.wait_for(stop.wait(), self.config.evaluate_every_s)
            except asyncio.TimeoutError:
                pass

    async def listing(self, limit: int = 50) -> dict[str, Any]:
        active = await self.state.active()
        return {"active": sorted(active.values(), key=lambda a: a["since"], reverse=True),
                "recent": await self.state.recent(limit),
                "rules": [{"name": r.name, "kind": r.kind, "severity": r.severity, **r.params}
                          for r in self.config.rules]}

    async def stop(self) -> None:
        if self.config.store.get("type") != "redis":
            return  # memory: the counts and alerts live as long as the worker
        await self.state.close()
        await self.signals.close()
        # A later start (test clients restart the server) builds fresh clients on its own loop.
        self.signals, self.state = create_stores(self.config)
        self.hook.signals = self.signals

    def health(self) -> FeatureHealth:
        unread = list(self.engine.errors) if self.engine is not None else []
        return FeatureHealth(ok=self.engine is not None and self._failures < 3,
                             detail={"rules": len(self.config.rules), "failures": self._failures,
                                     "rules_not_read": unread})


def alerts_feature(settings: ProjectSettings) -> AlertsFeature | None:
    """Built from ``<project>/alerts.yml``; a mistake there stops the server with its file and line."""
    if settings.root is None:
        return None
    path = Path(settings.root) / FILENAME
    if not path.is_file():
        return None
    return AlertsFeature(load_alerts(path), enable_api=settings.enable_api)
