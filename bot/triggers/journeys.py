"""Journeys from ``triggers.yml``: entry event + filters, steps with delays, exits, A/B variants.

Everything is validated when the file is loaded; a mistake names the file and line and
says how to fix it, so a marketer finds it before a journey is turned on.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import line_of, read_yaml, read_yaml_file, to_plain
from bot.triggers.events import EVENT_TYPES

DEFAULT_TRIGGERS_FILE = "triggers.yml"
_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_AT_RE = re.compile(r"^\s*(next day\s+)?at\s+(\d{1,2}):(\d{2})(?:\s+local(?:\s+time)?)?\s*$", re.I)
FILTER_OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
REENTRY_MODES = ("after_exit", "never", "always")
PRIORITIES = ("marketing", "transactional")


def parse_duration(value: Any) -> float | None:
    """``48h``, ``7d``, ``2s``, ``1d12h``, ``30m`` or a number of seconds → seconds; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    match = _DURATION_RE.match(value.lower())
    if not match or not any(match.groups()):
        return None
    d, h, m, s = (int(g or 0) for g in match.groups())
    return float(d * 86400 + h * 3600 + m * 60 + s)


@dataclass(frozen=True)
class Delay:
    """Either ``seconds`` after the previous point, or a local wall-clock time (``at``)."""

    seconds: float = 0.0
    at: tuple[int, int] | None = None
    next_day: bool = False
    text: str = ""

    def due(self, start: float, tz: ZoneInfo) -> float:
        """When a step with this delay is due, counting from ``start`` (epoch seconds)."""
        if self.at is None:
            return start + self.seconds
        local = datetime.fromtimestamp(start, tz)
        day = local.date() + timedelta(days=1 if self.next_day else 0)
        target = datetime.combine(day, dtime(self.at[0], self.at[1]), tz)
        if not self.next_day and target.timestamp() <= start:
            target = datetime.combine(day + timedelta(days=1), dtime(self.at[0], self.at[1]), tz)
        return target.timestamp()


def parse_delay(value: Any) -> Delay | None:
    seconds = parse_duration(value)
    if seconds is not None:
        return Delay(seconds=seconds, text=str(value))
    if isinstance(value, str):
        match = _AT_RE.match(value)
        if match:
            hour, minute = int(match.group(2)), int(match.group(3))
            if hour < 24 and minute < 60:
                return Delay(at=(hour, minute), next_day=bool(match.group(1)), text=value)
    return None


@dataclass(frozen=True)
class Message:
    """What a step sends: a domain response or a custom action, with slots from the event."""

    response: str | None = None
    action: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    template: str | None = None  # WeChat template id for sends outside the 48 h window

    @property
    def name(self) -> str:
        return self.response or self.action or ""


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    message: Message
    stopped: bool = False


@dataclass(frozen=True)
class Step:
    name: str
    delay: Delay
    variants: tuple[Variant, ...]
    expires: float | None = None  # skip if it cannot go out within this long after due

    def active_variants(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.stopped and v.weight > 0)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


@dataclass(frozen=True)
class Condition:
    """An event type with property/profile filters (entry) or a match on entry properties (exit)."""

    events: tuple[str, ...]
    properties: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    match: tuple[str, ...] = ()


@dataclass(frozen=True)
class Journey:
    name: str
    entry: Condition
    steps: tuple[Step, ...]
    exits: tuple[Condition, ...] = ()
    reentry: str = "after_exit"
    reentry_after: float = 0.0
    priority: str = "marketing"
    conversion_event: str = "order_paid"
    conversion_window: float = 7 * 86400.0
    enabled: bool = True
    filename: str | None = None
    line: int | None = None
    max_event_age: float | None = None  # None: the settings' max_event_age
    quiet_hours: bool = True  # False: this journey sends at any hour (the settings' window ignored)

    @property
    def transactional(self) -> bool:
        return self.priority == "transactional"


