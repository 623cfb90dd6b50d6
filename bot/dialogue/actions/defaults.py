"""Rasa's default actions (``action_listen``, ``action_restart``, ``action_session_start``, ...).

``action_extract_slots`` and ``action_two_stage_fallback`` live in their own modules;
:func:`.factory.default_actions` lists them all in Rasa's order.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from bot.dialogue.actions.base import (
    Action,
    create_bot_utterance,
    intent_name_of,
    last_event_for,
    last_executed_action_has,
)
from bot.dialogue.actions.responses import ActionBotResponse
from bot.shared import constants as c
from bot.shared.events import (
    ActionExecuted,
    ActiveLoop,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)

if TYPE_CHECKING:
    from bot.shared.tracker import DialogueStateTracker


class ActionListen(Action):
    """Bot waits for the user; no events."""

    def name(self) -> str:
        return c.ACTION_LISTEN_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        return []


class ActionRestart(ActionBotResponse):
    """Utters ``utter_restart`` when defined, then resets the conversation."""

    def __init__(self) -> None:
        super().__init__("utter_restart", silent_fail=True)

    def name(self) -> str:
        return c.ACTION_RESTART_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        events = await super().run(output_channel, nlg, tracker, domain)
        return events + [Restarted()]


class ActionSessionStart(Action):
    """Starts a session, carrying slots over from the previous one when configured.

    Session metadata comes as ``run(..., metadata=...)`` or, set by the processor
    beforehand, as the ``metadata`` attribute.
    """

    def __init__(self) -> None:
        self.metadata: dict[str, Any] | None = None

    def name(self) -> str:
        return c.ACTION_SESSION_START_NAME

    @staticmethod
    def _slot_set_events_from_tracker(tracker: DialogueStateTracker) -> list[SlotSet]:
        return [
            SlotSet(key=e.key, value=e.value, metadata=getattr(e, "metadata", None))
            for e in tracker.applied_events()
            if isinstance(e, SlotSet)
        ]

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        metadata = metadata if metadata is not None else self.metadata
        events: list[Event] = [SessionStarted()]
        session_config = getattr(domain, "session_config", None)
        carry_over = getattr(session_config, "carry_over_slots", c.DEFAULT_CARRY_OVER_SLOTS_TO_NEW_SESSION)
        if isinstance(session_config, dict):
            carry_over = session_config.get("carry_over_slots", carry_over)
        if carry_over:
            events.extend(
                e
                for e in self._slot_set_events_from_tracker(tracker)
                if not (metadata and e.key == c.SESSION_START_METADATA_SLOT)
            )
        elif not metadata:
            # the processor may have set the session metadata just before this action
            value = tracker.get_slot(c.SESSION_START_METADATA_SLOT)
            if value is not None:
                events.append(SlotSet(c.SESSION_START_METADATA_SLOT, value))
        if metadata:
            events.append(SlotSet(c.SESSION_START_METADATA_SLOT, metadata))
        events.append(ActionExecuted(c.ACTION_LISTEN_NAME))
        return events


class ActionDefaultFallback(ActionBotResponse):
    """Utters ``utter_default`` and reverts the user message that confused the bot."""

    def __init__(self) -> None:
        super().__init__("utter_default", silent_fail=True)

    def name(self) -> str:
        return c.ACTION_DEFAULT_FALLBACK_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        events = await super().run(output_channel, nlg, tracker, domain)
        return events + [UserUtteranceReverted()]


class ActionDeactivateLoop(Action):
    """Deactivates the active loop (form)."""

    def name(self) -> str:
        return c.ACTION_DEACTIVATE_LOOP_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        return [ActiveLoop(None), SlotSet(c.REQUESTED_SLOT, None)]


class ActionBack(ActionBotResponse):
    """Utters ``utter_back`` when defined and reverts the last two user turns."""

    def __init__(self) -> None:
        super().__init__("utter_back", silent_fail=True)

    def name(self) -> str:
        return c.ACTION_BACK_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        events = await super().run(output_channel, nlg, tracker, domain)
        return events + [UserUtteranceReverted(), UserUtteranceReverted()]


class ActionUnlikelyIntent(Action):
    """Marks an unexpected intent (UnexpecTEDIntentPolicy); no events."""

    def name(self) -> str:
        return c.ACTION_UNLIKELY_INTENT_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        return []


class ActionSendText(Action):
    """Sends the message given in the action metadata (``{"message": {...}}``)."""

    def __init__(self) -> None:
        self.metadata: dict[str, Any] | None = None

    def name(self) -> str:
        return c.ACTION_SEND_TEXT_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        metadata = metadata if metadata is not None else self.metadata
        message = copy.deepcopy((metadata or {}).get("message") or {"text": ""})
        return [create_bot_utterance(message)]


class ActionDefaultAskAffirmation(Action):
    """Asks the user to confirm the intent NLU was unsure about."""

    def name(self) -> str:
        return c.ACTION_DEFAULT_ASK_AFFIRMATION_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        latest = tracker.latest_message
        if latest is None:
            return []
        intent = intent_name_of(latest)
        ranking = (getattr(latest, "parse_data", None) or {}).get(c.INTENT_RANKING_KEY) or []
        if intent == c.DEFAULT_NLU_FALLBACK_INTENT_NAME and len(ranking) > 1:
            intent = ranking[1].get(c.INTENT_NAME_KEY)
        message = {
            "text": f"Did you mean '{intent}'?",
            "buttons": [
                {"title": "Yes", "payload": f"/{intent}"},
                {"title": "No", "payload": f"/{c.USER_INTENT_OUT_OF_SCOPE}"},
            ],
            "utter_action": self.name(),
        }
        return [create_bot_utterance(message)]


class ActionDefaultAskRephrase(ActionBotResponse):
    """Utters ``utter_ask_rephrase`` when defined."""

    def __init__(self) -> None:
        super().__init__("utter_ask_rephrase", silent_fail=True)

    def name(self) -> str:
        return c.ACTION_DEFAULT_ASK_REPHRASE_NAME


class ActionRevertFallbackEvents(Action):
    """Reverts the turns of a finished two-stage fallback so stories stay happy paths."""

    def name(self) -> str:
        return c.ACTION_REVERT_FALLBACK_EVENTS_NAME

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        if last_executed_action_has(tracker, c.ACTION_DEFAULT_ASK_REPHRASE_NAME):
            return _revert_successful_rephrasing(tracker)
        if last_executed_action_has(tracker, c.ACTION_DEFAULT_ASK_AFFIRMATION_NAME):
            return _revert_affirmation_events(tracker)
        return []


def _revert_rephrasing_events() -> list[Event]:
    return [
        UserUtteranceReverted(),
        UserUtteranceReverted(),
        UserUtteranceReverted(),
        ActionExecuted(c.ACTION_LISTEN_NAME),
    ]


def _revert_affirmation_events(tracker: DialogueStateTracker) -> list[Event]:
    events: list[Event] = [
        UserUtteranceReverted(),
        UserUtteranceReverted(),
        ActionExecuted(c.ACTION_LISTEN_NAME),
    ]
    if last_executed_action_has(tracker, c.ACTION_DEFAULT_ASK_REPHRASE_NAME, skip=1):
        events += _revert_rephrasing_events()
    last_user = last_event_for(tracker, UserUttered)
    if last_user is None:
        return []
    last_user = copy.deepcopy(last_user)
    last_user.parse_data.setdefault(c.INTENT, {})[c.PREDICTED_CONFIDENCE_KEY] = 1.0
    return events + [last_user]


def _revert_successful_rephrasing(tracker: DialogueStateTracker) -> list[Event]:
    last_user = last_event_for(tracker, UserUttered)
    if last_user is None:
        return []
    return _revert_rephrasing_events() + [copy.deepcopy(last_user)]


# --------------------------------------------------------------------------- lookup
