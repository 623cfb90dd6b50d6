"""The project's rules: segments/tags (``customers.yml``) and the health score (``health.yml``).

Both files are read with line numbers; every mistake is a :class:`ConfigError` naming the
file, the line and the fix. Reloading builds new frozen values and swaps them in, so a
changed weight takes effect on the next event without a restart or retraining.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import line_of, read_yaml_file, to_plain

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists")

# The profile fields a rule or a component may name (profile.py derives them).
PROFILE_FIELDS = (
    "order_count", "lifetime_value", "aov", "first_order_at", "last_order_at", "days_since_last_order",
    "purchase_interval_days", "orders_90d", "discount_rate", "low_price_band_rate", "price_sensitivity",
    "preferred_categories", "return_count", "return_rate", "cancel_count", "after_sales_open",
    "contacts", "contacts_90d", "preferred_channel", "channels", "recent_sentiment", "negative_messages",
    "positive_messages", "handoffs", "open_handoffs", "complaints", "open_complaints", "csat_avg",
    "csat_count", "avg_resolution_hours", "recommendations_shown", "recommendation_clicks",
    "recommendation_click_rate", "product_views_30d", "days_since_last_activity", "first_seen_at",
    "health_score", "health_band", "identities",
)


# ----------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Condition:
    """``all``/``any`` of field tests; a leaf tests one profile field with operators."""

    field: str | None = None
    ops: tuple[tuple[str, Any], ...] = ()
    all: tuple["Condition", ...] = ()
    any: tuple["Condition", ...] = ()

    def holds(self, profile: dict[str, Any]) -> bool:
        if self.all:
            return all(c.holds(profile) for c in self.all)
        if self.any:
            return any(c.holds(profile) for c in self.any)
        present = self.field in profile and profile[self.field] is not None
        value = profile.get(self.field) if self.field else None
        for op, arg in self.ops:
            if op == "exists":
                if present != bool(arg):
                    return False
                continue
            if not present:
                return False
            try:
                ok = {
                    "eq": lambda: value == arg, "ne": lambda: value != arg,
                    "gt": lambda: value > arg, "gte": lambda: value >= arg,
                    "lt": lambda: value < arg, "lte": lambda: value <= arg,
                    "in": lambda: value in arg, "not_in": lambda: value not in arg,
                    "contains": lambda: arg in value,
                }[op]()
            except TypeError:
                ok = False
            if not ok:
                return False
        return True


@dataclass(frozen=True)
class Segment:
    name: str
    condition: Condition
    description: str = ""


def _err(message: str, filename: str, node: Any, key: Any = None, fix: str = "") -> ConfigError:
    return ConfigError(message, filename=filename, line=line_of(node, key), fix=fix or None)


def _condition(node: Any, filename: str, where: str, parent: Any, key: Any) -> Condition:
    if not isinstance(node, dict) or not node:
        raise _err(f"{where} must be a mapping of profile field: test (or 'all:'/'any:' lists).",
                   filename, parent, key, "e.g. 'lifetime_value: {gte: 500000}'.")
    if "all" in node or "any" in node:
        if len(node) != 1:
            raise _err(f"{where}: 'all'/'any' must be the only key of its mapping.", filename, node,
                       next(iter(node)), "Nest the other tests inside the list.")
        kind = "all" if "all" in node else "any"
        items = node[kind]
        if not isinstance(items, list) or not items:
            raise _err(f"{where}.{kind} must be a non-empty list of conditions.", filename, node, kind)
        parts = tuple(_condition(item, filename, f"{where}.{kind}[{i}]", items, i) for i, item in enumerate(items))
        return Condition(all=parts) if kind == "all" else Condition(any=parts)
    leaves = []
    for name, spec in node.items():
        if name not in PROFILE_FIELDS:
            raise _err(f"{where}: unknown profile field '{name}'.", filename, node, name,
                       f"Use one of: {', '.join(PROFILE_FIELDS)}.")
        ops = to_plain(spec) if isinstance(spec, dict) else {"eq": to_plain(spec)}
        for op in ops:
            if op not in OPERATORS:
                raise _err(f"{where}: unknown operator '{op}' on '{name}'.", filename, spec, op,
                           f"Use one of: {', '.join(OPERATORS)}.")
        leaves.append(Condition(field=str(name), ops=tuple(ops.items())))
    return leaves[0] if len(leaves) == 1 else Condition(all=tuple(leaves))


def parse_segments(data: Any, filename: str) -> tuple[Segment, ...]:
    """``segments: {name: condition | {description, when: condition}}``."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(f"'segments' must be a mapping of segment name: rule.", filename=filename,
                          line=line_of(data))
    out = []
    for name, spec in data.items():
        description = ""
        cond_node, parent, key = spec, data, name
        if isinstance(spec, dict) and "when" in spec:
            unknown = set(spec) - {"when", "description"}
            if unknown:
                raise _err(f"segment '{name}': unknown key(s) {sorted(unknown)}.", filename, spec,
                           sorted(unknown)[0], "A segment has 'when:' and an optional 'description:'.")
            description = str(spec.get("description") or "")
            cond_node, parent, key = spec["when"], spec, "when"
        out.append(Segment(str(name), _condition(cond_node, filename, f"segment '{name}'", parent, key), description))
    return tuple(out)


