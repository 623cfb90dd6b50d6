"""The shop's identity token: a JWT the shop's own site signs, binding a widget session to a customer.

The shop's page passes it to the widget (``identityToken``); the widget sends it in
``session_request``; the channel verifies it here (HS256 with ``identity_secret``, or
RS256/ES256 with the public key file ``identity_public_key``). Claims: ``sub`` (the shop's
customer id, required), ``exp`` (required), optional ``name`` and ``phone``. A verified token
becomes ``metadata["identity"]`` on every message of the session (``ShopperIdentity.as_metadata``),
the one key project actions trust (docs/channels.md). A token that was given but does not verify
is refused: the session is not silently opened anonymously.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError

__all__ = ["IDENTITY_SOURCE", "IdentityTokenError", "IdentityVerifier", "ShopperIdentity"]

IDENTITY_SOURCE = "widget_token"
MIN_SECRET_LENGTH = 32
_PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


class IdentityTokenError(Exception):
    """A token that does not verify; ``code`` goes to the widget in the error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ShopperIdentity:
    """Who the shop's token says the shopper is, and until when."""

    customer_id: str
    expires_at: float
    name: str | None = None
    phone: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def as_metadata(self) -> dict[str, Any]:
        """The value of ``metadata["identity"]`` the engine and actions see."""
        value: dict[str, Any] = {
            "customer_id": self.customer_id, "source": IDENTITY_SOURCE, "verified": True,
            "expires_at": int(self.expires_at),
        }
        if self.name:
            value["name"] = self.name
        if self.phone:
            value["phone"] = self.phone
        return value


@dataclass(frozen=True)
class IdentityVerifier:
    """Checks identity tokens with the shop's secret (HS256) or public key (RS256/ES256)."""

    key: str
    algorithms: tuple[str, ...]
    leeway: int = 30

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any]) -> "IdentityVerifier | None":
        """``identity_secret`` or ``identity_public_key`` (a PEM file) under ``socketio:``; neither: None."""
        secret = credentials.get("identity_secret")
        key_file = credentials.get("identity_public_key")
        if secret and key_file:
            raise ConfigError(
                "socketio: set either 'identity_secret' (HS256) or 'identity_public_key' (RS256/ES256), not both.",
                filename="credentials.yml",
                fix="Remove one of the two keys under 'socketio:'.",
            )
        if secret:
            if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"socketio credential 'identity_secret' must be at least {MIN_SECRET_LENGTH} characters.",
                    filename="credentials.yml",
                    fix="Generate one with `python -c \"import secrets; print(secrets.token_urlsafe(32))\"`, "
                    "put it in KEFU_WIDGET_IDENTITY_SECRET and write 'identity_secret: ${KEFU_WIDGET_IDENTITY_SECRET}'.",
                )
            return cls(secret, ("HS256",))
        if key_file:
            path = Path(str(key_file))
            try:
                pem = path.read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(
                    f"socketio credential 'identity_public_key': cannot read '{path}' ({e.strerror}).",
                    filename="credentials.yml",
                    fix="Point 'identity_public_key:' at the shop's PEM public key file.",
                ) from e
            if "PUBLIC KEY" not in pem:
                raise ConfigError(
                    f"socketio credential 'identity_public_key': '{path}' is not a PEM public key.",
                    filename="credentials.yml",
                    fix="Export the public half (`openssl pkey -in shop.pem -pubout`), never the private key.",
                )
            return cls(pem, _PUBLIC_KEY_ALGORITHMS)
        return None

    def verify(self, token: Any) -> ShopperIdentity:
        """The identity in ``token``; :class:`IdentityTokenError` saying why when it does not verify."""
        import jwt

        if not isinstance(token, str) or not token:
            raise IdentityTokenError("identity_token_invalid", "The identity token must be a non-empty string.")
        try:
            claims = jwt.decode(
                token, self.key, algorithms=list(self.algorithms), leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as e:
            raise IdentityTokenError(
                "identity_token_expired", "The identity token has expired: the shop's page must mint a fresh one."
            ) from e
        except jwt.PyJWTError as e:
            raise IdentityTokenError("identity_token_invalid", f"The identity token does not verify ({e}).") from e
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise IdentityTokenError("identity_token_invalid", "The identity token's 'sub' must be the customer id.")
        name, phone = claims.get("name"), claims.get("phone")
        return ShopperIdentity(
            customer_id=subject,
            expires_at=float(claims["exp"]),
            name=name if isinstance(name, str) else None,
            phone=phone if isinstance(phone, str) else None,
        )
