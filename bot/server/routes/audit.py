"""``GET /audit``: the audit log of transcript reads, for admins (``Scope.AUDIT_READ``).

Query: ``since`` (UNIX timestamp), ``actor`` (a principal's subject), ``conversation_id``
and ``limit`` (newest first; at most 1000, default 100).
"""
from __future__ import annotations

from http import HTTPStatus

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.stores.audit import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from bot.web.auth import requires_scope
from bot.web.errors import ErrorResponse, bad_request
from bot.web.principals import Scope
from bot.web.requests import float_arg


def _limit(request: Request) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIST_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise bad_request(f"Query parameter 'limit' must be a whole number from 1 to {MAX_LIST_LIMIT}, "
                          f"got '{raw}'.", "limit", "query")
    return int(raw)


def create_audit_blueprint() -> Blueprint:
    bp = Blueprint("kefu_audit")

    @bp.get("/audit")
    @requires_scope(Scope.AUDIT_READ)
    async def list_audit(request: Request) -> HTTPResponse:
        audit = getattr(request.app.ctx, "audit", None)
        if audit is None:
            raise ErrorResponse(HTTPStatus.CONFLICT, "Conflict", "This server has no audit log.")
        records = await audit.list(since=float_arg(request, "since"), actor=request.args.get("actor"),
                                   target=request.args.get("conversation_id"), limit=_limit(request))
        return response.json({"records": [r.as_dict() for r in records], "count": len(records)})

    return bp
