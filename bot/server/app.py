"""The HTTP API: Rasa's routes and JSON shapes over a kefu ``Agent``.

``create_app`` is a factory with no module-level state, so tests can build many
apps and every Sanic worker process builds its own. The agent lives on
``app.ctx.agent`` (it may be ``None`` until a ``before_server_start`` listener
loads it, see ``bot/server/run.py``). The API's routes live in
``bot/server/routes/`` (one blueprint per resource); every error leaves through
the single handler in ``bot/web/errors.py``.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence

from sanic import Request, Sanic, response
from sanic.exceptions import PayloadTooLarge
from sanic.response import HTTPResponse

from bot.server.routes import api_blueprints
from bot.server.routes.agent import no_model_loaded
from bot.server.metrics import install_metrics
from bot.server.routes.health import create_health_blueprint, install_worker_name
from bot.server.routes.status import create_version_blueprint
from bot.shared.message import UserMessage
from bot.triggers.events import MAX_BODY_BYTES as MAX_EVENTS_BODY_BYTES
from bot.version import __version__
from bot.web.auth import AuthConfig, public
from bot.web.errors import error_to_response
from bot.web.requests import BodyLimits, loads_bounded
from connectors.base import DEFAULT_WEBHOOK_ROUTE, InputChannel, register

if TYPE_CHECKING:  # pragma: no cover
    from bot.agent import Agent
    from bot.feature import Feature
    from bot.server.lifecycle import AgentFactory
    from bot.stores.audit import AuditLog

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_MAX_SIZE = 64 * 1024 * 1024  # training payloads are YAML, not media
DEFAULT_RESPONSE_TIMEOUT = 60 * 60  # Rasa's: training over HTTP may take long

RouteHandler = Callable[[Request], Awaitable[HTTPResponse]]


async def default_root(request: Request) -> HTTPResponse:
    """Health check that also says which server and version answer."""
    return response.text(f"Hello from kefu: {__version__}")


def _unique_app_name() -> str:
    return f"kefu-{uuid.uuid4().hex[:12]}"


def configure_cors(app: Sanic, cors_origins: str | list[str] | None) -> None:
    """CORS for browsers calling the API from other sites; nothing unless origins are given.

    ``"*"`` answers ``Access-Control-Allow-Origin: *`` without credentials (browsers then
    send no cookies or Authorization they did not set themselves); credentials are allowed
    only for origins listed explicitly, which are echoed back with ``Vary: Origin``.
    """
    if not cors_origins:
        return
    allowed = [cors_origins] if isinstance(cors_origins, str) else list(cors_origins)
    listed = {origin.rstrip("/") for origin in allowed if origin != "*"}
    any_origin = "*" in allowed

    def cors_headers(origin: str | None) -> dict[str, str] | None:
        if origin is not None and origin.rstrip("/") in listed:
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                    "Vary": "Origin"}
        if any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        return None

    @app.on_request(priority=100)
    async def preflight(request: Request) -> HTTPResponse | None:
        origin = request.headers.get("Origin")
        headers = cors_headers(origin) if origin else None
        if request.method == "OPTIONS" and headers and request.headers.get("Access-Control-Request-Method"):
            headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type"
            )
            return response.empty(status=204, headers=headers)
        return None

    @app.on_response
    async def add_cors_headers(request: Request, resp: HTTPResponse) -> None:
        origin = request.headers.get("Origin")
        headers = cors_headers(origin) if origin else None
        if headers and resp is not None:
            for key, value in headers.items():
                resp.headers.setdefault(key, value)


def _too_large(path: str, limit: int) -> str:
    return (f"Request body exceeds the size limit of {limit} bytes for {path}. "
            "Fix: send less data per request (the limits are listed in docs/security.md).")


def _check_declared_size(request: Request, limit: int) -> None:
    length = request.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(_too_large(request.path, limit))


def create_app(
    agent: "Agent | None" = None,
    input_channels: Iterable[InputChannel] = (),
    auth_token: str | None = None,
    jwt_secret: str | None = None,
    jwt_method: str = "HS256",
    cors_origins: str | list[str] | None = None,
    request_max_size: int = DEFAULT_REQUEST_MAX_SIZE,
    response_timeout: int = DEFAULT_RESPONSE_TIMEOUT,
    *,
    name: str | None = None,
    enable_api: bool = True,
    webhook_route: str | None = DEFAULT_WEBHOOK_ROUTE,
    root_handler: RouteHandler | None = None,
    project_root: str | Path | None = None,
    agent_factory: "AgentFactory | None" = None,
    features: "Sequence[Feature] | None" = None,
    allow_token_in_url: bool = False,
    audit: "AuditLog | None" = None,
) -> Sanic:
    """Build the Sanic app serving the HTTP API and the input channels.

    ``root_handler`` replaces ``GET /`` (e.g. with a demo page); ``enable_api``
    False serves only ``/`` and the channel webhooks, like ``rasa run`` without
    ``--enable-api``. ``name`` must be fixed when several worker processes
    serve the same app; by default every app gets a unique name.

    Features (knowledge base, handoff, triggers, ...) come from the server's feature
    table for ``project_root`` (``bot/server/features.py``) unless ``features`` is
    given; ``agent_factory`` creates the agent when the worker starts (instead of
    ``agent``). See ``bot/server/lifecycle.py``.

    Every management route requires a credential (``auth_token``, a JWT signed with
    ``jwt_secret``) holding the route's scope (``bot/web/auth.py``); ``allow_token_in_url``
    accepts Rasa's legacy ``?token=``. ``cors_origins`` None sends no CORS headers (see
    :func:`configure_cors`). ``audit`` replaces the worker's audit log of transcript reads
    (default: ``bot/stores/audit.py`` ``create_audit_log`` from endpoints.yml ``audit:``).
    """
    app = Sanic(name or _unique_app_name(), loads=loads_bounded)
    app.config.REQUEST_MAX_SIZE = int(request_max_size)
    app.config.RESPONSE_TIMEOUT = int(response_timeout)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ctx.agent = agent
    app.ctx.auth = AuthConfig(auth_token, jwt_secret, jwt_method, allow_token_in_url)
    app.ctx.active_training_jobs = 0
    app.ctx.input_channels = []

    app.error_handler.add(Exception, error_to_response)
    configure_cors(app, cors_origins)

    # /events keeps its route's own 413 (reason payload_too_large) up to MAX_BODY_BYTES;
    # 64 KiB of slack above it, and a larger body is refused before it is read.
    body_limits = BodyLimits.for_server(int(request_max_size), events=MAX_EVENTS_BODY_BYTES + 64 * 1024)
    app.ctx.body_limits = body_limits

    @app.signal("http.routing.after")
    async def limit_body_before_reading(request: Request, **_: Any) -> None:
        # The route is known and the body not yet read: lower the stream's limit so
        # the HTTP/1 reader refuses a larger Content-Length (or chunked body) at once.
        _check_declared_size(request, body_limits.limit_for(request.path))
        stream = request.stream
        if stream is not None and hasattr(stream, "request_max_size"):
            stream.request_max_size = min(stream.request_max_size, body_limits.limit_for(request.path))

    @app.on_request(priority=90)
    async def limit_body_size(request: Request) -> None:
        # ASGI reads the body before routing; check what arrived as well.
        limit = body_limits.limit_for(request.path)
        _check_declared_size(request, limit)
        if len(request.body or b"") > limit:
            raise PayloadTooLarge(_too_large(request.path, limit))

    app.add_route(public(root_handler or default_root), "/", methods=["GET"], name="root")

    app.blueprint(create_version_blueprint())
    app.blueprint(create_health_blueprint())  # /health/live, /health/ready: probes, public
    install_worker_name(app)  # X-Kefu-Worker when KEFU_WORKER_NAME is set
    install_metrics(app)  # request timing, worker gauges, GET /metrics (metrics:read)

    async def on_new_message(message: UserMessage) -> Any:
        """What every channel calls; the agent serialises per conversation."""
        current = getattr(app.ctx, "agent", None)
        if current is None or not current.is_ready():
            raise no_model_loaded()
        return await current.handle_message(message)

    register(input_channels, app, on_new_message, webhook_route)
    if enable_api:
        for blueprint in api_blueprints():
            app.blueprint(blueprint)
    from bot.server.features import FeatureSet, build_features, project_settings
    from bot.server.lifecycle import install_lifecycle

    settings = project_settings(project_root, enable_api)
    if audit is None:
        from bot.stores.audit import create_audit_log

        audit = create_audit_log(settings.section("audit"), project_root)
    app.ctx.audit = audit
    feature_set = FeatureSet(features) if features is not None else build_features(settings)
    install_lifecycle(app, feature_set, settings, agent_factory)
    if enable_api:  # GET /openapi.json, built from this router (bot/server/openapi.py)
        from bot.server.openapi import install_openapi
        install_openapi(app)
    return app

