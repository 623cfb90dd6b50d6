"""Rasa's ``socketio`` channel, plus what a shop's chat widget needs on top.

Protocol (same events and shapes as ``rasa/core/channels/socketio.py`` 3.6, so
rasa-webchat and Rasa's Chatwidget work unchanged):

- client ``session_request {session_id?}`` -> server ``session_confirm <session_id>``
  (with ``session_persistence: true`` the socket joins the room ``session_id``
  and that id is the conversation's ``sender_id``; otherwise the socket id is);
- client ``user_uttered {message, session_id?, metadata?}`` (event name from
  ``user_message_evt``) -> server ``bot_uttered`` messages (``bot_message_evt``):
  ``{"text"}``, ``{"text", "quick_replies": [...]}``,
  ``{"attachment": {"type": "image", "payload": {"src"}}}``, generic templates,
  ``{"attachment": ...}``; a custom payload is emitted as ``{"custom": {...}}``
  (or its ``data`` value, Rasa's convention, when it has a ``data`` key).

kefu's additions, ignored by clients that do not know them:

- every bot message carries ``message_id``, ``seq`` (per session, increasing)
  and ``timestamp``; it is recorded in the session's *outbox* before it is
  emitted, so a socket that drops mid-reply loses nothing;
- ``session_request`` may carry ``last_seen_seq``: the server then emits
  ``kefu_history {session_id, messages}`` with every recorded message (user and
  bot) after that seq - reload restores the conversation, reconnect fills gaps;
- ``user_uttered`` may carry a client ``message_id``: a retried message with a
  known id is acknowledged but not handled twice; the socket.io ack answers
  ``{"status": "ok"|"duplicate"|"error", "message_id", "seq"}``;
- ``bot_typing {typing: bool}`` while the bot works on a message;
- ``GET /webhooks/socketio/history/<session_id>?after=<seq>`` (the session id
  is the capability: it is a random id only that browser holds);
- ``GET /webhooks/socketio/widget.js`` / ``widget.css`` / ``static/...``: kefu's widget;
- :func:`get_output_channel_for` / :meth:`SocketIOInput.get_output_channel_for`
  push messages (agent replies, proactive messages) to a session from outside.

Python-socketio's Sanic driver serves Engine.IO v4 (polling and websocket).
The outbox is in memory per process by default (one worker, or sticky sessions).
With ``outbox: {type: redis, url: ...}`` the outbox lives in Redis (history
survives restarts and is shared by every worker) and socket.io emits go through
python-socketio's Redis client manager, so a push made on one worker reaches a
socket held by another.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.web.errors import ErrorResponse, bad_request
from bot.shared.exceptions import ConfigError
from connectors.base import InputChannel, OnNewMessage, OutputChannel, UserMessage

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_SOCKETIO_PATH = "/socket.io"
HISTORY_EVENT = "kefu_history"
TYPING_EVENT = "bot_typing"
DEFAULT_MAX_MESSAGE_LENGTH = 5000
DEFAULT_OUTBOX_SIZE = 200
DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_OUTBOX_TTL = 30 * 24 * 3600  # a month of widget history in Redis
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

# The channel instance serving socket.io in this process (set when its blueprint is built).
_ACTIVE_CHANNEL: Optional["SocketIOInput"] = None


# --------------------------------------------------------------------------- outbox
class Outbox(Protocol):
    """Per-session record of what was said, with increasing ``seq`` numbers.

    A Redis implementation stores the same dicts (e.g. a capped list per
    session plus an INCR counter) and implements these three methods.
    """

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Store ``entry`` with the next ``seq``; returns the stored dict."""

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        """Entries with ``seq`` greater than ``seq``, oldest first."""

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        """The entry with this ``message_id`` if it is still kept."""


