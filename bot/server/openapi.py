"""``GET /openapi.json``: an OpenAPI 3.1 description of every route this app mounts.

The document is built from the app's router on the first request (when every
blueprint — API, channels, features — is mounted and the router finalised), so it
cannot drift from what the server really serves: a route nobody documented still
appears, with its methods, path parameters, the generic error responses and the
scope its handler declares (``requires_scope`` records it on the handler; it is read
defensively, so an undeclared route says ``x-kefu-access: undeclared``). The table
:data:`OPERATIONS` adds request bodies and success responses for the main routes; a
test fails when a row names a route the app does not mount.

The route is public: it describes, it grants nothing. ``sanic-ext`` was not used: its
OpenAPI extension also installs CORS, OPTIONS and HEAD handlers and request
injection, which would change what the server answers.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Iterable, Mapping

from sanic import Request, Sanic, response
from sanic.response import HTTPResponse

from bot.version import __version__
from bot.web.errors import ERROR_BODY_SCHEMA

logger = logging.getLogger(__name__)

__all__ = ["OPENAPI_ROUTE", "OPERATIONS", "Operation", "build_document", "install_openapi"]

OPENAPI_ROUTE = "/openapi.json"
ACCESS_ATTRIBUTE = "__kefu_access__"  # bot/web/auth.py's requires_scope / public marker
PUBLIC = "public"
CHANNEL_BLUEPRINT_PREFIX = "custom_webhook_"  # connectors/base.py InputChannel.blueprint_name

# Errors any JSON route may answer (all with the body of bot/web/errors.py).
ERROR_STATUSES = (400, 404, 409, 413, 422, 429, 503)
AUTH_STATUSES = (401, 403)

_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::([^>]+))?>")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Mapping[str, Any] | None = None, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema or {})}}}


def _text(description: str = "OK", media: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _body(schema: Mapping[str, Any], media: str = "application/json", required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {media: {"schema": dict(schema)}}}


def _query(name: str, schema: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": dict(schema), "description": description}


INCLUDE_EVENTS = _query("include_events", {"type": "string", "enum": ["ALL", "APPLIED", "AFTER_RESTART", "NONE"]},
                        "Which tracker events to return (case-insensitive).")
OUTPUT_CHANNEL = _query("output_channel", {"type": "string"}, "A channel name or 'latest' to send bot messages there.")

SCHEMAS: dict[str, Any] = {
    "Error": ERROR_BODY_SCHEMA,
    "Tracker": {"type": "object", "required": ["sender_id"],
                "properties": {"sender_id": {"type": "string"}, "slots": {"type": "object"},
                               "latest_message": {"type": ["object", "null"]},
                               "events": {"type": ["array", "null"], "items": {"type": "object"}},
                               "paused": {"type": "boolean"}, "latest_action_name": {"type": ["string", "null"]}}},
    "Event": {"type": "object", "required": ["event"],
              "properties": {"event": {"type": "string", "description": "user, bot, action, slot, ..."},
                             "timestamp": {"type": "number"}},
              "description": "A Rasa tracker event, e.g. {\"event\": \"slot\", \"name\": \"email\", \"value\": \"a@b.c\"}."},
    "ParseResult": {"type": "object", "required": ["text", "intent", "entities"],
                    "properties": {"text": {"type": "string"}, "intent": {"type": ["object", "null"]},
                                   "entities": {"type": "array", "items": {"type": "object"}},
                                   "intent_ranking": {"type": "array", "items": {"type": "object"}}}},
    "BotMessage": {"type": "object", "description": "A Rasa REST message (text, buttons, image, custom, ...).",
                   "properties": {"recipient_id": {"type": "string"}, "text": {"type": "string"},
                                  "buttons": {"type": "array", "items": {"type": "object"}}}},
    "TrackerWithMessages": {"type": "object", "required": ["tracker"],
                            "properties": {"tracker": _ref("Tracker"),
                                           "messages": {"type": "array", "items": _ref("BotMessage")}}},
    "KnowledgeEntry": {"type": "object", "required": ["questions", "answers"],
                       "properties": {"id": {"type": "string"}, "category": {"type": "string"},
                                      "questions": {"type": "object",
                                                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                                                    "description": "Phrasings per language, e.g. {\"zh\": [...], \"en\": [...]}"},
                                      "answers": {"type": "object", "description": "An answer per language (text or {text, buttons, links, images})."},
                                      "tags": {"type": "array", "items": {"type": "string"}},
                                      "valid_from": {"type": ["string", "null"]}, "valid_until": {"type": ["string", "null"]}}},
    "BehaviourEvent": {"type": "object", "required": ["customer_id"],
                       "properties": {"type": {"type": "string"}, "event": {"type": "string"},
                                      "customer_id": {"type": "string"}, "id": {"type": "string"},
                                      "timestamp": {"type": ["number", "string"]}, "properties": {"type": "object"},
                                      "profile": {"type": "object"}, "sender_id": {"type": "string"}}},
}


@dataclass(frozen=True)
class Operation:
    """What the router cannot tell about one route: its body, success answers, query."""

    summary: str
    request_body: Mapping[str, Any] | None = None
    responses: Mapping[int, Mapping[str, Any]] = field(default_factory=lambda: {200: _json()})
    query: tuple[Mapping[str, Any], ...] = ()


_TRACKER_OK = {200: _json(_ref("Tracker"))}
_WITH_MESSAGES_OK = {200: _json(_ref("TrackerWithMessages"))}
_EVENTS_BODY = _body({"oneOf": [_ref("Event"), {"type": "array", "items": _ref("Event")}]})
_WECHAT_QUERY = tuple(_query(n, {"type": "string"}) for n in ("signature", "timestamp", "nonce"))

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/"): Operation("Health check: the server and its version.", responses={200: _text(media="*/*")}),
    ("GET", OPENAPI_ROUTE): Operation("This document.", responses={200: _json({"type": "object"})}),
    ("GET", "/version"): Operation("kefu's version and the Rasa version it is compatible with.", responses={
        200: _json({"type": "object", "required": ["version"], "properties": {
            "version": {"type": "string"}, "minimum_compatible_version": {"type": "string"},
            "rasa_version": {"type": "string"}}})}),
    ("GET", "/status"): Operation("The loaded model.", responses={200: _json({"type": "object", "properties": {
        "model_file": {"type": ["string", "null"]}, "model_id": {"type": ["string", "null"]},
        "fingerprint": {"type": "object"}, "num_active_training_jobs": {"type": "integer"}}})}),
    ("GET", "/domain"): Operation("The domain, as JSON or YAML (Accept header).", responses={
        200: {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}},
                                               "application/x-yaml": {"schema": {"type": "string"}}}},
        406: _json(_ref("Error"), "Accept names neither JSON nor YAML")}),
    ("POST", "/model/parse"): Operation(
        "Intent and entities of a text.",
        _body({"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string"}, "message_id": {"type": "string"}}}),
        {200: _json(_ref("ParseResult"))}),
    ("POST", "/model/test/intents"): Operation(
        "Evaluate the NLU model on Rasa YAML NLU data.", _body({"type": "string"}, "application/x-yaml"),
        {200: _json({"type": "object"})}),
    ("PUT", "/model"): Operation(
        "Load (activate) a model archive.",
        _body({"type": "object", "required": ["model_file"], "properties": {"model_file": {"type": "string"}}}),
        {204: {"description": "Loaded"}}),
    ("POST", "/model/train"): Operation(
        "Train a model from YAML (config, domain and data in one mapping) or the same as JSON.",
        {"required": True, "content": {"application/x-yaml": {"schema": {"type": "string"}},
                                       "application/json": {"schema": {"type": "object"}}}},
        {200: {"description": "The archive (or {\"model\": path} with Accept: application/json)",
               "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}},
                           "application/json": {"schema": {"type": "object", "properties": {"model": {"type": "string"}}}}}}},
        (_query("force_training", {"type": "boolean"}), _query("save_to_default_model_directory", {"type": "boolean"}))),
    ("GET", "/conversations/{conversation_id}/tracker"): Operation(
        "A conversation's tracker (audited read).", responses=_TRACKER_OK,
        query=(INCLUDE_EVENTS, _query("until", {"type": "number"}, "A UNIX timestamp: the tracker as it was then."))),
    ("POST", "/conversations/{conversation_id}/tracker/events"): Operation(
        "Append events.", _EVENTS_BODY, _TRACKER_OK,
        (INCLUDE_EVENTS, OUTPUT_CHANNEL, _query("execute_side_effects", {"type": "boolean"}))),
    ("PUT", "/conversations/{conversation_id}/tracker/events"): Operation(
        "Replace all events.", _EVENTS_BODY, _TRACKER_OK, (INCLUDE_EVENTS,)),
    ("POST", "/conversations/{conversation_id}/messages"): Operation(
        "Add a user message without running the bot.",
        _body({"type": "object", "required": ["sender", "text"], "properties": {
            "sender": {"const": "user"}, "text": {"type": "string"}, "parse_data": {"type": "object"},
            "message_id": {"type": "string"}, "metadata": {"type": "object"}}}),
        _TRACKER_OK, (INCLUDE_EVENTS,)),
    ("POST", "/conversations/{conversation_id}/trigger_intent"): Operation(
        "Run the bot as if the user had sent an intent.",
        _body({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "entities": {"type": "object"}}}),
        _WITH_MESSAGES_OK, (INCLUDE_EVENTS, OUTPUT_CHANNEL)),
    ("POST", "/conversations/{conversation_id}/execute"): Operation(
        "Run one action.",
        _body({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "policy": {"type": "string"}, "confidence": {"type": "number"}}}),
        _WITH_MESSAGES_OK, (INCLUDE_EVENTS, OUTPUT_CHANNEL)),
    ("POST", "/conversations/{conversation_id}/predict"): Operation(
        "Scores of the next actions.", responses={200: _json({"type": "object"})}, query=(INCLUDE_EVENTS,)),
    ("GET", "/knowledge/entries"): Operation(
        "FAQ entries.", responses={200: _json({"type": "object", "properties": {
            "entries": {"type": "array", "items": _ref("KnowledgeEntry")}, "count": {"type": "integer"}}})},
        query=(_query("category", {"type": "string"}), _query("tag", {"type": "string"}))),
    ("GET", "/knowledge/entries/{entry_id}"): Operation("One FAQ entry.", responses={200: _json(_ref("KnowledgeEntry"))}),
    ("PUT", "/knowledge/entries/{entry_id}"): Operation(
        "Create or replace an FAQ entry (then reload).", _body(_ref("KnowledgeEntry")),
        {200: _json(_ref("KnowledgeEntry"), "Replaced"), 201: _json(_ref("KnowledgeEntry"), "Created")}),
    ("DELETE", "/knowledge/entries/{entry_id}"): Operation("Delete an FAQ entry.", responses={204: {"description": "Deleted"}}),
    ("GET", "/knowledge/export"): Operation(
        "All entries as YAML or CSV.", responses={200: {"description": "OK", "content": {
            "application/x-yaml": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}}},
        query=(_query("format", {"type": "string", "enum": ["yaml", "csv"]}),)),
    ("POST", "/knowledge/search"): Operation(
        "Search the FAQ.",
        _body({"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string"}, "language": {"type": "string", "enum": ["zh", "en"]},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 50}}}),
        {200: _json({"type": "object"})}),
    ("POST", "/knowledge/reload"): Operation("Reload the FAQ files (the old base serves until it succeeds)."),
    ("POST", "/events"): Operation(
        "Behaviour events from a trusted producer (one, a list, or {\"events\": [...]}).",
        _body({"oneOf": [_ref("BehaviourEvent"), {"type": "array", "items": _ref("BehaviourEvent")},
                         {"type": "object", "required": ["events"],
                          "properties": {"events": {"type": "array", "items": _ref("BehaviourEvent")}}}]}),
        {202: _json({"type": "object", "properties": {"status": {"const": "accepted"}, "accepted": {"type": "integer"},
                                                     "ids": {"type": "array", "items": {"type": "string"}}}}, "Accepted")}),
    ("GET", "/triggers/report"): Operation("Trigger and A/B report.", query=(_query("since", {"type": "number"}),)),
    ("POST", "/workbench/api/train"): Operation(
        "Train a candidate model behind the quality gate; runs in the background (poll the job).",
        responses={202: _json({"type": "object", "properties": {"job": {"type": "string"},
                                                              "status": {"type": "string"}}}, "Accepted")}),
    ("POST", "/triggers/journeys/{journey}/steps/{step}/variants/{variant}/stop"): Operation(
        "Stop an A/B variant for good.",
        _body({"type": "object", "properties": {"reason": {"type": "string"},
                                                "in_flight": {"type": "string", "enum": ["reroute", "send"]}}},
              required=False)),
    ("POST", "/triggers/journeys/{journey}/steps/{step}/variants/{variant}/resume"): Operation("Resume an A/B variant."),
    ("GET", "/webhooks/rest"): Operation("REST channel health.", responses={200: _json({"type": "object"})}),
    ("POST", "/webhooks/rest/webhook"): Operation(
        "Send a shopper message; the bot's replies come back.",
        _body({"type": "object", "required": ["message"], "properties": {
            "sender": {"type": "string"}, "message": {"type": "string"}, "metadata": {"type": "object"}}}),
        {200: {"description": "The bot's messages (a stream, one JSON message per line, with ?stream=true)",
               "content": {"application/json": {"schema": {"type": "array", "items": _ref("BotMessage")}},
                           "text/event-stream": {"schema": {"type": "string"}}}}},
        (_query("stream", {"type": "boolean"}),)),
    ("GET", "/webhooks/wechat"): Operation("WeChat channel health.", responses={200: _json({"type": "object"})}),
    ("GET", "/webhooks/wechat/webhook"): Operation(
        "WeChat's URL verification: echoes echostr when signed.",
        responses={200: _text("echostr"), 403: _text("Bad signature")},
        query=(*_WECHAT_QUERY, _query("echostr", {"type": "string"}))),
    ("POST", "/webhooks/wechat/webhook"): Operation(
        "A WeChat push (plaintext or AES); the signature is checked before the body is parsed.",
        _body({"type": "string"}, "application/xml"),
        {200: {"description": "'success' or the passive XML reply", "content": {
            "text/plain": {"schema": {"type": "string"}}, "application/xml": {"schema": {"type": "string"}}}},
         400: _text("Malformed, DTD refused by defusedxml, or wrong mode"),
         403: _text("Bad or missing signature/msg_signature, stale timestamp, replay"),
         413: _text("Body above max_body_size")},
        (*_WECHAT_QUERY, _query("openid", {"type": "string"}),
         _query("encrypt_type", {"type": "string", "enum": ["raw", "aes"]}), _query("msg_signature", {"type": "string"}))),
}


def openapi_path(sanic_path: str) -> tuple[str, list[dict[str, Any]]]:
    """``conversations/<conversation_id:path>/tracker`` → ``/conversations/{conversation_id}/tracker`` and its parameters."""
    params: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        name, kind = match.group(1), (match.group(2) or "str")
        schema: dict[str, Any] = {"type": "integer"} if kind in ("int", "number") else {"type": "string", "minLength": 1}
        if kind == "path":
            schema["description"] = "May contain '/' (send it percent-encoded)."
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    path = "/" + _PARAM.sub(replace, sanic_path.strip("/"))
    return path, params


def declared_access(handler: Any) -> Any:
    """What the handler declared through ``requires_scope``/``public``; ``None`` when nothing.

    Uses :func:`bot.web.auth.declared_access` when it exists, else walks the wrappers
    for the same attribute (the auth module may be older than this one).
    """
    from bot.web import auth

    reader = getattr(auth, "declared_access", None)
    if reader is not None:
        return reader(handler)
    attribute = getattr(auth, "ACCESS_ATTRIBUTE", ACCESS_ATTRIBUTE)
    for _ in range(10):
        if handler is None:
            return None
        access = getattr(handler, attribute, None)
        if access is not None:
            return access
        handler = getattr(handler, "__wrapped__", None) or getattr(handler, "func", None)
    return None


def _error(status: int, channel: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref("Error")}}
    if channel:  # channels answer their platform in its format (e.g. WeChat: text)
        content["text/plain"] = {"schema": {"type": "string"}}
    return {"description": HTTPStatus(status).phrase, "content": content}


def _operation(method: str, path: str, params: list[dict[str, Any]], route: Any) -> dict[str, Any]:
    known = OPERATIONS.get((method, path))
    handler = route.handler
    blueprint = route.name.split(".")[1] if route.name.count(".") >= 2 else ""
    channel = blueprint.startswith(CHANNEL_BLUEPRINT_PREFIX)
    access = declared_access(handler)
    websocket = bool(getattr(route.extra, "websocket", False))
    doc = (getattr(handler, "__doc__", None) or "").strip().split("\n")[0]
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_') or 'root'}",
        "summary": known.summary if known else (doc or getattr(handler, "__name__", "")),
        "tags": [path.strip("/").split("/")[0] or "root"],
    }
    parameters = list(params) + [dict(q) for q in (known.query if known else ())]
    if parameters:
        operation["parameters"] = parameters
    if known and known.request_body:
        operation["requestBody"] = dict(known.request_body)
    if websocket:
        responses: dict[str, Any] = {"101": {"description": "Switching Protocols (a WebSocket)"}}
        operation["x-websocket"] = True
    else:
        success = known.responses if known else {200: {"description": "OK", "content": {"*/*": {"schema": {}}}}}
        responses = {str(code): dict(body) for code, body in success.items()}
    public = access == PUBLIC or (access is None and channel) or path == OPENAPI_ROUTE
    statuses = ERROR_STATUSES if public else (*ERROR_STATUSES, *AUTH_STATUSES)
    for status in statuses:
        responses.setdefault(str(status), _error(status, channel))
    operation["responses"] = responses
    if access is not None and access != PUBLIC:
        operation["security"] = [{"bearerAuth": []}]
        operation["x-kefu-scope"] = str(getattr(access, "value", access))
    elif public:
        operation["security"] = []
    else:
        operation["x-kefu-access"] = "undeclared"
    return operation


def build_document(app: Sanic) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route ``app``'s router holds now."""
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(app.router.routes, key=lambda r: (r.path, sorted(r.methods))):
        path, params = openapi_path(route.path)
        item = paths.setdefault(path, {})
        for method in sorted(route.methods):
            if method.lower() in item:
                continue
            item[method.lower()] = _operation(method.upper(), path, params, route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kefu HTTP API",
            "version": __version__,
            "description": (
                "Every route this server mounts: Rasa's HTTP API, the channels' webhooks and the features' "
                "routes. Management routes need the API token or a JWT in 'Authorization: Bearer ...' "
                "(x-kefu-scope names the scope); see docs/security.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's API token (--auth-token) or a JWT signed with --jwt-secret "
                                   "(Rasa's payload conventions: {\"user\": {\"username\", \"role\"}}).",
                },
            },
        },
    }


def install_openapi(app: Sanic) -> None:
    """Serve ``GET /openapi.json`` (public); the document is built once, on first request."""

    async def openapi_document(request: Request) -> HTTPResponse:
        document = getattr(request.app.ctx, "openapi_document", None)
        if document is None:
            document = request.app.ctx.openapi_document = build_document(request.app)
        return response.json(document)

    from bot.web import auth

    mark_public = getattr(auth, "public", None)
    handler = mark_public(openapi_document) if mark_public is not None else openapi_document
    app.add_route(handler, OPENAPI_ROUTE, methods=["GET"], name="openapi")


def routes_missing_from(app: Sanic, operations: Iterable[tuple[str, str]] = OPERATIONS) -> list[tuple[str, str]]:
    """Rows of the table that the app does not mount (for the test that keeps the table honest)."""
    mounted = {(m.upper(), openapi_path(r.path)[0]) for r in app.router.routes for m in r.methods}
    return [key for key in operations if key not in mounted]
