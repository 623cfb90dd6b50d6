"""Rasa's ``socketio`` channel, plus what a shop's chat widget needs on top.

Protocol (same events and shapes as ``rasa/core/channels/socketio.py`` 3.6, so
rasa-webchat and Rasa's Chatwidget work unchanged):

- client ``session_request {session_id?}`` -> server ``session_confirm <session_id>``:
  the proposed id only when this server issued it (:mod:`.sessions`: HMAC-signed, so any
  worker checks it without shared state), else a fresh one (with ``session_persistence: true``
  the socket joins the room ``session_id`` and that id is the conversation's ``sender_id``;
  otherwise the socket id is); a socket posts only into the session confirmed to it;
- client ``user_uttered {message, session_id?, metadata?}`` (event name from
  ``user_message_evt``) -> server ``bot_uttered`` messages (``bot_message_evt``):
  ``{"text"}``, ``{"text", "quick_replies": [...]}``,
  ``{"attachment": {"type": "image", "payload": {"src"}}}``, generic templates,
  ``{"attachment": ...}``; a custom payload is emitted as ``{"custom": {...}}``
  (or its ``data`` value, Rasa's convention, when it has a ``data`` key).

kefu's additions, ignored by clients that do not know them:

- every bot message carries ``message_id``, ``seq`` (per session, increasing)
  and ``timestamp``; a reply to a shopper message also carries ``reply_to`` (that
  message's ``message_id``; pushes from outside - agents, proactive messages - have none); it is recorded in the session's *outbox* before it is
  emitted, so a socket that drops mid-reply loses nothing;
- ``session_request`` may carry ``identity_token``: a JWT the shop signed (:mod:`.identity`);
  a valid one binds the session to that customer and every message of it carries
  ``metadata["identity"]``; an invalid one gets ``kefu_error {code, message}`` and no session;
- ``session_request`` may carry ``last_seen_seq``: the server then emits
  ``kefu_history {session_id, messages}`` with every recorded message (user and
  bot) after that seq - reload restores the conversation, reconnect fills gaps;
- ``user_uttered`` may carry a client ``message_id``: a retried message with a
  known id is acknowledged but not handled twice; the socket.io ack answers
  ``{"status": "ok"|"duplicate"|"error", "message_id", "seq"}``;
- ``bot_typing {typing: bool}`` while the bot works on a message;
- ``GET /webhooks/socketio/history/<session_id>?after=<seq>`` (only for an id this server
  issued; a signed-in shopper's also needs their token in ``X-Kefu-Identity-Token``);
- ``GET /webhooks/socketio/widget.js`` / ``widget.css`` / ``static/...``: kefu's widget;
- :meth:`SocketIOInput.output_for` (the channel is an ``OutputProvider``: the server's
  :class:`bot.shared.outputs.OutputRegistry` hands it to handoff and triggers as channel
  ``socketio``) pushes messages (agent replies, proactive messages) to a session from outside.

Python-socketio's Sanic driver serves Engine.IO v4 (polling and websocket).
The outbox is in memory per process by default (one worker, or sticky sessions).
With ``outbox: {type: redis, url: ...}`` the outbox lives in Redis (history
survives restarts and is shared by every worker) and socket.io emits go through
python-socketio's Redis client manager, so a push made on one worker reaches a
socket held by another.

Modules, one concept each: :mod:`.protocol` (event names, session ids), :mod:`.sessions`
(server-issued session ids), :mod:`.identity` (the shop's identity token), :mod:`.outbox`
(memory and Redis outboxes), :mod:`.output` (``SocketIOOutput``), :mod:`.channel`
(``SocketIOInput``: credentials, socket.io events, pushes), :mod:`.routes` (HTTP routes and
the widget's files in ``connectors/static/``), :mod:`.credentials` (shared checks).
"""
from __future__ import annotations

from connectors.socketio.channel import DEFAULT_MAX_MESSAGE_LENGTH, SocketIOInput
from connectors.socketio.outbox import (
    DEFAULT_MAX_SESSIONS,
    DEFAULT_OUTBOX_SIZE,
    DEFAULT_OUTBOX_TTL,
    InMemoryOutbox,
    Outbox,
    OutboxKeys,
    RedisOutbox,
    create_outbox,
)
from connectors.socketio.output import SocketIOOutput
from connectors.socketio.protocol import (
    DEFAULT_SOCKETIO_PATH,
    HISTORY_EVENT,
    TYPING_EVENT,
    valid_session_id,
)
from connectors.socketio.routes import STATIC_DIR

__all__ = [
    "DEFAULT_MAX_MESSAGE_LENGTH", "DEFAULT_MAX_SESSIONS", "DEFAULT_OUTBOX_SIZE", "DEFAULT_OUTBOX_TTL",
    "DEFAULT_SOCKETIO_PATH", "HISTORY_EVENT", "STATIC_DIR", "TYPING_EVENT", "InMemoryOutbox", "Outbox",
    "OutboxKeys", "RedisOutbox", "SocketIOInput", "SocketIOOutput", "create_outbox", "valid_session_id",
]
