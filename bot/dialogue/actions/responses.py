"""Actions that utter domain responses: ``utter_*``, retrieval ``utter_<intent>`` and end-to-end texts."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import Action, create_bot_utterance, generate_response
from bot.shared import constants as c
from bot.shared.events import ActionExecuted, Event

if TYPE_CHECKING:
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

RESPONSE_SELECTOR_PROPERTY_NAME = "response_selector"
RESPONSE_SELECTOR_DEFAULT_INTENT = "default"
RESPONSE_SELECTOR_PREDICTION_KEY = "response"
RESPONSE_SELECTOR_UTTER_ACTION_KEY = "utter_action"


class ActionBotResponse(Action):
    """Utters a domain response; a missing response is logged, never a crash."""

    def __init__(self, name: str, silent_fail: bool = False) -> None:
        self.utter_action = name
        self.silent_fail = silent_fail

    def name(self) -> str:
        return self.utter_action

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        message = await generate_response(nlg, self.utter_action, tracker, output_channel)
        if message is None:
            if not self.silent_fail:
                logger.error(
                    "Couldn't create a message for response '%s': the domain has no usable "
                    "variation. Add it under `responses:` in domain.yml.",
                    self.utter_action,
                )
            return []
        message["utter_action"] = self.utter_action
        return [create_bot_utterance(message)]


class ActionEndToEndResponse(Action):
    """Utters an end-to-end bot text (story `- bot: ...`)."""

    def __init__(self, action_text: str) -> None:
        self.action_text = action_text

    def name(self) -> str:
        return self.action_text

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        return [create_bot_utterance({"text": self.action_text})]

    def event_for_successful_execution(self, prediction: Any = None) -> ActionExecuted:
        return ActionExecuted(
            action_name=None,
            policy=getattr(prediction, "policy_name", None),
            confidence=getattr(prediction, "max_confidence", None),
            action_text=self.action_text,
        )


class ActionRetrieveResponse(ActionBotResponse):
    """``utter_faq``: utters ``utter_faq/<sub-intent>`` picked by the response selector."""

    def __init__(self, name: str, silent_fail: bool = False) -> None:
        super().__init__(name, silent_fail)
        self.action_name = name

    def name(self) -> str:
        return self.action_name

    @staticmethod
    def intent_name_from_action(action_name: str) -> str:
        return action_name[len(c.UTTER_PREFIX) :]

    def get_full_retrieval_name(self, tracker: DialogueStateTracker) -> str | None:
        """``utter_<intent>/<key>`` from the selector output, else from the intent."""
        message = tracker.latest_message
        if message is None:
            return None
        parse_data = getattr(message, "parse_data", None) or {}
        selector = parse_data.get(RESPONSE_SELECTOR_PROPERTY_NAME) or {}
        intent = self.intent_name_from_action(self.action_name)
        for key in (intent, RESPONSE_SELECTOR_DEFAULT_INTENT):
            selected = selector.get(key)
            if selected:
                prediction = selected.get(RESPONSE_SELECTOR_PREDICTION_KEY) or {}
                utter = prediction.get(RESPONSE_SELECTOR_UTTER_ACTION_KEY)
                if utter:
                    return utter
                full = prediction.get("intent_response_key")
                if full:
                    return f"{c.UTTER_PREFIX}{full}"
        full_intent = (parse_data.get(c.INTENT) or {}).get(c.FULL_RETRIEVAL_INTENT_NAME_KEY)
        if full_intent and full_intent.startswith(intent + c.RESPONSE_IDENTIFIER_DELIMITER):
            return f"{c.UTTER_PREFIX}{full_intent}"
        return None

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        full_name = self.get_full_retrieval_name(tracker)
        if full_name is None:
            if not self.silent_fail:
                logger.error(
                    "Couldn't create a message for retrieval action '%s': the latest message "
                    "has no response selector prediction for it.",
                    self.action_name,
                )
            return []
        return await ActionBotResponse(full_name, self.silent_fail).run(
            output_channel, nlg, tracker, domain
        )
