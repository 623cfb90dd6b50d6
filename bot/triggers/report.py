"""``GET /triggers/report``: sends, skips by reason, conversion per journey and variant,
with a two-proportion z-test of each variant against the step's first variant."""
from __future__ import annotations

import math
from typing import Any


def two_proportion_z(conv_a: int, n_a: int, conv_b: int, n_b: int) -> tuple[float | None, float | None]:
    """(z, two-sided p) for H0: rate_a == rate_b; None when a group is empty or the pool is degenerate."""
    if n_a <= 0 or n_b <= 0:
        return None, None
    pooled = (conv_a + conv_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None, None
    z = (conv_b / n_b - conv_a / n_a) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def build_report(counts: dict[str, Any], config: Any = None, alpha: float = 0.05,
                 stops: dict[tuple[str, str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """``stops``: variants stopped at run time (``store.stopped_variants()``), shown per variant
    (``stopped``, ``stopped_at``, ``in_flight``) and listed under ``stopped_variants``."""
    journeys: dict[str, dict[str, Any]] = {}
    stops = stops or {}

    def journey(name: str) -> dict[str, Any]:
        return journeys.setdefault(name, {"sends": 0, "conversions": 0, "skips": {}, "holds": {}, "exits": {},
                                          "reroutes": {}, "steps": {}})

    conversions = {(j, s, v): n for j, s, v, n in counts["conversions"]}
    for name, step, variant, n in counts["sends"]:
        j = journey(name)
        j["sends"] += n
        conv = conversions.get((name, step, variant), 0)
        j["conversions"] += conv
        j["steps"].setdefault(step, {})[variant] = {"sends": n, "conversions": conv, "rate": conv / n if n else 0.0}
    consent: dict[str, int] = {}
    for name, kind, reason, n in counts["decisions"]:
        if kind == "consent":  # opt-outs, opt-ins and refused consent changes (journey "-")
            consent[reason] = consent.get(reason, 0) + n
            continue
        bucket = {"skip": "skips", "hold": "holds", "exit": "exits", "reroute": "reroutes"}.get(kind, "skips")
        journey(name)[bucket][reason] = journey(name)[bucket].get(reason, 0) + n
    for name, data in journeys.items():
        data["conversion_rate"] = data["conversions"] / data["sends"] if data["sends"] else 0.0
        for step, variants in data["steps"].items():
            order = _variant_order(config, name, step, list(variants))
            control = order[0]
            base = variants[control]
            for variant in order:
                stats = variants[variant]
                stop = stops.get((name, step, variant))
                stats["stopped"] = stop is not None or _stopped(config, name, step, variant)
                if stop is not None:
                    stats["stopped_at"] = stop.get("stopped_at")
                    stats["in_flight"] = stop.get("in_flight", "reroute")
                if variant == control:
                    stats["control"] = True
                    continue
                z, p = two_proportion_z(base["conversions"], base["sends"], stats["conversions"], stats["sends"])
                stats["vs_control"] = {"control": control, "z": z, "p_value": p,
                                       "significant": p is not None and p < alpha, "alpha": alpha}
    listed = [{"journey": j, "step": st, "variant": v, **info} for (j, st, v), info in sorted(stops.items())]
    return {"journeys": journeys, "stopped_variants": listed, "consent": consent}


def _step(config: Any, journey: str, step: str) -> Any:
    j = config.journey(journey) if config is not None else None
    return next((s for s in j.steps if s.name == step), None) if j else None


def _variant_order(config: Any, journey: str, step: str, present: list[str]) -> list[str]:
    s = _step(config, journey, step)
    declared = [v.name for v in s.variants] if s else []
    return [v for v in declared if v in present] + sorted(v for v in present if v not in declared)


def _stopped(config: Any, journey: str, step: str, variant: str) -> bool:
    s = _step(config, journey, step)
    v = s.variant(variant) if s else None
    return bool(v and v.stopped)


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for name, data in sorted(report["journeys"].items()):
        lines.append(f"{name}: {data['sends']} sent, {data['conversions']} converted ({data['conversion_rate']:.1%})")
        for kind in ("skips", "holds", "exits", "reroutes"):
            if data.get(kind):
                lines.append(f"  {kind}: " + ", ".join(f"{r}={n}" for r, n in sorted(data[kind].items())))
        for step, variants in data["steps"].items():
            for variant, s in variants.items():
                extra = ""
                if "vs_control" in s and s["vs_control"]["p_value"] is not None:
                    vc = s["vs_control"]
                    extra = f"  vs {vc['control']}: z={vc['z']:.2f} p={vc['p_value']:.3f}{' *' if vc['significant'] else ''}"
                stop = " (stopped)" if s.get("stopped") else ""
                lines.append(f"  {step}/{variant}{stop}: {s['sends']} sent, {s['conversions']} converted ({s['rate']:.1%}){extra}")
    for stop in report.get("stopped_variants", []):
        lines.append(f"stopped: {stop['journey']}/{stop['step']}/{stop['variant']} (in-flight sends: "
                     f"{stop.get('in_flight', 'reroute')}){' - ' + stop['reason'] if stop.get('reason') else ''}")
    if report.get("consent"):
        lines.append("consent: " + ", ".join(f"{r}={n}" for r, n in sorted(report["consent"].items())))
    return "\n".join(lines) or "No trigger sends yet."
