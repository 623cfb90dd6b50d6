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
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from sanic import Request, response
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from bot.shared.exceptions import (
    ActionNotFound,
    BotError,
    ConversationChannelMismatch,
    InvalidRequest,
    LockError,
    ModelNotFound,
    StoreError,
)
from bot.version import __version__

logger = logging.getLogger(__name__)

DOCS_URL = "https://rasa.com/docs/rasa/pages/http-api"


# The JSON body of every error (ErrorResponse.error_info) as a JSON Schema; the OpenAPI
# document (bot/server/openapi.py) and its fuzz test hold every error response to it.
ERROR_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "status", "message", "reason", "code"],
    "properties": {
        "version": {"type": "string"},
        "status": {"const": "failure"},
        "message": {"type": "string"},
        "reason": {"type": "string"},
        "details": {"type": "object"},
        "help": {"type": ["string", "null"]},
        "code": {"type": "integer"},
    },
}


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


@dataclass(frozen=True)
class ErrorRule:
    """How one exception type reaches the client (one row of the map below).

    ``status`` None takes the exception's own integer ``status`` attribute;
    ``reason`` None names the status (``NotFound``, ``Conflict``, ...). The
    exception's text is shown: only deliberate, user-facing errors get a rule.
    """

    exception: type[BaseException]
    status: int | None = None
    reason: str | None = None

    def response(self, exception: BaseException) -> ErrorResponse:
        status = int(self.status if self.status is not None else getattr(exception, "status"))
        return ErrorResponse(status, self.reason or _status_reason(status), str(exception))


def _status_reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Error"


# The one exception -> status map; the first rule whose type matches wins, so
# subclasses come before their bases.
ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(ModelNotFound, HTTPStatus.NOT_FOUND, "ModelNotFound"),
    ErrorRule(ActionNotFound, HTTPStatus.NOT_FOUND, "ActionNotFound"),
    # ConfigError and its subclasses are ValueErrors too: a bad domain or
    # training payload sent by the client is the client's to fix.
    ErrorRule(ConversationChannelMismatch, HTTPStatus.FORBIDDEN, "ConversationOfAnotherChannel"),
    ErrorRule(InvalidRequest, HTTPStatus.BAD_REQUEST, "BadRequest"),
    ErrorRule(ValueError, HTTPStatus.BAD_REQUEST, "BadRequest"),
    ErrorRule(LockError, HTTPStatus.SERVICE_UNAVAILABLE, "LockError"),
    ErrorRule(StoreError, HTTPStatus.SERVICE_UNAVAILABLE, "StoreError"),
)

# Rules of feature packages, which bot/web cannot import (see register_error).
_REGISTERED: dict[type[BaseException], ErrorRule] = {}


def register_error(
    exception: type[BaseException], *, status: int | None = None, reason: str | None = None
) -> None:
    """Add a feature's exception type to the map (before the built-in rules).

    The feature registers where it builds its routes, e.g.
    ``register_error(HandoffError)`` in ``create_handoff_blueprint``: without
    ``status`` the exception must carry an integer ``status`` attribute. Registering
    a type again replaces its rule, so building many apps is harmless.
    """
    _REGISTERED[exception] = ErrorRule(exception, status, reason)


RETRY_AFTER_S = 5  # what a 503 tells clients (Retry-After): a store restart or failover takes seconds
# Drivers' "cannot reach the server" errors, by (top-level module, class name): bot/web imports no driver.
_UNAVAILABLE = {("sqlalchemy", "OperationalError"), ("sqlalchemy", "InterfaceError"),
                ("psycopg", "OperationalError"), ("redis", "ConnectionError"), ("redis", "TimeoutError"),
                ("redis", "BusyLoadingError")}


def store_unavailable(exception: BaseException) -> bool:
    """A database or Redis that cannot be reached (restarting, failing over): the client should retry."""
    if isinstance(exception, ConnectionError):  # ConnectionRefusedError and friends
        return True
    return any((cls.__module__.split(".")[0], cls.__name__) in _UNAVAILABLE for cls in type(exception).__mro__)


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
    for rule in (*_REGISTERED.values(), *ERROR_RULES):
        if isinstance(exception, rule.exception):
            return rule.response(exception)
    if store_unavailable(exception):
        return ErrorResponse(HTTPStatus.SERVICE_UNAVAILABLE, "StoreUnavailable",
                             "A data store (database or Redis) is unavailable for a moment; nothing was changed "
                             f"by this request. Please retry in {RETRY_AFTER_S} seconds.")
    if isinstance(exception, BotError):  # any other deliberate error: its text, a 500
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
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == HTTPStatus.SERVICE_UNAVAILABLE else None
    return response.json(error.error_info, status=error.status, headers=headers)
