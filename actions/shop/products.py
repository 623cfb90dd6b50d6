"""Which product a shopper means, from the way shoppers name products.

Shoppers write part of a title ("磐石跑鞋"), a homophone or pinyin for a word they
cannot type ("盘石跑鞋", "panshi paoxie"), an English title with a typo, or point at
something already in the conversation ("那双黑色的", "this one"). `ProductFinder`
scores every catalogue title by how much of it the message covers, on characters
and on pinyin (pypinyin), and falls back to the conversation's context: the cards
just shown, the last card, the product page the widget is on.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Iterable, Optional, Sequence

from actions.shop.base import ProductView

SKU_RE = re.compile(r"\b[A-Z]{3}-\d{5}\b")
DEICTIC = re.compile(r"这(?:双|款|件|个|条|顶|只)|那(?:双|款|件|个|条|顶|只)|它|刚才|上面|第[一二三1-3]|"
                     r"\b(?:this|that|it|these|those|the (?:first|second|third|one))\b", re.I)
ORDINALS = {"第一": 0, "第1": 0, "first": 0, "第二": 1, "第2": 1, "second": 1, "第三": 2, "第3": 2, "third": 2}
COMPARE = re.compile(r"对比|比较|比一比|区别|哪个好|哪款好|哪双好|compare|comparison|\bvs\.?\b|difference|better", re.I)
MATCH_THRESHOLD = 0.55  # share of a title the message must cover
AMBIGUITY_MARGIN = 0.04  # titles scoring within this of the best are also candidates


def normalise(text: str) -> str:
    """Lower case, full-width to half-width, no spaces or punctuation."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return re.sub(r"[\s\W_]+", "", text)


@lru_cache(maxsize=4096)
def pinyin(text: str) -> str:
    """Toneless pinyin of the Chinese characters, other characters kept ("磐石03" → "panshi03")."""
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(normalise(text), style=Style.NORMAL, errors="default"))


@lru_cache(maxsize=16384)
def bigrams(text: str) -> tuple[str, ...]:
    return tuple(text[i:i + 2] for i in range(len(text) - 1))


def coverage(title: str, text: str, text_bigrams: Optional[frozenset] = None) -> float:
    """Share of `title` found in `text` in order (matching blocks of two or more characters).

    A block of k >= 2 matched characters holds k - 1 of the title's bigrams, so twice the
    title bigrams present in `text` bound the share from above: titles that cannot reach
    MATCH_THRESHOLD skip the (much dearer) sequence matching.
    """
    if not title or not text:
        return 0.0
    present = text_bigrams if text_bigrams is not None else frozenset(bigrams(text))
    if 2 * sum(b in present for b in bigrams(title)) < MATCH_THRESHOLD * len(title):
        return 0.0
    blocks = SequenceMatcher(None, title, text, autojunk=False).get_matching_blocks()
    matched = sum(b.size for b in blocks if b.size >= 2)
    return matched / len(title)


@dataclass(frozen=True)
class Match:
    product: ProductView
    score: float
    how: str  # title | pinyin | english | sku | shown | card | page


class ProductFinder:
    """Scores the catalogue against a message; cheap enough per message for a few thousand products."""

    def __init__(self, products: Iterable[ProductView]) -> None:
        self.products = list(products)
        self._keys = [(p, normalise(p.title_zh), pinyin(p.title_zh), normalise(p.title_en)) for p in self.products]
        self.by_sku = {p.sku: p for p in self.products}

    def search(self, text: str, *, limit: int = 3) -> list[Match]:
        """Products the message names, best first; several when it names several (or is ambiguous)."""
        found = [Match(self.by_sku[s], 1.0, "sku") for s in SKU_RE.findall(text or "") if s in self.by_sku]
        if found:
            return found[:limit]
        norm, py = normalise(text), pinyin(text)
        if not norm:
            return []
        norm_chars, py_chars = frozenset(bigrams(norm)), frozenset(bigrams(py))
        scored = []
        for product, zh, zh_py, en in self._keys:
            score, how = coverage(zh, norm, norm_chars), "title"
            py_score = coverage(zh_py, py, py_chars) * 0.95  # homophones and typed pinyin
            if py_score > score:
                score, how = py_score, "pinyin"
            en_score = coverage(en, norm, norm_chars)
            if en_score > score:
                score, how = en_score, "english"
            if score >= MATCH_THRESHOLD:
                scored.append(Match(product, round(score, 3), how))
        scored.sort(key=lambda m: (-m.score, m.product.sku))
        if not scored:
            return []
        best = scored[0].score
        return [m for m in scored if m.score >= best - AMBIGUITY_MARGIN][:limit]

    def from_context(self, text: str, *, shown: Sequence[str] = (), card: Optional[str] = None,
                     page: Optional[str] = None, colour: Optional[str] = None) -> list[Match]:
        """What "那双黑色的" / "第二个" / "this one" points at: the cards shown, the last card, the page."""
        lowered = (text or "").lower()
        shown_products = [self.by_sku[s] for s in shown if s in self.by_sku]
        for word, index in ORDINALS.items():
            if word in lowered and index < len(shown_products):
                return [Match(shown_products[index], 0.9, "shown")]
        if colour and shown_products:
            coloured = [p for p in shown_products if colour in p.colours]
            if coloured:
                return [Match(p, 0.85, "shown") for p in coloured[:3]]
        if COMPARE.search(lowered) and len(shown_products) >= 2:
            return [Match(p, 0.8, "shown") for p in shown_products[:3]]
        if card and card in self.by_sku:
            return [Match(self.by_sku[card], 0.8, "card")]
        if page and page in self.by_sku:
            return [Match(self.by_sku[page], 0.75, "page")]
        return []


def wants_comparison(text: str) -> bool:
    return bool(COMPARE.search(text or ""))


def points_at_context(text: str) -> bool:
    return bool(DEICTIC.search(text or ""))
