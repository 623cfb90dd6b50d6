"""Small fakes shared by the handoff tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

class RecordingBroker:
    """An event broker that keeps what was published (the trigger scheduler's view)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def publish(self, event: dict[str, Any], headers: Any = None) -> None:
        self.events.append(event)

    def names(self, sender_id: str | None = None) -> list[str]:
        return [e.get("event") for e in self.events if sender_id is None or e.get("sender_id") == sender_id]

    async def close(self) -> None:
        pass


class CapturingChannel:
    """Push target standing in for the widget: records what the shopper would see."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def name(cls) -> str:
        return "test"

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        self.sent.append((recipient_id, dict(message)))


def make_config(base: dict[str, Any], db: Path, **overrides: Any) -> Any:
    from bot.handoff import HandoffConfig

    return HandoffConfig.from_dict({**base, "store_url": f"sqlite+aiosqlite:///{db}", "secret": "test-secret-0123456789abcdef0123456789",
                                    **overrides})
