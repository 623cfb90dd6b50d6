"""Run the HTTP server, with one or many Sanic worker processes.

The agent (model, stores, connections) is created by ``agent_factory`` in a
``before_server_start`` listener, i.e. inside each worker after it started —
never at import and never in the manager process. Sanic spawns workers that
rebuild the app through an ``AppLoader`` factory, so everything passed here
(``agent_factory``, input channels, options) must be picklable: a module-level
function or a ``functools.partial`` of one, not a lambda or closure.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Union

from sanic import Sanic
from sanic.worker.loader import AppLoader

from bot.server.app import DEFAULT_REQUEST_MAX_SIZE, DEFAULT_RESPONSE_TIMEOUT, create_app
from connectors.base import InputChannel

if TYPE_CHECKING:  # pragma: no cover
    from bot.agent import Agent

logger = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 5005
APP_NAME = "kefu"

AgentFactory = Callable[[], Union["Agent", Awaitable["Agent"]]]


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``create_app`` needs, as one picklable value for the workers."""

    input_channels: tuple[InputChannel, ...] = ()
    auth_token: str | None = None
    jwt_secret: str | None = None
    jwt_method: str = "HS256"
    cors_origins: str | tuple[str, ...] | None = "*"
    request_max_size: int = DEFAULT_REQUEST_MAX_SIZE
    response_timeout: int = DEFAULT_RESPONSE_TIMEOUT
    enable_api: bool = True
    app_name: str = APP_NAME
    app_kwargs: dict[str, Any] = field(default_factory=dict)
    project_root: str | None = None


async def _create_agent(agent_factory: AgentFactory) -> "Agent":
    agent = agent_factory()
    if inspect.isawaitable(agent):
        agent = await agent
    return agent


async def _start_triggers(app: Sanic, project_root: str) -> None:
    """Lifecycle journeys (triggers.yml): consume behaviour events, run the scheduler."""
    import asyncio

    from bot.triggers import create_trigger_engine
    from bot.triggers.hooks import OptOutHook

    agent = app.ctx.agent
    engine = create_trigger_engine(agent, project_root, input_channels=list(app.ctx.input_channels))
    app.ctx.triggers = engine
    if engine is None:
        return
    engine.attach(agent.event_broker)
    agent.add_hook(OptOutHook(engine))
    app.ctx.triggers_stop = asyncio.Event()
    app.ctx.triggers_task = asyncio.get_running_loop().create_task(engine.run_forever(app.ctx.triggers_stop))


def _project_settings(project_root: str) -> Any:
    """The project's files as features read them (endpoints.yml of the project folder)."""
    from pathlib import Path

    from bot.feature import ProjectSettings
    from bot.shared.endpoints import load_endpoints

    root = Path(project_root)
    return ProjectSettings(root=root, endpoints=load_endpoints(root / "endpoints.yml"))


async def _start_shop_outbox(app: Sanic, project_root: str) -> None:
    """Relay the project's behaviour events (endpoints.yml `ports: outbox`) to the event broker."""
    from bot.relay import outbox_relay_for_project

    app.ctx.shop_outbox = None
    try:
        relay = outbox_relay_for_project(getattr(app.ctx.agent, "event_broker", None), _project_settings(project_root))
    except Exception:  # a bad `ports:` or `shop:` section must not stop the bot from serving
        logger.exception("Shop outbox relay not started")
        return
    if relay is not None:
        relay.start()
        app.ctx.shop_outbox = relay
        logger.info("Shop outbox relay started (every %.1fs).", relay.interval)


def _profile_provider(project_root: str, vip_lifetime_value_cents: int) -> Any:
    """The handoff's customer profiles from endpoints.yml `ports: profile`, VIP by the handoff's threshold."""
    from bot.ports import load_configured_port
    from bot.shared.exceptions import ConfigError

    try:
        port = load_configured_port(_project_settings(project_root), "profile")
    except ConfigError as e:  # handoffs go on without profiles, as when the shop is down
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


def _handoff_service(project_root: str | None, app: Sanic) -> Any:
    """Human handoff (agent API + console) when the project configures ``handoff:``."""
    if project_root is None:
        return None
    from bot.handoff import HandoffConfig, HandoffService
    from bot.handoff.api import create_handoff_blueprint
    from bot.shared.yaml_io import read_yaml_file, to_plain
    from pathlib import Path

    configured = any(
        (to_plain(read_yaml_file(p)) or {}).get("handoff") is not None
        for p in (Path(project_root) / "config.yml", Path(project_root) / "endpoints.yml")
        if p.is_file()
    )
    if not configured:
        return None
    config = HandoffConfig.from_project(project_root)
    service = HandoffService(config, profile_provider=_profile_provider(project_root, config.vip_lifetime_value_cents))
    service.register_input_channels(list(getattr(app.ctx, "input_channels", []) or []))
    app.blueprint(create_handoff_blueprint(service))
    app.ctx.handoff = service
    return service


