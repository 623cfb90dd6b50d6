"""Processor hooks: how features (handoff, triggers, ...) take part in a turn.

The rule, applied by ``MessageProcessor.handle_message`` under the conversation lock:

1. After a user message is logged and slots are extracted, **every** hook's
   ``after_user_message`` runs, in registration order (the server's feature table
   order). Hooks observe every message: a later hook runs even when an earlier one
   handled the turn (e.g. an opt-out is recorded while a human owns the conversation).
2. The turn counts as handled when **any** hook returned True: the bot then predicts
   nothing for it. A paused conversation (a human owns it) never gets a prediction.
3. After the bot's actions (or none), every hook's ``after_turn`` runs, in order.
4. A hook that raises is logged with the conversation id and skipped; it never fails
   the turn or stops the other hooks.

Hooks update the tracker in hand (they hold the lock): they never call
``agent.append_events`` for the conversation they are running in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.message import OutputChannel
    from bot.shared.tracker import DialogueStateTracker


@runtime_checkable
class ProcessorHook(Protocol):
    """A feature's part in a turn. Both methods are required; return False / do nothing to pass."""

    async def after_user_message(self, processor: Any, tracker: "DialogueStateTracker",
                                 output_channel: "OutputChannel") -> bool:
        """True: this hook handled the message (the bot predicts nothing this turn)."""
        ...

    async def after_turn(self, processor: Any, tracker: "DialogueStateTracker",
                         output_channel: "OutputChannel") -> None:
        """After the bot's actions for this turn, before the tracker is saved."""
        ...
