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
    ``wechat_unsubscribed``). ``push`` False: the channel answers only inside a request
    (REST) and :meth:`OutputRegistry.from_channels` leaves it out. ``send_window`` is True
    when the channel restricts sends per recipient (the output is then a
    :class:`WindowedOutput`: ``allowed_send_path(recipient)`` → a ``SEND_*`` value);
    ``templates`` when it can send template messages (a :class:`TemplateOutput`:
    ``send_template(...)``); ``renders_then_sends`` when a proactive message is rendered
    into a collector first and delivered by the channel's own API call — the output is then
    a :class:`ProactiveOutput` whose ``send_proactive(recipient, messages, template_id=...)``
    picks the path itself and returns the ``SEND_*`` value it used — rather than pushed by
    the output channel while the action runs. ``recipient_key`` names the customer-profile
    field holding this channel's recipient id when it differs from the conversation's
    sender id (WeChat: ``wechat_openid``).
    """

    label: str
    push: bool = True
    send_window: bool = False
    templates: bool = False
    renders_then_sends: bool = False
    recipient_key: str | None = None


@runtime_checkable
class WindowedOutput(Protocol):
    """The output of a channel with ``send_window``: which path reaches ``recipient_id`` now."""

    async def allowed_send_path(self, recipient_id: str) -> str:
        """``SEND_DIRECT``, ``SEND_TEMPLATE`` or ``SEND_NONE`` (a ``str`` enum is fine)."""
        ...


@runtime_checkable
class TemplateOutput(Protocol):
    """The output of a channel with ``templates``."""

    async def send_template(self, recipient_id: str, template_id: str, data: dict[str, Any],
                            url: str | None = None) -> dict[str, Any]: ...


@runtime_checkable
class ProactiveOutput(Protocol):
    """The output of a channel with ``renders_then_sends``."""

    async def send_proactive(self, recipient_id: str, messages: list[dict[str, Any]],
                             template_id: str | None = None, template_data: dict[str, Any] | None = None,
                             url: str | None = None) -> str:
        """Send rendered ``messages`` on the path allowed now (the template outside the window
        when ``template_id`` is given); returns the ``SEND_*`` value used."""
        ...


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
        """Every input channel that is an :class:`OutputProvider` and can push registers itself."""
        return cls(c for c in channels if isinstance(c, OutputProvider) and c.capabilities().push)

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