class InMemoryOutbox:
    """Keeps the last ``max_messages`` entries of the ``max_sessions`` most recent sessions."""

    def __init__(
        self, max_messages: int = DEFAULT_OUTBOX_SIZE, max_sessions: int = DEFAULT_MAX_SESSIONS
    ) -> None:
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[list[int], deque]] = OrderedDict()

    def _session(self, session_id: str) -> tuple[list[int], deque]:
        session = self._sessions.get(session_id)
        if session is None:
            session = ([0], deque(maxlen=self.max_messages))
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return session

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        counter, entries = self._session(session_id)
        counter[0] += 1
        stored = {**entry, "seq": counter[0]}
        entries.append(stored)
        return stored

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        session = self._sessions.get(session_id)
        if session is None:
            return []
        return [dict(e) for e in session[1] if e["seq"] > seq]

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        for entry in reversed(session[1]):
            if entry.get("message_id") == message_id:
                return dict(entry)
        return None


# Appends atomically: next seq, push "seq<TAB>json", trim, refresh the TTL.
_APPEND_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], seq .. '\t' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


class RedisOutbox:
    """The outbox in Redis: a seq counter and a capped list per session, with a TTL.

    Shared by every worker and machine, and it survives restarts, so a widget
    that reconnects to another worker still gets what it missed. Entries are
    stored as ``"<seq>\t<json>"`` so the stored JSON is exactly what was given.
    """

    def __init__(
        self,
        url: str,
        max_messages: int = DEFAULT_OUTBOX_SIZE,
        ttl_seconds: int = DEFAULT_OUTBOX_TTL,
        key_prefix: str = "kefu:outbox:",
    ) -> None:
        self.url = url
        self.max_messages = max_messages
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self._client: Any = None
        self._append: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(self.url, decode_responses=True)
            self._append = self._client.register_script(_APPEND_LUA)
        return self._client

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.key_prefix}{session_id}"
        return [f"{base}:seq", f"{base}:log"]

    async def append(self, session_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        self._redis()
        body = json.dumps(entry, ensure_ascii=False)
        seq = int(await self._append(
            keys=self._keys(session_id), args=[body, self.max_messages, self.ttl_seconds]
        ))
        return {**entry, "seq": seq}

    async def _entries(self, session_id: str) -> list[dict[str, Any]]:
        raw = await self._redis().lrange(self._keys(session_id)[1], 0, -1)
        entries = []
        for item in raw:
            seq, _, body = item.partition("\t")
            try:
                entries.append({**json.loads(body), "seq": int(seq)})
            except ValueError:  # never written by kefu; skip rather than fail the history
                logger.warning("Skipped an unreadable outbox entry of session %s", session_id)
        return entries

    async def after(self, session_id: str, seq: int) -> list[dict[str, Any]]:
        return [e for e in await self._entries(session_id) if e["seq"] > seq]

    async def find(self, session_id: str, message_id: str) -> dict[str, Any] | None:
        for entry in reversed(await self._entries(session_id)):
            if entry.get("message_id") == message_id:
                return entry
        return None


def create_outbox(config: dict[str, Any] | None) -> Outbox:
    """The outbox named in ``credentials.yml`` (``outbox: {type: memory|redis, ...}``)."""
    config = dict(config or {})
    kind = config.pop("type", "memory")
    if kind not in ("memory", "redis"):
        raise ConfigError(
            f"Unknown socketio outbox type '{kind}'.",
            filename="credentials.yml",
            fix="Use 'outbox: {type: memory}' (one worker) or "
            "'outbox: {type: redis, url: \"redis://127.0.0.1:6379/0\"}' (several workers).",
        )
    max_messages = _positive_int(config, "max_messages", DEFAULT_OUTBOX_SIZE, "outbox.")
    if kind == "redis":
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"socketio credential 'outbox.url' must be a redis:// URL, got {url!r}.",
                filename="credentials.yml",
                fix="Write 'url: \"redis://127.0.0.1:6379/0\"' under 'outbox:'.",
            )
        ttl = _positive_int(config, "ttl_seconds", DEFAULT_OUTBOX_TTL, "outbox.")
        return RedisOutbox(url, max_messages=max_messages, ttl_seconds=ttl)
    max_sessions = _positive_int(config, "max_sessions", DEFAULT_MAX_SESSIONS, "outbox.")
    return InMemoryOutbox(max_messages=max_messages, max_sessions=max_sessions)


