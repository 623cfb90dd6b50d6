"""Turn a domain response into a message (Rasa's TemplatedNaturalLanguageGenerator).

Variation choice follows Rasa 3.6's ``ResponseVariationFilter``: conditional
variations whose slot conditions all hold beat plain ones, and variations for
the output channel beat generic ones; one of the winners is picked at random
(seedable). ``{slot}`` placeholders are filled like Rasa's interpolator, but
malformed braces never crash a conversation.
"""
from __future__ import annotations

import copy
import logging
import random
import re
from typing import Any

logger = logging.getLogger(__name__)

RESPONSE_CONDITION = "condition"
CHANNEL = "channel"
# Keys of a response whose strings are interpolated (Rasa's list).
KEYS_TO_INTERPOLATE = ("text", "image", "custom", "buttons", "attachment", "quick_replies")

_PLACEHOLDER = re.compile(r"{([^\n{}]+?)}")


def interpolate_text(template: str, values: dict[str, Any]) -> str:
    """Fill ``{name}`` placeholders in one string.

    Rasa semantics: a known name with value ``None`` renders ``"None"``; if a
    placeholder names something unknown the text is returned unchanged;
    ``{{`` / ``}}`` escape braces. Where Python's ``str.format`` would raise
    (a lone ``}``, odd format specs) we fill only the known placeholders.
    """
    if not isinstance(template, str) or "{" not in template and "}" not in template:
        return template
    try:
        text = _PLACEHOLDER.sub(r"{0[\1]}", template)
        text = text.format(values)
        if "0[" in text:
            # a placeholder was escaped ({{name}}): keep it, unescaped, like Rasa
            return template.format({})
        return text
    except KeyError as e:
        logger.debug(
            "Response placeholder '%s' has no value (no slot or argument of that name); "
            "returning the text unfilled.", e.args[0] if e.args else "?",
        )
        return template
    except (ValueError, IndexError, AttributeError, TypeError):
        return _PLACEHOLDER.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
        )


def interpolate(template: Any, values: dict[str, Any]) -> Any:
    """Interpolate strings inside ``template`` (str, dict or list, recursively)."""
    if isinstance(template, str):
        return interpolate_text(template, values)
    if isinstance(template, dict):
        return {k: interpolate(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [interpolate(v, values) for v in template]
    return template


def _matches_filled_slots(filled_slots: dict[str, Any], response: dict[str, Any]) -> bool:
    """All conditions of a variation hold (strings compared case-insensitively)."""
    for constraint in response.get(RESPONSE_CONDITION) or []:
        name = constraint.get("name")
        value = constraint.get("value")
        filled = filled_slots.get(name)
        if isinstance(filled, str) and isinstance(value, str):
            if filled.casefold() != value.casefold():
                return False
        elif filled != value:
            return False
    return True


def _channel_name(output_channel: Any) -> str | None:
    if output_channel is None or isinstance(output_channel, str):
        return output_channel
    name = getattr(output_channel, "name", None)
    return name() if callable(name) else name


class ResponseVariationFilter:
    """Picks the variations of a response that fit the channel and the slots."""

    def __init__(self, responses: dict[str, list[dict[str, Any]]]) -> None:
        self.responses = responses

    def responses_for_utter_action(
        self, utter_action: str, output_channel: str | None, filled_slots: dict[str, Any]
    ) -> list[dict[str, Any]]:
        conditional, default = [], []
        for response in self.responses.get(utter_action) or []:
            if response.get(RESPONSE_CONDITION):
                if _matches_filled_slots(filled_slots, response):
                    conditional.append(response)
            else:
                default.append(response)
        for group in (
            [r for r in conditional if output_channel and r.get(CHANNEL) == output_channel],
            [r for r in default if output_channel and r.get(CHANNEL) == output_channel],
            [r for r in conditional if r.get(CHANNEL) is None],
            [r for r in default if r.get(CHANNEL) is None],
        ):
            if group:
                return group
        return []


class TemplatedNaturalLanguageGenerator:
    """Generates bot messages from the domain's ``responses``."""

    def __init__(
        self,
        responses: dict[str, list[dict[str, Any]]],
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.responses = responses
        self._rng = rng or random.Random(seed)

    def _random_response_for(
        self, utter_action: str, output_channel: str | None, filled_slots: dict[str, Any]
    ) -> dict[str, Any] | None:
        if utter_action not in self.responses:
            return None
        suitable = ResponseVariationFilter(self.responses).responses_for_utter_action(
            utter_action, output_channel, filled_slots
        )
        if not suitable:
            return None
        return self._rng.choice(suitable)

    def generate(
        self, utter_action: str, tracker: Any, output_channel: Any = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        """A filled response for ``utter_action`` (``None`` if there is none).

        ``tracker`` may be a tracker or ``None``; ``output_channel`` a channel
        name or an OutputChannel; ``kwargs`` add placeholder values.
        """
        return self.generate_from_slots(utter_action, _filled_slots(tracker), output_channel, **kwargs)

    async def agenerate(
        self, utter_action: str, tracker: Any, output_channel: Any = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        """Awaitable form of ``generate`` (Rasa's NLG interface is async)."""
        return self.generate(utter_action, tracker, output_channel, **kwargs)

    def generate_from_slots(
        self,
        utter_action: str,
        filled_slots: dict[str, Any] | None,
        output_channel: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        filled_slots = dict(filled_slots or {})
        response = self._random_response_for(utter_action, _channel_name(output_channel), filled_slots)
        if response is None:
            return None
        return self._fill_response(copy.deepcopy(response), filled_slots, **kwargs)

    @staticmethod
    def _fill_response(response: dict[str, Any], filled_slots: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        values = {**filled_slots, **kwargs}
        if values:
            for key in KEYS_TO_INTERPOLATE:
                if key in response:
                    response[key] = interpolate(response[key], values)
        return response


def _filled_slots(tracker: Any) -> dict[str, Any]:
    if tracker is None:
        return {}
    current = getattr(tracker, "current_slot_values", None)
    if callable(current):
        return dict(current())
    slots = getattr(tracker, "slots", None) or {}
    return {name: getattr(slot, "value", slot) for name, slot in slots.items()}
