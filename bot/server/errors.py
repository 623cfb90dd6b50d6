"""One place that turns every error into Rasa's JSON error body.

Rasa's HTTP API answers failures with ``ErrorResponse.error_info``
(``version``, ``status``, ``message``, ``reason``, ``details``, ``help``,
``code``). Clients written for Rasa parse that shape, so every route, channel
blueprint and Sanic-internal failure (404, 405, 413, bad JSON) goes through
:func:`error_to_response` — and an unexpected exception never leaks its
traceback or text to the client (it is logged instead).
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from sanic import Request, response
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from bot.shared.exceptions import (
    ActionNotFound,
    BotError,
    InvalidRequest,
    LockError,
    ModelNotFound,
    StoreError,
)
from bot.version import __version__

logger = logging.getLogger(__name__)

DOCS_URL = "https://rasa.com/docs/rasa/pages/http-api"


class ErrorResponse(Exception):
    """An HTTP error with Rasa's JSON body; raise it from any handler."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        help_url: str | None = None,
    ) -> None:
        self.status = int(status)
        self.reason = reason
        self.message = message
        self.error_info: dict[str, Any] = {
            "version": __version__,
            "status": "failure",
            "message": message,
            "reason": reason,
            "details": details or {},
            "help": help_url,
            "code": self.status,
        }
        super().__init__(message)


def bad_request(message: str, parameter: str | None = None, where: str = "body") -> ErrorResponse:
    """A 400 naming the offending parameter like Rasa does."""
    details = {"parameter": parameter, "in": where} if parameter is not None else None
    return ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest", message, details)


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


def as_error_response(exception: BaseException) -> ErrorResponse:
    """Map an exception to the ErrorResponse the client should see.

    Deliberate kefu errors carry messages written for users (what, where, fix),
    so their text is shown; anything else is reported as a bare 500.
    """
    if isinstance(exception, ErrorResponse):
        return exception
    if isinstance(exception, SanicException):
        status = int(getattr(exception, "status_code", 500) or 500)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            return ErrorResponse(
                status,
                type(exception).__name__,
                "The server did not answer in time (response timeout). Try again later.",
            )
        if status >= 500:
            return ErrorResponse(status, "ServerError", "An internal server error occurred.")
        return ErrorResponse(status, type(exception).__name__, str(exception))
    if isinstance(exception, ModelNotFound):
        return ErrorResponse(HTTPStatus.NOT_FOUND, "ModelNotFound", str(exception))
    if isinstance(exception, ActionNotFound):
        return ErrorResponse(HTTPStatus.NOT_FOUND, "ActionNotFound", str(exception))
    if isinstance(exception, (InvalidRequest, ValueError)):
        # ConfigError and its subclasses are ValueErrors too: a bad domain or
        # training payload sent by the client is the client's to fix.
        return ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest", str(exception))
    if isinstance(exception, LockError):
        return ErrorResponse(
            HTTPStatus.SERVICE_UNAVAILABLE, "LockError", str(exception)
        )
    if isinstance(exception, StoreError):
        return ErrorResponse(
            HTTPStatus.SERVICE_UNAVAILABLE, "StoreError", str(exception)
        )
    if isinstance(exception, BotError):
        return ErrorResponse(
            HTTPStatus.INTERNAL_SERVER_ERROR, type(exception).__name__, str(exception)
        )
    return ErrorResponse(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "ServerError",
        "An unexpected error occurred. The server log has the details.",
    )


async def error_to_response(request: Request, exception: BaseException) -> HTTPResponse:
    """Sanic exception handler registered for ``Exception`` on every app."""
    error = as_error_response(exception)
    if error.status >= 500:
        conversation = (request.match_info or {}).get("conversation_id")
        logger.error(
            "%s %s failed (conversation %s): %s",
            request.method,
            request.path,
            conversation,
            type(exception).__name__,
            exc_info=exception,
        )
    else:
        logger.debug("%s %s -> %s: %s", request.method, request.path, error.status, error.message)
    return response.json(error.error_info, status=error.status)
