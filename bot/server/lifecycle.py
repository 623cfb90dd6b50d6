"""A worker's life cycle: agent, output channels and features, started and stopped in one place.

``before_server_start``: create the agent (when the app was given a factory rather
than an agent), build the output-channel registry from the mounted input channels,
check or upgrade the SQL tracker store's and audit log's schemas
(``bot.stores.migrate.prepare_stores``: in ``KEFU_DB_MIGRATE=check`` mode an
out-of-date database stops the start, naming the command), start the features (then
their hooks and tasks), then warm the worker up
(``Agent.warm_up``: store and action-server connections; the model warmed itself
when it was loaded) so the first shopper after start is answered at full speed.
``after_server_stop``: stop the
features, close the channels and the agent — the last two only when this app
created the agent (an agent passed in belongs to the caller).
"""
from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Union

from sanic import Sanic

from bot.feature import ProjectSettings
from bot.server.features import FeatureSet
from bot.shared.outputs import OutputRegistry
from bot.stores.migrate import prepare_stores

if TYPE_CHECKING:  # pragma: no cover
    from bot.agent import Agent

logger = logging.getLogger(__name__)

AgentFactory = Callable[[], Union["Agent", Awaitable["Agent"]]]


async def create_agent(agent_factory: AgentFactory) -> "Agent":
    agent = agent_factory()
    if inspect.isawaitable(agent):
        agent = await agent
    return agent


async def _close(component: Any) -> None:
    close = getattr(component, "close", None)  # channels and agents may hold connections
    if close is None:
        return
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception:  # closing one must not hide the others' shutdown
        logger.exception("Closing %s failed", type(component).__name__)


def install_lifecycle(app: Sanic, features: FeatureSet, settings: ProjectSettings,
                      agent_factory: AgentFactory | None = None) -> None:
    """Mount the features' routes now; start and stop everything with the server."""
    for blueprint in features.blueprints():
        app.blueprint(blueprint)
    app.ctx.features = features
    if not hasattr(app.ctx, "audit"):
        app.ctx.audit = None
    app.ctx.outputs = OutputRegistry()

    @app.before_server_start
    async def start_worker(app: Sanic) -> None:
        if agent_factory is not None:
            app.ctx.agent = await create_agent(agent_factory)
            logger.info("Agent ready (model: %s).", app.ctx.agent.model_path)
        app.ctx.outputs = OutputRegistry.from_channels(app.ctx.input_channels)
        # SQL schemas checked/upgraded now: KEFU_DB_MIGRATE=check on an old database stops the start here.
        await prepare_stores([getattr(app.ctx.agent, "tracker_store", None), app.ctx.audit])
        if app.ctx.agent is not None:
            await features.start(app.ctx.agent, app.ctx.outputs, settings, audit=app.ctx.audit)
            warm_up = getattr(app.ctx.agent, "warm_up", None)
            if warm_up is not None:
                await warm_up()

    @app.after_server_stop
    async def stop_worker(app: Sanic) -> None:
        await features.stop()
        if getattr(app.ctx, "audit", None) is not None:
            await _close(app.ctx.audit)
        if agent_factory is None:
            return
        for channel in app.ctx.input_channels:
            await _close(channel)
        if app.ctx.agent is not None:
            await _close(app.ctx.agent)
