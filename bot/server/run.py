"""Run the HTTP server, with one or many Sanic worker processes.

The agent (model, stores, connections) is created by ``agent_factory`` in a
``before_server_start`` listener, i.e. inside each worker after it started —
never at import and never in the manager process. Sanic spawns workers that
rebuild the app through an ``AppLoader`` factory, so everything passed here
(``agent_factory``, input channels, options) must be picklable: a module-level
function or a ``functools.partial`` of one, not a lambda or closure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sanic import Sanic
from sanic.worker.loader import AppLoader
from sanic.worker.manager import WorkerManager

from bot.server.app import DEFAULT_REQUEST_MAX_SIZE, DEFAULT_RESPONSE_TIMEOUT, create_app
from bot.server.lifecycle import AgentFactory
from connectors.base import InputChannel

logger = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 5005
APP_NAME = "kefu"


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


def _wait_for_ack_or_shutdown(manager: WorkerManager) -> None:
    """Sanic's ``WorkerManager.wait_for_ack``, ending when a stop signal arrives meanwhile.

    Sanic 25.12 re-queues the shutdown message it gets while waiting for the workers'
    start-up acknowledgements and loops on it forever: a SIGTERM during start-up (a
    container stop, a rolling update) left the main process spinning until SIGKILL
    (sanic-org/sanic#2997). Here the message ends the wait and is left for
    ``monitor()``, whose loop then stops the workers as on any shutdown.
    """
    misses = 0
    while not manager._all_workers_ack():
        if manager.monitor_subscriber.poll(0.1):
            message = manager.monitor_subscriber.recv()
            if not message:  # shutdown_signal's None (SIGTERM/SIGINT): stop waiting
                manager.monitor_publisher.send(message)
                return
            if message == "__TERMINATE_EARLY__":  # a worker died during start-up
                logger.error("A worker stopped during start-up; shutting down. See the worker's error above.")
                manager.kill()
            manager.monitor_publisher.send(message)
            continue
        misses += 1
        if misses > manager.THRESHOLD:
            logger.error("Not all workers started within %.0fs; shutting down.", manager.THRESHOLD / 10)
            manager.kill()


def _install_startup_shutdown_fix(app: Sanic) -> None:
    @app.main_process_ready
    async def _patch_manager(app: Sanic) -> None:
        app.manager.wait_for_ack = partial(_wait_for_ack_or_shutdown, app.manager)  # type: ignore[method-assign]


def build_app(agent_factory: AgentFactory, options: ServerOptions) -> Sanic:
    """The app of one worker; its agent is created when the worker starts serving.

    Features and their life cycle are composed by ``create_app`` from the server's
    feature table (``bot/server/features.py``, ``bot/server/lifecycle.py``).
    """
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
        project_root=options.project_root,
        agent_factory=agent_factory,
        **options.app_kwargs,
    )
    _install_startup_shutdown_fix(app)
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
