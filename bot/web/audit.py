"""Recording a route's read of a transcript in the app's audit log (``app.ctx.audit``).

Routes call :func:`audit_read` right before they answer with a conversation's tracker,
so every transcript that leaves the server over HTTP names who got it.
"""
from __future__ import annotations

import logging
from typing import Any

from sanic import Request

from bot.web.auth import principal_of

logger = logging.getLogger(__name__)


def client_address(request: Request) -> str | None:
    """The caller's address as Sanic sees it (the proxy's, unless Sanic's proxy settings are configured)."""
    return request.remote_addr or request.ip or None


async def audit_read(request: Request, action: str, conversation_id: str) -> None:
    """Record that the request's principal read ``conversation_id``'s transcript."""
    audit: Any = getattr(request.app.ctx, "audit", None)
    principal = principal_of(request)
    if audit is None or principal is None:  # routes that answer with a tracker always have both
        logger.warning("Transcript of %s read without an audit log or a principal.", conversation_id)
        return
    await audit.record(principal, action, conversation_id, address=client_address(request),
                       detail={"route": f"{request.method} {request.path}"})
