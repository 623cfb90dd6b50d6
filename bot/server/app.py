"""The HTTP API: Rasa's routes and JSON shapes over a kefu ``Agent``.

``create_app`` is a factory with no module-level state, so tests can build many
apps and every Sanic worker process builds its own. The agent lives on
``app.ctx.agent`` (it may be ``None`` until a ``before_server_start`` listener
loads it, see ``bot/server/run.py``). Every error leaves through the single
handler in ``bot/server/errors.py``.
"""
from __future__ import annotations

import inspect
import logging
import os
import uuid
from functools import reduce
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence

from sanic import Request, Sanic, response
from sanic.exceptions import PayloadTooLarge
from sanic.response import HTTPResponse

from bot.server.auth import AuthConfig, requires_auth
from bot.server.errors import ErrorResponse, bad_request, error_to_response, no_model_loaded
from bot.server.utils import bool_arg, float_arg, json_body
from bot.shared.events import BotUttered, Event
from bot.shared.exceptions import InvalidRequest
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage
from bot.shared.tracker import EventVerbosity
from bot.shared.yaml_io import dump_yaml, read_yaml
from bot.version import RASA_COMPAT_VERSION, __version__
from connectors.base import DEFAULT_WEBHOOK_ROUTE, InputChannel, register

if TYPE_CHECKING:  # pragma: no cover
    from bot.agent import Agent
    from bot.feature import Feature
    from bot.server.lifecycle import AgentFactory

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_MAX_SIZE = 64 * 1024 * 1024  # training payloads are YAML, not media
DEFAULT_RESPONSE_TIMEOUT = 60 * 60  # Rasa's: training over HTTP may take long
OUTPUT_CHANNEL_QUERY_KEY = "output_channel"
USE_LATEST_INPUT_CHANNEL_AS_OUTPUT_CHANNEL = "latest"
EXECUTE_SIDE_EFFECTS_QUERY_KEY = "execute_side_effects"
JSON_CONTENT_TYPE = "application/json"
YAML_CONTENT_TYPE = "application/x-yaml"

RouteHandler = Callable[[Request], Awaitable[HTTPResponse]]


# --- agent access -----------------------------------------------------------------------
def get_agent(request: Request, require_ready: bool = True) -> "Agent":
    """The app's agent; 409 like Rasa when there is none or it has no model."""
    agent = getattr(request.app.ctx, "agent", None)
    if agent is None or (require_ready and not agent.is_ready()):
        raise no_model_loaded()
    return agent


def event_verbosity_parameter(request: Request, default: EventVerbosity) -> EventVerbosity:
    """``?include_events=ALL|APPLIED|AFTER_RESTART|NONE`` (case-insensitive)."""
    value = request.args.get("include_events", default.name).upper()
    try:
        return EventVerbosity[value]
    except KeyError as e:
        valid = ", ".join(v.name for v in EventVerbosity)
        raise bad_request(
            f"Invalid parameter value for 'include_events'. Should be one of {valid}.",
            "include_events",
            "query",
        ) from e


def events_from_body(data: Any) -> list[Event]:
    """Rasa event dicts (one or a list) to events; 400 naming the bad one."""
    items = data if isinstance(data, list) else [data]
    events: list[Event] = []
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(data, list) else ""
        label = f"Event {where}" if where else "The event"
        field = f"{where}.event" if where else "event"
        if not isinstance(item, dict):
            raise bad_request(
                f"{label} must be a JSON object like "
                '{"event": "slot", "name": "email", "value": "a@b.c"}, '
                f"got {type(item).__name__}.",
                where or "event",
            )
        if "event" not in item:
            raise bad_request(
                f"{label} has no 'event' key naming its type "
                "(e.g. 'user', 'bot', 'action', 'slot').",
                field,
            )
        try:
            event = Event.from_parameters(item)
        except InvalidRequest as e:
            raise bad_request(str(e), field) from e
        if event is not None:
            events.append(event)
    if not events:
        raise bad_request("Couldn't extract a proper event from the request body.", "")
    return events


