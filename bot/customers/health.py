"""The health score: weighted normalised components, a band, and the factors that explain it.

Each component's contribution is ``weight × (normalised − 50) / Σweights``: how many points
it lifts or lowers the score from a neutral 50. The score is ``50 + Σ contributions``
(equal to the weighted mean of the normalised values), so the explanation adds up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.customers.rules import HealthRules


@dataclass(frozen=True)
class HealthResult:
    score: float
    band: str
    components: dict[str, dict[str, Any]]  # name → {signal, value, normalised, weight, contribution}
    factors: list[dict[str, Any]]  # the top factors, each with its change since the previous score

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "band": self.band, "components": self.components, "factors": self.factors}


def score(rules: HealthRules, profile: dict[str, Any], previous: dict[str, Any] | None = None) -> HealthResult:
    """Score ``profile``; ``previous`` (the last result's components) gives each factor's change."""
    used = []
    for comp in rules.components:
        value = profile.get(comp.signal)
        norm = comp.normalise(value)
        if norm is None or comp.weight == 0:
            continue
        used.append((comp, value, norm))
    total_weight = sum(c.weight for c, _, _ in used)
    components: dict[str, dict[str, Any]] = {}
    if total_weight == 0:
        result_score = 50.0
    else:
        result_score = 50.0
        for comp, value, norm in used:
            contribution = round(comp.weight * (norm - 50.0) / total_weight, 4)
            result_score += contribution
            components[comp.name] = {"label": comp.label, "signal": comp.signal, "value": value,
                                     "normalised": norm, "weight": comp.weight, "contribution": contribution}
    result_score = round(min(100.0, max(0.0, result_score)), 2)
    prev = (previous or {}).get("components") or {}
    factors = []
    for name, comp in components.items():
        before = (prev.get(name) or {}).get("contribution")
        change = round(comp["contribution"] - before, 4) if isinstance(before, (int, float)) else None
        factors.append({"component": name, "label": comp["label"], "signal": comp["signal"], "value": comp["value"],
                        "contribution": comp["contribution"], "change": change})
    # What explains the score: the largest contributions; ties broken by what moved it most.
    factors.sort(key=lambda f: (-abs(f["contribution"]), -abs(f["change"] or 0.0), f["component"]))
    return HealthResult(result_score, rules.band_of(result_score), components, factors[: rules.top_factors])