def build_app(agent_factory: AgentFactory, options: ServerOptions) -> Sanic:
    """The app of one worker; its agent is created when the worker starts serving."""
    cors = options.cors_origins
    app = create_app(
        None,
        input_channels=options.input_channels,
        auth_token=options.auth_token,
        jwt_secret=options.jwt_secret,
        jwt_method=options.jwt_method,
        cors_origins=list(cors) if isinstance(cors, tuple) else cors,
        request_max_size=options.request_max_size,
        response_timeout=options.response_timeout,
        name=options.app_name,
        enable_api=options.enable_api,
        **options.app_kwargs,
    )

    handoff = _handoff_service(options.project_root, app)
    if options.enable_api:
        from bot.triggers.server import create_triggers_blueprint

        app.blueprint(create_triggers_blueprint(lambda request: getattr(request.app.ctx, "triggers", None)))
    app.ctx.triggers = None

    @app.before_server_start
    async def load_agent(app: Sanic) -> None:
        app.ctx.agent = await _create_agent(agent_factory)
        logger.info("Agent ready (model: %s).", getattr(app.ctx.agent, "model_path", None))
        if handoff is not None:
            from bot.handoff import HandoffHook

            handoff.bind_agent(app.ctx.agent)
            app.ctx.agent.add_hook(HandoffHook(handoff))
            await handoff.start()
        if options.project_root is not None:
            await _start_triggers(app, options.project_root)
            await _start_shop_outbox(app, options.project_root)  # after triggers subscribed

    @app.after_server_stop
    async def close_agent(app: Sanic) -> None:
        relay = getattr(app.ctx, "shop_outbox", None)
        if relay is not None:
            await relay.stop()
        engine = getattr(app.ctx, "triggers", None)
        if engine is not None:
            app.ctx.triggers_stop.set()
            try:
                await app.ctx.triggers_task
            finally:
                await engine.queue.close()
                await engine.store.close()
        for component in [handoff, *getattr(app.ctx, "input_channels", [])]:
            close_fn = getattr(component, "close", None)
            if close_fn is not None:
                try:
                    result = close_fn()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # closing must not hide the agent's own shutdown
                    logger.exception("Closing %s failed", type(component).__name__)
        agent = getattr(app.ctx, "agent", None)
        close = getattr(agent, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result

    return app


def serve(
    agent_factory: AgentFactory,
    host: str = "0.0.0.0",
    port: int = DEFAULT_SERVER_PORT,
    workers: int = 1,
    *,
    input_channels: tuple[InputChannel, ...] | list[InputChannel] = (),
    auth_token: str | None = None,
    jwt_secret: str | None = None,
    jwt_method: str = "HS256",
    cors_origins: str | list[str] | None = "*",
    request_max_size: int = DEFAULT_REQUEST_MAX_SIZE,
    response_timeout: int = DEFAULT_RESPONSE_TIMEOUT,
    enable_api: bool = True,
    ssl: Any = None,
    access_log: bool = False,
    motd: bool = True,
    app_kwargs: dict[str, Any] | None = None,
    project_root: str | None = None,
) -> None:
    """Serve until interrupted. Blocks; call it from ``if __name__ == "__main__"``."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    options = ServerOptions(
        input_channels=tuple(input_channels),
        auth_token=auth_token,
        jwt_secret=jwt_secret,
        jwt_method=jwt_method,
        cors_origins=tuple(cors_origins) if isinstance(cors_origins, list) else cors_origins,
        request_max_size=request_max_size,
        response_timeout=response_timeout,
        enable_api=enable_api,
        app_kwargs=dict(app_kwargs or {}),
        project_root=project_root,
    )
    loader = AppLoader(factory=partial(build_app, agent_factory, options))
    app = loader.load()
    app.prepare(
        host=host,
        port=port,
        workers=workers,
        ssl=ssl,
        access_log=access_log,
        motd=motd,
    )
    logger.info("Starting kefu on http://%s:%s with %d worker(s).", host, port, workers)
    Sanic.serve(primary=app, app_loader=loader)