# ----------------------------------------------------------------------------- health
@dataclass(frozen=True)
class Component:
    """One input of the health score: a profile signal mapped linearly onto 0–100.

    ``low`` maps to 0 and ``high`` to 100 (``high < low`` means less is better); values
    outside are clamped. ``missing`` is the score used while the signal is unknown
    (``None``: the component is left out and the other weights are renormalised).
    """

    name: str
    signal: str
    low: float
    high: float
    weight: float
    missing: float | None = None
    label: str = ""

    def normalise(self, value: Any) -> float | None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return self.missing
        span = self.high - self.low
        ratio = (float(value) - self.low) / span
        return round(100.0 * min(1.0, max(0.0, ratio)), 4)


@dataclass(frozen=True)
class ThresholdAction:
    """What happens when a customer enters a band (or falls under a score)."""

    name: str
    band: str | None = None
    below: float | None = None
    notify_agents: str | None = None  # the message agents see
    routing_priority: int = 0  # added to a handoff's priority
    skill_group: str | None = None  # handoffs go to this skill's queue
    journey: str | None = None  # a journey (triggers.yml) entered through a customer_health_changed event

    def applies(self, score: float, band: str) -> bool:
        if self.band is not None and band != self.band:
            return False
        if self.below is not None and not score < self.below:
            return False
        return True


@dataclass(frozen=True)
class HealthRules:
    components: tuple[Component, ...]
    bands: tuple[tuple[str, float], ...]  # (name, minimum score), highest first
    actions: tuple[ThresholdAction, ...] = ()
    history_min_change: float = 0.5  # a new history row when the score moves at least this much
    top_factors: int = 3

    def band_of(self, score: float) -> str:
        for name, minimum in self.bands:
            if score >= minimum:
                return name
        return self.bands[-1][0]

    def weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.components}


def _number(node: Any, key: str, filename: str, where: str, default: Any = ...) -> Any:
    if key not in node:
        if default is ...:
            raise _err(f"{where}: '{key}' is required.", filename, node)
        return default
    value = node[key]
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(f"{where}: '{key}' must be a number, got {value!r}.", filename, node, key)
    return float(value)


