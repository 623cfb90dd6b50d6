"""Run the HTTP server, with one or many Sanic worker processes.

The agent (model, stores, connections) is created by ``agent_factory`` in a
``before_server_start`` listener, i.e. inside each worker after it started —
never at import and never in the manager process. Sanic spawns workers that
rebuild the app through an ``AppLoader`` factory, so everything passed here
(``agent_factory``, input channels, options) must be picklable: a module-level
function or a ``functools.partial`` of one, not a lambda or closure.

Closed by default (issue #15): the management API is mounted only with
``enable_api``, and then only behind a token or a JWT secret; an open API is a
development mode (``dev_open_api``) refused on any address but loopback
(``check_api_access``).
"""
from __future__ import annotations

import inspect
import ipaddress
import logging
import os
import signal
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sanic import Sanic
from sanic.worker.loader import AppLoader
from sanic.worker.manager import WorkerManager

from bot.server.app import DEFAULT_REQUEST_MAX_SIZE, DEFAULT_RESPONSE_TIMEOUT, create_app
from bot.server.lifecycle import AgentFactory
from bot.server.metrics import prepare_multiprocess_dir, remove_multiprocess_dir
from bot.server.logging_setup import configure_logging
from bot.shared.exceptions import ConfigError
from connectors.base import InputChannel

logger = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 5005
APP_NAME = "kefu"
SHORT_TOKEN_LENGTH = 16  # below this a token is guessable enough to warn about


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def check_api_access(
    *,
    enable_api: bool,
    auth_token: str | None,
    jwt_secret: str | None,
    dev_open_api: bool,
    host: str,
    warn: bool = True,
) -> None:
    """Refuse a management API that anyone who reaches the port could use.

    ``--enable-api`` needs ``--auth-token`` or ``--jwt-secret``; without either it
    starts only with ``--dev-open-api`` on a loopback host, and says so in a warning.
    """
    if not enable_api:
        if dev_open_api and warn:
            logger.warning("--dev-open-api has no effect without --enable-api: the API is not served.")
        return
    if auth_token or jwt_secret:
        if warn and auth_token and len(auth_token) < SHORT_TOKEN_LENGTH:
            logger.warning("The API token is only %d characters long; use at least %d random characters "
                           "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))').",
                           len(auth_token), SHORT_TOKEN_LENGTH)
        return
    if not dev_open_api:
        raise ConfigError(
            "--enable-api without --auth-token or --jwt-secret would let anyone who reaches the port "
            "read transcripts, run actions and replace the model.",
            fix="pass --auth-token (or set KEFU_AUTH_TOKEN) to require 'Authorization: Bearer <token>', "
                "or --jwt-secret (or KEFU_JWT_SECRET) to require a signed JWT; "
                "on your own machine only, --dev-open-api --host 127.0.0.1 serves the API without auth.",
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--dev-open-api serves the management API without any authentication, and --host {host} "
            "is not a loopback address.",
            fix="use --host 127.0.0.1 (or ::1, localhost) for development, or drop --dev-open-api and "
                "pass --auth-token / --jwt-secret (env KEFU_AUTH_TOKEN / KEFU_JWT_SECRET).",
        )
    if warn:
        logger.warning("DEVELOPMENT MODE: the management API on %s is open to every local user and process "
                       "without a token (--dev-open-api). Never use this on a shared or public machine.", host)


