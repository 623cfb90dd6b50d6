"""The FAQ knowledge base as a server feature: the ``/knowledge/*`` management routes.

The knowledge base itself is part of the model archive (built by ``train``, loaded and
swapped with the model by the agent); this feature only exposes it over HTTP when the
management API is enabled.
"""
from __future__ import annotations

from typing import Any, Sequence

from bot.feature import BaseFeature, FeatureContext, ProjectSettings


class KnowledgeFeature(BaseFeature):
    name = "knowledge"

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.agent: Any = None

    def holder(self) -> Any:
        """The worker's ``KnowledgeHolder`` (None before start or without knowledge files)."""
        return self.agent.knowledge if self.agent is not None else None

    def blueprints(self) -> Sequence[Any]:
        if not self.settings.enable_api:
            return ()
        from bot.knowledge.server import create_knowledge_blueprint

        return (create_knowledge_blueprint(lambda request: self.holder()),)

    async def start(self, context: FeatureContext) -> None:
        self.agent = context.agent


def knowledge_feature(settings: ProjectSettings) -> KnowledgeFeature:
    return KnowledgeFeature(settings)
