"""Actions: what the bot does after a prediction (Rasa's ``rasa/core/actions/action.py``).

An action never talks to the user directly: bot messages come back as ``BotUttered``
events and the processor sends them on the output channel, then applies all events
to the tracker. Custom actions run through :mod:`.remote` (rasa_sdk HTTP protocol)
or :mod:`.inprocess` (rasa_sdk executor in this process).
"""
from __future__ import annotations

import copy
import difflib
import inspect
import logging
from typing import TYPE_CHECKING, Any, Iterable

from bot.shared import constants as c
from bot.shared.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from bot.shared.exceptions import ActionNotFound

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.endpoints import EndpointConfig
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)

RESPONSE_SELECTOR_PROPERTY_NAME = "response_selector"
RESPONSE_SELECTOR_DEFAULT_INTENT = "default"
RESPONSE_SELECTOR_PREDICTION_KEY = "response"
RESPONSE_SELECTOR_UTTER_ACTION_KEY = "utter_action"


# --------------------------------------------------------------------------- helpers


def channel_name(output_channel: Any) -> str:
    """Name of the output channel for channel-specific response variations."""
    name = getattr(output_channel, "name", None)
    if callable(name):
        try:
            return str(name())
        except TypeError:
            return "collector"
    return str(name) if name else "collector"


async def generate_response(
    nlg: Any, utter_action: str, tracker: DialogueStateTracker, output_channel: Any, **kwargs: Any
) -> dict[str, Any] | None:
    """Calls ``nlg.generate`` whether it is sync (templated) or async (NLG server)."""
    if nlg is None:
        return None
    result = nlg.generate(utter_action, tracker, channel_name(output_channel), **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return dict(result) if result else None


def create_bot_utterance(message: dict[str, Any]) -> BotUttered:
    """``BotUttered`` from a rendered response; unknown keys go to its metadata (as Rasa)."""
    message = dict(message)
    return BotUttered(
        text=message.pop("text", None),
        data={
            "elements": message.pop("elements", None),
            "quick_replies": message.pop("quick_replies", None),
            "buttons": message.pop("buttons", None),
            # legacy: the image doubles as attachment when there is none
            "attachment": message.pop("attachment", None) or message.get("image", None),
            "image": message.pop("image", None),
            "custom": message.pop("custom", None),
        },
        metadata=message,
    )


def intent_name_of(message: Any) -> str | None:
    """Intent name of a ``UserUttered`` (or ``None``)."""
    if message is None:
        return None
    name = getattr(message, "intent_name", None)
    if name:
        return name
    intent = getattr(message, "intent", None) or {}
    return intent.get(c.INTENT_NAME_KEY) if isinstance(intent, dict) else None


def latest_entity_values(
    tracker: DialogueStateTracker,
    entity_type: str | None,
    entity_role: str | None = None,
    entity_group: str | None = None,
) -> list[Any]:
    """Values of the latest message's entities matching type, role and group exactly."""
    message = tracker.latest_message
    if message is None:
        return []
    return [
        e.get(c.ENTITY_ATTRIBUTE_VALUE)
        for e in (getattr(message, "entities", None) or [])
        if e.get(c.ENTITY_ATTRIBUTE_TYPE) == entity_type
        and e.get(c.ENTITY_ATTRIBUTE_ROLE) == entity_role
        and e.get(c.ENTITY_ATTRIBUTE_GROUP) == entity_group
    ]


def _events_of(tracker: DialogueStateTracker) -> list[Event]:
    return list(tracker.events)


def last_executed_action_has(tracker: DialogueStateTracker, name: str, skip: int = 0) -> bool:
    """Whether the last executed non-listen action (after ``skip`` ones) is ``name``."""
    seen = 0
    for event in reversed(_events_of(tracker)):
        if isinstance(event, ActionExecuted) and event.action_name != c.ACTION_LISTEN_NAME:
            if seen == skip:
                return event.action_name == name
            seen += 1
    return False


def last_event_for(tracker: DialogueStateTracker, types: type | tuple[type, ...], skip: int = 0) -> Any:
    """The latest event of ``types`` after the latest restart, skipping ``skip`` matches."""
    events = _events_of(tracker)
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], Restarted):
            events = events[index + 1 :]
            break
    seen = 0
    for event in reversed(events):
        if isinstance(event, types):
            if seen == skip:
                return event
            seen += 1
    return None


def domain_form_names(domain: Domain) -> list[str]:
    names = getattr(domain, "form_names", None)
    if names is not None:
        return list(names)
    return list((getattr(domain, "forms", None) or {}).keys())


def domain_action_texts(domain: Domain) -> list[str]:
    return list(getattr(domain, "action_texts", None) or [])


def is_retrieval_action(action_name: str, domain: Domain) -> bool:
    """``utter_<intent>`` where ``<intent>`` is a retrieval intent (``utter_faq``)."""
    if not action_name.startswith(c.UTTER_PREFIX) or c.RESPONSE_IDENTIFIER_DELIMITER in action_name:
        return False
    intent = action_name[len(c.UTTER_PREFIX) :]
    retrieval = getattr(domain, "retrieval_intents", None)
    if retrieval and intent in retrieval:
        return True
    prefix = action_name + c.RESPONSE_IDENTIFIER_DELIMITER
    return action_name not in domain.responses and any(
        name.startswith(prefix) for name in domain.responses
    )


