"""Widget session ids: issued by the server, unguessable, and checkable by any worker.

A session id is the conversation's ``sender_id`` and the key of its history, so whoever
holds it reads and writes that conversation. The server therefore never takes a client's
word for one: ``session_request`` answers with an id this server issued, and an id it did
not issue (a guess, an old plain id, another customer's) is replaced by a fresh one.

An id is ``<nonce>.<flag><tag>``: 24 random bytes (``secrets.token_urlsafe``), ``a`` for an
anonymous session or ``c`` for one bound to a customer by the shop's identity token, and an
HMAC-SHA256 tag over nonce, flag and customer id with the channel's session secret. Any
worker with the same secret verifies an id without shared state; a bound id verifies only
together with the same customer's token, so signing out (or in as someone else) starts a
new conversation rather than showing the previous shopper's.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets

__all__ = ["SessionIssuer"]

logger = logging.getLogger(__name__)

_TAG_CHARS = 22  # 132 bits of the HMAC, base64url


class SessionIssuer:
    """Issues and verifies session ids with one secret (credentials ``session_secret``)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("The widget session secret must be at least 16 bytes.")
        self._secret = secret

    @classmethod
    def from_secret(cls, secret: str | None) -> "SessionIssuer":
        """The configured secret, or a random one for this start (ids then last until a restart)."""
        if secret:
            return cls(secret.encode("utf-8"))
        logger.info(
            "socketio: no 'session_secret' in credentials.yml; widget session ids are signed with a key "
            "made at start, so a restart (or another machine) starts shoppers' conversations afresh. "
            "Set 'session_secret: ${KEFU_WIDGET_SESSION_SECRET}' to keep them."
        )
        return cls(secrets.token_bytes(32))

    def _tag(self, nonce: str, flag: str, customer_id: str | None) -> str:
        message = f"{nonce}.{flag}.{customer_id or ''}".encode("utf-8")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:_TAG_CHARS]

    def issue(self, customer_id: str | None = None) -> str:
        """A new id; bound to ``customer_id`` when the session came with a verified token."""
        nonce = secrets.token_urlsafe(24)
        flag = "c" if customer_id else "a"
        return f"{nonce}.{flag}{self._tag(nonce, flag, customer_id)}"

    @staticmethod
    def is_bound(session_id: str) -> bool:
        """True for an id issued to a signed-in customer (its history needs their token)."""
        _nonce, _, rest = session_id.rpartition(".")
        return rest.startswith("c")

    def verify(self, session_id: str | None, customer_id: str | None = None) -> bool:
        """True when this server issued ``session_id`` for exactly this customer (or anonymously)."""
        if not isinstance(session_id, str):
            return False
        nonce, _, rest = session_id.rpartition(".")
        if not nonce or len(rest) != _TAG_CHARS + 1:
            return False
        flag, tag = rest[0], rest[1:]
        if flag != ("c" if customer_id else "a"):
            return False
        return hmac.compare_digest(tag, self._tag(nonce, flag, customer_id))
