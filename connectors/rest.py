"""Rasa's REST channel: ``POST /webhooks/rest/webhook`` returns the bot's replies.

Request ``{"sender": "u1", "message": "hi", "metadata": {...}}``; response a
JSON list of Rasa REST messages (``recipient_id``, ``text``, ``buttons``,
``image``, ``custom`` ...). ``?stream=true`` sends each reply as one JSON line
as soon as it is produced. ``CallbackInput`` answers ``success`` and
POSTs each reply to the URL from ``credentials.yml`` (``callback: {url: ...}``).

Unlike Rasa, the message's ``input_channel`` is always the channel's own name (a body's
``input_channel`` is ignored) and identity keys in ``metadata`` are dropped: whoever can reach
a public webhook is a stranger until a channel verifies them (docs/channels.md).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.web.errors import bad_request
from bot.web.requests import bool_arg, json_body
from bot.shared.exceptions import ConfigError
from connectors.base import (
    ChannelCapabilities,
    CollectingOutputChannel,
    InputChannel,
    OnNewMessage,
    UserMessage,
    untrusted_metadata,
)

logger = logging.getLogger(__name__)

_STREAM_DONE = object()


def request_body(request: Request) -> dict[str, Any]:
    """The JSON object body, or a 400 that says what is wrong with it."""
    return json_body(request, dict)


class QueueOutputChannel(CollectingOutputChannel):
    """Collects messages and also pushes each one onto a queue for streaming."""

    @classmethod
    def name(cls) -> str:
        return "queue"

    def __init__(self, message_queue: asyncio.Queue | None = None) -> None:
        super().__init__()
        self.messages_queue: asyncio.Queue = message_queue or asyncio.Queue()

    async def _persist_message(self, message: dict[str, Any]) -> None:
        await super()._persist_message(message)
        self.messages_queue.put_nowait(message)


class RestInput(InputChannel):
    """A synchronous request/response channel; any website or script can use it."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def capabilities(self) -> ChannelCapabilities:
        """Answers only inside the request: agent replies and trigger sends for a REST (or
        callback) conversation are recorded in it, not pushed, so the output registry leaves
        this channel out (callback's URL could take pushes; it has not so far)."""
        return ChannelCapabilities(label=self.name(), push=False)

    async def _extract_sender(self, request: Request) -> str | None:
        sender = request_body(request).get("sender")
        if sender is None:
            return None
        if isinstance(sender, (dict, list)):
            raise bad_request("'sender' must be a string (the conversation id).", "sender")
        return str(sender)

    def _extract_message(self, request: Request) -> str:
        text = request_body(request).get("message")
        if not isinstance(text, str):
            raise bad_request(
                "The request body needs a 'message' string with the user's text, e.g. "
                '{"sender": "user1", "message": "hello"}.',
                "message",
            )
        return text

    def _extract_input_channel(self, request: Request) -> str:
        """Always this channel's own name: a caller of a public webhook must not claim to be
        WeChat (whose sender ids are openids the shop trusts as identities)."""
        claimed = request_body(request).get("input_channel")
        if claimed is not None and claimed != self.name():
            logger.debug(
                "Ignored client-supplied input_channel %r on the '%s' webhook; the message is "
                "recorded as '%s'.", claimed, self.name(), self.name(),
            )
        return self.name()

    def get_metadata(self, request: Request) -> dict[str, Any] | None:
        """The body's ``metadata`` object, without identity keys (``untrusted_metadata``)."""
        metadata = request_body(request).get("metadata")
        if metadata is None:
            return None
        if not isinstance(metadata, dict):
            raise bad_request("'metadata' must be a JSON object.", "metadata")
        return untrusted_metadata(metadata, self.name())

    async def _build_message(self, request: Request, collector: Any) -> UserMessage:
        return UserMessage(
            self._extract_message(request),
            collector,
            await self._extract_sender(request),
            input_channel=self._extract_input_channel(request),
            metadata=self.get_metadata(request),
            sender_verified=False,  # the caller names the sender; nothing proves it
        )

    async def _stream(
        self, request: Request, on_new_message: OnNewMessage
    ) -> HTTPResponse | None:
        queue: asyncio.Queue = asyncio.Queue()
        collector = QueueOutputChannel(queue)
        # Validate before the 200 status line is sent, so bad input still gets a 400.
        message = await self._build_message(request, collector)

        async def handle() -> None:
            try:
                await on_new_message(message)
            finally:
                queue.put_nowait(_STREAM_DONE)

        task = asyncio.create_task(handle())
        stream = await request.respond(content_type="text/event-stream")
        while True:
            item = await queue.get()
            if item is _STREAM_DONE:
                break
            await stream.send(json.dumps(item, ensure_ascii=False) + "\n")
        try:
            await task
        except Exception:  # the status line is gone; all we can do is log
            logger.exception("Streaming message for '%s' failed", message.sender_id)
        await stream.eof()
        return None

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        bp = Blueprint(self.blueprint_name(), url_prefix=None)

        @bp.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse | None:
            if bool_arg(request, "stream"):
                return await self._stream(request, on_new_message)
            collector = CollectingOutputChannel()
            await on_new_message(await self._build_message(request, collector))
            return response.json(collector.messages)

        return bp


class CallbackOutput(CollectingOutputChannel):
    """POSTs every bot message to the client's callback URL."""

    @classmethod
    def name(cls) -> str:
        return "callback"

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout
        self.transport = transport  # tests inject httpx.MockTransport

    async def _persist_message(self, message: dict[str, Any]) -> None:
        await super()._persist_message(message)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                reply = await client.post(self.url, json=message, headers=self.headers)
                reply.raise_for_status()
        except httpx.HTTPError as e:
            logger.error(
                "Could not deliver a bot message to the callback URL %s: %s", self.url, e
            )


class CallbackInput(RestInput):
    """Like REST, but replies go to ``credentials.yml``'s ``callback: url``."""

    @classmethod
    def name(cls) -> str:
        return "callback"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "CallbackInput":
        url = (credentials or {}).get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(
                "The 'callback' channel needs the URL to post bot messages to.",
                filename="credentials.yml",
                fix="Add 'callback:\\n  url: http://localhost:5034/bot' to credentials.yml.",
            )
        return cls(url, headers=(credentials or {}).get("headers"))

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.transport = transport

    def get_output_channel(self) -> CallbackOutput:
        return CallbackOutput(self.url, self.headers, transport=self.transport)

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        bp = Blueprint(self.blueprint_name(), url_prefix=None)

        @bp.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            message = await self._build_message(request, self.get_output_channel())
            await on_new_message(message)
            return response.text("success")

        return bp
