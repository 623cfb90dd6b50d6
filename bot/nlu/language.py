"""Tiny zh/en language detector: Han characters versus Latin words.

A message counts as Chinese when it has at least as many Han characters as
Latin words, so code-mixed shop talk like "我的order到哪了" is ``zh``.
"""
from __future__ import annotations

import re

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
