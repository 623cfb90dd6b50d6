"""Who is asking, for the privacy decisions: unmasked transcripts and data requests are for admins.

``principal_of`` (bot/web/auth.py, engineer api-auth) is the one source of the caller's
principal. Until it exists this module answers with Rasa's rules, which the old
``requires_auth`` applied: the API token or a JWT with ``role: admin`` is an admin, a JWT
with ``role: user`` is that shopper; an API without any auth configured (a loopback
development server) is treated as an admin, since every route is open there anyway.
"""
from __future__ import annotations

import hmac
from typing import Any

from bot.web.principals import ROLE_SCOPES, Principal, Role

DEV_SUBJECT = "open-api"


def request_principal(request: Any) -> Principal | None:
    from bot.web import auth

    principal_of = getattr(auth, "principal_of", None)
    if principal_of is not None:
        return principal_of(request)
    config = getattr(request.app.ctx, "auth", None)
    if config is None or not config.enabled:
        return Principal(DEV_SUBJECT, Role.ADMIN, ROLE_SCOPES[Role.ADMIN], via="token")
    provided = request.args.get("token")
    if config.token is not None and provided is not None and hmac.compare_digest(
            provided.encode("utf-8"), config.token.encode("utf-8")):
        return Principal("api-token", Role.ADMIN, ROLE_SCOPES[Role.ADMIN], via="token")
    payload = auth.jwt_payload(request, config)
    user = (payload or {}).get("user") if isinstance(payload, dict) else None
    if isinstance(user, dict):
        if user.get("role") == "admin":
            return Principal(str(user.get("username") or "jwt-admin"), Role.ADMIN, ROLE_SCOPES[Role.ADMIN], via="jwt")
        if user.get("role") == "user" and user.get("username"):
            return Principal(str(user["username"]), Role.USER, ROLE_SCOPES[Role.USER],
                             conversation_id=str(user["username"]), via="jwt")
    return None


def sees_personal_data(request: Any) -> bool:
    """True only for an admin: everyone else gets masked transcripts."""
    principal = request_principal(request)
    return principal is not None and principal.is_admin


def data_admin_guard() -> Any:
    """The route decorator for data requests: ``requires_scope(Scope.DATA_ADMIN)`` once api-auth
    provides it, else ``requires_auth`` (token or admin JWT; a shopper JWT gets 403)."""
    from bot.web import auth
    from bot.web.principals import Scope

    requires_scope = getattr(auth, "requires_scope", None)
    return requires_scope(Scope.DATA_ADMIN) if requires_scope is not None else auth.requires_auth