# --------------------------------------------------------------------------- base


class Action:
    """Next thing the bot does in reply to a dialogue state."""

    def name(self) -> str:
        raise NotImplementedError

    async def run(
        self,
        output_channel: Any,
        nlg: Any,
        tracker: DialogueStateTracker,
        domain: Domain,
        metadata: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Returns the events this action causes (bot messages as ``BotUttered``)."""
        raise NotImplementedError

    def event_for_successful_execution(self, prediction: Any = None) -> ActionExecuted:
        """The ``ActionExecuted`` the processor logs after this action ran."""
        if prediction is None:
            return ActionExecuted(self.name())
        return ActionExecuted(
            self.name(),
            getattr(prediction, "policy_name", None),
            getattr(prediction, "max_confidence", None),
            hide_rule_turn=getattr(prediction, "hide_rule_turn", False),
            metadata=getattr(prediction, "action_metadata", None),
        )

    def __str__(self) -> str:
        return f"{self.__class__.__name__}('{self.name()}')"

    __repr__ = __str__


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


# --------------------------------------------------------------------------- defaults


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


def default_actions(action_endpoint: EndpointConfig | None = None, executor: Any = None) -> list[Action]:
    """Rasa's default actions, in Rasa's order."""
    from bot.dialogue.actions.extract_slots import ActionExtractSlots
    from bot.dialogue.actions.two_stage_fallback import TwoStageFallbackAction

    return [
        ActionListen(),
        ActionRestart(),
        ActionSessionStart(),
        ActionDefaultFallback(),
        ActionDeactivateLoop(),
        ActionRevertFallbackEvents(),
        ActionDefaultAskAffirmation(),
        ActionDefaultAskRephrase(),
        TwoStageFallbackAction(action_endpoint, executor),
        ActionUnlikelyIntent(),
        ActionBack(),
        ActionSendText(),
        ActionExtractSlots(action_endpoint, executor),
    ]


def custom_action(name: str, action_endpoint: EndpointConfig | None = None, executor: Any = None) -> Action:
    """A user action: in-process when the executor knows it, else over HTTP."""
    if executor is not None and (action_endpoint is None or executor_knows(executor, name)):
        from bot.dialogue.actions.inprocess import InProcessAction

        return InProcessAction(name, executor)
    from bot.dialogue.actions.remote import RemoteAction

    return RemoteAction(name, action_endpoint)


def executor_knows(executor: Any, name: str) -> bool:
    """Whether a rasa_sdk ``ActionExecutor`` has ``name`` registered."""
    return executor is not None and name in (getattr(executor, "actions", None) or {})


def _close_names(name: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(name, [str(x) for x in candidates], n=5, cutoff=0.6)


def action_for_name_or_text(
    action_name_or_text: str,
    domain: Domain,
    action_endpoint: EndpointConfig | None = None,
    executor: Any = None,
    knowledge: Any = None,
) -> Action:
    """The action to run for a predicted name (or end-to-end text).

    Raises ``ActionNotFound`` (listing close names) when the domain lacks it.
    """
    names = list(domain.action_names_or_texts)
    if action_name_or_text not in names:
        close = _close_names(action_name_or_text, names)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ActionNotFound(
            f"Cannot find action '{action_name_or_text}' in the domain.{hint} "
            f"Fix: add it under `actions:` (or `responses:` for utter_ actions) in domain.yml."
        )

    user_actions = set(getattr(domain, "user_actions", None) or [])
    forms = domain_form_names(domain)
    if action_name_or_text == "action_answer_faq" and (
        knowledge is not None or executor is None or action_name_or_text not in getattr(executor, "actions", {})
    ):
        from bot.dialogue.actions.faq import create_faq_action

        return create_faq_action(knowledge)
    defaults = {a.name(): a for a in default_actions(action_endpoint, executor)}
    if action_name_or_text in defaults and action_name_or_text not in user_actions | set(forms):
        return defaults[action_name_or_text]

    if action_name_or_text.startswith(c.UTTER_PREFIX) and is_retrieval_action(
        action_name_or_text, domain
    ):
        return ActionRetrieveResponse(action_name_or_text)

    if action_name_or_text in domain_action_texts(domain):
        return ActionEndToEndResponse(action_name_or_text)

    if action_name_or_text.startswith(c.UTTER_PREFIX):
        return ActionBotResponse(action_name_or_text)

    if action_name_or_text in forms and action_name_or_text not in user_actions:
        from bot.dialogue.actions.forms import FormAction

        return FormAction(action_name_or_text, action_endpoint, executor)

    return custom_action(action_name_or_text, action_endpoint, executor)


def action_for_index(
    index: int, domain: Domain, action_endpoint: EndpointConfig | None = None, executor: Any = None
) -> Action:
    """The action at ``index`` of ``domain.action_names_or_texts`` (policies predict indices)."""
    names = list(domain.action_names_or_texts)
    if not 0 <= index < len(names):
        raise IndexError(f"Cannot access action at index {index}. Domain has {len(names)} actions.")
    return action_for_name_or_text(names[index], domain, action_endpoint, executor)
