"""The one refusal the handoff service raises; the agent API maps it to an HTTP status."""
from __future__ import annotations


class HandoffError(Exception):
    """An API-level refusal (``status`` says which HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