@dataclass(frozen=True)
class TriggerSettings:
    timezone: str = "Asia/Shanghai"
    quiet_start: tuple[int, int] = (21, 0)
    quiet_end: tuple[int, int] = (9, 0)
    per_day: int | None = 2
    per_week: int | None = 5
    handoff_retry: float = 1800.0
    max_hold: float = 3 * 86400.0
    lease: float = 60.0
    max_event_age: float = 86400.0  # older events are kept for the record but start no journey

    def tz(self, name: str | None = None) -> ZoneInfo:
        try:
            return ZoneInfo(name or self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class TriggerConfig:
    settings: TriggerSettings
    journeys: tuple[Journey, ...]
    filename: str | None = None

    def journey(self, name: str) -> Journey | None:
        return next((j for j in self.journeys if j.name == name), None)


# --------------------------------------------------------------------------- filters
def _lookup(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    current: Any = data
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def matches(filters: dict[str, Any], data: dict[str, Any]) -> bool:
    """``{key: value}`` equality or ``{key: {gte: 1, in: [...]}}`` operators, all must hold."""
    for key, expected in filters.items():
        found, value = _lookup(data, key)
        ops = expected if isinstance(expected, dict) else {"eq": expected}
        for op, arg in ops.items():
            if op == "exists":
                if found != bool(arg):
                    return False
                continue
            if not found:
                return False
            try:
                ok = {
                    "eq": lambda: value == arg,
                    "ne": lambda: value != arg,
                    "in": lambda: value in arg,
                    "not_in": lambda: value not in arg,
                    "gt": lambda: value > arg,
                    "gte": lambda: value >= arg,
                    "lt": lambda: value < arg,
                    "lte": lambda: value <= arg,
                }[op]()
            except TypeError:
                ok = False
            if not ok:
                return False
    return True


def assign_variant(step: Step, journey: str, customer_id: str) -> Variant:
    """Deterministic weighted choice among active variants (same customer → same variant)."""
    active = step.active_variants() or step.variants[:1]
    if len(active) == 1:
        return active[0]
    digest = hashlib.sha256(f"{journey}:{step.name}:{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in active)
    upto = 0.0
    for variant in active:
        upto += variant.weight
        if point < upto:
            return variant
    return active[-1]


# --------------------------------------------------------------------------- loading
class _Reader:
    def __init__(self, filename: str) -> None:
        self.filename = filename

    def error(self, message: str, node: Any, key: Any = None, fix: str | None = None, index: int | None = None) -> ConfigError:
        return ConfigError(message, self.filename, line_of(node, key=key, index=index) or line_of(node), fix)

    def mapping(self, node: Any, key: Any, parent: Any, what: str) -> dict:
        if not isinstance(node, dict):
            raise self.error(f"{what} must be a mapping.", parent, key)
        return node

    def check_keys(self, node: dict, allowed: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in allowed:
                raise self.error(f"Unknown key '{key}' in {what}.", node, key, f"Use one of: {', '.join(allowed)}.")

    def event_names(self, value: Any, node: Any, key: Any, what: str) -> tuple[str, ...]:
        names = value if isinstance(value, list) else [value]
        for name in names:
            if name not in EVENT_TYPES:
                raise self.error(f"{what} uses unknown event {name!r}.", node, key,
                                 f"Use one of: {', '.join(sorted(EVENT_TYPES))}.")
        return tuple(str(n) for n in names)

    def filters(self, value: Any, node: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(f"'{key}' filters must be a mapping of field: value.", node, key)
        for name, spec in value.items():
            if isinstance(spec, dict):
                for op in spec:
                    if op not in FILTER_OPS:
                        raise self.error(f"Unknown filter operator '{op}' on '{name}'.", spec, op,
                                         f"Use one of: {', '.join(FILTER_OPS)}.")
        return to_plain(value)

    def condition(self, node: Any, parent: Any, key: Any, what: str, entry: bool) -> Condition:
        if isinstance(node, str):
            return Condition(self.event_names(node, parent, key, what))
        node = self.mapping(node, key, parent, what)
        allowed = ("event", "properties", "profile") if entry else ("event", "properties", "match")
        self.check_keys(node, allowed, what)
        if "event" not in node:
            raise self.error(f"{what} needs an 'event'.", node, None, "Add `event: <event type>`.")
        match = node.get("match") or []
        if isinstance(match, str):
            match = [match]
        return Condition(
            events=self.event_names(node["event"], node, "event", what),
            properties=self.filters(node.get("properties"), node, "properties"),
            profile=self.filters(node.get("profile"), node, "profile") if entry else {},
            match=tuple(str(m) for m in match),
        )

    def duration(self, value: Any, node: Any, key: str, what: str) -> float:
        seconds = parse_duration(value)
        if seconds is None:
            raise self.error(f"{what}: '{key}' is {value!r}, not a duration.", node, key,
                             "Write e.g. 2s, 30m, 48h, 7d or 1d12h.")
        return seconds

    def message(self, node: dict, what: str) -> Message:
        has_response, has_action = "response" in node, "action" in node
        if has_response == has_action:
            raise self.error(f"{what} needs exactly one of 'response' or 'action'.", node, None,
                             "Give `response: utter_...` (a domain response) or `action: action_...`.")
        slots = node.get("slots") or {}
        if not isinstance(slots, dict):
            raise self.error(f"{what}: 'slots' must map slot names to event fields.", node, "slots")
        return Message(
            response=str(node["response"]) if has_response else None,
            action=str(node["action"]) if has_action else None,
            slots={str(k): str(v) for k, v in slots.items()},
            template=str(node["template"]) if node.get("template") else None,
        )

    def step(self, node: Any, steps: Any, index: int, journey: str) -> Step:
        what = f"Step {index + 1} of journey '{journey}'"
        if not isinstance(node, dict):
            raise self.error(f"{what} must be a mapping.", steps, index=index)
        self.check_keys(node, ("name", "delay", "response", "action", "slots", "template", "variants", "expires"), what)
        if "delay" not in node:
            raise self.error(f"{what} has no 'delay'.", node, None, "Add e.g. `delay: 48h` or `delay: next day at 10:00`.")
        delay = parse_delay(node["delay"])
        if delay is None:
            raise self.error(f"{what}: delay {node['delay']!r} is not understood.", node, "delay",
                             "Write a duration (2s, 48h, 7d) or `next day at 10:00` / `at 10:00`.")
        name = str(node.get("name") or f"step{index + 1}")
        variants: list[Variant] = []
        if "variants" in node:
            if "response" in node or "action" in node:
                raise self.error(f"{what} has both a message and 'variants'.", node, "variants",
                                 "Put the message inside each variant.")
            raw = node["variants"]
            if not isinstance(raw, list) or not raw:
                raise self.error(f"{what}: 'variants' must be a non-empty list.", node, "variants")
            names: set[str] = set()
            for i, v in enumerate(raw):
                vwhat = f"Variant {i + 1} of {what.lower()}"
                if not isinstance(v, dict):
                    raise self.error(f"{vwhat} must be a mapping.", raw, index=i)
                self.check_keys(v, ("name", "weight", "response", "action", "slots", "template", "stopped"), vwhat)
                vname = str(v.get("name") or chr(ord("A") + i))
                if vname in names:
                    raise self.error(f"{vwhat} repeats the name '{vname}'.", v, "name")
                names.add(vname)
                weight = v.get("weight", 1)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise self.error(f"{vwhat}: weight must be a number ≥ 0.", v, "weight")
                variants.append(Variant(vname, float(weight), self.message(v, vwhat), bool(v.get("stopped", False))))
            if not any(not v.stopped and v.weight > 0 for v in variants):
                raise self.error(f"{what}: every variant is stopped or has weight 0.", node, "variants",
                                 "Keep at least one running variant, or disable the journey.")
        else:
            variants.append(Variant("default", 1.0, self.message(node, what)))
        expires = self.duration(node["expires"], node, "expires", what) if "expires" in node else None
        return Step(name, delay, tuple(variants), expires)

    def settings(self, node: Any, root: Any) -> TriggerSettings:
        if node is None:
            return TriggerSettings()
        node = self.mapping(node, "settings", root, "'settings'")
        self.check_keys(node, ("timezone", "quiet_hours", "frequency_caps", "handoff_retry", "max_hold", "lease",
                                "max_event_age"),
                        "'settings'")
        base = TriggerSettings()
        tz = str(node.get("timezone", base.timezone))
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise self.error(f"Unknown time zone {tz!r}.", node, "timezone", "Use an IANA name such as Asia/Shanghai.") from e
        quiet_start, quiet_end = base.quiet_start, base.quiet_end
        quiet = node.get("quiet_hours")
        if quiet is not None:
            quiet = self.mapping(quiet, "quiet_hours", node, "'quiet_hours'")
            parsed = []
            for key in ("start", "end"):
                m = re.match(r"^(\d{1,2}):(\d{2})$", str(quiet.get(key, "")))
                if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
                    raise self.error(f"quiet_hours.{key} must be HH:MM.", quiet, key if key in quiet else None,
                                     'Write e.g. start: "21:00", end: "09:00" (quoted).')
                parsed.append((int(m.group(1)), int(m.group(2))))
            quiet_start, quiet_end = parsed
        caps = node.get("frequency_caps") or {}
        caps = self.mapping(caps, "frequency_caps", node, "'frequency_caps'")
        self.check_keys(caps, ("per_day", "per_week"), "'frequency_caps'")
        for key in ("per_day", "per_week"):
            value = caps.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise self.error(f"frequency_caps.{key} must be a whole number ≥ 0.", caps, key)
        return TriggerSettings(
            timezone=tz, quiet_start=quiet_start, quiet_end=quiet_end,
            per_day=caps.get("per_day", base.per_day), per_week=caps.get("per_week", base.per_week),
            handoff_retry=self.duration(node["handoff_retry"], node, "handoff_retry", "'settings'") if "handoff_retry" in node else base.handoff_retry,
            max_hold=self.duration(node["max_hold"], node, "max_hold", "'settings'") if "max_hold" in node else base.max_hold,
            lease=self.duration(node["lease"], node, "lease", "'settings'") if "lease" in node else base.lease,
            max_event_age=(self.duration(node["max_event_age"], node, "max_event_age", "'settings'")
                           if "max_event_age" in node else base.max_event_age),
        )

    def journey(self, name: str, node: Any, parent: Any) -> Journey:
        what = f"Journey '{name}'"
        node = self.mapping(node, name, parent, what)
        self.check_keys(node, ("entry", "steps", "exit_on", "reentry", "priority", "conversion", "enabled", "description",
                                "max_event_age", "quiet_hours"), what)
        if "entry" not in node:
            raise self.error(f"{what} has no 'entry'.", parent, name, "Add `entry: {event: cart_item_added}`.")
        entry = self.condition(node["entry"], node, "entry", f"{what} entry", entry=True)
        steps_node = node.get("steps")
        if not isinstance(steps_node, list) or not steps_node:
            raise self.error(f"{what} needs a non-empty list of 'steps'.", node, "steps" if "steps" in node else None)
        steps = tuple(self.step(s, steps_node, i, name) for i, s in enumerate(steps_node))
        if len({s.name for s in steps}) != len(steps):
            raise self.error(f"{what} has two steps with the same name.", node, "steps", "Give each step a unique name.")
        exits_node = node.get("exit_on") or []
        if not isinstance(exits_node, list):
            exits_node = [exits_node]
        exits = tuple(self.condition(e, exits_node, i, f"{what} exit {i + 1}", entry=False) for i, e in enumerate(exits_node))
        reentry, reentry_after = "after_exit", 0.0
        if "reentry" in node:
            raw = node["reentry"]
            seconds = parse_duration(raw) if not isinstance(raw, bool) else None
            if isinstance(raw, str) and raw in REENTRY_MODES:
                reentry = raw
            elif seconds is not None:
                reentry, reentry_after = "after", seconds
            else:
                raise self.error(f"{what}: reentry {raw!r} is not understood.", node, "reentry",
                                 f"Use one of: {', '.join(REENTRY_MODES)}, or a duration such as 30d.")
        priority = str(node.get("priority", "marketing"))
        if priority not in PRIORITIES:
            raise self.error(f"{what}: priority {priority!r} is unknown.", node, "priority", f"Use one of: {', '.join(PRIORITIES)}.")
        conv_event, conv_window = "order_paid", 7 * 86400.0
        if "conversion" in node:
            conv = self.mapping(node["conversion"], "conversion", node, f"{what} conversion")
            self.check_keys(conv, ("event", "window"), f"{what} conversion")
            conv_event = self.event_names(conv.get("event", "order_paid"), conv, "event", f"{what} conversion")[0]
            conv_window = self.duration(conv.get("window", "7d"), conv, "window", f"{what} conversion")
        quiet = node.get("quiet_hours", True)
        if not isinstance(quiet, bool):
            raise self.error(f"{what}: quiet_hours must be true or false.", node, "quiet_hours",
                             "Write `quiet_hours: false` for a journey that may send at any hour (e.g. order "
                             "updates); the window itself is set once under `settings: quiet_hours`.")
        return Journey(
            name=name, entry=entry, steps=steps, exits=exits, reentry=reentry, reentry_after=reentry_after,
            priority=priority, conversion_event=conv_event, conversion_window=conv_window,
            enabled=bool(node.get("enabled", True)), filename=self.filename, line=line_of(parent, key=name),
            max_event_age=(self.duration(node["max_event_age"], node, "max_event_age", what)
                           if "max_event_age" in node else None),
            quiet_hours=quiet,
        )


def parse_triggers(data: Any, filename: str = DEFAULT_TRIGGERS_FILE) -> TriggerConfig:
    reader = _Reader(str(filename))
    if data is None:
        return TriggerConfig(TriggerSettings(), (), str(filename))
    if not isinstance(data, dict):
        raise ConfigError("triggers.yml must be a mapping with 'journeys:'.", filename, 1, "Start the file with `journeys:`.")
    reader.check_keys(data, ("version", "settings", "journeys"), "triggers.yml")
    settings = reader.settings(data.get("settings"), data)
    journeys_node = data.get("journeys") or {}
    journeys_node = reader.mapping(journeys_node, "journeys", data, "'journeys'")
    journeys = tuple(reader.journey(str(name), node, journeys_node) for name, node in journeys_node.items())
    return TriggerConfig(settings, journeys, str(filename))


def load_triggers(path: str | Path = DEFAULT_TRIGGERS_FILE) -> TriggerConfig:
    """Read and validate a triggers file; a missing file means no journeys."""
    path = Path(path)
    if not path.exists():
        return TriggerConfig(TriggerSettings(), (), str(path))
    return parse_triggers(read_yaml_file(path), str(path))


def load_triggers_text(text: str, filename: str = DEFAULT_TRIGGERS_FILE) -> TriggerConfig:
    return parse_triggers(read_yaml(text, filename), filename)


def check_against_domain(config: TriggerConfig, domain: Any) -> list[str]:
    """Problems with responses/actions the journeys name but the domain lacks."""
    problems: list[str] = []
    responses = set(getattr(domain, "responses", {}) or {})
    actions = set(getattr(domain, "user_actions", []) or []) | set(getattr(domain, "action_names_or_texts", []) or [])
    for journey in config.journeys:
        for step in journey.steps:
            for variant in step.variants:
                msg = variant.message
                if msg.response and msg.response not in responses:
                    problems.append(f"{config.filename}:{journey.line}: journey '{journey.name}' step '{step.name}' "
                                    f"uses response '{msg.response}' which is not in the domain.")
                if msg.action and msg.action not in actions:
                    problems.append(f"{config.filename}:{journey.line}: journey '{journey.name}' step '{step.name}' "
                                    f"uses action '{msg.action}' which is not in the domain.")
    return problems
