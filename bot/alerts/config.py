"""``alerts.yml``: the thresholds a shop sets, validated with the file and line of every mistake.

::

    evaluate_every_s: 60          # how often the rules are evaluated (one worker evaluates)
    store: {type: redis, url: redis://127.0.0.1:6379/0}   # several workers: shared counts and state
    rating_sources: [handoff, survey]  # where CSAT ratings come from (bot/alerts/ratings.py)
    rules:
      - name: complaints_up
        kind: complaint_spike     # complaint intents / negative messages in a window vs a baseline
        window_minutes: 60
        baseline_minutes: 1440
        factor: 2.0
        min_count: 5
      - {name: csat_low, kind: csat_drop, window_minutes: 1440, threshold: 3.5, min_ratings: 5}
      - {name: queue_slow, kind: queue_wait, max_wait_minutes: 5}
      - {name: escalations_high, kind: escalation_rate, window_minutes: 60, threshold: 0.3}

Every rule fires once when its condition starts to hold and clears once when it stops
(docs/operations.md#alerts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import line_of, read_yaml_file

FILENAME = "alerts.yml"
DEFAULT_EVALUATE_EVERY_S = 60.0

# kind -> {key: (type, default, lower bound, help)}; None default: required.
_NUMBER = (int, float)
KINDS: dict[str, dict[str, tuple[Any, Any, float | None, str]]] = {
    "complaint_spike": {
        "window_minutes": (_NUMBER, 60, 1, "minutes counted"),
        "baseline_minutes": (_NUMBER, 1440, 1, "minutes before the window that set the usual rate"),
        "factor": (_NUMBER, 2.0, 1, "fire when the window holds this many times the usual count"),
        "min_count": (int, 5, 1, "and at least this many messages"),
        "intents": (list, ["complaint"], None, "intents that count as complaints"),
        "negative_sentiment": (bool, True, None, "also count messages whose sentiment is negative"),
    },
    "csat_drop": {
        "window_minutes": (_NUMBER, 1440, 1, "minutes of ratings averaged"),
        "threshold": (_NUMBER, None, 1, "fire when the average rating (1-5) is below this"),
        "min_ratings": (int, 5, 1, "only with at least this many ratings in the window"),
    },
    "queue_wait": {
        "max_wait_minutes": (_NUMBER, None, 0, "fire when a shopper has waited longer for an agent"),
        "queue": (str, None, None, "only this handoff queue (default: every queue)"),
    },
    "escalation_rate": {
        "window_minutes": (_NUMBER, 60, 1, "minutes counted"),
        "threshold": (_NUMBER, None, 0, "fire when escalations / conversations reaches this (0-1)"),
        "min_conversations": (int, 20, 1, "only with at least this many conversations in the window"),
    },
}
OPTIONAL_KEYS = {"queue"}


@dataclass(frozen=True)
class AlertRule:
    name: str
    kind: str
    params: dict[str, Any]
    severity: str = "warning"
    line: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[AlertRule, ...] = ()
    evaluate_every_s: float = DEFAULT_EVALUATE_EVERY_S
    store: dict[str, Any] = field(default_factory=lambda: {"type": "memory"})
    rating_sources: tuple[str, ...] = ("handoff", "survey")
    filename: str | None = None


def _type_name(expected: Any) -> str:
    if expected is _NUMBER:
        return "a number"
    return {int: "a whole number", bool: "true or false", list: "a list", str: "a string"}[expected]


def _check_value(value: Any, expected: Any, low: float | None, where: str, filename: str, line: int | None) -> Any:
    ok = isinstance(value, expected) and not (expected in (_NUMBER, int) and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"'{where}' must be {_type_name(expected)}, not {value!r}.", filename, line,
                          fix=f"Write {where}: followed by {_type_name(expected)}.")
    if low is not None and value < low:
        raise ConfigError(f"'{where}' must be at least {low:g}, not {value!r}.", filename, line)
    if expected is list:
        value = [str(v) for v in value]
    return value


def _rule(node: Any, index: int, filename: str, rules_node: Any) -> AlertRule:
    line = line_of(rules_node, index=index)
    if not isinstance(node, dict):
        raise ConfigError(f"Rule {index + 1} must be a mapping with 'name' and 'kind'.", filename, line)
    name, kind = node.get("name"), node.get("kind")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"Rule {index + 1} needs a 'name' (text).", filename, line,
                          fix="Add name: <a short id>, e.g. name: complaints_up.")
    if kind not in KINDS:
        raise ConfigError(f"Rule '{name}' has unknown kind {kind!r}.", filename, line_of(node, "kind") or line,
                          fix=f"Use one of: {', '.join(KINDS)}.")
    spec = KINDS[kind]
    known = set(spec) | {"name", "kind", "severity"}
    for key in node:
        if key not in known:
            raise ConfigError(f"Rule '{name}' ({kind}) has unknown key '{key}'.", filename,
                              line_of(node, key) or line, fix=f"Use only: {', '.join(sorted(known))}.")
    params: dict[str, Any] = {}
    for key, (expected, default, low, _help) in spec.items():
        if key in node:
            params[key] = _check_value(node[key], expected, low, f"{name}.{key}", filename, line_of(node, key) or line)
        elif default is None and key not in OPTIONAL_KEYS:
            raise ConfigError(f"Rule '{name}' ({kind}) needs '{key}' ({_help}).", filename, line,
                              fix=f"Add {key}: <value> to the rule.")
        else:
            params[key] = list(default) if isinstance(default, list) else default
    if kind == "escalation_rate" and params["threshold"] > 1:
        raise ConfigError(f"'{name}.threshold' is a share of conversations (0-1), not {params['threshold']!r}.",
                          filename, line_of(node, "threshold") or line, fix="E.g. 0.3 for 30 %.")
    if kind == "csat_drop" and params["threshold"] > 5:
        raise ConfigError(f"'{name}.threshold' is on the 1-5 star scale, not {params['threshold']!r}.",
                          filename, line_of(node, "threshold") or line)
    severity = node.get("severity", "warning")
    if severity not in ("info", "warning", "critical"):
        raise ConfigError(f"Rule '{name}' has severity {severity!r}.", filename, line_of(node, "severity") or line,
                          fix="Use info, warning or critical.")
    return AlertRule(name=name.strip(), kind=kind, params=params, severity=severity, line=line)


def parse_alerts(data: Any, filename: str = FILENAME) -> AlertsConfig:
    """Validate ``alerts.yml``'s content (ruamel nodes keep their lines for the errors)."""
    if data is None:
        return AlertsConfig(filename=filename)
    if not isinstance(data, dict):
        raise ConfigError("alerts.yml must be a mapping with a 'rules:' list.", filename, 1)
    known = {"rules", "evaluate_every_s", "store", "rating_sources"}
    for key in data:
        if key not in known:
            raise ConfigError(f"Unknown key '{key}' in alerts.yml.", filename, line_of(data, key),
                              fix=f"Use only: {', '.join(sorted(known))}.")
    rules_node = data.get("rules") or []
    if not isinstance(rules_node, list):
        raise ConfigError("'rules' must be a list of rules.", filename, line_of(data, "rules"))
    rules = [_rule(node, i, filename, rules_node) for i, node in enumerate(rules_node)]
    seen: dict[str, AlertRule] = {}
    for rule in rules:
        if rule.name in seen:
            raise ConfigError(f"Two rules are named '{rule.name}' (line {seen[rule.name].line} and this one).",
                              filename, rule.line, fix="Give every rule its own name.")
        seen[rule.name] = rule
    every = data.get("evaluate_every_s", DEFAULT_EVALUATE_EVERY_S)
    every = _check_value(every, _NUMBER, 1, "evaluate_every_s", filename, line_of(data, "evaluate_every_s"))
    store = data.get("store") or {"type": "memory"}
    if not isinstance(store, dict) or store.get("type", "memory") not in ("memory", "redis") or (
            store.get("type") == "redis" and not isinstance(store.get("url"), str)):
        raise ConfigError("'store' must be {type: memory} or {type: redis, url: redis://...}.", filename,
                          line_of(data, "store"), fix="Several workers need type: redis so they share the counts.")
    sources = data.get("rating_sources", ["handoff", "survey"])
    from bot.alerts.ratings import RATING_SOURCES

    if not isinstance(sources, list) or any(s not in RATING_SOURCES for s in sources):
        raise ConfigError(f"'rating_sources' must list some of: {', '.join(RATING_SOURCES)}; got {sources!r}.",
                          filename, line_of(data, "rating_sources"))
    return AlertsConfig(rules=tuple(rules), evaluate_every_s=float(every), store=dict(store),
                        rating_sources=tuple(sources), filename=filename)


def load_alerts(path: str | Path) -> AlertsConfig:
    path = Path(path)
    return parse_alerts(read_yaml_file(path), str(path))
