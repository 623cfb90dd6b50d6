"""Rasa's ``/intent{"entity": "value"}`` and ``/intent@0.9`` message syntax.

Buttons and tests send these to bypass NLU; the result is a full parse result
so the dialogue layer cannot tell it from a model prediction.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from bot.nlu.language import detect_language

logger = logging.getLogger(__name__)

INTENT_MESSAGE_PREFIX = "/"
_DIGITS = frozenset("0123456789.")


@dataclass(frozen=True)
class _Parts:
    """Spans of ``/intent@conf{entities}rest`` in the original text."""

    intent: str
    confidence: str | None
    entities: str | None
    entities_start: int
    entities_end: int
    rest: str


def _split_intent_message(text: str) -> _Parts | None:
    """One left-to-right pass (linear in ``len(text)``, unlike a backtracking regex).

    Same reading as Rasa's pattern ``/(intent)(@conf)?\\s*({.*})?(rest)\\s*``: the intent runs
    to the first ``{`` or ``@``; ``@`` + digits/dots is the confidence; entities run from
    the next ``{`` (after optional spaces) to the *last* ``}``; anything else is ``rest``.
    """
    n = len(text)
    i = len(text) - len(text.lstrip())
    if i >= n or text[i] != INTENT_MESSAGE_PREFIX:
        return None
    i += 1
    if i >= n or text[i] in "{@" or text[i].isspace():
        return None
    end = i
    while end < n and text[end] not in "{@":
        end += 1
    intent, i = text[i:end], end
    confidence = None
    if i + 1 < n and text[i] == "@" and text[i + 1] in _DIGITS:
        end = i + 1
        while end < n and text[end] in _DIGITS:
            end += 1
        confidence, i = text[i:end], end
    j = i
    while j < n and text[j].isspace():
        j += 1
    entities, start, stop = None, -1, -1
    if j < n and text[j] == "{":
        last = text.rfind("}", j)
        if last != -1:
            entities, start, stop, i = text[j:last + 1], j, last + 1, last + 1
    if entities is None:
        i = j
    return _Parts(intent, confidence, entities, start, stop, text[i:].rstrip())


def is_intent_message(text: str | None) -> bool:
    return bool(text) and text.lstrip().startswith(INTENT_MESSAGE_PREFIX)  # type: ignore[union-attr]


def _entities(raw: str | None, start: int, end: int, text: str) -> list[dict[str, Any]]:
    if not raw:
        return []
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        logger.warning("Invalid entity JSON in intent message %r: %s; entities ignored.", text, e.msg)
        return []
    if not isinstance(parsed, dict):
        logger.warning("Entities in intent message %r must be a JSON object; ignored.", text)
        return []
    entities = []
    for name, values in parsed.items():
        for value in values if isinstance(values, list) else [values]:
            entities.append({"entity": str(name), "start": start, "end": end, "value": value})
    return entities


def parse_intent_message(
    text: str | None,
    domain_intents: Iterable[str] | None = None,
    language: str | None = None,
) -> dict[str, Any] | None:
    """Parse result for ``/intent...`` text; ``None`` for ordinary text.

    With ``domain_intents`` given, an intent the domain does not know is not
    trusted (Rasa warns too) and ``None`` is returned so NLU handles the text.
    """
    if not is_intent_message(text):
        return None
    assert text is not None
    match = _split_intent_message(text)
    if match is None:
        return None
    intent = match.intent.strip()
    if not intent:
        return None
    if domain_intents is not None and intent not in set(domain_intents):
        logger.warning("Intent '%s' in message %r is not in the domain; treating it as text.", intent, text)
        return None
    confidence = 1.0
    if match.confidence:
        try:
            confidence = float(match.confidence[1:])
        except ValueError:
            logger.warning("Invalid confidence in %r; using 1.0.", text)
        confidence = min(max(confidence, 0.0), 1.0)
    if match.rest.strip():
        logger.warning("Ignoring unparsed trailing text %r in intent message.", match.rest[:200])
    entities = _entities(match.entities, match.entities_start, match.entities_end, text)
    parsed_intent = {"name": intent, "confidence": confidence}
    return {
        "text": text,
        "intent": parsed_intent,
        "intent_ranking": [dict(parsed_intent)],
        "entities": entities,
        "sentiment": {"label": "neutral", "score": 0.0},
        "language": language or detect_language(text, "zh"),
    }
