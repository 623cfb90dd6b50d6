"""Actions the bot can take: responses, Rasa's default actions, forms, custom actions.

``action_for_name_or_text`` (:mod:`.factory`) is the entry point the processor uses.
Modules depend one way: :mod:`.base` ← concrete actions ← :mod:`.factory`.
"""
from __future__ import annotations

from bot.dialogue.actions.base import Action, ActionLookup, create_bot_utterance
from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.factory import action_for_index, action_for_name_or_text, default_actions
from bot.dialogue.actions.forms import FormAction
from bot.dialogue.actions.inprocess import InProcessAction, create_executor
from bot.dialogue.actions.loops import LoopAction
from bot.dialogue.actions.remote import RemoteAction
from bot.dialogue.actions.responses import ActionBotResponse, ActionEndToEndResponse, ActionRetrieveResponse
from bot.dialogue.actions.two_stage_fallback import TwoStageFallbackAction

__all__ = [
    "Action",
    "ActionBotResponse",
    "ActionEndToEndResponse",
    "ActionExtractSlots",
    "ActionLookup",
    "ActionRetrieveResponse",
    "FormAction",
    "InProcessAction",
    "LoopAction",
    "RemoteAction",
    "TwoStageFallbackAction",
    "action_for_index",
    "action_for_name_or_text",
    "create_bot_utterance",
    "create_executor",
    "default_actions",
]
