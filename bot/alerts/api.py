"""Alert lists: ``GET /alerts`` for API credentials, ``GET /handoff/api/alerts`` for the console.

Both answer ``{"active": [...], "recent": [...], "rules": [...]}``. The first needs
``handoff:supervise`` (a supervisor's or admin's JWT, the API token); the second the
console's own login (``bot/handoff/auth.py``) with the supervisor role — agents get 403.
Alerts carry figures and rule names, never a shopper's data.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.web.auth import bearer_token, requires_scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.principals import Scope

MAX_LIMIT = 200


def _limit(request: Request) -> int:
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(f"Query parameter 'limit' must be a whole number from 1 to {MAX_LIMIT}, got '{raw}'.",
                          "limit", "query")
    return int(raw)


def create_alerts_blueprint(feature: Any, api_route: bool = True) -> Blueprint:
    bp = Blueprint(f"kefu_alerts_{id(feature)}")

    def _ready() -> None:
        if feature.engine is None:
            raise ErrorResponse(HTTPStatus.SERVICE_UNAVAILABLE, "NotReady",
                                "Alerts start with the worker's model; try again in a moment.")

    if api_route:
        @bp.get("/alerts")
        @requires_scope(Scope.HANDOFF_SUPERVISE)
        async def alerts(request: Request) -> HTTPResponse:
            _ready()
            return response.json(await feature.listing(_limit(request)), ensure_ascii=False)

    @bp.get("/handoff/api/alerts")
    async def console_alerts(request: Request) -> HTTPResponse:
        from bot.handoff.auth import has_role, verify_token

        if "token" in request.args:
            raise ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest",
                                "Tokens are not accepted in URLs. Fix: send 'Authorization: Bearer <token>'.")
        service = feature.handoff
        agent = verify_token(service.config, bearer_token(request)) if service is not None else None
        if agent is None:
            raise ErrorResponse(HTTPStatus.UNAUTHORIZED, "NotAuthenticated",
                                "Not logged in or the token expired. Fix: POST /handoff/api/login again.")
        if not has_role(agent, "supervisor"):
            raise ErrorResponse(HTTPStatus.FORBIDDEN, "NotAuthorized", "Needs the 'supervisor' role.")
        _ready()
        return response.json(await feature.listing(_limit(request)), ensure_ascii=False)

    return bp
