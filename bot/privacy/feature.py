"""Privacy as a server feature: admin routes for one customer's export and erasure (with
``--enable-api``), the retention task (``privacy: retention_days``), and log masking in each
worker (Sanic's workers are fresh processes: the CLI's logging set-up does not reach them).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, Sequence

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings
from bot.privacy.access import data_admin_guard
from bot.web.auth import principal_of
from bot.web.principals import Principal, Role
from bot.privacy.config import PrivacyConfig
from bot.privacy.service import PrivacyService, customer_ref, service_for_project
from bot.shared.masking import install_log_masking
from bot.web.errors import ErrorResponse

logger = logging.getLogger(__name__)

# The retention task acts for the operator who configured it (endpoints.yml `privacy: retention_days`).
RETENTION_ACTOR = Principal(subject="retention", role=Role.ADMIN, via="system")


async def record_audit(audit: Any, actor: Principal, action: str, customer: str, result: dict[str, Any]) -> None:
    """One audit entry per export/erase/purge: who, what, a reference (not the id), the counts.

    ``audit`` is the server's audit log (``FeatureContext.audit``); without one (a caller
    that built the feature alone) the entry is a WARNING line, which operators keep longer than INFO.
    """
    target = customer_ref(customer) if customer else None
    if audit is not None:
        await audit.record(actor, f"data.{action}", target, detail=result)
        return
    logger.warning("AUDIT data.%s by %s target=%s result=%s", action, actor.subject, target or "-", result)


def _counts_only(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "customer_ref"}


class PrivacyFeature(BaseFeature):
    name = "privacy"

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.config = PrivacyConfig.from_settings(settings)
        self.service: PrivacyService | None = None
        self.audit: Any = None
        self.last_purge: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------
    async def start(self, context: FeatureContext) -> None:
        install_log_masking()
        self.audit = getattr(context, "audit", None)
        self.service = service_for_project(self.settings, getattr(context.agent, "tracker_store", None))

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.close()
            self.service = None

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self._retention,) if self.config.retention_s is not None else ()

    def health(self) -> FeatureHealth:
        return FeatureHealth(detail={"retention_days": self.config.retention_days, "last_purge": self.last_purge})

    async def purge_once(self) -> dict[str, int]:
        assert self.service is not None and self.config.retention_s is not None
        counts = await self.service.purge(self.config.retention_s, batch=self.config.batch)
        self.last_purge = counts
        logger.info("Retention purge (older than %.0f days): %s.", self.config.retention_days, counts)
        if any(counts.values()):
            await record_audit(self.audit, RETENTION_ACTOR, "purge", "", counts)
        return counts

    async def _retention(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.purge_once()
            except Exception:  # a store down now must not end retention for good
                logger.exception("Retention purge failed; retrying in %.0fs", self.config.purge_interval_s)
            try:
                await asyncio.wait_for(stop.wait(), self.config.purge_interval_s)
            except asyncio.TimeoutError:
                pass

    # -- routes -----------------------------------------------------------------------
    def blueprints(self) -> Sequence[Blueprint]:
        if not self.settings.enable_api:
            return ()
        bp = Blueprint("kefu_privacy")
        guard = data_admin_guard()
        feature = self

        def service() -> PrivacyService:
            if feature.service is None:
                raise ErrorResponse(503, "NotReady", "The privacy feature has not started yet; retry shortly.")
            return feature.service

        def actor(request: Request) -> Principal:
            principal = principal_of(request)
            assert principal is not None  # the guard let it through
            return principal

        @bp.get("/data/customers/<customer_id>/export")
        @guard
        async def export_customer(request: Request, customer_id: str) -> HTTPResponse:
            data = await service().export(customer_id)
            await record_audit(feature.audit, actor(request), "export", customer_id,
                               {"conversations": len(data["conversations"]), "handoffs": len(data["handoffs"])})
            return response.text(json.dumps(data, default=str, ensure_ascii=False), content_type="application/json")

        @bp.delete("/data/customers/<customer_id>")
        @guard
        async def erase_customer(request: Request, customer_id: str) -> HTTPResponse:
            result = await service().erase(customer_id)
            await record_audit(feature.audit, actor(request), "erase", customer_id, _counts_only(result))
            return response.json({"erased": _counts_only(result)})

        return (bp,)


def privacy_feature(settings: ProjectSettings) -> PrivacyFeature | None:
    """Always built for a project: masking and data requests need no configuration."""
    return PrivacyFeature(settings) if settings.root is not None else None
