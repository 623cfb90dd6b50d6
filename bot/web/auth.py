"""Who is calling the API, from verified credentials only, and what each route requires.

A request's :class:`~bot.web.principals.Principal` comes from one of:

- the server's API token (``--auth-token``) in ``Authorization: Bearer <token>`` or
  ``Authorization: Token <token>``: role admin. ``?token=<token>`` in the URL (Rasa's way)
  is refused unless the app was built with ``allow_token_in_url=True`` (legacy: URLs end up
  in access logs, proxies and browser history);
- a JWT signed with ``--jwt-secret`` in ``Authorization: Bearer <JWT>``, with Rasa's payload
  conventions: ``{"user": {"username": ..., "role": "admin" | "user" | "trainer" |
  "supervisor" | "agent" | "event_producer"}}``. ``user`` is a shopper limited to the
  conversation ``username``; an optional ``scopes`` claim only narrows the role's scopes
  (``bot/web/principals.py`` ``scopes_for``); ``exp`` is honoured.

Every management route declares what it needs with :func:`requires_scope` (or
:func:`public`); ``tests/server/test_auth_scopes.py`` walks the router and fails for a
route that declares neither. An app with neither a token nor a JWT secret is open
(Rasa's behaviour, for development and tests): the server's start refuses that on a
non-loopback host (``bot/cli.py``).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Final

import jwt
from sanic import Request

from bot.web.errors import DOCS_URL, ErrorResponse
from bot.web.principals import Principal, Role, Scope, scopes_for

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]

SECURITY_DOCS = "docs/security.md#api-authentication-and-roles"
ACCESS_ATTRIBUTE: Final = "__kefu_access__"
PUBLIC: Final = "public"  # the marker of a route anyone may call
API_TOKEN_SUBJECT = "api-token"
OPEN_SUBJECT = "anonymous"
_UNSET = object()


@dataclass(frozen=True)
class AuthConfig:
    """What protects the API of one app; neither a token nor a JWT secret means open."""

    token: str | None = None
    jwt_secret: str | None = None
    jwt_method: str = "HS256"
    allow_token_in_url: bool = False  # legacy: Rasa scripts' ?token=

    @property
    def enabled(self) -> bool:
        return bool(self.token) or bool(self.jwt_secret)


HEADER_FIX = (
    "Fix: send the header 'Authorization: Bearer <token>' with the server's API token "
    "(--auth-token) or a JWT signed with its --jwt-secret (see " + SECURITY_DOCS + ")."
)


def not_authenticated(detail: str = "") -> ErrorResponse:
    message = "User is not authenticated." + (f" {detail}" if detail else "") + " " + HEADER_FIX
    return ErrorResponse(HTTPStatus.UNAUTHORIZED, "NotAuthenticated", message, help_url=DOCS_URL)


def token_in_url_refused() -> ErrorResponse:
    return ErrorResponse(
        HTTPStatus.UNAUTHORIZED,
        "NotAuthenticated",
        "Tokens in the URL (?token=) are refused: URLs end up in access logs, proxies and browser "
        "history. Fix: send the header 'Authorization: Bearer <token>' instead (or, for old Rasa "
        "scripts only, start the server with --allow-token-in-url).",
        details={"parameter": "token", "in": "query"},
        help_url=DOCS_URL,
    )


def not_authorized(principal: Principal | None = None, scope: Scope | None = None,
                   conversation_id: str | None = None) -> ErrorResponse:
    """403 naming the scope that is missing (or the conversation a shopper may not touch)."""
    if principal is None or scope is None:
        message = "User has insufficient permissions."
    elif scope in principal.scopes and principal.conversation_id is not None:
        message = (f"'{principal.subject}' (role {principal.role.value}) may only access its own conversation "
                   f"'{principal.conversation_id}', not '{conversation_id}'.")
    else:
        message = (f"'{principal.subject}' (role {principal.role.value}) lacks the scope '{scope.value}' this "
                   f"route needs. Fix: use a credential whose role grants '{scope.value}' (roles and scopes: "
                   f"{SECURITY_DOCS}).")
    details = {"scope": scope.value} if scope is not None else None
    return ErrorResponse(HTTPStatus.FORBIDDEN, "NotAuthorized", message, details=details, help_url=DOCS_URL)


def _authorization(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not scheme or not value:
        return None
    return scheme.lower(), value


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, ``None`` without one."""
    found = _authorization(request)
    return found[1] if found is not None and found[0] == "bearer" else None


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison that also hides the expected secret's length."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(),
                               hashlib.sha256(expected.encode("utf-8")).digest())


def _claimed_scopes(payload: dict[str, Any]) -> frozenset[Scope] | None:
    """The ``scopes`` claim (a list or OAuth's space-separated string); unknown names are dropped."""
    if "scopes" not in payload and "scope" not in payload:
        return None
    raw = payload.get("scopes", payload.get("scope"))
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    valid = {s.value: s for s in Scope}
    return frozenset(valid[n] for n in names if isinstance(n, str) and n in valid)


