"""The app's agent as the API routes and the channels see it (409 without a model)."""
from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from sanic import Request

from bot.web.errors import DOCS_URL, ErrorResponse

if TYPE_CHECKING:  # pragma: no cover
    from bot.agent import Agent


def no_model_loaded() -> ErrorResponse:
    """Rasa's 409 for routes that need a loaded model."""
    return ErrorResponse(
        HTTPStatus.CONFLICT,
        "Conflict",
        "No agent loaded. To continue processing, a model of a trained agent needs "
        "to be loaded. Fix: train a model (python -m bot train) and load it with "
        "PUT /model or start the server with --model.",
        help_url=DOCS_URL,
    )


def get_agent(request: Request, require_ready: bool = True) -> "Agent":
    """The app's agent; 409 like Rasa when there is none or it has no model."""
    agent = getattr(request.app.ctx, "agent", None)
    if agent is None or (require_ready and not agent.is_ready()):
        raise no_model_loaded()
    return agent
