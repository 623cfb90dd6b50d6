"""Recommendations: co-purchase + category affinity + popularity, each with a reason.

Learnt from order history only (`ShopStore.baskets()`): item co-occurrence in
baskets and across a shopper's orders, category complements, per-category
popularity. For a shopper, the score of an item is
    W_CO * co-purchase with what they bought (normalised by that item's count)
  + W_AFF * their affinity for the item's category × its popularity in the category
  + W_POP * global popularity,
out-of-stock and already-owned durable items excluded. `benchmarks/recommendation_quality.py`
measures it against popularity and item co-occurrence baselines.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from actions.shop.base import Basket, ProductView
from actions.shop.catalog import CONSUMABLES

W_CO, W_AFF, W_POP = 1.0, 1.2, 0.15


@dataclass(frozen=True)
class Recommendation:
    sku: str
    score: float
    reason: str  # co_purchase | affinity | popular
    because_sku: Optional[str] = None


class Recommender:
    """Fit once on baskets (cheap: a few hundred ms for 20 000 orders), then recommend per shopper."""

    def __init__(self, products: Sequence[ProductView]) -> None:
        self.products = {p.sku: p for p in products}
        self.pop: Counter[str] = Counter()
        self.co: dict[str, Counter[str]] = defaultdict(Counter)
        self.cat_pop: dict[str, Counter[str]] = defaultdict(Counter)
        self.cat_co: dict[str, Counter[str]] = defaultdict(Counter)

    def fit(self, baskets: Iterable[Basket]) -> "Recommender":
        history: dict[int, list[str]] = defaultdict(list)
        for b in sorted(baskets, key=lambda b: b.created_at):
            skus = list(dict.fromkeys(s for s in b.skus if s in self.products))
            for s in skus:
                self.pop[s] += 1
                self.cat_pop[self.products[s].category][s] += 1
            for i, a in enumerate(skus):
                for c in skus[i + 1:]:
                    self.co[a][c] += 1
                    self.co[c][a] += 1
            # sequential: what a shopper bought earlier leads to this order (weaker signal)
            earlier = history[b.customer_id][-20:]
            for a in set(earlier):
                for c in skus:
                    if c != a:
                        self.co[a][c] += 0.5
            history[b.customer_id].extend(skus)
            cats = {self.products[s].category for s in skus}
            for ca in cats:
                for cb in cats:
                    if ca != cb:
                        self.cat_co[ca][cb] += 1
        self._max_pop = max(self.pop.values(), default=1)
        self._precompute()
        return self

    def _precompute(self) -> None:
        """The per-item and per-category top lists `recommend` reads, sorted once here, not per call.

        Same `most_common` cuts and the same arithmetic as computed per call before, so
        scores and rankings are unchanged bit for bit.
        """
        self._co_top: dict[str, tuple[tuple[str, float], ...]] = {}
        for h, row in self.co.items():
            norm = 1.0 / math.sqrt(self.pop.get(h, 1))
            self._co_top[h] = tuple((sku, W_CO * count * norm / math.sqrt(self.pop.get(sku, 1)))
                                    for sku, count in row.most_common(40))
        self._cat_comp: dict[str, tuple[tuple[str, float, int], ...]] = {}
        for cat, row in self.cat_co.items():
            comp_total = sum(row.values()) or 1
            self._cat_comp[cat] = tuple((comp, n, comp_total) for comp, n in row.most_common(3))
        self._cat_top: dict[str, tuple[tuple[str, float, float], ...]] = {}
        for cat, counts in self.cat_pop.items():
            if counts:
                top = counts.most_common(1)[0][1]
                self._cat_top[cat] = tuple((sku, c, top) for sku, c in counts.most_common(15))
        self._pop_top = tuple((sku, W_POP * c / self._max_pop) for sku, c in self.pop.most_common(30))

    def recommend(self, history: Sequence[str], k: int = 10, *, exclude_owned: bool = True) -> list[Recommendation]:
        owned = set(history)
        scores: dict[str, float] = {}
        # the strongest single contribution names the reason: sku -> (value, reason, because)
        reasons: dict[str, tuple[float, str, Optional[str]]] = {}
        none = (0.0, "", None)
        # (the loops below are inlined: ~1000 contributions per call)
        for h in owned:
            for sku, value in self._co_top.get(h, ()):
                scores[sku] = scores.get(sku, 0.0) + value
                if value > reasons.get(sku, none)[0]:
                    reasons[sku] = (value, "co_purchase", h)
        cats = Counter(self.products[s].category for s in history if s in self.products)
        total = sum(cats.values()) or 1
        affinity: Counter[str] = Counter()
        for cat, n in cats.items():
            affinity[cat] += n / total
            for comp, m, comp_total in self._cat_comp.get(cat, ()):
                affinity[comp] += 0.5 * (n / total) * m / comp_total
        for cat, a in affinity.items():
            for sku, c, top in self._cat_top.get(cat, ()):
                value = W_AFF * a * c / top
                scores[sku] = scores.get(sku, 0.0) + value
                if value > reasons.get(sku, none)[0]:
                    reasons[sku] = (value, "affinity", None)
        for sku, value in self._pop_top:
            scores[sku] = scores.get(sku, 0.0) + value
            if value > reasons.get(sku, none)[0]:
                reasons[sku] = (value, "popular", None)
        ranked = []
        for sku, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
            p = self.products.get(sku)
            if p is None or p.stock <= 0:
                continue
            if exclude_owned and sku in owned and p.category not in CONSUMABLES:
                continue
            _v, reason, because = reasons[sku]
            ranked.append(Recommendation(sku, round(score, 4), reason, because))
            if len(ranked) == k:
                break
        return ranked

    # --- baselines for the benchmark -------------------------------------------------------

    def popular(self, k: int = 10, exclude: Sequence[str] = ()) -> list[str]:
        out = []
        for sku, _ in self.pop.most_common():
            p = self.products.get(sku)
            if p is not None and p.stock > 0 and (sku not in exclude or p.category in CONSUMABLES):
                out.append(sku)
                if len(out) == k:
                    break
        return out

    def cooccurrence(self, history: Sequence[str], k: int = 10) -> list[str]:
        """Plain item co-occurrence: sum of raw co-counts with the history, popularity to fill."""
        scores: Counter[str] = Counter()
        for h in set(history):
            for sku, c in self.co.get(h, {}).items():
                scores[sku] += c
        owned = set(history)
        out = [s for s, _ in scores.most_common() if self.products[s].stock > 0 and
               (s not in owned or self.products[s].category in CONSUMABLES)][:k]
        for s in self.popular(k * 2, exclude=history):
            if len(out) >= k:
                break
            if s not in out:
                out.append(s)
        return out
