"""The socketio input channel: credentials, the socket.io server's events, and pushes from outside.

See the package docstring for the protocol. Each worker builds its own socket.io server in
:meth:`SocketIOInput.blueprint`; the channel object is the only place that state lives (no
module globals), and other features reach a widget session through the output registry the
server builds (:class:`bot.shared.outputs.OutputRegistry`, channel ``socketio``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from sanic import Blueprint

from bot.shared.endpoints import expand_env_vars
from bot.shared.exceptions import ConfigError
from bot.shared.outputs import ChannelCapabilities
from bot.web.errors import store_unavailable
from connectors.base import IDENTITY_METADATA_KEY, InputChannel, OnNewMessage, UserMessage, untrusted_metadata
from connectors.socketio.credentials import positive_int
from connectors.socketio.identity import IdentityTokenError, IdentityVerifier, ShopperIdentity
from connectors.socketio.outbox import Outbox, RedisOutbox, create_outbox
from connectors.socketio.output import SocketIOOutput
from connectors.socketio.protocol import (
    DEFAULT_BOT_MESSAGE_EVT,
    DEFAULT_SOCKETIO_PATH,
    DEFAULT_USER_MESSAGE_EVT,
    ERROR_EVENT,
    HISTORY_EVENT,
    TYPING_EVENT,
    valid_session_id,
)
from connectors.socketio.routes import widget_blueprint
from connectors.socketio.sessions import SessionIssuer

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_MESSAGE_LENGTH", "SocketIOInput"]

DEFAULT_MAX_MESSAGE_LENGTH = 5000
# Waits before re-trying to record a bot message while the outbox's Redis is unreachable: a
# restart with its append-only file takes about a second; 7 s in all, then the error is logged.
APPEND_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 3.5)
# Credentials that hold secrets: ``${ENV_VAR}`` is expanded in them.
_SECRET_KEYS = ("identity_secret", "identity_public_key", "session_secret")


def _session_secret(value: str | None) -> str | None:
    if value is not None and len(value) < 32:
        raise ConfigError(
            "socketio credential 'session_secret' must be at least 32 characters.",
            filename="credentials.yml",
            fix="Generate one with `python -c \"import secrets; print(secrets.token_urlsafe(32))\"`, put it in "
            "KEFU_WIDGET_SESSION_SECRET and write 'session_secret: ${KEFU_WIDGET_SESSION_SECRET}'.",
        )
    return value
def _retryable(error: BaseException) -> bool:
    """A store (Redis, the database) could not be reached, here or behind a kefu error (a lock
    store's LockError wraps the driver's error): the same message may succeed in a moment."""
    seen: BaseException | None = error
    while seen is not None:
        if store_unavailable(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# How the trigger scheduler and handoff name this channel in send and skip reasons.
WIDGET_CAPABILITIES = ChannelCapabilities(label="widget")


class SocketIOInput(InputChannel):
    """A socket.io input channel (Rasa-compatible) with outbox, history and widget."""

    @classmethod
    def name(cls) -> str:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "SocketIOInput":
        credentials = dict(credentials or {})
        for secret_key in _SECRET_KEYS:  # ${ENV_VAR} as in Rasa's endpoints: secrets stay out of the file
            if credentials.get(secret_key) is not None:
                credentials[secret_key] = expand_env_vars(credentials[secret_key], "credentials.yml")
        strings = ("user_message_evt", "bot_message_evt", "namespace", "socketio_path",
                   "jwt_key", "jwt_method", "metadata_key", *_SECRET_KEYS)
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
            user_message_evt=credentials.get("user_message_evt") or DEFAULT_USER_MESSAGE_EVT,
            bot_message_evt=credentials.get("bot_message_evt") or DEFAULT_BOT_MESSAGE_EVT,
            namespace=credentials.get("namespace"),
            session_persistence=persistence,
            socketio_path=socketio_path,
            jwt_key=credentials.get("jwt_key"),
            jwt_method=credentials.get("jwt_method") or "HS256",
            metadata_key=credentials.get("metadata_key") or "metadata",
            outbox=outbox,
            max_message_length=positive_int(
                credentials, "max_message_length", DEFAULT_MAX_MESSAGE_LENGTH
            ),
            cors_allowed_origins=origins,
            identity=IdentityVerifier.from_credentials(credentials),
            session_secret=_session_secret(credentials.get("session_secret")),
        )

    def __init__(
        self,
        user_message_evt: str = DEFAULT_USER_MESSAGE_EVT,
        bot_message_evt: str = DEFAULT_BOT_MESSAGE_EVT,
        namespace: str | None = None,
        session_persistence: bool = False,
        socketio_path: str = DEFAULT_SOCKETIO_PATH,
        jwt_key: str | None = None,
        jwt_method: str = "HS256",
        metadata_key: str = "metadata",
        outbox: dict[str, Any] | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        cors_allowed_origins: str | list[str] = (),  # type: ignore[assignment]
        identity: IdentityVerifier | None = None,
        session_secret: str | None = None,
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
        self.identity = identity
        # Made here (the main process) so every worker started from the pickled channel shares it.
        self.sessions = SessionIssuer.from_secret(session_secret)
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

    # -- OutputProvider (bot.shared.outputs) -----------------------------------------------
    def capabilities(self) -> ChannelCapabilities:
        """Pushes go into the session's outbox: a closed widget gets them when it next opens."""
        return WIDGET_CAPABILITIES

    def output_for(self, recipient_id: str) -> SocketIOOutput:
        """The widget session ``recipient_id`` (the conversation's sender id)."""
        return self.get_output_channel_for(recipient_id)

    async def record_and_emit(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Record a message in the session's outbox, then emit it to the session's room.

        Recording first means a closed or dropped socket loses nothing: the
        widget fetches it with ``last_seen_seq`` when it (re)connects.
        """
        entry = await self._append_bot_message(
            session_id, {"message_id": uuid.uuid4().hex, "timestamp": time.time(), **message}
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

    async def _append_bot_message(self, session_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Record a bot message, waiting out a store restart (a few seconds) rather than dropping
        it: the turn is stored in the tracker either way, and an unrecorded reply never reaches
        the widget (a re-send of the question is answered from nothing: it was handled)."""
        for delay in APPEND_RETRY_DELAYS_S:
            try:
                return await self.outbox.append(session_id, message)
            except Exception as e:
                if not _retryable(e):
                    raise
                logger.warning("Could not record a bot message of session %s (%s); retrying in %.1f s.",
                               session_id, type(e).__name__, delay)
                await asyncio.sleep(delay)
        return await self.outbox.append(session_id, message)

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

    async def _socket_session(self, sid: str) -> dict[str, Any]:
        """What ``session_request`` confirmed for this socket (session id, identity); {} before it."""
        try:
            return await self.sio.get_session(sid, namespace=self.namespace)
        except KeyError:  # the socket is gone
            return {}

    async def _sender_for(self, sid: str, data: dict[str, Any]) -> str | None:
        """The conversation of this socket: the id the server confirmed to it, never a client's pick."""
        if not self.session_persistence:
            return sid
        confirmed = (await self._socket_session(sid)).get("session_id")
        claimed = data.get("session_id")
        if confirmed is None or (claimed is not None and claimed != confirmed):
            return None
        return confirmed

    def verify_identity(self, token: Any) -> ShopperIdentity:
        """A shop-signed identity token's identity, or :class:`IdentityTokenError` (also when the
        channel has no ``identity_secret``/``identity_public_key``: a token is never ignored)."""
        if self.identity is None:
            raise IdentityTokenError(
                "identity_token_not_accepted",
                "This server does not accept identity tokens: set 'identity_secret' (or 'identity_public_key') "
                "under 'socketio:' in credentials.yml.",
            )
        return self.identity.verify(token)

    def may_read_history(self, session_id: str, identity_token: str | None) -> bool:
        """HTTP history: only for ids this server issued; a signed-in shopper's needs their token."""
        customer = None
        if SessionIssuer.is_bound(session_id):
            try:
                customer = self.verify_identity(identity_token).customer_id
            except IdentityTokenError:
                return False
        return self.sessions.verify(session_id, customer)

    def _metadata(self, data: dict[str, Any], identity: ShopperIdentity | None = None) -> dict[str, Any] | None:
        """The client's metadata without identity keys, plus the identity this channel verified."""
        metadata = data.get(self.metadata_key)
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                metadata = {"raw": metadata}
        if metadata is not None and not isinstance(metadata, dict):
            metadata = {"value": metadata}
        metadata = untrusted_metadata(metadata, self.name())
        if identity is not None:
            metadata = {**(metadata or {}), IDENTITY_METADATA_KEY: identity.as_metadata()}
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
            identity = None
            if data.get("identity_token") is not None:
                try:
                    identity = self.verify_identity(data["identity_token"])
                except IdentityTokenError as e:  # refused: never an anonymous session instead
                    logger.info("Refused a session request of socket %s: %s", sid, e.code)
                    await sio.emit(ERROR_EVENT, {"code": e.code, "message": e.message}, room=sid, namespace=ns)
                    return
            customer = identity.customer_id if identity else None
            proposed = valid_session_id(data.get("session_id"))
            resumed = proposed is not None and self.sessions.verify(proposed, customer)
            session_id = proposed if resumed else self.sessions.issue(customer)
            if proposed is not None and not resumed:
                logger.debug("Socket %s proposed a session id this server did not issue (or for another "
                             "shopper); issued a new one.", sid)
            previous = (await self._socket_session(sid)).get("session_id")
            await sio.save_session(sid, {"session_id": session_id, "identity": identity}, namespace=ns)
            if self.session_persistence:
                if previous and previous != session_id:
                    await sio.leave_room(sid, previous, namespace=ns)
                await sio.enter_room(sid, session_id, namespace=ns)
            await sio.emit("session_confirm", session_id, room=sid, namespace=ns)
            last_seen = data.get("last_seen_seq")
            if resumed and isinstance(last_seen, int) and not isinstance(last_seen, bool):
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
                "Ignored a message without the confirmed session_id from socket %s; the client "
                "must send 'session_request' and put the confirmed id in each message.",
                sid,
            )
            return {"status": "error", "error": "Missing or invalid session_id."}
        identity = (await self._socket_session(sid)).get("identity")
        if identity is not None and identity.expired():
            logger.info("Refused a message of socket %s: its identity token expired.", sid)
            error = {"code": "identity_token_expired",
                     "message": "The identity token has expired: send session_request with a fresh one."}
            await self.sio.emit(ERROR_EVENT, error, room=sid, namespace=self.namespace)
            return {"status": "error", **error, "error": error["message"]}
        message_id = valid_session_id(data.get("message_id")) or uuid.uuid4().hex
        try:
            entry, answered_before = await self._record_user_message(sender_id, message_id, text, data)
        except Exception as e:  # the outbox's store is down: nothing recorded, the client re-sends
            if not _retryable(e):
                raise
            logger.warning("Could not record a socket.io message of %s (%s); asked the client to retry.",
                           sender_id, type(e).__name__)
            return {"status": "error", "message_id": message_id, "retryable": True,
                    "error": "The message could not be recorded for a moment; please retry."}
        if answered_before:  # a re-send of a message that was answered: its replies are in the outbox
            return {"status": "duplicate", "message_id": message_id, "seq": entry["seq"]}
        output = SocketIOOutput(self, sender_id, reply_to=message_id)
        message = UserMessage(
            text,
            output,
            sender_id,
            input_channel=self.name(),
            message_id=message_id,
            metadata=self._metadata(data, identity),
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
                "retryable": _retryable(e),
                "error": getattr(e, "message", None) or str(e) or type(e).__name__,
            }
        finally:
            await self._typing(sender_id, False)
        return {"status": "ok", "message_id": message_id, "seq": entry["seq"]}

    async def _record_user_message(
        self, sender_id: str, message_id: str, text: str, data: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The outbox entry of this message, and whether it was answered before (else: handle it).

        A message id the outbox already holds is a client's re-send. It was handled when a reply
        to it (``reply_to``) was recorded; otherwise its first attempt failed or is still running
        (a dropped socket, a killed worker), so it is handled again: the processor, under the
        conversation's lock, drops it if the first attempt stored it after all."""
        known = await self.outbox.find(sender_id, message_id)
        if known is not None:
            replies = await self.outbox.after(sender_id, int(known["seq"]))
            return known, any(reply.get("reply_to") == message_id for reply in replies)
        record: dict[str, Any] = {
            "sender": "user", "message_id": message_id, "timestamp": time.time(), "text": text
        }
        display = data.get("display")  # a button's title, shown instead of its /payload
        if isinstance(display, str) and display:
            record["display"] = display[: self.max_message_length]
        return await self.outbox.append(sender_id, record), False

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
        """Builds this worker's socket.io server, then the routes (see :mod:`.routes`)."""
        self.sio = self._build_server(on_new_message)
        return widget_blueprint(self)
