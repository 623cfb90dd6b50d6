"""The ``privacy:`` section (endpoints.yml or config.yml)::

    privacy:
      retention_days: 180      # purge conversations idle this long, closed handoffs, trigger events
      purge_interval_s: 3600   # how often the server's retention task runs
      batch: 500               # rows/conversations deleted per batch

Retention is off by default: deleting is irreversible and how long a shop must keep its
conversations (disputes, refunds, a regulator's request) is the shop's legal decision, not
a default an upgrade may apply to existing data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.shared.exceptions import ConfigError

SECTION = "privacy"
KEYS = ("retention_days", "purge_interval_s", "batch")


@dataclass(frozen=True)
class PrivacyConfig:
    retention_days: float | None = None  # None: keep everything (no retention task)
    purge_interval_s: float = 3600.0
    batch: int = 500

    @property
    def retention_s(self) -> float | None:
        return None if self.retention_days is None else self.retention_days * 86400.0

    @classmethod
    def from_section(cls, raw: Any, filename: str = "endpoints.yml") -> "PrivacyConfig":
        if raw is None:
            return cls()
        if hasattr(raw, "as_dict"):  # endpoints.yml extras arrive as an EndpointConfig
            raw = raw.as_dict()
        if not isinstance(raw, dict):
            raise ConfigError(f"`{SECTION}:` must be a mapping, got {type(raw).__name__}.", filename, None,
                              fix="Write e.g. `privacy: {retention_days: 180}`.")
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise ConfigError(f"Unknown key(s) under `{SECTION}:`: {', '.join(unknown)}.", filename, None,
                              fix=f"Use only: {', '.join(KEYS)}.")
        values: dict[str, Any] = {}
        for key in KEYS:
            value = raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"`{SECTION}: {key}` must be a positive number, got {value!r}.", filename, None,
                                  fix=f"Write e.g. `{key}: {dict(retention_days=180, purge_interval_s=3600, batch=500)[key]}`"
                                      + (" or remove it to keep conversations." if key == "retention_days" else "."))
            values[key] = int(value) if key == "batch" else float(value)
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Any) -> "PrivacyConfig":
        endpoints = getattr(settings, "endpoints", None)
        filename = getattr(endpoints, "filename", None) or "endpoints.yml"
        return cls.from_section(settings.section(SECTION), filename)
