"""FAQ entries as frozen values: questions and answers per language, tags, validity."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Button:
    title: str
    payload: str

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class Answer:
    """One language's answer: text plus optional buttons, links and images."""

    text: str
    buttons: tuple[Button, ...] = ()
    links: tuple[dict[str, str], ...] = ()  # {"title", "url"}
    images: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text}
        if self.buttons:
            d["buttons"] = [b.as_dict() for b in self.buttons]
        if self.links:
            d["links"] = [dict(x) for x in self.links]
        if self.images:
            d["images"] = list(self.images)
        return d


@dataclass(frozen=True)
class Entry:
    id: str
    category: str = ""
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    source: str | None = None  # file the entry came from (CRUD writes back there)
    line: int | None = None

    def is_valid_on(self, day: dt.date) -> bool:
        if self.valid_from and day < self.valid_from:
            return False
        if self.valid_until and day > self.valid_until:
            return False
        return True

    def answer_for(self, language: str) -> tuple[Answer | None, str | None]:
        """The answer in ``language`` or, failing that, another one (and its language)."""
        if language in self.answers:
            return self.answers[language], language
        for other in (*LANGUAGES, *sorted(self.answers)):
            if other in self.answers:
                return self.answers[other], other
        return None, None

    def title_for(self, language: str) -> str:
        """A short label for clarification buttons: the first phrasing in ``language``."""
        for lang in (language, *LANGUAGES, *sorted(self.questions)):
            if self.questions.get(lang):
                return self.questions[lang][0]
        return self.id

    def as_dict(self) -> dict[str, Any]:
        """YAML/JSON form (what the files and the API use)."""
        d: dict[str, Any] = {"id": self.id}
        if self.category:
            d["category"] = self.category
        d["questions"] = {lang: list(qs) for lang, qs in self.questions.items()}
        d["answers"] = {lang: a.as_dict() for lang, a in self.answers.items()}
        if self.tags:
            d["tags"] = list(self.tags)
        if self.valid_from:
            d["valid_from"] = self.valid_from.isoformat()
        if self.valid_until:
            d["valid_until"] = self.valid_until.isoformat()
        return d

    def phrasings(self) -> list[tuple[str, str]]:
        """(language, text) for every question phrasing."""
        return [(lang, q) for lang, qs in self.questions.items() for q in qs]


def content_hash(entries: list[Entry] | tuple[Entry, ...]) -> str:
    """Stable digest of what the index depends on (order-independent)."""
    payload = sorted((e.as_dict() for e in entries), key=lambda d: d["id"])
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
