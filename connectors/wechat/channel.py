"""The WeChat Official Account (公众号) input channel, ``wechat`` in credentials.yml.

``GET /webhooks/wechat/webhook`` answers WeChat's URL verification; ``POST`` receives
pushes in plaintext, compatible or safe (AES) mode. Each push is verified (signature or
``msg_signature``, timestamp window, nonce replay cache), deduplicated (WeChat retries
up to three times when it has no answer after 5 s), recorded, and handed to the bot.
If the bot answers within ``reply_timeout`` seconds with one message, it goes back as
the passive XML reply; otherwise the webhook answers ``success`` at once and the replies
go through the customer-service (客服) API, retried on transient errors.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.shared.exceptions import ConfigError
from bot.shared.message import CollectingOutputChannel, OutputChannel, UserMessage
from bot.shared.outputs import ChannelCapabilities
from connectors.base import InputChannel, OnNewMessage
from connectors.wechat.client import DEFAULT_API_BASE, WeChatAPIError, WeChatClient
from connectors.wechat.crypto import (
    InvalidSignatureError,
    MessageCrypto,
    WeChatCryptoError,
    check_signature,
    decode_aes_key,
)
from connectors.wechat.messages import (
    DEFAULT_MAX_XML_BYTES,
    IncomingMessage,
    MalformedMessageError,
    encrypt_candidates,
    parse_message,
    parse_xml,
)
from connectors.wechat.policy import SendPath, SendPolicy
from connectors.wechat.render import TEXTS, Outgoing, render_bot_messages
from connectors.wechat.store import WeChatStore, create_store

logger = logging.getLogger(__name__)

__all__ = ["WeChatConfig", "WeChatInput", "WeChatOutput"]

MODES = ("plaintext", "compatible", "safe")
WECHAT_TIMEOUT = 5.0
REQUIRED_KEYS = ("app_id", "app_secret", "token")
WECHAT_CAPABILITIES = ChannelCapabilities(label="wechat", send_window=True, templates=True,
                                          renders_then_sends=True, recipient_key="wechat_openid")


@dataclass(frozen=True)
class WeChatConfig:
    """The ``wechat:`` section of credentials.yml."""

    app_id: str
    app_secret: str
    token: str
    encoding_aes_key: str | None = None
    mode: str = "plaintext"
    api_base: str = DEFAULT_API_BASE
    reply_timeout: float = 4.0
    timestamp_tolerance: float = 300.0
    dedupe_ttl: float = 900.0
    max_body_size: int = DEFAULT_MAX_XML_BYTES
    redis_url: str | None = None
    menu: Mapping[str, str] = field(default_factory=dict)
    subscribe_payload: str | None = "/greet"
    unsubscribe_payload: str | None = None
    scan_payload: str | None = None
    unsupported_payload: str | None = None
    welcome_message: str | None = None
    language_slot: str = "language"
    customer_service_window_hours: float = 48.0
    customer_service_max_messages: int = 5
    delivery_attempts: int = 3
    retry_backoff: float = 1.0
    buttons_ttl: float = 24 * 3600.0

    @classmethod
    def from_dict(cls, credentials: Mapping[str, Any] | None) -> "WeChatConfig":
        data = dict(credentials or {})
        for key in REQUIRED_KEYS:
            if not data.get(key):
                raise ConfigError(
                    f"The 'wechat' channel needs '{key}'.",
                    filename="credentials.yml",
                    fix=f"Add '{key}: ...' under 'wechat:' (from the 公众号 admin console, 基本配置).",
                )
        mode = str(data.get("mode", "plaintext")).lower()
        if mode not in MODES:
            raise ConfigError(
                f"Unknown wechat 'mode' {data.get('mode')!r}.",
                filename="credentials.yml",
                fix=f"Set 'mode' to one of: {', '.join(MODES)}.",
            )
        aes_key = data.get("encoding_aes_key")
        if mode != "plaintext":
            if not aes_key:
                raise ConfigError(
                    f"The 'wechat' channel in '{mode}' mode needs 'encoding_aes_key'.",
                    filename="credentials.yml",
                    fix="Add the 43-character 'encoding_aes_key' (EncodingAESKey) or set 'mode: plaintext'.",
                )
            try:
                decode_aes_key(str(aes_key))
            except ValueError as e:
                raise ConfigError(
                    f"'encoding_aes_key' is invalid: {e}",
                    filename="credentials.yml",
                    fix="Copy the EncodingAESKey exactly as shown in the 公众号 console (43 characters).",
                ) from e
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown key(s) under 'wechat': {', '.join(unknown)}.",
                filename="credentials.yml",
                fix=f"Remove them; valid keys are: {', '.join(sorted(known))}.",
            )
        try:
            reply_timeout = float(data.get("reply_timeout", 4.0))
        except (TypeError, ValueError) as e:
            raise ConfigError("'reply_timeout' must be a number of seconds.", filename="credentials.yml",
                              fix="Set 'reply_timeout' to e.g. 4.0 (below WeChat's 5 s).") from e
        if not 0 < reply_timeout < WECHAT_TIMEOUT:
            raise ConfigError(
                f"'reply_timeout' must be between 0 and {WECHAT_TIMEOUT} seconds, got {reply_timeout}.",
                filename="credentials.yml",
                fix="WeChat drops answers after 5 s; set 'reply_timeout' to e.g. 4.0.",
            )
        menu = data.get("menu") or {}
        if not isinstance(menu, Mapping):
            raise ConfigError("'menu' must map menu keys (or VIEW URLs) to payloads.", filename="credentials.yml",
                              fix="Write e.g. 'menu: {ORDER_STATUS: /check_order}'.")
        data.update(mode=mode, reply_timeout=reply_timeout, menu={str(k): str(v) for k, v in menu.items()})
        data["app_id"], data["app_secret"], data["token"] = str(data["app_id"]), str(data["app_secret"]), str(data["token"])
        return cls(**data)


class WeChatCollector(CollectingOutputChannel):
    """Keeps each bot message dict whole (elements, custom, buttons) for rendering later.

    Named ``wechat`` so responses with ``channel: wechat`` variations are chosen.
    """

    @classmethod
    def name(cls) -> str:
        return "wechat"

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        kept = {k: v for k, v in message.items() if v not in (None, [], {}, "")}
        await self._persist_message({"recipient_id": recipient_id, **kept})


class WeChatOutput(OutputChannel):
    """Sends bot messages straight through the 客服 API (agent replies, proactive sends)."""

    @classmethod
    def name(cls) -> str:
        return "wechat"

    def __init__(self, channel: "WeChatInput") -> None:
        self.channel = channel

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        await self.channel.deliver(recipient_id, render_bot_messages([message]).messages)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})

    async def deliver_response(self, recipient_id: str, message: dict[str, Any]) -> bool:
        """Like :meth:`send_response` but says whether WeChat took it (human-agent replies)."""
        return await self.channel.deliver(recipient_id, render_bot_messages([message]).messages)

    async def allowed_send_path(self, recipient_id: str) -> SendPath:
        """The 48-hour customer-service window rule, for senders that must choose (handoff replies)."""
        return await self.channel.allowed_send_path(recipient_id)

    async def send_template(self, recipient_id: str, template_id: str, data: dict[str, Any],
                            url: str | None = None) -> dict[str, Any]:
        return await self.channel.client.send_template(recipient_id, template_id, data, url=url)

    async def send_proactive(self, recipient_id: str, messages: list[dict[str, Any]],
                             template_id: str | None = None, template_data: dict[str, Any] | None = None,
                             url: str | None = None) -> SendPath:
        """Rendered bot messages on the path WeChat allows now (see :meth:`WeChatInput.send_proactive`)."""
        return await self.channel.send_proactive(recipient_id, messages, template_id=template_id,
                                                 template_data=template_data, url=url)


class WeChatInput(InputChannel):
    """Official Account webhook; see the module docstring for the flow."""

    @classmethod
    def name(cls) -> str:
        return "wechat"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "WeChatInput":
        return cls(WeChatConfig.from_dict(credentials))

    def __init__(
        self,
        config: WeChatConfig,
        store: WeChatStore | None = None,
        client: WeChatClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self._store = store
        self._client = client
        self._policy: SendPolicy | None = None
        self.crypto = (
            MessageCrypto(config.token, config.encoding_aes_key, config.app_id)
            if config.encoding_aes_key
            else None
        )
        self._tasks: set[asyncio.Task] = set()
        self._inflight: dict[str, asyncio.Future] = {}
        self.failed_deliveries: list[tuple[str, dict[str, Any], str]] = []

    def __getstate__(self) -> dict[str, Any]:
        """Sanic pickles the app into each worker: keep config, drop per-loop state."""
        return {"config": self.config, "clock": self.clock, "store": None, "client": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["store"], state["client"], state["clock"])  # type: ignore[misc]

    # --- shared resources, created lazily inside the worker's event loop ---------------------
    @property
    def store(self) -> WeChatStore:
        if self._store is None:
            self._store = create_store(self.config.redis_url, f"kefu:wechat:{self.config.app_id}:")
        return self._store

    @property
    def client(self) -> WeChatClient:
        if self._client is None:
            redis = getattr(self.store, "redis", None)
            self._client = WeChatClient(self.config.app_id, self.config.app_secret, self.config.api_base, redis=redis)
        return self._client

    @property
    def policy(self) -> SendPolicy:
        if self._policy is None:
            self._policy = SendPolicy(
                self.store,
                self.config.customer_service_window_hours * 3600,
                self.config.customer_service_max_messages,
                clock=self.clock,
            )
        return self._policy

    async def allowed_send_path(self, openid: str) -> SendPath:
        """What a proactive message to ``openid`` may use now (for the trigger scheduler)."""
        return await self.policy.allowed_send_path(openid)

    def get_output_channel(self) -> OutputChannel:
        return WeChatOutput(self)

    # --- OutputProvider (bot.shared.outputs) ------------------------------------------------------
    def capabilities(self) -> ChannelCapabilities:
        """The 48-hour 客服 window per openid, template messages outside it, and proactive
        messages rendered first, then sent by one API call (``WeChatOutput.send_proactive``)."""
        return WECHAT_CAPABILITIES

    def output_for(self, recipient_id: str) -> WeChatOutput:
        """Any openid: the output asks WeChat's rules per send (``allowed_send_path``)."""
        return WeChatOutput(self)

    async def drain(self) -> None:
        """Wait for background processing and deliveries (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        if self._client is not None:
            await self._client.close()
        if self._store is not None:
            await self._store.close()

    # --- proactive sends ----------------------------------------------------------------------
    async def send_proactive(
        self,
        openid: str,
        messages: list[dict[str, Any]],
        template_id: str | None = None,
        template_data: dict[str, Any] | None = None,
        url: str | None = None,
    ) -> SendPath:
        """Send via 客服 when allowed, else the template if given; returns the path used."""
        path = await self.allowed_send_path(openid)
        if path is SendPath.CUSTOMER_SERVICE:
            await self.deliver(openid, render_bot_messages(messages).messages)
            return path
        if path is SendPath.TEMPLATE and template_id:
            await self.client.send_template(openid, template_id, template_data or {}, url=url)
            return path
        logger.info("Proactive message to %s not sent: allowed path is %s.", _mask(openid), path.value)
        return SendPath.NONE

    async def deliver(self, openid: str, messages: tuple[Outgoing, ...] | list[Outgoing]) -> bool:
        """Send through the 客服 API in order, retrying transient failures; False if any lost."""
        for index, message in enumerate(messages):
            body = message.api_body(openid)
            for attempt in range(1, self.config.delivery_attempts + 1):
                try:
                    await self.client.send_custom(body)
                    await self.policy.record_customer_service_send(openid)
                    break
                except WeChatAPIError as e:
                    if e.retryable and attempt < self.config.delivery_attempts:
                        delay = self.config.retry_backoff * 2 ** (attempt - 1)
                        logger.warning("Delivery to %s failed (%s); retry %d in %.1fs.", _mask(openid), e, attempt, delay)
                        await asyncio.sleep(delay)
                        continue
                    logger.error("Could not deliver a WeChat message to %s: %s", _mask(openid), e)
                    for rest in messages[index:]:
                        self.failed_deliveries.append((openid, rest.api_body(openid), str(e)))
                    return False
        return True

    # --- webhook ------------------------------------------------------------------------------
    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        bp = Blueprint(self.blueprint_name(), url_prefix=None)

        @bp.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            args = request.args
            timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
            if not check_signature(args.get("signature"), self.config.token, timestamp, nonce):
                return response.text("invalid signature", status=403)
            return response.text(args.get("echostr", ""))

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            return await self.handle_push(request, on_new_message)

        return bp

    async def handle_push(self, request: Request, on_new_message: OnNewMessage) -> HTTPResponse:
        """Verify, then parse: a push is refused before any XML parser sees its bytes.

        Order: size cap (413), timestamp window and ``signature`` over token,
        timestamp and nonce (403), then in AES mode ``msg_signature`` over the
        ``<Encrypt>`` value found by a byte scan (403), decryption, and only then
        ``defusedxml`` on the decrypted document (400 when malformed or carrying a DTD).
        """
        body = request.body or b""
        declared = request.headers.get("Content-Length", "")
        if len(body) > self.config.max_body_size or (declared.isdigit() and int(declared) > self.config.max_body_size):
            return response.text(f"body above {self.config.max_body_size} bytes", status=413)
        args = request.args
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        try:
            sent_at = int(timestamp)
        except ValueError:
            return response.text("missing or invalid timestamp", status=403)
        if abs(self.clock() - sent_at) > self.config.timestamp_tolerance:
            return response.text("timestamp outside the allowed window", status=403)
        # WeChat sends ``signature`` in every mode; AES mode adds ``msg_signature``.
        if not check_signature(args.get("signature"), self.config.token, timestamp, nonce):
            return response.text("invalid signature", status=403)

        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        try:
            if encrypted:
                if self.crypto is None or self.config.mode == "plaintext":
                    return response.text("encrypted message but 'mode' is plaintext", status=400)
                plain = self._verified_plaintext(body, args.get("msg_signature"), timestamp, nonce)
                fields = parse_xml(plain, self.config.max_body_size)
            else:
                if self.config.mode == "safe":
                    return response.text("safe mode accepts only encrypted messages", status=400)
                fields = parse_xml(body, self.config.max_body_size)
            incoming = parse_message(fields)
        except WeChatCryptoError as e:
            logger.warning("Rejected a WeChat push: %s", e)
            return response.text("invalid signature or encryption", status=403)
        except MalformedMessageError as e:
            logger.warning("Malformed WeChat push: %s", e)
            return response.text(f"malformed message: {e}", status=400)

        def reply(xml: str | None) -> HTTPResponse:
            if not xml:
                return response.text("success")
            if encrypted and self.crypto is not None:
                xml = self.crypto.encrypt_message(xml, nonce=nonce)
            return response.text(xml, content_type="application/xml")

        key = incoming.dedupe_key
        if not await self.store.add_if_absent(f"seen:{key}", self.config.dedupe_ttl):
            logger.info("WeChat retry of %s ignored.", key)
            return reply(await self._reply_for_retry(key))
        if not await self.store.add_if_absent(f"nonce:{timestamp}:{nonce}", self.config.timestamp_tolerance * 2):
            return response.text("replayed request", status=403)

        try:
            xml = await self._dispatch(request, incoming, on_new_message)
        except Exception:  # let WeChat retry: forget the dedupe mark
            logger.exception("Handling WeChat message %s failed.", key)
            await self.store.delete(f"seen:{key}")
            return response.text("error", status=500)
        if xml:
            await self.store.set(f"reply:{key}", xml, self.config.dedupe_ttl)
        return reply(xml)

    def _verified_plaintext(self, body: bytes, msg_signature: str | None, timestamp: str, nonce: str) -> str:
        """The decrypted push whose ciphertext ``msg_signature`` vouches for.

        The envelope is not parsed (see :func:`encrypt_candidates`); a candidate
        that fails the signature is never decrypted.
        """
        assert self.crypto is not None
        if not msg_signature:
            raise InvalidSignatureError("Encrypted push lacks msg_signature.")
        try:
            candidates = encrypt_candidates(body, self.config.max_body_size)
        except MalformedMessageError as e:  # nothing the signature could vouch for
            raise InvalidSignatureError(f"msg_signature cannot be verified: {e}") from e
        for candidate in candidates:
            if check_signature(msg_signature, self.config.token, timestamp, nonce, candidate):
                return self.crypto.decrypt(candidate)
        raise InvalidSignatureError("msg_signature does not match the encrypted message.")

    async def _reply_for_retry(self, key: str) -> str | None:
        future = self._inflight.get(key)
        if future is not None:
            try:
                await asyncio.wait_for(asyncio.shield(future), self.config.reply_timeout)
            except (asyncio.TimeoutError, Exception):
                pass
        return await self.store.get(f"reply:{key}")

    # --- from a push to the bot ----------------------------------------------------------------
    async def _language(self, request: Request, openid: str) -> str:
        agent = getattr(request.app.ctx, "agent", None)
        if agent is None or not hasattr(agent, "get_tracker"):
            return "zh"
        try:
            tracker = await agent.get_tracker(openid)
            value = tracker.get_slot(self.config.language_slot) if tracker is not None else None
        except Exception:  # no model yet, store down: Chinese is the safe default
            return "zh"
        return "en" if isinstance(value, str) and value.lower().startswith("en") else "zh"

    async def _canned(self, request: Request, incoming: IncomingMessage, text_key: str) -> str:
        language = await self._language(request, incoming.from_user)
        return Outgoing("text", TEXTS[language][text_key]).xml(incoming.from_user, incoming.to_user)

    async def _dispatch(self, request: Request, incoming: IncomingMessage, on_new_message: OnNewMessage) -> str | None:
        openid = incoming.from_user
        meta: dict[str, Any] = {"msg_type": incoming.msg_type, "create_time": incoming.create_time}
        text: str | None = None
        msg_type, event = incoming.msg_type, incoming.event

        if msg_type == "event" and event == "unsubscribe":
            await self.policy.set_opted_out(openid, True)
            text = self.config.unsubscribe_payload
            meta["event"] = "unsubscribe"
            if text:
                await self._record_only(UserMessage(text, CollectingOutputChannel(), openid, input_channel=self.name(),
                                                    message_id=incoming.dedupe_key, metadata={"wechat": meta}), on_new_message)
            return None

        await self.policy.record_inbound(openid, self.clock())
        if msg_type == "text":
            text = await self._map_number(openid, incoming.content or "")
        elif msg_type == "voice":
            if not incoming.recognition:
                return await self._canned(request, incoming, "voice_unrecognised")
            text = await self._map_number(openid, incoming.recognition)
            meta["voice"] = True
        elif msg_type in ("image", "video", "shortvideo", "location", "link", "file"):
            meta.update({"media_id": incoming.media_id, "pic_url": incoming.pic_url,
                         "location": dict(incoming.location or {}), "link": dict(incoming.link or {})})
            if not self.config.unsupported_payload:
                key = {"location": "location", "link": "link"}.get(msg_type, "unsupported")
                return await self._canned(request, incoming, key)
            text = self.config.unsupported_payload
        elif msg_type == "event":
            meta["event"] = event
            if event == "subscribe":
                await self.policy.set_opted_out(openid, False)
                if incoming.event_key:  # scanned a parametric QR code while subscribing
                    meta["scene"] = incoming.event_key.removeprefix("qrscene_")
                text = self.config.subscribe_payload
                if not text:
                    return Outgoing("text", self.config.welcome_message or TEXTS["zh"]["welcome"]).xml(openid, incoming.to_user)
            elif event == "scan":
                meta["scene"] = incoming.event_key
                text = self.config.scan_payload
            elif event in ("click", "view"):
                meta["event_key"] = incoming.event_key
                text = self.config.menu.get(incoming.event_key or "")
                if text is None:
                    logger.warning("WeChat menu key %r is not mapped under 'menu:' in credentials.yml.", incoming.event_key)
            else:
                logger.debug("WeChat event %r ignored.", event)
            if not text:
                return None
        else:
            logger.warning("Unknown WeChat message type %r from %s ignored.", msg_type, _mask(openid))
            return None

        message = UserMessage(
            text,
            WeChatCollector(),
            openid,
            input_channel=self.name(),
            message_id=incoming.msg_id or incoming.dedupe_key,
            metadata={"wechat": meta},
        )
        return await self._answer(request, incoming, message, on_new_message)

    async def _record_only(self, message: UserMessage, on_new_message: OnNewMessage) -> None:
        try:
            await on_new_message(message)
        except Exception:
            logger.exception("Recording WeChat event for %s failed.", _mask(message.sender_id))

    async def _map_number(self, openid: str, text: str) -> str:
        """A bare number answering a numbered choice becomes that button's payload."""
        raw = await self.store.get(f"buttons:{openid}")
        if raw is None:
            return text
        stripped = text.strip()
        if stripped.isdigit():
            payloads = json.loads(raw)
            index = int(stripped) - 1
            if 0 <= index < len(payloads):
                await self.store.delete(f"buttons:{openid}")
                return payloads[index]
        return text

    async def _answer(
        self, request: Request, incoming: IncomingMessage, message: UserMessage, on_new_message: OnNewMessage
    ) -> str | None:
        key = incoming.dedupe_key
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._inflight[key] = future

        async def process() -> tuple[Outgoing, ...]:
            try:
                await on_new_message(message)
                collected = getattr(message.output_channel, "messages", [])
                if not collected and incoming.event == "subscribe" and self.config.welcome_message:
                    collected = [{"text": self.config.welcome_message}]
                language = "zh"
                if any(m.get("buttons") or m.get("quick_replies") or m.get("image") for m in collected):
                    language = await self._language(request, incoming.from_user)
                rendered = render_bot_messages(collected, language)
                if rendered.button_payloads:
                    await self.store.set(f"buttons:{incoming.from_user}", json.dumps(rendered.button_payloads),
                                         self.config.buttons_ttl)
                return rendered.messages
            finally:
                if not future.done():
                    future.set_result(None)
                self._inflight.pop(key, None)

        task = asyncio.create_task(process())
        self._track(task)
        done, _ = await asyncio.wait({task}, timeout=self.config.reply_timeout)
        if task in done:
            outgoing = task.result()  # a processing error propagates: WeChat retries
            if not outgoing:
                return None
            if len(outgoing) == 1 and outgoing[0].passive:
                return outgoing[0].xml(incoming.from_user, incoming.to_user)
            self._track(asyncio.create_task(self.deliver(incoming.from_user, outgoing)))
            return None

        logger.info("Bot slower than %.1fs for %s; replying via the customer-service API.",
                    self.config.reply_timeout, _mask(incoming.from_user))

        async def deliver_later() -> None:
            try:
                outgoing = await task
            except Exception:
                logger.exception("Processing WeChat message %s failed after the passive window.", key)
                return
            if outgoing:
                await self.deliver(incoming.from_user, outgoing)

        self._track(asyncio.create_task(deliver_later()))
        return None

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _mask(openid: str) -> str:
    """Openids are personal data: log only a prefix."""
    return openid[:6] + "…" if len(openid) > 6 else openid
