"""The one table that maps config.yml component names to classes.

Explicit on purpose (no import-time registration): reading this file tells
you every component kefu understands. A dotted path (``my_pkg.MyComponent``)
loads a user component that subclasses ``bot.nlu.base.Component``.
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from bot.nlu.base import Component
from bot.nlu.classifiers import FallbackClassifier, KeywordIntentClassifier, LogisticRegressionClassifier
from bot.nlu.diet import DIETClassifier
from bot.nlu.extractors import EntitySynonymMapper, RegexEntityExtractor
from bot.nlu.featurizers import (
    CountVectorsFeaturizer, LanguageModelFeaturizer, LexicalSyntacticFeaturizer, RegexFeaturizer,
    SentenceEmbeddingFeaturizer,
)
from bot.nlu.response_selector import ResponseSelector
from bot.nlu.sentiment import SentimentClassifier
from bot.nlu.tokenizers import JiebaTokenizer, SpacyNLP, SpacyTokenizer, WhitespaceTokenizer
from bot.shared.exceptions import UnknownComponentError, format_location

logger = logging.getLogger(__name__)

COMPONENTS: dict[str, type[Component]] = {
    "WhitespaceTokenizer": WhitespaceTokenizer,
    "JiebaTokenizer": JiebaTokenizer,
    "SpacyNLP": SpacyNLP,
    "SpacyTokenizer": SpacyTokenizer,
    "RegexFeaturizer": RegexFeaturizer,
    "LexicalSyntacticFeaturizer": LexicalSyntacticFeaturizer,
    "CountVectorsFeaturizer": CountVectorsFeaturizer,
    "LanguageModelFeaturizer": LanguageModelFeaturizer,
    "SentenceEmbeddingFeaturizer": SentenceEmbeddingFeaturizer,
    "DIETClassifier": DIETClassifier,
    "LogisticRegressionClassifier": LogisticRegressionClassifier,
    "KeywordIntentClassifier": KeywordIntentClassifier,
    "FallbackClassifier": FallbackClassifier,
    "RegexEntityExtractor": RegexEntityExtractor,
    "EntitySynonymMapper": EntitySynonymMapper,
    "ResponseSelector": ResponseSelector,
    "SentimentClassifier": SentimentClassifier,
}

# Rasa 1/2 spellings that mean the same component.
ALIASES: dict[str, str] = {
    "CountVectorFeaturizer": "CountVectorsFeaturizer",
    "SentimentAnalyzer": "SentimentClassifier",  # kefu's earlier lexicon component
    "rasa.nlu.classifiers.diet_classifier.DIETClassifier": "DIETClassifier",
}


def resolve_component(name: Any, filename: str | Path | None = None, line: int | None = None) -> type[Component]:
    """Class for a component name or dotted path; unknown names list the valid ones."""
    if not isinstance(name, str) or not name:
        raise UnknownComponentError.for_name("pipeline component", str(name), COMPONENTS, filename, line)
    name = ALIASES.get(name, name)
    if name in COMPONENTS:
        return COMPONENTS[name]
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise UnknownComponentError.for_name("pipeline component", name, COMPONENTS, filename, line) from e
        if isinstance(cls, type) and issubclass(cls, Component):
            return cls
    raise UnknownComponentError.for_name("pipeline component", name, COMPONENTS, filename, line)


def check_options(cls: type[Component], options: dict[str, Any], filename: str | Path | None,
                  line_of_key: Any = None) -> None:
    """Every option must be one the component knows (its ``defaults``). Rasa options that
    kefu accepts without effect (``ignored_options``) are reported with file:line when the
    config sets them to anything but their default, so a project is never trained
    differently without being told."""
    for key in options:
        if key == "name" or key in cls.defaults:
            continue
        line = line_of_key(key) if line_of_key else None
        valid = ", ".join(sorted(cls.defaults)) or "(none)"
        raise UnknownComponentError(
            f"Unknown option '{key}' for component '{cls.name}'.",
            filename,
            line,
            fix=f"Valid options of {cls.name}: {valid}.",
        )
    for key in sorted(cls.ignored_options & set(options)):
        value, default = options[key], cls.defaults.get(key)
        if value == default:
            continue
        line = line_of_key(key) if line_of_key else None
        instead = cls.ignored_option_notes.get(key) or f"it trains as with the default ({json.dumps(default, default=str)})"
        logger.warning("%s: %s option '%s: %s' has no effect in kefu; %s.",
                       format_location(filename or "config", line), cls.name, key, json.dumps(value, default=str), instead)
