"""Entity extractors that need no model: regex / lookup tables, and synonyms."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from bot.nlu.base import ENTITIES, Component, PipelineContext
from bot.nlu.featurizers import collect_patterns
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)


class RegexEntityExtractor(Component):
    """Entities from regexes and lookup tables named like an annotated entity."""

    name = "RegexEntityExtractor"
    defaults: dict[str, Any] = {
        "case_sensitive": False,
        "use_lookup_tables": True,
        "use_regexes": True,
        "use_word_boundaries": True,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.patterns: list[dict[str, str]] = []
        self._compiled: list[tuple[str, re.Pattern[str]]] = []

    def _compile(self) -> None:
        flags = 0 if self.config["case_sensitive"] else re.IGNORECASE
        self._compiled = [(p["name"], re.compile(p["pattern"], flags)) for p in self.patterns]

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        entities = training_data.entities
        patterns = collect_patterns(
            training_data, self.config["use_word_boundaries"], self.config["use_regexes"],
            self.config["use_lookup_tables"],
        )
        self.patterns = [p for p in patterns if p["name"] in entities]
        unused = sorted({p["name"] for p in patterns} - entities)
        if unused:
            logger.info(
                "RegexEntityExtractor ignores regex/lookup names %s: no example annotates such an entity.",
                unused,
            )
        self._compile()

    def process(self, message: Message) -> None:
        found = []
        for name, regex in self._compiled:
            for m in regex.finditer(message.text):
                if m.end() > m.start():
                    found.append({
                        "entity": name, "start": m.start(), "end": m.end(), "value": m.group(0),
                        "confidence_entity": 1.0, "extractor": self.name,
                    })
        if found:
            message.set(ENTITIES, (message.get(ENTITIES) or []) + found)

    def persist(self, path: Path) -> None:
        (path / "patterns.json").write_text(json.dumps(self.patterns, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "RegexEntityExtractor":
        c = cls(config, context)
        c.patterns = json.loads((path / "patterns.json").read_text(encoding="utf-8"))
        c._compile()
        return c


class EntitySynonymMapper(Component):
    """Replaces extracted entity values by their canonical synonym."""

    name = "EntitySynonymMapper"
    defaults: dict[str, Any] = {"synonyms": None}

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.synonyms: dict[str, str] = {}

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        self.synonyms = {str(k).lower(): str(v) for k, v in training_data.entity_synonyms.items()}
        extra = self.config.get("synonyms") or {}
        self.synonyms.update({str(k).lower(): str(v) for k, v in extra.items()})

    def process(self, message: Message) -> None:
        entities = message.get(ENTITIES) or []
        for entity in entities:
            key = str(entity.get("value")).lower()
            if key in self.synonyms and self.synonyms[key] != entity.get("value"):
                entity["value"] = self.synonyms[key]
                entity.setdefault("processors", []).append(self.name)

    def persist(self, path: Path) -> None:
        (path / "synonyms.json").write_text(json.dumps(self.synonyms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "EntitySynonymMapper":
        c = cls(config, context)
        c.synonyms = json.loads((path / "synonyms.json").read_text(encoding="utf-8"))
        return c
