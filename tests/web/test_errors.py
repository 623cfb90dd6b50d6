"""bot/web/errors.py: the one exception -> status map and Rasa's error body."""
from __future__ import annotations

from http import HTTPStatus

from bot.shared.exceptions import ActionNotFound, BotError, ConfigError, LockError, ModelNotFound, StoreError
from bot.version import __version__
from bot.web.errors import ErrorResponse, as_error_response, register_error

RASA_KEYS = {"version", "status", "message", "reason", "details", "help", "code"}


class Refused(Exception):
    """A feature's refusal that carries its own status, like HandoffError."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Throttled(RuntimeError):
    pass


def test_as_error_response_maps_shared_exceptions_like_rasa() -> None:
    cases = [
        (ModelNotFound("no model at models/x.tar.gz"), 404, "ModelNotFound"),
        (ActionNotFound("action_x"), 404, "ActionNotFound"),
        (ConfigError("domain.yml: bad slot"), 400, "BadRequest"),
        (ValueError("bad"), 400, "BadRequest"),
        (LockError("busy"), 503, "LockError"),
        (StoreError("redis down"), 503, "StoreError"),
        (BotError("odd"), 500, "BotError"),
    ]
    for exception, status, reason in cases:
        error = as_error_response(exception)
        assert (error.status, error.reason) == (status, reason), exception
        assert set(error.error_info) == RASA_KEYS
        assert error.error_info["status"] == "failure" and error.error_info["code"] == status


def test_as_error_response_hides_the_text_of_unexpected_errors() -> None:
    error = as_error_response(KeyError("secret internals"))
    assert error.status == 500 and error.reason == "ServerError"
    assert "secret" not in error.message


def test_register_error_takes_the_status_attribute_and_names_the_reason() -> None:
    assert as_error_response(Refused(409, "Another agent took it.")).status == 500  # not mapped yet
    register_error(Refused)
    error = as_error_response(Refused(409, "Another agent took it."))
    assert error.error_info == {
        "version": __version__,
        "status": "failure",
        "message": "Another agent took it.",
        "reason": "Conflict",
        "details": {},
        "help": None,
        "code": 409,
    }
    assert as_error_response(Refused(404, "No handoff 'h1'.")).reason == "NotFound"


def test_register_error_with_fixed_status_and_reason_replaces_the_earlier_rule() -> None:
    register_error(Throttled)
    register_error(Throttled, status=HTTPStatus.TOO_MANY_REQUESTS, reason="Throttled")
    error = as_error_response(Throttled("Slow down."))
    assert (error.status, error.reason, error.message) == (429, "Throttled", "Slow down.")


def test_as_error_response_passes_error_responses_through() -> None:
    error = ErrorResponse(418, "Teapot", "No coffee here.")
    assert as_error_response(error) is error


def test_an_unreachable_database_or_redis_is_a_retryable_503_without_details() -> None:
    import psycopg
    import redis.exceptions
    import sqlalchemy.exc

    down = [
        sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused, pw=s3cret")),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        ConnectionRefusedError(111, "Connection refused"),
    ]
    for exception in down:
        error = as_error_response(exception)
        assert (error.status, error.reason) == (HTTPStatus.SERVICE_UNAVAILABLE, "StoreUnavailable"), exception
        assert "retry" in error.message and "s3cret" not in error.message and "6379" not in error.message
    # a query mistake is not an outage: still a bare 500
    assert as_error_response(sqlalchemy.exc.ProgrammingError("SELECT x", {}, Exception("no column"))).status == 500
