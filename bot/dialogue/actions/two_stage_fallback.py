"""``action_two_stage_fallback``: ask to affirm, then to rephrase, then give up (a loop)."""
from __future__ import annotations

import copy
import time
from typing import Any

from bot.dialogue.actions.base import ActionLookup, intent_name_of, last_event_for
from bot.dialogue.actions.loops import LoopAction
from bot.shared import constants as c
from bot.shared.events import ActionExecuted, ActiveLoop, Event, UserUttered, UserUtteranceReverted


class TwoStageFallbackAction(LoopAction):
    """Rasa's TwoStageFallbackAction.

    It runs the affirmation, rephrase and fallback actions by name through ``lookup``
    (the factory, so a user's own action of that name wins).
    """

    def __init__(self, action_endpoint: Any = None, executor: Any = None, *, lookup: ActionLookup) -> None:
        self._action_endpoint = action_endpoint
        self._executor = executor
        self._lookup = lookup

    def name(self) -> str:
        return c.ACTION_TWO_STAGE_FALLBACK_NAME

    async def _run_named(self, name: str, output_channel, nlg, tracker, domain) -> list[Event]:
        action = self._lookup(name, domain)
        return await action.run(output_channel, nlg, tracker, domain)

    async def do(self, output_channel, nlg, tracker, domain, events_so_far) -> list[Event]:
        if _user_should_affirm(tracker, events_so_far):
            return await self._run_named(
                c.ACTION_DEFAULT_ASK_AFFIRMATION_NAME, output_channel, nlg, tracker, domain
            )
        return await self._run_named(
            c.ACTION_DEFAULT_ASK_REPHRASE_NAME, output_channel, nlg, tracker, domain
        )

    async def is_done(self, output_channel, nlg, tracker, domain, events_so_far) -> bool:
        clarified = intent_name_of(tracker.latest_message) not in (
            c.DEFAULT_NLU_FALLBACK_INTENT_NAME,
            c.USER_INTENT_OUT_OF_SCOPE,
        )
        return clarified or _two_fallbacks_in_a_row(tracker) or _second_affirmation_failed(tracker)

    async def deactivate(self, output_channel, nlg, tracker, domain, events_so_far) -> list[Event]:
        if _two_fallbacks_in_a_row(tracker) or _second_affirmation_failed(tracker):
            return await self._run_named(
                c.ACTION_DEFAULT_FALLBACK_NAME, output_channel, nlg, tracker, domain
            )
        return [UserUtteranceReverted()] + _message_clarification(tracker)


def _last_n_intent_names(tracker, n: int) -> list[str | None]:
    names: list[str | None] = []
    for i in range(n):
        event = last_event_for(tracker, (UserUttered, UserUtteranceReverted), skip=i)
        if isinstance(event, UserUttered):
            names.append(intent_name_of(event))
    return names


def _two_fallbacks_in_a_row(tracker) -> bool:
    return _last_n_intent_names(tracker, 2) == [c.DEFAULT_NLU_FALLBACK_INTENT_NAME] * 2


def _second_affirmation_failed(tracker) -> bool:
    return _last_n_intent_names(tracker, 3) == [
        c.USER_INTENT_OUT_OF_SCOPE,
        c.DEFAULT_NLU_FALLBACK_INTENT_NAME,
        c.USER_INTENT_OUT_OF_SCOPE,
    ]


def _user_should_affirm(tracker, events_so_far: list[Event]) -> bool:
    if any(isinstance(e, ActiveLoop) for e in events_so_far):
        return True
    return intent_name_of(tracker.latest_message) == c.DEFAULT_NLU_FALLBACK_INTENT_NAME


def _message_clarification(tracker) -> list[Event]:
    latest = tracker.latest_message
    if latest is None:
        return []
    clarification = copy.deepcopy(latest)
    clarification.parse_data.setdefault(c.INTENT, {})[c.PREDICTED_CONFIDENCE_KEY] = 1.0
    clarification.timestamp = time.time()
    return [ActionExecuted(c.ACTION_LISTEN_NAME), clarification]
