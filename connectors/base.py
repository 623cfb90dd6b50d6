"""Input channels: how a chat platform's webhook becomes a ``UserMessage``.

Mirrors ``rasa/core/channels/channel.py``: an ``InputChannel`` returns a Sanic
``Blueprint`` whose routes build a ``UserMessage`` and hand it to
``on_new_message``; the server mounts each blueprint under
``/webhooks/<url_prefix>/``. Channels are created from ``credentials.yml``
through one explicit ``{name: class path}`` table (``BUILTIN_CHANNELS``), a
dotted path selects a custom channel class as in Rasa.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from sanic import Blueprint, Request

from bot.shared.exceptions import ConfigError, UnknownComponentError
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage
from bot.shared.outputs import ChannelCapabilities

if TYPE_CHECKING:  # pragma: no cover
    from sanic import Sanic

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_CHANNELS",
    "ChannelCapabilities",
    "CollectingOutputChannel",
    "DEFAULT_WEBHOOK_ROUTE",
    "IDENTITY_METADATA_KEY",
    "InputChannel",
    "OnNewMessage",
    "OutputChannel",
    "RESERVED_METADATA_KEYS",
    "UserMessage",
    "channel_class",
    "create_input_channels",
    "register",
    "untrusted_metadata",
]

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]

DEFAULT_WEBHOOK_ROUTE = "/webhooks/"

# The one metadata key under which a channel states a shopper identity it verified itself
# (``{"customer_id": ..., "source": "widget_token", "verified": true}``, docs/channels.md).
# Project actions trust it because no channel passes it through from a client.
IDENTITY_METADATA_KEY = "identity"
# Keys a client must never set in message metadata: the identity key, and names that look
# like an identity to project code (an action reading ``metadata["customer_id"]`` would be
# fooled by any caller of a public webhook).
RESERVED_METADATA_KEYS = frozenset(
    {IDENTITY_METADATA_KEY, "customer_id", "customer", "openid", "wechat_openid", "phone", "verified",
     "user_id", "uid"}
)

# credentials.yml key -> class. Later channels (socketio, wechat) add a line here.
BUILTIN_CHANNELS: dict[str, str] = {
    "rest": "connectors.rest.RestInput",
    "callback": "connectors.rest.CallbackInput",
    "socketio": "connectors.socketio.SocketIOInput",
    "wechat": "connectors.wechat.channel.WeChatInput",
}


class InputChannel:
    """A source of user messages with its own HTTP routes."""

    @classmethod
    def name(cls) -> str:
        """Identifies the channel (``UserMessage.input_channel``, URL prefix)."""
        return cls.__name__

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "InputChannel":
        """Build the channel from its ``credentials.yml`` section."""
        return cls()

    def url_prefix(self) -> str:
        """Path segment under ``/webhooks/``; defaults to :meth:`name`."""
        return self.name()

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The Sanic blueprint serving this channel's webhooks."""
        raise NotImplementedError(
            f"Input channel '{self.name()}' must implement blueprint(on_new_message)."
        )

    def get_output_channel(self) -> OutputChannel | None:
        """Where bot messages go when a conversation is driven from outside
        (``?output_channel=<name>`` on the conversations API); ``None`` collects."""
        return None

    # -- OutputProvider (bot.shared.outputs): reaching a shopper outside a request ---------
    def capabilities(self) -> ChannelCapabilities:
        """What this channel can do when kefu speaks first (agent replies, trigger sends).

        By default a channel can push exactly when its class overrides
        :meth:`get_output_channel` (a custom channel with its own output keeps reaching its
        shoppers); channels that answer only inside a request (REST) say ``push=False`` and
        the server's output registry leaves them out. Override to declare more (WeChat).
        """
        overridden = type(self).get_output_channel is not InputChannel.get_output_channel
        return ChannelCapabilities(label=self.name(), push=overridden)

    def output_for(self, recipient_id: str) -> OutputChannel | None:
        """An output that reaches ``recipient_id`` now; ``None`` when this channel cannot push."""
        return self.get_output_channel() if self.capabilities().push else None

    def get_metadata(self, request: Request) -> dict[str, Any] | None:
        """Channel-specific metadata attached to the ``UserMessage``."""
        return None

    def blueprint_name(self) -> str:
        """A Sanic-valid, per-class unique blueprint name."""
        safe = "".join(c if c.isalnum() else "_" for c in type(self).__name__)
        return f"custom_webhook_{safe}"


