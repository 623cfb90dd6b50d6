"""Token and JWT authentication with Rasa's rules.

Rasa (rasa/server.py ``requires_auth``) accepts either ``?token=<auth token>``
or an ``Authorization: Bearer <JWT>`` signed with ``--jwt-secret``. A JWT whose
payload says ``{"user": {"role": "admin"}}`` may do everything; ``role: user``
may only touch the conversation whose id equals ``user.username``.
"""
from __future__ import annotations

import functools
import hmac
import inspect
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable

import jwt
from sanic import Request

from bot.web.errors import DOCS_URL, ErrorResponse

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class AuthConfig:
    """What protects the API of one app; both ``None`` means open."""

    token: str | None = None
    jwt_secret: str | None = None
    jwt_method: str = "HS256"

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.jwt_secret is not None


def not_authenticated() -> ErrorResponse:
    return ErrorResponse(
        HTTPStatus.UNAUTHORIZED,
        "NotAuthenticated",
        "User is not authenticated. Fix: pass ?token=<auth token> or an "
        "'Authorization: Bearer <JWT>' header.",
        help_url=DOCS_URL,
    )


def not_authorized() -> ErrorResponse:
    return ErrorResponse(
        HTTPStatus.FORBIDDEN,
        "NotAuthorized",
        "User has insufficient permissions.",
        help_url=DOCS_URL,
    )


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, ``None`` without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def jwt_payload(request: Request, config: AuthConfig) -> dict[str, Any] | None:
    """The verified JWT payload, or ``None`` when absent or invalid."""
    if not config.jwt_secret:
        return None
    token = bearer_token(request)
    if token is None:
        return None
    try:
        payload = jwt.decode(token, config.jwt_secret, algorithms=[config.jwt_method])
    except jwt.PyJWTError as e:
        logger.debug("Rejected JWT on %s: %s", request.path, e)
        return None
    return payload if isinstance(payload, dict) else None


def has_scope(payload: dict[str, Any], conversation_id: str | None) -> bool:
    """Rasa's ``sufficient_scope``: admins everywhere, users on their own conversation."""
    user = payload.get("user") or {}
    if not isinstance(user, dict):
        return False
    role = user.get("role")
    if role == "admin":
        return True
    if role == "user":
        return conversation_id is not None and user.get("username") == conversation_id
    return False


def check_request(request: Request, config: AuthConfig, conversation_id: str | None) -> None:
    """Raise 401/403 unless the request may proceed."""
    if not config.enabled:
        return
    provided = request.args.get("token")
    if config.token is not None and provided is not None:
        if hmac.compare_digest(provided.encode("utf-8"), config.token.encode("utf-8")):
            return
    payload = jwt_payload(request, config)
    if payload is not None:
        if has_scope(payload, conversation_id):
            return
        raise not_authorized()
    raise not_authenticated()


def requires_auth(handler: Handler) -> Handler:
    """Protect a route with the auth settings stored on ``request.app.ctx.auth``."""

    @functools.wraps(handler)
    async def decorated(request: Request, *args: Any, **kwargs: Any) -> Any:
        config: AuthConfig = request.app.ctx.auth
        check_request(request, config, kwargs.get("conversation_id"))
        result = handler(request, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    return decorated
