"""Who is asking, for the privacy decisions: unmasked transcripts and data requests are for admins.

The caller's principal comes from ``bot.web.auth.principal_of`` (verified credentials only);
an API served without any credential configured (the loopback-only development mode) is
open, and its callers count as admins there, as on every other route.
"""
from __future__ import annotations

from typing import Any

from bot.web.auth import principal_of, requires_scope
from bot.web.principals import Scope


def sees_personal_data(request: Any) -> bool:
    """True only for an admin: everyone else gets masked transcripts."""
    principal = principal_of(request)
    return principal is not None and principal.is_admin


def data_admin_guard() -> Any:
    """The route decorator for data requests (export, erase): ``Scope.DATA_ADMIN``."""
    return requires_scope(Scope.DATA_ADMIN)
