"""Tiny zh/en language detector: Han characters versus Latin words.

A message counts as Chinese when it has at least as many Han characters as
Latin words, so code-mixed shop talk like "我的order到哪了" is ``zh``.
"""
from __future__ import annotations

import re
from typing import Any

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
SUPPORTED_LANGUAGES = ("zh", "en")


def detect_language(text: str, default: str = "zh") -> str:
    """``zh`` or ``en``; ``default`` when the text has no letters at all."""
    han = len(_HAN.findall(text or ""))
    latin = len(_LATIN_WORD.findall(text or ""))
    if han == 0 and latin == 0:
        return default if default in SUPPORTED_LANGUAGES else "zh"
    return "zh" if han >= latin else "en"


def conversation_language(tracker: Any, text: str | None = None, default: str = "zh") -> str:
    """The language to answer this conversation in: ``zh`` or ``en``.

    The ``language`` slot (set from every parse) wins; then the latest parse's
    ``language``; then, when given, a detection on ``text``; then ``default``.
    One rule for the processor's fallback reply, the FAQ action and handoff messages.
    """
    lang = None
    get_slot = getattr(tracker, "get_slot", None)
    if callable(get_slot):
        try:
            lang = get_slot("language")
        except Exception:  # a domain without the slot
            lang = None
    if not lang:
        latest = getattr(tracker, "latest_message", None)
        lang = (getattr(latest, "parse_data", None) or {}).get("language") if latest is not None else None
    if not lang and text:
        lang = detect_language(text, default)
    if not lang:
        lang = default
    return "en" if str(lang).startswith("en") else "zh"
