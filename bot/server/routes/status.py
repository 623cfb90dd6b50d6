"""``GET /version`` (always open) and ``GET /status`` (the loaded model, behind auth)."""
from __future__ import annotations

import os

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.server.routes.agent import get_agent
from bot.version import RASA_COMPAT_VERSION, __version__
from bot.web.auth import public, requires_scope
from bot.web.principals import Scope


def create_version_blueprint() -> Blueprint:
    bp = Blueprint("kefu_version")

    @bp.get("/version")
    @public
    async def version(request: Request) -> HTTPResponse:
        return response.json(
            {
                "version": __version__,
                "minimum_compatible_version": __version__,
                "rasa_version": RASA_COMPAT_VERSION,
            }
        )

    return bp


def create_status_blueprint() -> Blueprint:
    bp = Blueprint("kefu_status")

    @bp.get("/status")
    @requires_scope(Scope.STATUS_READ)
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

    return bp
