"""One exception hierarchy for kefu.

Every error says what went wrong, where (file and line, sender, action) and how
to fix it. Each subclass also inherits the matching built-in, so callers that
catch ``ValueError`` or ``FileNotFoundError`` keep working.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


class BotError(Exception):
    """Base class of every error kefu raises on purpose."""


def format_location(filename: str | Path | None, line: int | None = None) -> str:
    """``file:line`` (1-based line) or just the file name, or ``''``."""
    if not filename:
        return ""
    if line is None:
        return str(filename)
    return f"{filename}:{line}"


class ConfigError(BotError, ValueError):
    """Invalid project configuration (config.yml, endpoints.yml, domain, data)."""

    def __init__(
        self,
        message: str,
        filename: str | Path | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.filename = str(filename) if filename else None
        self.line = line
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = format_location(self.filename, self.line)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class YamlError(ConfigError):
    """A YAML file could not be parsed or has the wrong shape."""


class InvalidDomain(ConfigError):
    """domain.yml is inconsistent or uses something unknown."""


class TrainingDataError(ConfigError):
    """NLU data, stories, rules or test stories are invalid."""


class UnknownComponentError(ConfigError):
    """A pipeline component / policy / store name or option is unknown."""

    @classmethod
    def for_name(
        cls,
        kind: str,
        name: str,
        valid: Any,
        filename: str | Path | None = None,
        line: int | None = None,
    ) -> "UnknownComponentError":
        options = ", ".join(sorted(str(v) for v in valid))
        return cls(
            f"Unknown {kind} '{name}'.",
            filename,
            line,
            fix=f"Use one of: {options}, or a dotted path to your own class.",
        )


class ModelNotFound(BotError, FileNotFoundError):
    """No trained model archive where one was expected."""


class ActionNotFound(BotError, LookupError):
    """The domain or the action server does not know an action."""


class ActionExecutionError(BotError, RuntimeError):
    """A custom action failed (server down, timeout, exception in the action)."""


class ActionExecutionRejection(BotError):
    """A form / action rejected execution (Rasa's ActionExecutionRejection)."""

    def __init__(self, action_name: str, message: str | None = None) -> None:
        self.action_name = action_name
        self.message = message or f"Custom action '{action_name}' rejected execution."
        super().__init__(self.message)


class StoreError(BotError, RuntimeError):
    """A tracker store, lock store or event broker failed."""


class LockError(StoreError):
    """A conversation lock could not be acquired in time."""


class InvalidRequest(BotError, ValueError):
    """A client sent a request kefu cannot serve (mapped to HTTP 400)."""


class ConversationChannelMismatch(BotError, PermissionError):
    """A message for a conversation that belongs to another channel (mapped to HTTP 403).

    Conversation ids are chosen by the channels (an openid, a widget session id, the REST
    caller's ``sender``), so without this a REST caller who knows a WeChat shopper's openid
    would write into that shopper's conversation and read the bot's answers to it.
    """
