"""``GET /domain`` as JSON or YAML, chosen by the ``Accept`` header like Rasa."""
from __future__ import annotations

from http import HTTPStatus

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.server.routes.agent import get_agent, no_model_loaded
from bot.shared.yaml_io import dump_yaml
from bot.web.auth import requires_scope
from bot.web.principals import Scope
from bot.web.errors import ErrorResponse
from bot.web.requests import JSON_CONTENT_TYPE, YAML_CONTENT_TYPE


def create_domain_blueprint() -> Blueprint:
    bp = Blueprint("kefu_domain")

    @bp.get("/domain")
    @requires_scope(Scope.STATUS_READ)
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

    return bp