@dataclass(frozen=True)
class TlsFiles:
    """``--ssl-certificate``/``--ssl-keyfile``/``--ssl-password`` as Sanic's ``ssl`` dict."""

    certificate: str
    keyfile: str | None = None  # None: the key is in the certificate file
    password: str | None = None

    def check(self) -> None:
        """Fail in the terminal, naming the flag, rather than inside a worker."""
        for flag, path in (("--ssl-certificate", self.certificate), ("--ssl-keyfile", self.keyfile)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{flag} {path}: no such file.",
                                  fix=f"give {flag} the path of a PEM file readable by the server.")

    def as_sanic(self) -> dict[str, str]:
        ssl = {"cert": self.certificate, "key": self.keyfile or self.certificate}
        if self.password:
            ssl["password"] = self.password
        return ssl


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``create_app`` needs, as one picklable value for the workers."""

    input_channels: tuple[InputChannel, ...] = ()
    auth_token: str | None = None
    jwt_secret: str | None = None
    jwt_method: str = "HS256"
    cors_origins: str | tuple[str, ...] | None = None
    request_max_size: int = DEFAULT_REQUEST_MAX_SIZE
    response_timeout: int = DEFAULT_RESPONSE_TIMEOUT
    request_timeout: int | None = None  # None: Sanic's default (60 s)
    enable_api: bool = False
    allow_token_in_url: bool = False
    app_name: str = APP_NAME
    app_kwargs: dict[str, Any] = field(default_factory=dict)
    project_root: str | None = None
    log_level: str | None = None  # set: each worker configures logging (spawned workers don't inherit it)
    log_file: str | None = None


START_TIMEOUT_ENV = "KEFU_WORKER_START_TIMEOUT_S"  # seconds a worker may take to load before the start fails


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
        start_timeout = os.environ.get(START_TIMEOUT_ENV, "").strip()
        if start_timeout:  # Sanic's 30 s is short for a model load on a busy machine (several workers at once)
            try:
                app.manager.THRESHOLD = max(1, int(float(start_timeout) * 10))  # Sanic counts tenths of a second
            except ValueError:
                logger.warning("%s=%r is not a number of seconds; keeping Sanic's 30 s.", START_TIMEOUT_ENV,
                               start_timeout)


def build_app(agent_factory: AgentFactory, options: ServerOptions) -> Sanic:
    """The app of one worker; its agent is created when the worker starts serving.

    Features and their life cycle are composed by ``create_app`` from the server's
    feature table (``bot/server/features.py``, ``bot/server/lifecycle.py``).
    """
    if options.log_level is not None:
        configure_logging(options.log_level, options.log_file)
    cors = options.cors_origins
    extra: dict[str, Any] = {}
    if "allow_token_in_url" in inspect.signature(create_app).parameters:
        extra["allow_token_in_url"] = options.allow_token_in_url
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
        **extra,
        **options.app_kwargs,
    )
    if options.request_timeout is not None:
        app.config.REQUEST_TIMEOUT = int(options.request_timeout)
    _install_startup_shutdown_fix(app)
    return app


def serve(
    agent_factory: AgentFactory,
    host: str = "127.0.0.1",
    port: int = DEFAULT_SERVER_PORT,
    workers: int = 1,
    *,
    input_channels: tuple[InputChannel, ...] | list[InputChannel] = (),
    auth_token: str | None = None,
    jwt_secret: str | None = None,
    jwt_method: str = "HS256",
    cors_origins: str | list[str] | None = None,
    request_max_size: int = DEFAULT_REQUEST_MAX_SIZE,
    response_timeout: int = DEFAULT_RESPONSE_TIMEOUT,
    request_timeout: int | None = None,
    enable_api: bool = False,
    dev_open_api: bool = False,
    allow_token_in_url: bool = False,
    ssl: TlsFiles | dict[str, str] | None = None,
    access_log: bool = False,
    motd: bool = True,
    app_kwargs: dict[str, Any] | None = None,
    project_root: str | None = None,
    log_level: str | None = None,
    log_file: str | None = None,
) -> None:
    """Serve until interrupted. Blocks; call it from ``if __name__ == "__main__"``.

    Raises ``ConfigError`` before binding anything when the API would be open
    (see ``check_api_access``) or a TLS file is missing.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    check_api_access(enable_api=enable_api, auth_token=auth_token, jwt_secret=jwt_secret,
                     dev_open_api=dev_open_api, host=host)
    if isinstance(ssl, TlsFiles):
        ssl.check()
        ssl = ssl.as_sanic()
    if enable_api and not ssl and not is_loopback(host):
        logger.warning("The management API is served over plain HTTP on %s: its token travels in clear text. "
                       "Serve TLS (--ssl-certificate/--ssl-keyfile) or keep a TLS-terminating proxy in front.", host)
    options = ServerOptions(
        input_channels=tuple(input_channels),
        auth_token=auth_token,
        jwt_secret=jwt_secret,
        jwt_method=jwt_method,
        cors_origins=tuple(cors_origins) if isinstance(cors_origins, list) else cors_origins,
        request_max_size=request_max_size,
        response_timeout=response_timeout,
        request_timeout=request_timeout,
        enable_api=enable_api,
        allow_token_in_url=allow_token_in_url,
        app_kwargs=dict(app_kwargs or {}),
        project_root=project_root,
        log_level=log_level,
        log_file=log_file,
    )
    metrics_dir = prepare_multiprocess_dir(workers)  # several workers: one /metrics over all (docs/operations.md)
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
    scheme = "https" if ssl else "http"
    logger.info("Starting kefu on %s://%s:%s with %d worker(s); management API %s.", scheme, host, port,
                workers, "enabled" if enable_api else "off (channels only; --enable-api to serve it)")
    # Until Sanic installs its own handlers, a SIGTERM would kill this process alone and orphan the
    # workers it has already spawned: stop them first (Sanic replaces this handler once it monitors).
    signal.signal(signal.SIGTERM, _stop_children_and_exit)
    try:
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        remove_multiprocess_dir(metrics_dir)


def _stop_children_and_exit(signum: int, frame: Any) -> None:
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    raise SystemExit(128 + signum)
