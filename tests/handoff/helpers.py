"""Small fakes shared by the handoff tests."""
from __future__ import annotations

import functools
import secrets
from pathlib import Path
from typing import Any

TEST_SECRET = secrets.token_hex(32)  # generated per run: no credential is committed


@functools.lru_cache(maxsize=None)
def password_for(agent_id: str) -> str:
    """The password of a test agent, generated once per test run."""
    return secrets.token_urlsafe(16)


@functools.lru_cache(maxsize=None)
def hash_for(agent_id: str) -> str:
    """An argon2id hash of :func:`password_for` with low costs (fast tests; the format is the real one)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(password_for(agent_id))


def with_credentials(agents: Any) -> Any:
    """``handoff.agents`` entries with a generated ``password_hash`` where they have none."""
    return [a if not isinstance(a, dict) or a.get("password_hash") else {**a, "password_hash": hash_for(a["id"])}
            for a in agents or []]


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


class ChannelProvider:
    """A real :class:`~bot.shared.outputs.OutputProvider` over one output (or an input channel's outputs).

    ``output`` answers every recipient; ``channel`` is an input channel whose
    ``get_output_channel_for(sender)`` / ``get_output_channel()`` reaches them (socket.io, WeChat).
    """

    def __init__(self, name: str, output: Any = None, channel: Any = None, **capabilities: Any) -> None:
        from bot.shared.outputs import ChannelCapabilities

        self._name, self.output, self.channel = name, output, channel
        self._capabilities = ChannelCapabilities(label=name, **capabilities)

    def name(self) -> str:
        return self._name

    def capabilities(self) -> Any:
        return self._capabilities

    def output_for(self, recipient_id: str) -> Any:
        if self.channel is None:
            return self.output
        if hasattr(self.channel, "get_output_channel_for"):
            return self.channel.get_output_channel_for(recipient_id)
        return self.channel.get_output_channel()


def outputs(*providers: Any) -> Any:
    from bot.shared.outputs import OutputRegistry

    return OutputRegistry(providers)


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

    merged = {**base, "store_url": f"sqlite+aiosqlite:///{db}", "secret": TEST_SECRET, **overrides}
    merged["agents"] = with_credentials(merged.get("agents"))
    return HandoffConfig.from_dict(merged)
