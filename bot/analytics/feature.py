"""Analytics as a server feature: the broker consumer, the conversation-end survey, the dashboard.

Built when config.yml or endpoints.yml has an ``analytics:`` section. At start it
opens the store, subscribes to the event broker (own consumer group on Redis
Streams, so the trigger engine still sees every event) and runs one background
sweep that ends idle conversations and asks the inactivity survey.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Callable, Sequence

from bot.analytics.config import AnalyticsConfig
from bot.analytics.ingest import Ingester, SegmentOf, profile_segment_of
from bot.analytics.store import AnalyticsStore
from bot.analytics.survey import SurveyHook, SurveyService
from bot.feature import BaseFeature, FeatureContext, FeatureHealth, ProjectSettings

logger = logging.getLogger(__name__)

BROKER_GROUP = "kefu-analytics"
SWEEP_INTERVAL_S = 30.0


class AnalyticsFeature(BaseFeature):
    name = "analytics"

    def __init__(self, config: AnalyticsConfig, database_url: str, segment_of: SegmentOf | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.store = AnalyticsStore(database_url)
        self.ingester = Ingester(self.store, config, segment_of)
        self.survey = SurveyService(config.survey, self.store, self.ingester, clock)
        self.broker: Any = None
        self.directory: Any = None  # Customer 360, when that feature runs (set at start)
        self._started = False
        self.session_minutes: float | None = None

    def blueprints(self) -> Sequence[Any]:
        from bot.analytics.api import create_dashboard_blueprint

        return (create_dashboard_blueprint(self.store, directory=lambda: self.directory),)

    def hooks(self) -> Sequence[Any]:
        return (SurveyHook(self.survey),) if self.config.survey.enabled else ()

    def tasks(self) -> Sequence[Any]:
        return (self.sweep_forever,)

    async def start(self, context: FeatureContext) -> None:
        from bot.analytics.customer_rollups import ensure

        await self.store.open()
        await ensure(self.store)  # once, for a store whose orders predate the per-customer rollups
        customers = (getattr(context, "peers", None) or {}).get("customers")
        if customers is not None:  # Customer 360 runs: its segments and identities (bot/analytics/directory.py)
            from bot.analytics.directory import Customer360Directory

            self.directory = Customer360Directory(customers)
            self.ingester.directory = self.directory
            self.ingester.segment_of = self.directory.segment_of
        self.survey.agent = context.agent
        self.survey.outputs = context.outputs
        domain = getattr(context.agent, "domain", None)
        session = getattr(domain, "session_config", None)
        self.session_minutes = getattr(session, "session_expiration_time", None) or None
        broker = getattr(context.agent, "event_broker", None)
        if broker is not None:
            if "group" in inspect.signature(broker.subscribe).parameters:
                broker.subscribe(self.ingester.handle, group=BROKER_GROUP)
            else:
                broker.subscribe(self.ingester.handle)
            self.broker = broker
        else:
            logger.warning("No event broker: the dashboard's figures stay empty (endpoints.yml event_broker).")
        self._started = True

    async def stop(self) -> None:
        if self.broker is not None:
            self.broker.unsubscribe(self.ingester.handle)
            self.broker = None
        if self._started:
            try:
                await self.ingester.flush()
            except Exception:
                logger.exception("Could not write the last rollup increments.")
        self._started = False
        await self.store.close()

    def inactivity_s(self) -> float | None:
        """How long a conversation must be idle before the survey is asked outside a turn (None: never)."""
        survey = self.config.survey
        choices = []
        if "inactivity" in survey.ask_on:
            choices.append(survey.inactivity_minutes * 60)
        if "session_end" in survey.ask_on and self.session_minutes:
            choices.append(float(self.session_minutes) * 60)
        return min(choices) if choices and survey.enabled else None

    async def sweep(self) -> None:
        await self.ingester.close_idle(self.clock())
        idle = self.inactivity_s()
        if idle is not None:
            await self.survey.ask_idle_conversations(idle)

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:
                logger.exception("Analytics sweep failed; retrying in %.0fs.", SWEEP_INTERVAL_S)
            try:
                await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    def health(self) -> FeatureHealth:
        return FeatureHealth(ok=self._started, detail={"survey": self.config.survey.enabled})


def segments_from_profiles(settings: ProjectSettings) -> SegmentOf | None:
    """Customer segments from the ``ports: profile`` port's ``segment`` field; None without the port.

    A broken port is logged and the figures go on without segments (as handoffs go on without profiles).
    """
    from bot.ports import load_configured_port
    from bot.shared.exceptions import ConfigError

    try:
        port = load_configured_port(settings, "profile")
    except ConfigError as e:
        logger.error("Customer segments off: %s", e)
        return None
    return profile_segment_of(port) if port is not None else None


def analytics_feature(settings: ProjectSettings) -> AnalyticsFeature | None:
    if settings.root is None or settings.section("analytics") is None:
        return None
    config = AnalyticsConfig.from_project(settings.root)
    return AnalyticsFeature(config, config.database_url(settings.root), segments_from_profiles(settings))