def parse_health(data: Any, filename: str) -> HealthRules:
    if not isinstance(data, dict):
        raise ConfigError("health.yml must be a mapping with 'components:' and 'bands:'.", filename=filename,
                          line=line_of(data) or 1)
    comps_node = data.get("components")
    if not isinstance(comps_node, dict) or not comps_node:
        raise _err("'components' must be a non-empty mapping of name: {signal, normalise, weight}.",
                   filename, data, "components" if "components" in data else None)
    components = []
    for name, spec in comps_node.items():
        where = f"component '{name}'"
        if not isinstance(spec, dict):
            raise _err(f"{where} must be a mapping.", filename, comps_node, name)
        unknown = set(spec) - {"signal", "normalise", "weight", "missing", "label"}
        if unknown:
            raise _err(f"{where}: unknown key(s) {sorted(unknown)}.", filename, spec, sorted(unknown)[0],
                       "Keys: signal, normalise {low, high}, weight, missing, label.")
        signal = spec.get("signal")
        if signal not in PROFILE_FIELDS:
            raise _err(f"{where}: unknown signal {signal!r}.", filename, spec, "signal" if "signal" in spec else None,
                       f"Use a profile field: {', '.join(PROFILE_FIELDS)}.")
        norm = spec.get("normalise")
        if not isinstance(norm, dict):
            raise _err(f"{where}: 'normalise' must be {{low: number, high: number}}.", filename, spec,
                       "normalise" if "normalise" in spec else None)
        low = _number(norm, "low", filename, f"{where}.normalise")
        high = _number(norm, "high", filename, f"{where}.normalise")
        if low == high:
            raise _err(f"{where}.normalise: 'low' and 'high' must differ.", filename, norm, "high")
        weight = _number(spec, "weight", filename, where)
        if weight < 0:
            raise _err(f"{where}: 'weight' must be >= 0, got {weight}.", filename, spec, "weight")
        missing = _number(spec, "missing", filename, where, default=None)
        if missing is not None and not 0 <= missing <= 100:
            raise _err(f"{where}: 'missing' must be between 0 and 100.", filename, spec, "missing")
        components.append(Component(str(name), str(signal), low, high, weight, missing, str(spec.get("label") or name)))
    if sum(c.weight for c in components) <= 0:
        raise _err("At least one component needs a weight above 0.", filename, data, "components")
    bands_node = data.get("bands")
    if not isinstance(bands_node, dict) or not bands_node:
        raise _err("'bands' must be a mapping of band name: minimum score (0-100).", filename, data,
                   "bands" if "bands" in data else None, "e.g. 'bands: {healthy: 70, watch: 40, at_risk: 0}'.")
    bands = []
    for name, minimum in bands_node.items():
        if isinstance(minimum, bool) or not isinstance(minimum, (int, float)) or not 0 <= minimum <= 100:
            raise _err(f"band '{name}': the minimum must be a number from 0 to 100.", filename, bands_node, name)
        bands.append((str(name), float(minimum)))
    bands.sort(key=lambda b: -b[1])
    if bands[-1][1] != 0:
        raise _err("The lowest band must start at 0 so every score has a band.", filename, bands_node,
                   bands[-1][0])
    band_names = {b[0] for b in bands}
    actions = []
    actions_node = data.get("actions") or []
    if not isinstance(actions_node, list):
        raise _err("'actions' must be a list.", filename, data, "actions")
    for i, spec in enumerate(actions_node):
        where = f"actions[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping.", filename=filename, line=line_of(actions_node, index=i))
        unknown = set(spec) - {"name", "when", "notify_agents", "routing", "journey"}
        if unknown:
            raise _err(f"{where}: unknown key(s) {sorted(unknown)}.", filename, spec, sorted(unknown)[0],
                       "Keys: name, when {band, below}, notify_agents, routing {priority, skill_group}, journey.")
        when = spec.get("when")
        if not isinstance(when, dict) or not ({"band", "below"} & set(when)):
            raise _err(f"{where}: 'when' needs 'band' and/or 'below'.", filename, spec, "when" if "when" in spec else None)
        band = when.get("band")
        if band is not None and band not in band_names:
            raise _err(f"{where}: unknown band '{band}'.", filename, when, "band", f"Bands: {', '.join(sorted(band_names))}.")
        below = _number(when, "below", filename, where, default=None)
        routing = spec.get("routing") or {}
        if not isinstance(routing, dict) or set(routing) - {"priority", "skill_group"}:
            raise _err(f"{where}: 'routing' takes 'priority' (an integer) and 'skill_group'.", filename, spec, "routing")
        priority = routing.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise _err(f"{where}: routing.priority must be an integer.", filename, routing, "priority")
        notify = spec.get("notify_agents")
        actions.append(ThresholdAction(
            name=str(spec.get("name") or f"action_{i}"), band=band, below=below,
            notify_agents=(str(notify) if notify not in (None, False) else None) if notify is not True else "health",
            routing_priority=priority, skill_group=routing.get("skill_group"),
            journey=str(spec["journey"]) if spec.get("journey") else None))
    top = data.get("top_factors", 3)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise _err("'top_factors' must be a positive integer.", filename, data, "top_factors")
    min_change = _number(data, "history_min_change", filename, "health.yml", default=0.5)
    return HealthRules(tuple(components), tuple(bands), tuple(actions), min_change, top)


@dataclass(frozen=True)
class CustomerRules:
    """Everything read from the project's files, swapped whole on reload."""

    segments: tuple[Segment, ...]
    health: HealthRules
    sources: tuple[str, ...] = field(default_factory=tuple)

    def tags_for(self, profile: dict[str, Any]) -> list[str]:
        return [s.name for s in self.segments if s.condition.holds(profile)]


DEFAULT_HEALTH = Path(__file__).with_name("default_health.yml")
DEFAULT_CUSTOMERS = Path(__file__).with_name("default_customers.yml")


def load_rules(root: str | Path | None) -> CustomerRules:
    """``customers.yml`` and ``health.yml`` of the project, or kefu's defaults for a missing one."""
    base = Path(root) if root is not None else None
    cust_path = base / "customers.yml" if base is not None and (base / "customers.yml").is_file() else DEFAULT_CUSTOMERS
    health_path = base / "health.yml" if base is not None and (base / "health.yml").is_file() else DEFAULT_HEALTH
    cust = read_yaml_file(cust_path) or {}
    if not isinstance(cust, dict):
        raise ConfigError("customers.yml must be a mapping with 'segments:'.", filename=str(cust_path), line=1)
    unknown = set(cust) - {"segments", "version"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"customers.yml: unknown key '{key}'.", filename=str(cust_path), line=line_of(cust, key),
                          fix="Top-level keys: segments.")
    segments = parse_segments(cust.get("segments"), str(cust_path))
    health = parse_health(read_yaml_file(health_path), str(health_path))
    return CustomerRules(segments, health, (str(cust_path), str(health_path)))
