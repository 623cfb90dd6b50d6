"""The feature contract: how a capability (knowledge base, handoff, triggers, ...) plugs in.

A feature is built from the project's configuration when a worker's app is built
(cheap: no connections, no models), contributes HTTP routes, processor hooks and
background tasks, and is started once the worker's agent is ready. The server
composes features from one explicit table (``bot/server/features.py``) and owns
their life cycle: it mounts :meth:`Feature.blueprints` when the app is built; once
the agent is ready it calls every :meth:`Feature.start` (table order), then registers
every :meth:`Feature.hooks` on the agent (table order, see ``bot/dialogue/hooks.py``),
then runs :meth:`Feature.tasks` until shutdown; at shutdown it signals the tasks,
waits for them, and calls :meth:`Feature.stop` in reverse table order. Features never reach into ``app.ctx``;
what they need at start arrives in :class:`FeatureContext`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from sanic import Blueprint

    from bot.dialogue.hooks import ProcessorHook
    from bot.shared.endpoints import Endpoints
    from bot.shared.outputs import OutputRegistry
    from bot.stores.audit import AuditLog

# A background task: runs until ``stop`` is set, then returns (the server cancels it after a grace period).
BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class ProjectSettings:
    """What a feature is built from: the project's files, read once per worker."""

    root: Path | None  # None: the server runs without a project folder (tests, embedding)
    config: dict[str, Any] = field(default_factory=dict)  # config.yml as plain data
    endpoints: "Endpoints | None" = None  # endpoints.yml
    enable_api: bool = True  # management routes (``--enable-api``) are mounted

    def section(self, name: str) -> Any:
        """``name:`` from config.yml, else from endpoints.yml (None when neither has it)."""
        if self.config.get(name) is not None:
            return self.config[name]
        extra = getattr(self.endpoints, "extra", None) or {}
        return extra.get(name) if isinstance(extra, dict) else None


@dataclass
class FeatureContext:
    """What a feature gets when the worker's agent is ready."""

    agent: Any  # bot.agent.Agent
    outputs: "OutputRegistry"
    settings: ProjectSettings
    audit: "AuditLog | None" = None  # bot/stores/audit.py: record every read of a transcript
    # The other features of this worker by name (started before this one in table order), for a
    # feature built on another's state (alerts read the handoff store and notify its consoles).
    peers: "dict[str, Any]" = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureHealth:
    """``ok`` False makes the worker report itself degraded; ``detail`` is shown as is."""

    ok: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Feature(Protocol):
    """One capability of the server. ``name`` is unique in the server's table."""

    name: str

    def blueprints(self) -> Sequence["Blueprint"]:
        """HTTP routes, mounted when the app is built (before the agent exists)."""
        ...

    def hooks(self) -> Sequence["ProcessorHook"]:
        """Processor hooks, registered on the agent after every feature's :meth:`start`."""
        ...

    def tasks(self) -> Sequence[BackgroundTask]:
        """Background loops the server runs from after :meth:`start` until shutdown."""
        ...

    async def start(self, context: FeatureContext) -> None:
        """Connect, subscribe, rebuild state. Called once, after the agent is ready."""
        ...

    async def stop(self) -> None:
        """Release connections after the tasks ended. Must be safe when start never ran."""
        ...

    def health(self) -> FeatureHealth:
        ...


# Builds a feature from the project, or None when the project does not configure it.
FeatureFactory = Callable[[ProjectSettings], "Feature | None"]


class BaseFeature:
    """Defaults for the optional parts of :class:`Feature` (no routes, hooks, tasks)."""

    name = "feature"

    def blueprints(self) -> Sequence["Blueprint"]:
        return ()

    def hooks(self) -> Sequence["ProcessorHook"]:
        return ()

    def tasks(self) -> Sequence[BackgroundTask]:
        return ()

    async def start(self, context: FeatureContext) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> FeatureHealth:
        return FeatureHealth()
