"""Rasa's ``/intent{"entity": "value"}`` and ``/intent@0.9`` message syntax.

Buttons and tests send these to bypass NLU; the result is a full parse result
so the dialogue layer cannot tell it from a model prediction.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable

from bot.nlu.language import detect_language

logger = logging.getLogger(__name__)

INTENT_MESSAGE_PREFIX = "/"
INTENT_MESSAGE_PATTERN = re.compile(
    r"^\s*/(?P<intent>[^{@\s][^{@]*)(?P<confidence>@[0-9.]+)?\s*(?P<entities>\{.*\})?(?P<rest>.*?)\s*$",
    re.DOTALL,
)


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
    match = INTENT_MESSAGE_PATTERN.match(text)
    if match is None:
        return None
    intent = match.group("intent").strip()
    if not intent:
        return None
    if domain_intents is not None and intent not in set(domain_intents):
        logger.warning("Intent '%s' in message %r is not in the domain; treating it as text.", intent, text)
        return None
    confidence = 1.0
    if match.group("confidence"):
        try:
            confidence = float(match.group("confidence")[1:])
        except ValueError:
            logger.warning("Invalid confidence in %r; using 1.0.", text)
        confidence = min(max(confidence, 0.0), 1.0)
    if match.group("rest").strip():
        logger.warning("Ignoring unparsed trailing text %r in intent message.", match.group("rest"))
    entities = _entities(match.group("entities"), match.start("entities"), match.end("entities"), text)
    parsed_intent = {"name": intent, "confidence": confidence}
    return {
        "text": text,
        "intent": parsed_intent,
        "intent_ranking": [dict(parsed_intent)],
        "entities": entities,
        "sentiment": {"label": "neutral", "score": 0.0},
        "language": language or detect_language(text, "zh"),
    }
