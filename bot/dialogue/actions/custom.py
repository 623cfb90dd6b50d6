"""User (custom) actions: in-process through rasa_sdk's executor when it knows the name, else over HTTP."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import Action, executor_knows
from bot.dialogue.actions.inprocess import InProcessAction
from bot.dialogue.actions.remote import RemoteAction

if TYPE_CHECKING:
    from bot.shared.endpoints import EndpointConfig


def custom_action(name: str, action_endpoint: EndpointConfig | None = None, executor: Any = None) -> Action:
    """A user action: in-process when the executor knows it, else over HTTP."""
    if executor is not None and (action_endpoint is None or executor_knows(executor, name)):
        return InProcessAction(name, executor)
    return RemoteAction(name, action_endpoint)

