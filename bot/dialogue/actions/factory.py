"""Which action runs for a predicted name: ``action_for_name_or_text`` (the processor's entry point).

The only module here that imports the concrete actions; loop actions that run other
actions by name get :func:`lookup_for` (an :data:`~.base.ActionLookup`) instead of importing this.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterable

from bot.dialogue.actions.base import Action, ActionLookup
from bot.dialogue.actions.custom import custom_action
from bot.dialogue.actions.defaults import (
    ActionBack,
    ActionDeactivateLoop,
    ActionDefaultAskAffirmation,
    ActionDefaultAskRephrase,
    ActionDefaultFallback,
    ActionListen,
    ActionRestart,
    ActionRevertFallbackEvents,
    ActionSendText,
    ActionSessionStart,
    ActionUnlikelyIntent,
)
from bot.dialogue.actions.extract_slots import ActionExtractSlots
from bot.dialogue.actions.faq import create_faq_action
from bot.dialogue.actions.forms import FormAction
from bot.dialogue.actions.responses import ActionBotResponse, ActionEndToEndResponse, ActionRetrieveResponse
from bot.dialogue.actions.two_stage_fallback import TwoStageFallbackAction
from bot.shared import constants as c
from bot.shared.exceptions import ActionNotFound

if TYPE_CHECKING:
    from bot.shared.domain import Domain
    from bot.shared.endpoints import EndpointConfig


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


def default_actions(action_endpoint: EndpointConfig | None = None, executor: Any = None) -> list[Action]:
    """Rasa's default actions, in Rasa's order."""
    return [
        ActionListen(),
        ActionRestart(),
        ActionSessionStart(),
        ActionDefaultFallback(),
        ActionDeactivateLoop(),
        ActionRevertFallbackEvents(),
        ActionDefaultAskAffirmation(),
        ActionDefaultAskRephrase(),
        TwoStageFallbackAction(action_endpoint, executor, lookup=lookup_for(action_endpoint, executor)),
        ActionUnlikelyIntent(),
        ActionBack(),
        ActionSendText(),
        ActionExtractSlots(action_endpoint, executor),
    ]


def lookup_for(action_endpoint: EndpointConfig | None = None, executor: Any = None) -> ActionLookup:
    """``action_for_name_or_text`` bound to the endpoint and executor, for loop actions."""

    def lookup(name: str, domain: Domain) -> Action:
        return action_for_name_or_text(name, domain, action_endpoint, executor)

    return lookup


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
        return FormAction(
            action_name_or_text, action_endpoint, executor, lookup=lookup_for(action_endpoint, executor)
        )

    return custom_action(action_name_or_text, action_endpoint, executor)


def action_for_index(
    index: int, domain: Domain, action_endpoint: EndpointConfig | None = None, executor: Any = None
) -> Action:
    """The action at ``index`` of ``domain.action_names_or_texts`` (policies predict indices)."""
    names = list(domain.action_names_or_texts)
    if not 0 <= index < len(names):
        raise IndexError(f"Cannot access action at index {index}. Domain has {len(names)} actions.")
    return action_for_name_or_text(names[index], domain, action_endpoint, executor)
