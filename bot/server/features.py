"""The features this server composes, in one explicit table, and their life cycle.

Order matters: processor hooks run in table order (handoff before the triggers'
opt-out hook), and the shop outbox relay starts after the trigger engine has
subscribed to the event broker. Adding a capability means adding a row here and a
``feature.py`` in its package implementing :class:`bot.feature.Feature`.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from bot.customers.feature import customers_feature
from bot.analytics.feature import analytics_feature
from bot.feature import Feature, FeatureContext, FeatureFactory, FeatureHealth, ProjectSettings
from bot.alerts.feature import alerts_feature
from bot.handoff.feature import handoff_feature
from bot.knowledge.feature import knowledge_feature
from bot.privacy.feature import privacy_feature
from bot.relay_feature import outbox_relay_feature
from bot.shared.endpoints import load_endpoints
from bot.shared.outputs import OutputRegistry
from bot.shared.yaml_io import read_yaml_file, to_plain
from bot.triggers.feature import triggers_feature
from bot.workbench.feature import workbench_feature

logger = logging.getLogger(__name__)

FEATURES: tuple[tuple[str, FeatureFactory], ...] = (
    ("knowledge", knowledge_feature),
    ("handoff", handoff_feature),
    ("triggers", triggers_feature),
    ("shop_outbox", outbox_relay_feature),
    ("privacy", privacy_feature),
    ("workbench", workbench_feature),
    ("alerts", alerts_feature),  # after handoff: reads its store, notifies its consoles
    ("customers", customers_feature),
    ("analytics", analytics_feature),
)
TASK_GRACE_S = 5.0  # how long stopping tasks may take before they are cancelled


def project_settings(root: str | Path | None, enable_api: bool = True) -> ProjectSettings:
    """Read config.yml and endpoints.yml of ``root`` (nothing when ``root`` is None)."""
    if root is None:
        return ProjectSettings(root=None, enable_api=enable_api)
    root = Path(root)
    config_path = root / "config.yml"
    config = (to_plain(read_yaml_file(config_path)) or {}) if config_path.is_file() else {}
    endpoints_path = root / "endpoints.yml"
    endpoints = load_endpoints(endpoints_path if endpoints_path.is_file() else None)
    return ProjectSettings(root=root, config=config if isinstance(config, dict) else {},
                           endpoints=endpoints, enable_api=enable_api)


def build_features(settings: ProjectSettings,
                   table: Sequence[tuple[str, FeatureFactory]] = FEATURES) -> "FeatureSet":
    """Every feature of ``table`` that the project configures, in table order."""
    features = []
    for name, factory in table:
        feature = factory(settings)
        if feature is not None:
            if feature.name != name:
                raise ValueError(f"Feature table row '{name}' built a feature named '{feature.name}'.")
            features.append(feature)
    return FeatureSet(features)


class FeatureSet:
    """The running features of one worker: start, hooks, background tasks, stop, health."""

    def __init__(self, features: Iterable[Feature]) -> None:
        self.features: list[Feature] = list(features)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._started: list[Feature] = []
        self._hooks: list[Any] = []
        self._agent: Any = None
        self.task_outcomes: dict[str, str] = {}  # how each task of the last stop ended

    def __getitem__(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"No feature '{name}' in this server (running: {', '.join(self.names()) or 'none'}).")

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.features)

    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def blueprints(self) -> list[Any]:
        return [bp for feature in self.features for bp in feature.blueprints()]

    async def start(self, agent: Any, outputs: OutputRegistry, settings: ProjectSettings,
                    audit: Any = None) -> None:
        """Start every feature, then register their hooks, then run their tasks."""
        if self._started:  # a server that starts again (test clients serve one request per start)
            await self.stop()
        self._stop = asyncio.Event()
        context = FeatureContext(agent=agent, outputs=outputs, settings=settings, audit=audit,
                                 peers={f.name: f for f in self.features})
        for feature in self.features:
            await feature.start(context)
            self._started.append(feature)
        self._agent = agent
        for feature in self.features:
            for hook in feature.hooks():
                agent.add_hook(hook)
                self._hooks.append(hook)
        loop = asyncio.get_running_loop()
        for feature in self.features:
            for task in feature.tasks():
                self._tasks.append(loop.create_task(task(self._stop), name=feature.name))
        if self.features:
            logger.info("Features running: %s.", ", ".join(self.names()))

    async def stop(self, grace: float = TASK_GRACE_S) -> None:
        """Signal the tasks, give them ``grace`` seconds, then stop features in reverse order."""
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                logger.warning("Task %s did not stop within %.1fs; cancelling it.", task.get_name(), grace)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.task_outcomes = {}
            for task in self._tasks:
                if task in pending or task.cancelled():
                    self.task_outcomes[task.get_name()] = "cancelled"
                elif task.exception() is not None:
                    self.task_outcomes[task.get_name()] = "failed"
                    logger.error("Task %s ended with an error.", task.get_name(), exc_info=task.exception())
                else:
                    self.task_outcomes[task.get_name()] = "stopped"
            self._tasks.clear()
        for hook in self._hooks:
            self._agent.remove_hook(hook)
        self._hooks.clear()
        for feature in reversed(self._started):
            try:
                await feature.stop()
            except Exception:  # one feature's shutdown must not hide the others'
                logger.exception("Stopping feature %s failed", feature.name)
        self._started.clear()

    def health(self) -> dict[str, FeatureHealth]:
        return {feature.name: feature.health() for feature in self.features}