def principal_from_jwt_payload(payload: dict[str, Any]) -> Principal:
    """Rasa's payload (``user.role``, ``user.username``) plus kefu's roles and ``scopes`` claim."""
    user = payload.get("user")
    user = user if isinstance(user, dict) else {}
    name = user.get("username") if isinstance(user.get("username"), str) else None
    subject = name or (payload.get("sub") if isinstance(payload.get("sub"), str) else None) or "jwt"
    try:
        role = Role(user.get("role"))
    except ValueError:
        role = Role.NONE
    conversation_id = None
    if role is Role.USER:
        if not name:  # a shopper without a conversation may touch none
            role = Role.NONE
        conversation_id = name
    scopes = scopes_for(role, _claimed_scopes(payload))
    return Principal(subject=subject, role=role, scopes=scopes,
                     conversation_id=conversation_id if role is Role.USER else None, via="jwt")


def _verify_jwt(token: str, config: AuthConfig) -> Principal | None:
    try:
        payload = jwt.decode(token, config.jwt_secret, algorithms=[config.jwt_method])
    except jwt.PyJWTError as e:
        logger.info("Rejected a JWT: %s", e)
        return None
    return principal_from_jwt_payload(payload) if isinstance(payload, dict) else None


def _api_token_principal() -> Principal:
    return Principal(subject=API_TOKEN_SUBJECT, role=Role.ADMIN, scopes=scopes_for(Role.ADMIN), via="token")


def authenticate(request: Request, config: AuthConfig) -> Principal | None:
    """The principal of the request's credential, ``None`` when it has no valid one."""
    if not config.enabled:
        return Principal(subject=OPEN_SUBJECT, role=Role.ADMIN, scopes=scopes_for(Role.ADMIN), via="open")
    found = _authorization(request)
    if found is not None:
        scheme, value = found
        if scheme in ("bearer", "token") and config.token and secrets_equal(value, config.token):
            return _api_token_principal()
        if scheme == "bearer" and config.jwt_secret:
            return _verify_jwt(value, config)
        return None
    in_url = request.args.get("token")
    if in_url is not None and config.allow_token_in_url and config.token and secrets_equal(in_url, config.token):
        return _api_token_principal()
    return None


def principal_of(request: Request) -> Principal | None:
    """The verified caller of ``request`` (cached on ``request.ctx``), ``None`` for a stranger."""
    cached = getattr(request.ctx, "principal", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    config: AuthConfig = getattr(request.app.ctx, "auth", None) or AuthConfig()
    principal = authenticate(request, config)
    request.ctx.principal = principal
    return principal


def require(request: Request, scope: Scope, conversation_id: str | None = None) -> Principal:
    """The request's principal when it holds ``scope``; 401 without a credential, 403 without the scope."""
    principal = principal_of(request)
    if principal is None:
        config: AuthConfig = getattr(request.app.ctx, "auth", None) or AuthConfig()
        if "token" in request.args and not config.allow_token_in_url and _authorization(request) is None:
            raise token_in_url_refused()
        raise not_authenticated()
    if not principal.has(scope, conversation_id):
        raise not_authorized(principal, scope, conversation_id)
    return principal


def requires_scope(scope: Scope) -> Callable[[Handler], Handler]:
    """Route decorator: the caller needs ``scope`` (on the path's ``conversation_id`` when there is one)."""

    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def decorated(request: Request, *args: Any, **kwargs: Any) -> Any:
            require(request, scope, kwargs.get("conversation_id"))
            result = handler(request, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        setattr(decorated, ACCESS_ATTRIBUTE, scope)
        return decorated

    return decorator


def public(handler: Handler) -> Handler:
    """Mark a route anyone may call (the router walk in the tests accepts it)."""
    try:
        setattr(handler, ACCESS_ATTRIBUTE, PUBLIC)
    except (AttributeError, TypeError):  # a bound method or a builtin: mark a thin wrapper instead
        original = handler

        @functools.wraps(original)
        async def handler(request: Request, *args: Any, **kwargs: Any) -> Any:
            result = original(request, *args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        setattr(handler, ACCESS_ATTRIBUTE, PUBLIC)
    return handler


def declared_access(handler: Any) -> Scope | str | None:
    """What a route handler declared: a :class:`Scope`, :data:`PUBLIC`, or ``None`` (nothing)."""
    seen = 0
    while handler is not None and seen < 10:
        access = getattr(handler, ACCESS_ATTRIBUTE, None)
        if access is not None:
            return access
        handler = getattr(handler, "__wrapped__", None) or getattr(handler, "func", None)
        seen += 1
    return None
