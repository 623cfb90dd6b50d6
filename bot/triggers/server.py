"""HTTP routes: ``POST /events`` (behaviour events in), ``GET /triggers/report`` and
``POST /triggers/journeys/<journey>/steps/<step>/variants/<variant>/stop|resume``.

``create_triggers_blueprint(get_engine)``: ``get_engine(request)`` returns the worker's
:class:`~bot.triggers.engine.TriggerEngine` (``None``: 409). Both routes use the API's
token/JWT auth (bot/web/auth.py). Bad events are answered with Rasa's error body, a
``reason`` code (``unknown_event_type``, ``missing_customer``, ``future_timestamp``,
``duplicate_event_id``, ``payload_too_large``, ...) and the offending index; nothing of
a rejected request is stored.

Who may say what: a caller with ``events:trusted`` (bot/web/principals.py) may set an
event's channel, recipient ids, conversation, time zone and consent; from anyone else those
are dropped and the answer lists them (``ignored_fields``). Events older than
``max_event_age`` are stored but start no journey (per event: ``too_old``, ``not_started``).
"""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Callable

from sanic import Blueprint, Request, response

from bot.web.auth import principal_of, requires_scope
from bot.web.principals import Scope
from bot.web.errors import ErrorResponse, bad_request
from bot.triggers.events import MAX_BODY_BYTES, EventRejected, parse_body
from bot.triggers.report import build_report

EngineGetter = Callable[[Request], Any]


def _rejected(e: EventRejected) -> ErrorResponse:
    return ErrorResponse(e.status, e.code, e.message, details=e.as_dict())


def producer_trusted(request: Request) -> bool:
    """May this caller set channel, openid, time zone and consent in an event (``events:trusted``)?"""
    principal = principal_of(request)
    return principal is not None and principal.has(Scope.EVENTS_TRUSTED)


def create_triggers_blueprint(get_engine: EngineGetter, name: str = "triggers") -> Blueprint:
    bp = Blueprint(name)

    def engine_of(request: Request) -> Any:
        engine = get_engine(request)
        if engine is None:
            raise ErrorResponse(HTTPStatus.CONFLICT, "Conflict",
                                "Triggers are not enabled on this server. Fix: add triggers.yml and start the "
                                "server with the trigger scheduler.")
        return engine

    @bp.post("/events")
    @requires_scope(Scope.EVENTS_WRITE)
    async def post_events(request: Request) -> Any:
        engine = engine_of(request)
        body = request.body or b""
        try:
            if len(body) > MAX_BODY_BYTES:
                raise EventRejected(413, "payload_too_large",
                                    f"Request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}. "
                                    "Fix: send smaller batches of small events.")
            events = parse_body(body, engine.clock.now())
            trusted = producer_trusted(request)
            results = await engine.submit(events, trusted=trusted)
        except EventRejected as e:
            raise _rejected(e) from e
        ignored = sorted({name for r in results for name in r.ignored_fields})
        return response.json({"status": "accepted", "accepted": len(events), "ids": [e.id for e in events],
                              "trusted": trusted, "ignored_fields": ignored,
                              "events": [r.as_dict() for r in results]},
                             status=HTTPStatus.ACCEPTED)

    @bp.get("/triggers/report")
    @requires_scope(Scope.TRIGGERS_READ)
    async def report(request: Request) -> Any:
        engine = engine_of(request)
        since = request.args.get("since")
        try:
            since_ts = float(since) if since is not None else None
        except ValueError as e:
            raise bad_request("'since' must be seconds since the epoch.", "since", "query") from e
        counts = await engine.store.report_counts(since_ts)
        return response.json(build_report(counts, engine.config, stops=await engine.stops(refresh=True)))

    def _switch_body(request: Request) -> dict[str, Any]:
        if not request.body:
            return {}
        try:
            body = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"Request body is not valid JSON: {e}.", "body", "body") from e
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object like {\"reason\": \"...\", \"in_flight\": \"reroute\"}.",
                              "body", "body")
        return body

    @bp.post("/triggers/journeys/<journey>/steps/<step>/variants/<variant>/stop")
    @requires_scope(Scope.TRIGGERS_WRITE)
    async def stop_variant(request: Request, journey: str, step: str, variant: str) -> Any:
        """Stop a variant for good; body (optional): ``{"reason": "...", "in_flight": "reroute"|"send"}``."""
        engine = engine_of(request)
        body = _switch_body(request)
        try:
            result = await engine.stop_variant(journey, step, variant,
                                               reason=str(body.get("reason") or ""),
                                               in_flight=str(body.get("in_flight") or "reroute"))
        except EventRejected as e:
            raise _rejected(e) from e
        return response.json(result)

    @bp.post("/triggers/journeys/<journey>/steps/<step>/variants/<variant>/resume")
    @requires_scope(Scope.TRIGGERS_WRITE)
    async def resume_variant(request: Request, journey: str, step: str, variant: str) -> Any:
        engine = engine_of(request)
        try:
            result = await engine.resume_variant(journey, step, variant)
        except EventRejected as e:
            raise _rejected(e) from e
        return response.json(result)

    return bp
