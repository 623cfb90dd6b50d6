"""Checks for the ``socketio:`` section of credentials.yml shared by the channel and its outbox."""
from __future__ import annotations

from typing import Any

from bot.shared.exceptions import ConfigError

__all__ = ["positive_int"]


def positive_int(config: dict[str, Any], key: str, default: int, prefix: str = "") -> int:
    """``config[key]`` (``default`` when absent) as a positive int; the error names ``<prefix><key>``."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"socketio credential '{prefix}{key}' must be a positive integer, got {value!r}.",
            filename="credentials.yml",
            fix=f"Write e.g. '{key}: {default}' under 'socketio:'.",
        )
    return value
