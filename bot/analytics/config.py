"""The ``analytics:`` section of config.yml (endpoints.yml overrides): store, conversation end, survey.

Every key is checked here; a wrong value names the file, the line and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError

ASK_ON = ("goodbye", "inactivity", "session_end")
DEFAULT_DATABASE = "sqlite:///analytics.db"


@dataclass(frozen=True)
class SurveyConfig:
    """When and what the conversation-end survey asks (CSAT 1-5, optional comment, NPS 0-10, CES 1-7)."""

    enabled: bool = True
    ask_on: tuple[str, ...] = ("goodbye", "inactivity")
    goodbye_intents: tuple[str, ...] = ("goodbye",)
    inactivity_minutes: float = 10.0
    sample_rate: float = 1.0  # share of ended conversations asked (deterministic per customer and day)
    comment: bool = True
    nps: bool = False
    ces: bool = False
    intent: str = "csat"  # the rating payload's intent and entity (the widget's stars send /csat{"rating": n})
    entity: str = "rating"
    answer_window_minutes: float = 60.0  # a survey not answered by then is closed
    messages: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalyticsConfig:
    database: str = DEFAULT_DATABASE  # SQLAlchemy URL; a relative SQLite path is under the project folder
    conversation_timeout_minutes: float = 30.0  # idle this long: the conversation counts as ended
    repeat_window_days: float = 7.0  # same customer, same intent within this many days: a repeat inquiry
    order_window_days: float = 7.0  # an order this long after a conversation counts as converted
    survey: SurveyConfig = field(default_factory=SurveyConfig)

    @classmethod
    def from_dict(cls, data: Any, filename: str = "config.yml", line: int | None = None) -> "AnalyticsConfig":
        if data is None or data is True:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("'analytics' must be a mapping.", filename, line,
                              "Write 'analytics:' followed by indented keys (see docs/dashboard.md).")
        known = {"database", "conversation_timeout_minutes", "repeat_window_days", "order_window_days", "survey"}
        _unknown(data, known, "analytics", filename, line)
        survey = data.get("survey")
        return cls(
            database=str(data.get("database") or DEFAULT_DATABASE),
            conversation_timeout_minutes=_positive(data, "conversation_timeout_minutes", 30.0, filename, line),
            repeat_window_days=_positive(data, "repeat_window_days", 7.0, filename, line),
            order_window_days=_positive(data, "order_window_days", 7.0, filename, line),
            survey=_survey(survey, filename, line),
        )

    @classmethod
    def from_project(cls, root: str | Path) -> "AnalyticsConfig":
        """``analytics:`` of config.yml, endpoints.yml's keys on top (with the line of the section)."""
        from bot.shared.yaml_io import line_of, read_yaml_file, to_plain

        merged: dict[str, Any] = {}
        filename, line = "config.yml", None
        for name in ("config.yml", "endpoints.yml"):
            path = Path(root) / name
            if not path.is_file():
                continue
            raw = read_yaml_file(path) or {}
            if hasattr(raw, "get") and "analytics" in raw:
                section = to_plain(raw.get("analytics"))
                filename, line = str(path), line_of(raw, "analytics")
                if section is None or section is True:
                    continue
                if not isinstance(section, dict):
                    raise ConfigError("'analytics' must be a mapping.", filename, line,
                                      "Write 'analytics:' followed by indented keys (see docs/dashboard.md).")
                merged.update(section)
        return cls.from_dict(merged, filename, line)

    def database_url(self, root: Path | None) -> str:
        url = self.database
        prefix = "sqlite:///"
        if root is not None and url.startswith(prefix) and not url.startswith(prefix + "/") \
                and ":memory:" not in url:
            return prefix + str(Path(root) / url[len(prefix):])
        return url


def _unknown(data: dict, known: set[str], where: str, filename: str, line: int | None) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(unknown)} in '{where}'.", filename, line,
                          f"Use only: {', '.join(sorted(known))}.")


def _positive(data: dict, key: str, default: float, filename: str, line: int | None) -> float:
    value = data.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise ConfigError(f"'{key}' must be a positive number, not {value!r}.", filename, line,
                          f"Write e.g. '{key}: {default:g}'.")
    return number


def _names(value: Any, key: str, filename: str, line: int | None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"'survey.{key}' must be a list of names, not {value!r}.", filename, line,
                          f"Write e.g. '{key}: [goodbye]'.")
    return tuple(value)


def _survey(data: Any, filename: str, line: int | None) -> SurveyConfig:
    if data is None or data is True:
        return SurveyConfig()
    if data is False:
        return SurveyConfig(enabled=False)
    if not isinstance(data, dict):
        raise ConfigError("'analytics.survey' must be a mapping or false.", filename, line,
                          "Write 'survey: false' or 'survey:' with keys (see docs/dashboard.md).")
    known = {"enabled", "ask_on", "goodbye_intents", "inactivity_minutes", "sample_rate", "comment", "nps",
             "ces", "intent", "entity", "answer_window_minutes", "messages"}
    _unknown(data, known, "analytics.survey", filename, line)
    ask_on = _names(data.get("ask_on", list(SurveyConfig.ask_on)), "ask_on", filename, line)
    bad = [a for a in ask_on if a not in ASK_ON]
    if bad:
        raise ConfigError(f"'survey.ask_on' has unknown value(s) {', '.join(bad)}.", filename, line,
                          f"Use any of: {', '.join(ASK_ON)}.")
    rate = data.get("sample_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ConfigError(f"'survey.sample_rate' must be a number from 0 to 1, not {rate!r}.", filename, line,
                          "Write e.g. 'sample_rate: 0.3' to ask 30 % of ended conversations.")
    messages = data.get("messages") or {}
    if not isinstance(messages, dict):
        raise ConfigError("'survey.messages' must map a message key to {zh: ..., en: ...}.", filename, line,
                          "See docs/dashboard.md for the keys (ask, comment, nps, ces, thanks).")
    for key in ("enabled", "comment", "nps", "ces"):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"'survey.{key}' must be true or false, not {data[key]!r}.", filename, line,
                              f"Write '{key}: true' or '{key}: false'.")
    return SurveyConfig(
        enabled=bool(data.get("enabled", True)),
        ask_on=ask_on,
        goodbye_intents=_names(data.get("goodbye_intents", ["goodbye"]), "goodbye_intents", filename, line),
        inactivity_minutes=_positive(data, "inactivity_minutes", 10.0, filename, line),
        sample_rate=float(rate),
        comment=bool(data.get("comment", True)),
        nps=bool(data.get("nps", False)),
        ces=bool(data.get("ces", False)),
        intent=str(data.get("intent") or "csat"),
        entity=str(data.get("entity") or "rating"),
        answer_window_minutes=_positive(data, "answer_window_minutes", 60.0, filename, line),
        messages={str(k): dict(v) for k, v in messages.items() if isinstance(v, dict)},
    )