def untrusted_metadata(metadata: dict[str, Any] | None, channel: str) -> dict[str, Any] | None:
    """Client-supplied metadata without the identity keys (``RESERVED_METADATA_KEYS``).

    Whatever a browser or a script sends is the client's word; an identity comes only from
    the channel's own verification (the widget's shop-signed token), never from the body.
    """
    if not metadata:
        return metadata
    dropped = sorted(k for k in metadata if k in RESERVED_METADATA_KEYS)
    if not dropped:
        return metadata
    logger.debug(
        "Channel '%s' dropped client-supplied metadata key(s) %s: identity comes only from the "
        "channel's own verification (docs/channels.md).", channel, dropped,
    )
    return {k: v for k, v in metadata.items() if k not in RESERVED_METADATA_KEYS}


def _import_class(path: str, name: str) -> type[InputChannel]:
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise UnknownComponentError.for_name(
            "input channel", name, list(BUILTIN_CHANNELS)
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, InputChannel)):
        raise ConfigError(
            f"'{path}' is not an InputChannel subclass.",
            fix="Point credentials.yml at a class deriving from connectors.base.InputChannel.",
        )
    return cls


def channel_class(name: str) -> type[InputChannel]:
    """Resolve a ``credentials.yml`` key: a built-in name or a dotted class path."""
    if name in BUILTIN_CHANNELS:
        return _import_class(BUILTIN_CHANNELS[name], name)
    if "." in name:
        return _import_class(name, name)
    raise UnknownComponentError.for_name("input channel", name, list(BUILTIN_CHANNELS))


# Rasa channels that only talk to a Rasa X / Rasa Enterprise server: `rasa init` writes
# `rasa:` into every credentials.yml. Rasa serves such a project; so does kefu, without it.
SKIPPED_RASA_CHANNELS = {
    "rasa": "Rasa X's own channel (RasaChatInput): it checks users against a Rasa X server, "
    "which kefu does not use",
}


def create_input_channels(credentials: dict[str, Any] | None) -> list[InputChannel]:
    """Instantiate every channel named in parsed ``credentials.yml``."""
    channels: list[InputChannel] = []
    for name, section in (credentials or {}).items():
        if str(name) in SKIPPED_RASA_CHANNELS:
            logger.warning(
                "credentials.yml: channel '%s' is skipped: %s. The other channels (and REST) are "
                "served. Fix: remove '%s:' from credentials.yml.",
                name, SKIPPED_RASA_CHANNELS[str(name)], name,
            )
            continue
        if section is not None and not isinstance(section, dict):
            # Rasa's `rasa: {url: ...}` and similar keep a dict; anything else is a typo.
            raise ConfigError(
                f"Credentials for channel '{name}' must be a mapping, got {type(section).__name__}.",
                filename="credentials.yml",
                fix=f"Write '{name}:' followed by indented keys, or leave it empty.",
            )
        channels.append(channel_class(str(name)).from_credentials(section))
    return channels


def register(
    input_channels: Iterable[InputChannel],
    app: "Sanic",
    on_new_message: OnNewMessage,
    route: str | None = DEFAULT_WEBHOOK_ROUTE,
) -> None:
    """Mount each channel's blueprint at ``<route><url_prefix>`` (Rasa's layout)."""
    channels = list(input_channels)
    seen: set[str] = set()
    for channel in channels:
        prefix = channel.url_prefix()
        if prefix in seen:
            raise ConfigError(
                f"Two input channels use the URL prefix '{prefix}'.",
                fix="Give each channel its own name / url_prefix().",
            )
        seen.add(prefix)
        url_prefix = None
        if route:
            url_prefix = route.rstrip("/") + "/" + prefix.strip("/")
        app.blueprint(channel.blueprint(on_new_message), url_prefix=url_prefix)
        logger.debug("Mounted input channel '%s' at %s", channel.name(), url_prefix or "/")
    app.ctx.input_channels = channels

