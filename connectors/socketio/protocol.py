"""The wire: Rasa's socket.io event names, kefu's additions and what a session id may be."""
from __future__ import annotations

import re
from typing import Any

__all__ = [
    "DEFAULT_BOT_MESSAGE_EVT", "DEFAULT_SOCKETIO_PATH", "DEFAULT_USER_MESSAGE_EVT", "ERROR_EVENT", "HISTORY_EVENT",
    "TYPING_EVENT", "valid_session_id",
]

DEFAULT_SOCKETIO_PATH = "/socket.io"
DEFAULT_USER_MESSAGE_EVT = "user_uttered"
DEFAULT_BOT_MESSAGE_EVT = "bot_uttered"
HISTORY_EVENT = "kefu_history"  # kefu: messages after the client's last_seen_seq
TYPING_EVENT = "bot_typing"  # kefu: {typing: bool} while the bot works on a message
ERROR_EVENT = "kefu_error"  # kefu: {code, message}, e.g. a refused identity token
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def valid_session_id(value: Any) -> str | None:
    """A usable session id (string of safe characters, at most 128) or ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _SESSION_ID_RE.match(value):
        return value
    return None