def get_output_channel(request: Request, tracker: Any) -> OutputChannel:
    """Rasa's ``_get_output_channel``: ``?output_channel=<name>|latest`` or a collector."""
    requested = request.args.get(OUTPUT_CHANNEL_QUERY_KEY)
    if tracker is not None and requested == USE_LATEST_INPUT_CHANNEL_AS_OUTPUT_CHANNEL:
        requested = tracker.get_latest_input_channel()
    channels: list[InputChannel] = getattr(request.app.ctx, "input_channels", None) or []
    matching = [c for c in channels if c.name() == requested]
    return reduce(
        lambda so_far, channel: channel.get_output_channel() or so_far,
        matching,
        CollectingOutputChannel(),
    )


def _tracker_state(tracker: Any, verbosity: EventVerbosity) -> Any:
    return tracker.current_state(verbosity) if hasattr(tracker, "current_state") else tracker


async def _call_with_supported_kwargs(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Pass only the keyword arguments ``func`` declares (optional extensions)."""
    parameters = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    result = func(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _is_yaml_request(request: Request) -> bool:
    content_type = (request.content_type or "").lower()
    return "json" not in content_type


def _accepts_json(request: Request) -> bool:
    return JSON_CONTENT_TYPE in (request.headers.get("Accept") or "")


# --- app factory --------------------------------------------------------------------------
async def default_root(request: Request) -> HTTPResponse:
    """Health check that also says which server and version answer."""
    return response.text(f"Hello from kefu: {__version__}")


def _unique_app_name() -> str:
    return f"kefu-{uuid.uuid4().hex[:12]}"


def configure_cors(app: Sanic, cors_origins: str | list[str] | None) -> None:
    """Minimal CORS: allow-listed origins get the headers and preflight answers."""
    if not cors_origins:
        return
    allowed = [cors_origins] if isinstance(cors_origins, str) else list(cors_origins)

    def allow_origin(origin: str | None) -> str | None:
        if origin is None:
            return None
        if "*" in allowed:
            return origin
        return origin if origin in allowed else None

    def cors_headers(origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    @app.on_request(priority=100)
    async def preflight(request: Request) -> HTTPResponse | None:
        origin = allow_origin(request.headers.get("Origin"))
        if (
            request.method == "OPTIONS"
            and origin
            and request.headers.get("Access-Control-Request-Method")
        ):
            headers = cors_headers(origin)
            headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type"
            )
            return response.empty(status=204, headers=headers)
        return None

    @app.on_response
    async def add_cors_headers(request: Request, resp: HTTPResponse) -> None:
        origin = allow_origin(request.headers.get("Origin"))
        if origin and resp is not None:
            for key, value in cors_headers(origin).items():
                resp.headers.setdefault(key, value)


def create_app(
    agent: "Agent | None" = None,
    input_channels: Iterable[InputChannel] = (),
    auth_token: str | None = None,
    jwt_secret: str | None = None,
    jwt_method: str = "HS256",
    cors_origins: str | list[str] | None = "*",
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
    """
    app = Sanic(name or _unique_app_name())
    app.config.REQUEST_MAX_SIZE = int(request_max_size)
    app.config.RESPONSE_TIMEOUT = int(response_timeout)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ctx.agent = agent
    app.ctx.auth = AuthConfig(auth_token, jwt_secret, jwt_method)
    app.ctx.active_training_jobs = 0
    app.ctx.input_channels = []

    app.error_handler.add(Exception, error_to_response)
    configure_cors(app, cors_origins)

    @app.on_request(priority=90)
    async def limit_body_size(request: Request) -> None:
        # The HTTP/1 server enforces REQUEST_MAX_SIZE while reading; ASGI does not.
        length = request.headers.get("Content-Length")
        too_big = length is not None and length.isdigit() and int(length) > request_max_size
        if too_big or len(request.body or b"") > request_max_size:
            raise PayloadTooLarge(
                f"Request body exceeds the size limit of {request_max_size} bytes."
            )

    app.add_route(root_handler or default_root, "/", methods=["GET"], name="root")

    @app.get("/version")
    async def version(request: Request) -> HTTPResponse:
        return response.json(
            {
                "version": __version__,
                "minimum_compatible_version": __version__,
                "rasa_version": RASA_COMPAT_VERSION,
            }
        )

    async def on_new_message(message: UserMessage) -> Any:
        """What every channel calls; the agent serialises per conversation."""
        current = getattr(app.ctx, "agent", None)
        if current is None or not current.is_ready():
            raise no_model_loaded()
        return await current.handle_message(message)

    register(input_channels, app, on_new_message, webhook_route)
    if enable_api:
        add_api_routes(app)
    from bot.server.features import FeatureSet, build_features, project_settings
    from bot.server.lifecycle import install_lifecycle

    settings = project_settings(project_root, enable_api)
    feature_set = FeatureSet(features) if features is not None else build_features(settings)
    install_lifecycle(app, feature_set, settings, agent_factory)
    return app


def add_api_routes(app: Sanic) -> None:
    """Rasa's ``--enable-api`` routes, all behind ``requires_auth``."""

    @app.get("/status")
    @requires_auth
    async def status(request: Request) -> HTTPResponse:
        agent = get_agent(request)
        model_path = agent.model_path
        return response.json(
            {
                "model_file": os.path.basename(str(model_path).rstrip("/")) if model_path else None,
                "model_path": model_path,
                "model_id": agent.model_id,
                "fingerprint": agent.fingerprint or {},
                "num_active_training_jobs": request.app.ctx.active_training_jobs,
            }
        )

    @app.post("/model/parse")
    @requires_auth
    async def parse(request: Request) -> HTTPResponse:
        data = json_body(request, dict)
        text = data.get("text")
        if isinstance(text, list) and text and isinstance(text[0], str):
            text = text[0]  # Rasa's NoEmulator accepts ["text"]
        if not isinstance(text, str):
            raise bad_request(
                "No text message defined in request body. Add text message to the "
                'request body, e.g. {"text": "hello"}, to obtain the intent and '
                "extracted entities.",
                "text",
            )
        agent = get_agent(request)
        result = await agent.parse_message(text)
        if data.get("message_id") is not None:
            result = {**result, "message_id": data["message_id"]}
        return response.json(result)

    @app.post("/model/test/intents")
    @requires_auth
    async def test_intents(request: Request) -> HTTPResponse:
        """Rasa's NLU evaluation over HTTP: the body is Rasa YAML NLU data."""
        import asyncio

        from bot.nlu.evaluation import evaluate_nlu_yaml

        body = request.body.decode("utf-8", errors="replace") if request.body else ""
        if not body.strip():
            raise bad_request("The request body must be NLU training data in Rasa YAML.", "")
        agent = get_agent(request)
        processor = agent.processor
        if processor is None:
            raise no_model_loaded()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, evaluate_nlu_yaml, processor._parse_sync, body)
        except ValueError as e:  # TrainingDataError / YamlError: a bad request, with file and line
            raise bad_request(str(e), "") from e
        return response.json(result)

    @app.get("/conversations/<conversation_id:path>/tracker")
    @requires_auth
    async def retrieve_tracker(request: Request, conversation_id: str) -> HTTPResponse:
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        until = float_arg(request, "until")
        agent = get_agent(request)
        tracker = await agent.get_tracker(conversation_id)
        if until is not None:
            tracker = tracker.travel_back_in_time(until)
        return response.json(tracker.current_state(verbosity))

    @app.post("/conversations/<conversation_id:path>/tracker/events")
    @requires_auth
    async def append_events(request: Request, conversation_id: str) -> HTTPResponse:
        events = events_from_body(json_body(request, (dict, list)))
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.append_events(conversation_id, events)
        if bool_arg(request, EXECUTE_SIDE_EFFECTS_QUERY_KEY, False):
            output_channel = get_output_channel(request, tracker)
            for event in events:
                if isinstance(event, BotUttered):
                    await output_channel.send_response(conversation_id, event.message())
        return response.json(tracker.current_state(verbosity))

    @app.put("/conversations/<conversation_id:path>/tracker/events")
    @requires_auth
    async def replace_events(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, (dict, list))
        events = events_from_body(data) if data != [] else []
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.replace_events(conversation_id, events)
        return response.json(tracker.current_state(verbosity))

    @app.post("/conversations/<conversation_id:path>/messages")
    @requires_auth
    async def add_message(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        sender = data.get("sender")
        if sender != "user":
            raise bad_request(
                "Currently, only user messages can be passed to this endpoint. "
                f"Messages of sender '{sender}' cannot be handled.",
                "sender",
            )
        text = data.get("text")
        if not isinstance(text, str):
            raise bad_request("The message needs a 'text' string.", "text")
        parse_data = data.get("parse_data")
        if parse_data is not None and not isinstance(parse_data, dict):
            raise bad_request("'parse_data' must be a JSON object (a parse result).", "parse_data")
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        message = UserMessage(
            text,
            None,
            conversation_id,
            parse_data,
            input_channel=data.get("input_channel"),
            message_id=data.get("message_id"),
            metadata=data.get("metadata"),
        )
        log_message = getattr(agent, "log_message", None)
        if log_message is not None:
            tracker = await log_message(message)
        else:
            # Agents without log_message: parse, then append the user event.
            if parse_data is None:
                parse_data = await agent.parse_message(message.text or "")
            event = Event.from_parameters(
                {
                    "event": "user",
                    "text": message.text,
                    "parse_data": parse_data,
                    "input_channel": message.input_channel,
                    "message_id": message.message_id,
                    "metadata": message.metadata,
                }
            )
            tracker = await agent.append_events(conversation_id, [event])
        return response.json(tracker.current_state(verbosity))

    @app.post("/conversations/<conversation_id:path>/trigger_intent")
    @requires_auth
    async def trigger_intent(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        intent = data.get("name")
        if not intent or not isinstance(intent, str):
            raise bad_request("Name of the intent not provided in request body.", "name")
        entities = data.get("entities") or {}
        if not isinstance(entities, dict):
            raise bad_request(
                "'entities' must be a JSON object mapping entity names to values.", "entities"
            )
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        domain = agent.domain
        if domain is not None and intent not in domain.intents:
            raise ErrorResponse(
                HTTPStatus.NOT_FOUND,
                "NotFound",
                f"The intent {intent} does not exist in the domain.",
            )
        tracker = await agent.get_tracker(conversation_id)
        output_channel = get_output_channel(request, tracker)
        tracker = await agent.trigger_intent(conversation_id, intent, entities, output_channel)
        body: dict[str, Any] = {"tracker": tracker.current_state(verbosity)}
        if isinstance(output_channel, CollectingOutputChannel):
            body["messages"] = output_channel.messages
        return response.json(body)

    @app.post("/conversations/<conversation_id:path>/execute")
    @requires_auth
    async def execute_action(request: Request, conversation_id: str) -> HTTPResponse:
        data = json_body(request, dict)
        action = data.get("name")
        if not action or not isinstance(action, str):
            raise bad_request("Name of the action not provided in request body.", "name")
        confidence = data.get("confidence")
        if confidence is not None and not isinstance(confidence, (int, float)):
            raise bad_request("'confidence' must be a number.", "confidence")
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        tracker = await agent.get_tracker(conversation_id)
        output_channel = get_output_channel(request, tracker)
        tracker = await agent.execute_action(
            conversation_id, action, output_channel, data.get("policy"), confidence
        )
        body: dict[str, Any] = {"tracker": tracker.current_state(verbosity)}
        if isinstance(output_channel, CollectingOutputChannel):
            body["messages"] = output_channel.messages
        return response.json(body)

    @app.post("/conversations/<conversation_id:path>/predict")
    @requires_auth
    async def predict(request: Request, conversation_id: str) -> HTTPResponse:
        verbosity = event_verbosity_parameter(request, EventVerbosity.AFTER_RESTART)
        agent = get_agent(request)
        result = dict(await agent.predict_next(conversation_id))
        result["scores"] = sorted(
            result.get("scores") or [], key=lambda s: (-s["score"], s["action"])
        )
        if "tracker" in result:
            result["tracker"] = _tracker_state(result["tracker"], verbosity)
        return response.json(result)

    @app.put("/model")
    @requires_auth
    async def load_model(request: Request) -> HTTPResponse:
        data = json_body(request, dict)
        model_file = data.get("model_file")
        if not model_file or not isinstance(model_file, str):
            unsupported = [k for k in ("model_server", "remote_storage") if k in data]
            hint = (
                f" ({', '.join(unsupported)} is not supported by kefu)" if unsupported else ""
            )
            raise bad_request(
                f"No path to a model file defined in the request body{hint}. "
                'Fix: send {"model_file": "models/<name>.tar.gz"}.',
                "model_file",
            )
        agent = get_agent(request, require_ready=False)
        await agent.load_model(model_file)
        logger.info("Loaded model '%s' over HTTP.", model_file)
        return response.empty(status=204)

    @app.post("/model/train")
    @requires_auth
    async def train(request: Request) -> HTTPResponse:
        if not request.body:
            raise bad_request(
                "You must provide training data in the request body in order to train "
                "your model (YAML with config, domain and data, Content-Type: "
                f"{YAML_CONTENT_TYPE}).",
                "",
            )
        payload: dict[str, Any] | bytes
        if _is_yaml_request(request):
            payload = request.body
            # Validate early so a YAML typo is a 400 naming the line, not a 500.
            parsed = read_yaml(request.body.decode("utf-8", errors="replace"), "<request body>")
            if not isinstance(parsed, dict):
                raise bad_request(
                    "The request body must be a YAML mapping with keys like "
                    "'pipeline', 'policies', 'intents', 'nlu', 'stories', 'rules'.",
                    "",
                )
        else:
            payload = json_body(request, dict)
        agent = get_agent(request, require_ready=False)
        request.app.ctx.active_training_jobs += 1
        try:
            model_path = await _call_with_supported_kwargs(
                agent.train,
                payload,
                force_training=bool_arg(request, "force_training", False),
                save_to_default_model_directory=bool_arg(
                    request, "save_to_default_model_directory", True
                ),
            )
        finally:
            request.app.ctx.active_training_jobs -= 1
        if not model_path:
            raise ErrorResponse(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "TrainingError",
                "Ran training, but it finished without a trained model.",
            )
        path = Path(str(model_path))
        filename = path.name
        if path.is_file() and not _accepts_json(request):
            # Rasa answers with the archive itself.
            return await response.file(path, filename=filename, headers={"filename": filename})
        return response.json({"model": str(path)}, headers={"filename": filename})

    @app.get("/domain")
    @requires_auth
    async def get_domain(request: Request) -> HTTPResponse:
        agent = get_agent(request)
        if agent.domain is None:
            raise no_model_loaded()
        accepts = request.headers.get("Accept") or JSON_CONTENT_TYPE
        if accepts.endswith("json") or "*/*" in accepts:
            return response.json(agent.domain.as_dict())
        if accepts.endswith("yml") or accepts.endswith("yaml"):
            as_yaml = getattr(agent.domain, "as_yaml", None)
            text = as_yaml() if as_yaml else dump_yaml(agent.domain.as_dict())
            return response.text(text, content_type=YAML_CONTENT_TYPE)
        raise ErrorResponse(
            HTTPStatus.NOT_ACCEPTABLE,
            "NotAcceptable",
            'Invalid Accept header. Domain can be provided as json ("Accept: '
            f'{JSON_CONTENT_TYPE}") or yml ("Accept: {YAML_CONTENT_TYPE}").',
        )