def _positive_int(config: dict[str, Any], key: str, default: int, prefix: str = "") -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"socketio credential '{prefix}{key}' must be a positive integer, got {value!r}.",
            filename="credentials.yml",
            fix=f"Write e.g. '{key}: {default}' under 'socketio:'.",
        )
    return value


def valid_session_id(value: Any) -> str | None:
    """A usable session id (string of safe characters, at most 128) or ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _SESSION_ID_RE.match(value):
        return value
    return None


# --------------------------------------------------------------------------- output
class SocketIOOutput(OutputChannel):
    """Sends bot messages to a session's room, recording each in the outbox first.

    ``session_id`` fixes the room; without it the ``recipient_id`` passed to
    each send is the room, so one instance serves the HTTP API's
    ``?output_channel=socketio`` for any conversation.
    """

    @classmethod
    def name(cls) -> str:
        return "socketio"

    def __init__(self, channel: "SocketIOInput", session_id: str | None = None) -> None:
        self.channel = channel
        self.session_id = session_id
        self.sent: list[dict[str, Any]] = []

    async def _send_message(self, recipient_id: str, message: dict[str, Any]) -> None:
        room = self.session_id or recipient_id
        entry = await self.channel.record_and_emit(room, {"sender": "bot", **message})
        self.sent.append(entry)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        for message_part in text.strip().split("\n\n"):
            await self._send_message(recipient_id, {"text": message_part})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self._send_message(
            recipient_id, {"attachment": {"type": "image", "payload": {"src": image}}}
        )

    async def send_text_with_buttons(
        self,
        recipient_id: str,
        text: str | None,
        buttons: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        quick_replies = []
        for button in buttons:
            reply = {"content_type": "text", "title": button.get("title", "")}
            for key in ("payload", "url", "type"):
                if key in button:
                    reply[key] = button[key]
            quick_replies.append(reply)
        await self._send_message(recipient_id, {"text": text, "quick_replies": quick_replies})

    async def send_elements(
        self, recipient_id: str, elements: Iterable[dict[str, Any]], **kwargs: Any
    ) -> None:
        for element in elements:
            await self._send_message(
                recipient_id,
                {
                    "attachment": {
                        "type": "template",
                        "payload": {"template_type": "generic", "elements": element},
                    }
                },
            )

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        # Rasa emits custom payloads as emit(**json_message), i.e. its `data` value.
        data = json_message.get("data") if isinstance(json_message, dict) else None
        if isinstance(data, dict):
            await self._send_message(recipient_id, dict(data))
        else:
            await self._send_message(recipient_id, {"custom": json_message})

    async def send_attachment(self, recipient_id: str, attachment: Any, **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"attachment": attachment})


# --------------------------------------------------------------------------- input
class SocketIOInput(InputChannel):
    """A socket.io input channel (Rasa-compatible) with outbox, history and widget."""

    @classmethod
    def name(cls) -> str:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "SocketIOInput":
        credentials = dict(credentials or {})
        strings = ("user_message_evt", "bot_message_evt", "namespace", "socketio_path",
                   "jwt_key", "jwt_method", "metadata_key")
        for key in strings:
            value = credentials.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(
                    f"socketio credential '{key}' must be a non-empty string, got {value!r}.",
                    filename="credentials.yml",
                    fix=f"Quote the value of '{key}:' under 'socketio:' or remove the key.",
                )
        persistence = credentials.get("session_persistence", False)
        if not isinstance(persistence, bool):
            raise ConfigError(
                f"socketio credential 'session_persistence' must be true or false, got {persistence!r}.",
                filename="credentials.yml",
                fix="Write 'session_persistence: true' under 'socketio:'.",
            )
        socketio_path = credentials.get("socketio_path") or DEFAULT_SOCKETIO_PATH
        if not socketio_path.startswith("/"):
            raise ConfigError(
                f"socketio credential 'socketio_path' must start with '/', got {socketio_path!r}.",
                filename="credentials.yml",
                fix="Write 'socketio_path: /socket.io'.",
            )
        outbox = credentials.get("outbox")
        if outbox is not None and not isinstance(outbox, dict):
            raise ConfigError(
                "socketio credential 'outbox' must be a mapping.",
                filename="credentials.yml",
                fix="Write 'outbox:' followed by indented 'type: memory' (or 'type: redis' and 'url: ...'), "
                "'max_messages: 200'.",
            )
        create_outbox(outbox)  # validate now, at start, not on the first message
        origins = credentials.get("cors_allowed_origins", [])
        if isinstance(origins, str):
            origins = origins if origins == "*" else [origins]
        elif not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ConfigError(
                "socketio credential 'cors_allowed_origins' must be '*' or a list of origins.",
                filename="credentials.yml",
                fix="Write 'cors_allowed_origins: [\"https://shop.example\"]' or leave it out "
                "(the server's --cors setting then applies).",
            )
        return cls(
            user_message_evt=credentials.get("user_message_evt") or "user_uttered",
            bot_message_evt=credentials.get("bot_message_evt") or "bot_uttered",
            namespace=credentials.get("namespace"),
            session_persistence=persistence,
            socketio_path=socketio_path,
            jwt_key=credentials.get("jwt_key"),
            jwt_method=credentials.get("jwt_method") or "HS256",
            metadata_key=credentials.get("metadata_key") or "metadata",
            outbox=outbox,
            max_message_length=_positive_int(
                credentials, "max_message_length", DEFAULT_MAX_MESSAGE_LENGTH
            ),
            cors_allowed_origins=origins,
        )

    def __init__(
        self,
        user_message_evt: str = "user_uttered",
        bot_message_evt: str = "bot_uttered",
        namespace: str | None = None,
        session_persistence: bool = False,
        socketio_path: str = DEFAULT_SOCKETIO_PATH,
        jwt_key: str | None = None,
        jwt_method: str = "HS256",
        metadata_key: str = "metadata",
        outbox: dict[str, Any] | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        cors_allowed_origins: str | list[str] = (),  # type: ignore[assignment]
    ) -> None:
        self.user_message_evt = user_message_evt
        self.bot_message_evt = bot_message_evt
        self.namespace = namespace
        self.session_persistence = session_persistence
        self.socketio_path = socketio_path
        self.jwt_key = jwt_key
        self.jwt_method = jwt_method
        self.metadata_key = metadata_key
        self.outbox_config = dict(outbox or {})
        self.max_message_length = max_message_length
        self.cors_allowed_origins = (
            cors_allowed_origins if isinstance(cors_allowed_origins, str) else list(cors_allowed_origins)
        )
        # Runtime state, built per worker process in blueprint(); never pickled.
        self.sio: Any = None
        self.outbox: Outbox = create_outbox(self.outbox_config)

    def __getstate__(self) -> dict[str, Any]:
        # Sanic pickles the channels to start workers after the main process built an app.
        state = dict(self.__dict__)
        state["sio"] = None
        state["outbox"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.outbox = create_outbox(self.outbox_config)

    # -- pushing from outside ------------------------------------------------------------
    def get_output_channel(self) -> SocketIOOutput:
        """Routes by recipient id: ``?output_channel=socketio`` reaches the widget."""
        return SocketIOOutput(self)

    def get_output_channel_for(self, sender_id: str) -> SocketIOOutput:
        """The output channel of one conversation (handoff and trigger pushes)."""
        return SocketIOOutput(self, sender_id)

    async def record_and_emit(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Record a message in the session's outbox, then emit it to the session's room.

        Recording first means a closed or dropped socket loses nothing: the
        widget fetches it with ``last_seen_seq`` when it (re)connects.
        """
        entry = await self.outbox.append(
            session_id,
            {"message_id": uuid.uuid4().hex, "timestamp": time.time(), **message},
        )
        if self.sio is None:
            logger.debug("socket.io is not running in this process; kept message for %s", session_id)
            return entry
        payload = {k: v for k, v in entry.items() if k != "sender"}
        try:
            await self.sio.emit(self.bot_message_evt, payload, room=session_id, namespace=self.namespace)
        except Exception:  # delivery is retried by the client's replay
            logger.exception("Could not emit a bot message to session %s", session_id)
        return entry

    async def history(self, session_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Recorded user and bot messages of a session after ``after``."""
        return await self.outbox.after(session_id, after)

    # -- socket.io server ----------------------------------------------------------------
    def _check_auth(self, auth: Any) -> bool:
        if not self.jwt_key:
            return True
        import jwt  # PyJWT is a server dependency already

        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            return False
        try:
            jwt.decode(token, self.jwt_key, algorithms=[self.jwt_method])
        except jwt.PyJWTError:
            return False
        return True

    async def _sender_for(self, sid: str, data: dict[str, Any]) -> str | None:
        if not self.session_persistence:
            return sid
        session_id = valid_session_id(data.get("session_id"))
        if session_id is None:
            return None
        await self.sio.enter_room(sid, session_id, namespace=self.namespace)
        return session_id

    def _metadata(self, data: dict[str, Any]) -> dict[str, Any] | None:
        metadata = data.get(self.metadata_key)
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                metadata = {"raw": metadata}
        if metadata is not None and not isinstance(metadata, dict):
            metadata = {"value": metadata}
        return metadata

    def _build_server(self, on_new_message: OnNewMessage) -> Any:
        import socketio  # python-socketio; imported here so other channels don't need it

        manager = None
        if isinstance(self.outbox, RedisOutbox):
            # Emits go through Redis pub/sub so every worker delivers to its own sockets.
            manager = socketio.AsyncRedisManager(self.outbox.url, channel="kefu-socketio")
        sio = socketio.AsyncServer(
            async_mode="sanic",
            client_manager=manager,
            cors_allowed_origins=self.cors_allowed_origins,
            max_http_buffer_size=max(64 * 1024, self.max_message_length * 8),
        )
        ns = self.namespace

        @sio.on("connect", namespace=ns)
        async def connect(sid: str, environ: dict, auth: Any = None) -> bool:
            if not self._check_auth(auth):
                logger.info("Refused socket %s: missing or invalid JWT.", sid)
                return False
            logger.debug("Socket %s connected.", sid)
            return True

        @sio.on("disconnect", namespace=ns)
        async def disconnect(sid: str, *args: Any) -> None:
            logger.debug("Socket %s disconnected.", sid)

        @sio.on("session_request", namespace=ns)
        async def session_request(sid: str, data: Any = None) -> None:
            data = data if isinstance(data, dict) else {}
            session_id = valid_session_id(data.get("session_id")) or uuid.uuid4().hex
            if self.session_persistence:
                await sio.enter_room(sid, session_id, namespace=ns)
            await sio.emit("session_confirm", session_id, room=sid, namespace=ns)
            last_seen = data.get("last_seen_seq")
            if isinstance(last_seen, int) and not isinstance(last_seen, bool):
                room = session_id if self.session_persistence else sid
                messages = await self.history(room, max(0, last_seen))
                await sio.emit(
                    HISTORY_EVENT,
                    {"session_id": session_id, "messages": messages},
                    room=sid,
                    namespace=ns,
                )

        @sio.on(self.user_message_evt, namespace=ns)
        async def handle_message(sid: str, data: Any = None) -> dict[str, Any]:
            return await self._handle_user_message(sid, data, on_new_message)

        return sio

    async def _handle_user_message(
        self, sid: str, data: Any, on_new_message: OnNewMessage
    ) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return {"status": "error", "error": "Send {'message': '<text>', 'session_id': '<id>'}."}
        text: str = data["message"]
        if len(text) > self.max_message_length:
            return {
                "status": "error",
                "error": f"Message longer than {self.max_message_length} characters.",
            }
        sender_id = await self._sender_for(sid, data)
        if sender_id is None:
            logger.warning(
                "Ignored a message without a valid session_id from socket %s; the client "
                "must send 'session_request' and put the confirmed id in each message.",
                sid,
            )
            return {"status": "error", "error": "Missing or invalid session_id."}
        message_id = valid_session_id(data.get("message_id")) or uuid.uuid4().hex
        known = await self.outbox.find(sender_id, message_id)
        if known is not None:
            return {"status": "duplicate", "message_id": message_id, "seq": known["seq"]}
        record: dict[str, Any] = {
            "sender": "user", "message_id": message_id, "timestamp": time.time(), "text": text
        }
        display = data.get("display")  # a button's title, shown instead of its /payload
        if isinstance(display, str) and display:
            record["display"] = display[: self.max_message_length]
        entry = await self.outbox.append(sender_id, record)
        output = SocketIOOutput(self, sender_id)
        message = UserMessage(
            text,
            output,
            sender_id,
            input_channel=self.name(),
            message_id=message_id,
            metadata=self._metadata(data),
        )
        await self._typing(sender_id, True)
        try:
            await on_new_message(message)
        except Exception as e:  # the message is recorded; tell the client, keep serving
            logger.exception("Handling a socket.io message of %s failed", sender_id)
            return {
                "status": "error",
                "message_id": message_id,
                "seq": entry["seq"],
                "error": getattr(e, "message", None) or str(e) or type(e).__name__,
            }
        finally:
            await self._typing(sender_id, False)
        return {"status": "ok", "message_id": message_id, "seq": entry["seq"]}

    async def _typing(self, room: str, typing: bool) -> None:
        try:
            await self.sio.emit(TYPING_EVENT, {"typing": typing}, room=room, namespace=self.namespace)
        except Exception:
            logger.debug("Could not emit typing state to %s", room, exc_info=True)

    # -- HTTP routes -----------------------------------------------------------------------
    def widget_config(self) -> dict[str, Any]:
        """What kefu's widget must know about this channel (prepended to widget.js)."""
        return {
            "socketPath": self.socketio_path,
            "namespace": self.namespace,
            "userEvent": self.user_message_evt,
            "botEvent": self.bot_message_evt,
        }

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        global _ACTIVE_CHANNEL
        self.sio = self._build_server(on_new_message)
        _ACTIVE_CHANNEL = self
        bp = _SocketBlueprint(self.sio, self.socketio_path, self.blueprint_name(), url_prefix=None)

        @bp.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/history/<session_id>", methods=["GET"])
        async def history(request: Request, session_id: str) -> HTTPResponse:
            if valid_session_id(session_id) is None:
                raise bad_request("Invalid session id.", "session_id", "path")
            after_arg = request.args.get("after", "0")
            if not after_arg.isdigit():
                raise bad_request("'after' must be a non-negative integer (a seq).", "after", "query")
            messages = await self.history(session_id, int(after_arg))
            return response.json({"session_id": session_id, "messages": messages})

        @bp.route("/widget.js", methods=["GET"])
        async def widget_js(request: Request) -> HTTPResponse:
            source = (STATIC_DIR / "kefu-widget.js").read_text(encoding="utf-8")
            config = json.dumps(self.widget_config())
            return response.text(
                f"window.KEFU_CHANNEL_DEFAULTS = {config};\n{source}",
                content_type="application/javascript; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        @bp.route("/widget.css", methods=["GET"])
        async def widget_css(request: Request) -> HTTPResponse:
            return await response.file(
                STATIC_DIR / "kefu-widget.css", mime_type="text/css; charset=utf-8"
            )

        @bp.route("/static/<name:path>", methods=["GET"])
        async def static(request: Request, name: str) -> HTTPResponse:
            path = (STATIC_DIR / name).resolve()
            if STATIC_DIR not in path.parents or not path.is_file():
                raise ErrorResponse(404, "NotFound", f"No static file '{name}'.")
            return await response.file(path)

        return bp


class _SocketBlueprint(Blueprint):
    """Attaches the socket.io server to the app when the blueprint is registered."""

    def __init__(self, sio: Any, socketio_path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx.sio = sio  # Sanic forbids plain attributes on blueprints
        self.ctx.socketio_path = socketio_path

    def register(self, app: Any, options: dict) -> None:
        self.ctx.sio.attach(app, self.ctx.socketio_path)
        super().register(app, options)


def get_output_channel_for(sender_id: str) -> SocketIOOutput | None:
    """Push path for other modules (handoff, triggers): ``None`` without a socketio channel."""
    if _ACTIVE_CHANNEL is None:
        return None
    return _ACTIVE_CHANNEL.get_output_channel_for(sender_id)


def active_channel() -> SocketIOInput | None:
    """The socketio channel mounted in this process, if any."""
    return _ACTIVE_CHANNEL
