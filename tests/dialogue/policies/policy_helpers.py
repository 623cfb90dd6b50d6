"""Event builders shared by the policy tests (imported by module name)."""
from __future__ import annotations

from typing import Any

from bot.shared.constants import ACTION_LISTEN_NAME, RULE_SNIPPET_ACTION_NAME
from bot.shared.events import ActionExecuted, UserUttered


def listen() -> ActionExecuted:
    return ActionExecuted(ACTION_LISTEN_NAME)


def snippet() -> ActionExecuted:
    return ActionExecuted(RULE_SNIPPET_ACTION_NAME)


def act(name: str) -> ActionExecuted:
    return ActionExecuted(name)


def user(intent: str, confidence: float = 1.0, entities: list[dict[str, Any]] | None = None) -> UserUttered:
    return UserUttered(
        intent={"name": intent, "confidence": confidence},
        entities=entities or [],
        parse_data={"intent": {"name": intent, "confidence": confidence}, "entities": entities or []},
    )
