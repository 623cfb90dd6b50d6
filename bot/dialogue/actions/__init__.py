"""Actions the bot can take: responses, Rasa's default actions, forms, custom actions.

``action_for_name_or_text`` is the entry point the processor uses.
"""
from __future__ import annotations

from bot.dialogue.actions.action import (
    Action,
    ActionBotResponse,
    ActionEndToEndResponse,
    ActionRetrieveResponse,
    action_for_index,
    action_for_name_or_text,
    create_bot_utterance,
    default_actions,
)
from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.forms import FormAction
from bot.dialogue.actions.inprocess import InProcessAction, create_executor
from bot.dialogue.actions.loops import LoopAction
from bot.dialogue.actions.remote import RemoteAction
from bot.dialogue.actions.two_stage_fallback import TwoStageFallbackAction

__all__ = [
    "Action",
    "ActionBotResponse",
    "ActionEndToEndResponse",
    "ActionExtractSlots",
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
