"""Natural-language understanding: intents, entities, sentiment, language.

Imports are lazy so that ``bot.nlu.regex_interpreter`` does not pull in torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["NLUPipeline", "parse_intent_message"]


def __getattr__(name: str) -> Any:
    if name == "NLUPipeline":
        from bot.nlu.pipeline import NLUPipeline

        return NLUPipeline
    if name == "parse_intent_message":
        from bot.nlu.regex_interpreter import parse_intent_message

        return parse_intent_message
    raise AttributeError(name)
