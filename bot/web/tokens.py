"""Minting API credentials: ``python -m bot token create --role event_producer --subject shop-backend``.

The token is a JWT in Rasa's payload shape (``{"user": {"username", "role"}}``) signed
with the server's JWT secret (``KEFU_JWT_SECRET`` or ``--jwt-secret``), with ``sub``,
``iat`` and ``exp``. ``--trusted`` (event producers only) adds the opt-in scope
``events:trusted``: such a producer may set channel, openid, time zone and consent in
its events. The token is printed alone on stdout so scripts can capture it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jwt

from bot.web.principals import OPT_IN_SCOPES, ROLE_SCOPES, Role, Scope

DEFAULT_TTL_DAYS = 90
MIN_SECRET_LENGTH = 32
MINTABLE_ROLES = tuple(r.value for r in Role if r is not Role.NONE)


class TokenError(ValueError):
    """A token request that cannot be honoured; the message names the fix."""


def token_payload(role: Role | str, subject: str, *, trusted: bool = False, ttl_days: float = DEFAULT_TTL_DAYS,
                  now: float | None = None) -> dict[str, Any]:
    """The JWT payload of a credential for ``subject`` acting as ``role``."""
    try:
        role = Role(role)
    except ValueError as e:
        raise TokenError(f"Unknown role '{role}'. Valid roles: {', '.join(MINTABLE_ROLES)}.") from e
    if role is Role.NONE:
        raise TokenError(f"Role 'none' grants nothing. Valid roles: {', '.join(MINTABLE_ROLES)}.")
    if not subject or not subject.strip():
        raise TokenError("The token needs a --subject naming who uses it (e.g. shop-backend).")
    if ttl_days <= 0:
        raise TokenError(f"--ttl-days must be positive, got {ttl_days}.")
    issued = int(now if now is not None else time.time())
    payload: dict[str, Any] = {
        "user": {"username": subject, "role": role.value},
        "sub": subject,
        "iat": issued,
        "exp": issued + int(ttl_days * 86400),
    }
    if trusted:
        if Scope.EVENTS_TRUSTED not in OPT_IN_SCOPES.get(role, frozenset()):
            raise TokenError(f"--trusted is for event producers only (role '{role.value}' given). "
                             "Fix: use --role event_producer.")
        payload["scopes"] = sorted(s.value for s in ROLE_SCOPES[role] | {Scope.EVENTS_TRUSTED})
    return payload


def mint_token(secret: str, role: Role | str, subject: str, *, trusted: bool = False,
               ttl_days: float = DEFAULT_TTL_DAYS, method: str = "HS256", now: float | None = None) -> str:
    """A signed JWT that ``bot/web/auth.py`` accepts on a server started with the same secret."""
    if not secret:
        raise TokenError("No JWT secret. Fix: set KEFU_JWT_SECRET (the value the server gets as --jwt-secret) "
                         "or pass --jwt-secret.")
    return jwt.encode(token_payload(role, subject, trusted=trusted, ttl_days=ttl_days, now=now), secret,
                      algorithm=method)


def add_token_parser(sub: Any) -> None:
    """``token create`` on the CLI's sub-command set (``bot/cli.py``)."""
    p = sub.add_parser("token", help="API credentials: `token create --role ROLE --subject NAME` prints a JWT.")
    tsub = p.add_subparsers(dest="token_command", metavar="WHAT")
    c = tsub.add_parser("create", help="Print a JWT signed with KEFU_JWT_SECRET for a role.")
    c.add_argument("--role", required=True, choices=MINTABLE_ROLES, help="the credential's role")
    c.add_argument("--subject", required=True, help="who uses it (shown in the audit log), e.g. shop-backend")
    c.add_argument("--trusted", action="store_true",
                   help="event producers: may set channel, openid, time zone and consent (events:trusted)")
    c.add_argument("--ttl-days", type=float, default=DEFAULT_TTL_DAYS,
                   help=f"days until it expires (default {DEFAULT_TTL_DAYS})")
    c.add_argument("--jwt-secret", default=None, help="the server's JWT secret (default: $KEFU_JWT_SECRET)")
    c.add_argument("--jwt-method", default="HS256", help="JWT algorithm (default HS256, like the server)")


def run_token_command(args: argparse.Namespace) -> int:
    if getattr(args, "token_command", None) != "create":
        print("Use `python -m bot token create --role ROLE --subject NAME`.", file=sys.stderr)
        return 2
    secret = args.jwt_secret or os.environ.get("KEFU_JWT_SECRET") or ""
    if secret and len(secret) < MIN_SECRET_LENGTH and args.jwt_method.upper().startswith("HS"):
        print(f"Warning: the JWT secret has {len(secret)} characters; use at least {MIN_SECRET_LENGTH} "
              "random ones (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`).", file=sys.stderr)
    try:
        token = mint_token(secret, args.role, args.subject, trusted=args.trusted, ttl_days=args.ttl_days,
                           method=args.jwt_method)
    except TokenError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + args.ttl_days * 86400))
    print(f"Token for '{args.subject}' (role {args.role}{', trusted' if args.trusted else ''}), "
          f"expires {expires}. Send it as 'Authorization: Bearer <token>'.", file=sys.stderr)
    print(token)
    return 0
