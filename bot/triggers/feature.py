"""Lifecycle journeys as a server feature: ``POST /events``, the report and variant
routes, the chat opt-out hook and the scheduler loop.

The routes exist whenever the management API is enabled (answering 409 when the
project has no ``triggers.yml``); the engine is built when the worker's agent is
ready, from ``triggers.yml`` and the ``triggers:`` section of endpoints.yml.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings
from bot.triggers.hooks import OptOutHook

logger = logging.getLogger(__name__)


class TriggersFeature(BaseFeature):
    name = "triggers"

    def __init__(self, settings: ProjectSettings, engine: Any = None) -> None:
        """``engine``: a ready engine to serve instead of building one at start (tests, tools)."""
        self.settings = settings
        self.engine: Any = engine
        self.owns_engine = engine is None  # an engine passed in belongs to the caller

    def blueprints(self) -> Sequence[Any]:
        if not self.settings.enable_api:
            return ()
        from bot.triggers.server import create_triggers_blueprint

        return (create_triggers_blueprint(lambda request: self.engine),)

    async def start(self, context: FeatureContext) -> None:
        if not self.owns_engine or self.settings.root is None:
            return
        from bot.triggers import create_trigger_engine

        self.engine = create_trigger_engine(context.agent, self.settings.root, outputs=context.outputs)
        if self.engine is not None:
            self.engine.attach(context.agent.event_broker)
            agent = context.agent

            async def customer_context(customer_id: str) -> Any:
                customers = getattr(agent, "customers", None)  # Customer 360 starts after this feature
                if customers is None:
                    return None
                return (await customers.context_for("shop_customer", customer_id)
                        or await customers.context_for("conversation", customer_id))

            self.engine.customer_context = customer_context

            async def outcome_listener(outcomes: list[dict[str, Any]]) -> None:
                customers = getattr(agent, "customers", None)
                if customers is not None:
                    await customers.on_send_outcomes(outcomes)

            self.engine.outcome_listener = outcome_listener

    def hooks(self) -> Sequence[Any]:
        return (OptOutHook(self.engine),) if self.engine is not None else ()

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self.engine.run_forever,) if self.engine is not None else ()

    async def stop(self) -> None:
        engine, self.engine = self.engine, (None if self.owns_engine else self.engine)
        if engine is None or not self.owns_engine:
            return
        engine.detach()
        try:
            await engine.queue.close()
        finally:
            await engine.store.close()

    def health(self) -> FeatureHealth:
        return FeatureHealth(detail={"engine": self.engine is not None})


def triggers_feature(settings: ProjectSettings) -> TriggersFeature | None:
    if settings.root is None and not settings.enable_api:
        return None
    return TriggersFeature(settings)
