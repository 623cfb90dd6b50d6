"""Human handoff as a server feature: the agent API and console, the escalation hook.

Built when config.yml or endpoints.yml has a ``handoff:`` section. The console and
the agent API have their own login, so the routes are mounted with or without
``--enable-api``.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from bot.feature import BaseFeature, FeatureContext, FeatureHealth, ProjectSettings
from bot.handoff.config import HandoffConfig
from bot.handoff.hook import HandoffHook
from bot.handoff.service import HandoffService
from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)


class HandoffFeature(BaseFeature):
    name = "handoff"

    def __init__(self, service: HandoffService, *, owns_service: bool = True) -> None:
        """``owns_service`` False: the caller built the service and closes it (tests, tools)."""
        self.service = service
        self.owns_service = owns_service
        self._started = False

    def blueprints(self) -> Sequence[Any]:
        from bot.handoff.api import create_handoff_blueprint

        return (create_handoff_blueprint(self.service),)

    def hooks(self) -> Sequence[Any]:
        return (HandoffHook(self.service),)

    async def start(self, context: FeatureContext) -> None:
        self.service.bind_agent(context.agent)
        self.service.outputs = context.outputs
        self.service.server_audit = context.audit
        await self.service.start()
        self._started = True

    async def stop(self) -> None:
        if self._started and self.owns_service:
            await self.service.close()
        self._started = False

    def health(self) -> FeatureHealth:
        return FeatureHealth(ok=self._started, detail={"agents": len(self.service.agents)})


def profile_provider(settings: ProjectSettings, vip_lifetime_value_cents: int) -> Any:
    """Customer profiles from endpoints.yml ``ports: profile``, VIP by the handoff's threshold.

    None without that port; a broken port is logged and handoffs go on without profiles
    (as when the shop is down), so a typo there never stops the console.
    """
    from bot.ports import load_configured_port

    try:
        port = load_configured_port(settings, "profile")
    except ConfigError as e:
        logger.error("Customer profiles off: %s", e)
        return None
    if port is None:
        return None

    async def profile(channel: str | None, sender_id: str) -> dict[str, Any] | None:
        found = await port.profile(channel, sender_id)
        if found is not None and "lifetime_value_cents" in found:
            found["vip"] = found["lifetime_value_cents"] >= vip_lifetime_value_cents
        return found

    return profile


def compensation_port(settings: ProjectSettings) -> Any:
    """endpoints.yml ``ports: compensation`` (coupons agents issue from the console), or None.

    A broken port is logged and the console goes on without the button's route working.
    """
    from bot.ports import load_configured_port

    try:
        return load_configured_port(settings, "compensation")
    except ConfigError as e:
        logger.error("Compensation coupons off: %s", e)
        return None


def handoff_feature(settings: ProjectSettings) -> HandoffFeature | None:
    """Refuses plaintext or well-known passwords; agents without credentials get generated ones (shown once)."""
    from bot.handoff.credentials import provision

    if settings.root is None or settings.section("handoff") is None:
        return None
    config = provision(HandoffConfig.from_project(settings.root), settings.root)
    service = HandoffService(config, profile_provider=profile_provider(settings, config.vip_lifetime_value_cents))
    service.compensation = compensation_port(settings)
    return HandoffFeature(service)
