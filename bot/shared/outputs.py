"""One way to reach a shopper: the registry of output channels the server builds.

Agent replies (handoff), lifecycle sends (triggers) and satisfaction prompts all
ask this registry for "channel + recipient → output" instead of knowing channel
names or importing connectors. Each channel that can reach a shopper outside a
request registers an :class:`OutputProvider` and declares what it can do in
:class:`ChannelCapabilities` (e.g. WeChat: template messages outside the 48-hour
customer-service window). Channels that only answer inside a request (REST) do
not register: a message for them is recorded in the conversation only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable

from bot.shared.message import OutputChannel

logger = logging.getLogger(__name__)

# What a channel allows right now for one recipient (WeChat's 48-hour rule says which).
SEND_DIRECT = "customer_service"  # an ordinary message reaches them
SEND_TEMPLATE = "template"  # only a template message does (window closed)
SEND_NONE = "none"  # nothing does (unsubscribed)


@dataclass(frozen=True)
class ChannelCapabilities:
    """What a channel can do when kefu speaks first.

    ``label`` names the channel in send/skip reasons (``widget_not_mounted``,
    ``wechat_unsubscribed``). ``send_window`` is True when the channel restricts
    sends per recipient (the output then has ``allowed_send_path(recipient)``);
    ``templates`` when it can send template messages (``send_template(...)``);
    ``renders_then_sends`` when a proactive message is rendered into a collector
    first and delivered by the channel's own API call (``send_proactive``),
    rather than pushed by the output channel while the action runs.
    """

    label: str
    push: bool = True
    send_window: bool = False
    templates: bool = False
    renders_then_sends: bool = False


@runtime_checkable
class OutputProvider(Protocol):
    """A channel that can reach its shoppers outside a request."""

    def name(self) -> str: ...

    def capabilities(self) -> ChannelCapabilities: ...

    def output_for(self, recipient_id: str) -> OutputChannel | None:
        """An output channel that reaches ``recipient_id`` now (None: this one can't be reached)."""
        ...


class OutputRegistry:
    """``channel name → OutputProvider``, built once per worker by the server."""

    def __init__(self, providers: Iterable[OutputProvider] = ()) -> None:
        self._providers: dict[str, OutputProvider] = {}
        for provider in providers:
            self.register(provider)

    @classmethod
    def from_channels(cls, channels: Iterable[Any]) -> "OutputRegistry":
        """Every input channel that is also an :class:`OutputProvider` registers itself."""
        return cls(c for c in channels if isinstance(c, OutputProvider))

    def register(self, provider: OutputProvider) -> None:
        self._providers[provider.name()] = provider

    def names(self) -> list[str]:
        return list(self._providers)

    def provider(self, channel: str | None) -> OutputProvider | None:
        return self._providers.get(channel or "")

    def capabilities(self, channel: str | None) -> ChannelCapabilities | None:
        provider = self.provider(channel)
        return provider.capabilities() if provider is not None else None

    def output_for(self, channel: str | None, recipient_id: str) -> OutputChannel | None:
        """The output that reaches ``recipient_id`` on ``channel``; None when nothing does."""
        provider = self.provider(channel)
        if provider is None:
            return None
        return provider.output_for(recipient_id)

    def __contains__(self, channel: object) -> bool:
        return channel in self._providers

    def __len__(self) -> int:
        return len(self._providers)
