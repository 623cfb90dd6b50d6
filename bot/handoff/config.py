"""Handoff settings: the ``handoff:`` key of config.yml (overridable in endpoints.yml).

Every escalation rule has a switch and a threshold here so a shop tunes when a
human takes over without code. ``HandoffConfig.from_dict`` validates and says
which key is wrong and how to fix it.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError
from bot.stores._common import redis_url_from_endpoints

ROLES = ("agent", "supervisor", "admin")
MIN_SECRET_LENGTH = 32
SECRET_FIX = ("Remove 'secret:' (kefu then generates one in .kefu/handoff-secret) or write "
              "'secret: ${KEFU_HANDOFF_SECRET}' and set that variable (32+ characters).")
_ENV_REF = re.compile(r"\$\{(\w+)\}")
DEFAULT_SKILL = "general"


@dataclass(frozen=True)
class AgentSpec:
    """A human agent as configured (status and load live in the router)."""

    id: str
    name: str
    role: str = "agent"
    skills: tuple[str, ...] = (DEFAULT_SKILL,)
    languages: tuple[str, ...] = ("zh", "en")
    max_concurrent: int = 5
    password_hash: str = ""  # argon2id; see bot/handoff/credentials.py for where it comes from

    def __repr__(self) -> str:  # never print a hash into a log line or traceback
        return f"AgentSpec(id={self.id!r}, role={self.role!r})"

    @property
    def is_supervisor(self) -> bool:
        return self.role in ("supervisor", "admin")

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "skills": list(self.skills),
                "languages": list(self.languages), "max_concurrent": self.max_concurrent}


@dataclass(frozen=True)
class ServiceHours:
    """Daily opening window in a fixed UTC offset (China has no DST)."""

    start: str = "09:00"
    end: str = "21:00"
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0
    utc_offset_hours: float = 8.0

    def is_open(self, now: float) -> bool:
        local = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=self.utc_offset_hours)))
        if local.weekday() not in self.days:
            return False
        hhmm = local.strftime("%H:%M")
        if self.start <= self.end:
            return self.start <= hhmm < self.end
        return hhmm >= self.start or hhmm < self.end  # overnight window

    def label(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class HandoffConfig:
    enabled: bool = True
    request_human_intents: tuple[str, ...] = ("request_human",)
    complaint_intents: tuple[str, ...] = ("complaint",)
    sentiment_threshold: float = -0.5  # negative label with score <= this escalates
    urgency_threshold: float = 0.7  # urgency flag or score >= this escalates
    max_consecutive_fallbacks: int = 3
    max_unanswered: int = 2
    max_action_failures: int = 2
    vip_sensitive_intents: tuple[str, ...] = ("request_refund", "refund", "return_goods", "complaint")
    vip_lifetime_value_cents: int = 500_000
    skills_by_intent: dict[str, str] = field(default_factory=dict)
    default_skill: str = DEFAULT_SKILL
    service_hours: ServiceHours | None = None
    avg_handle_time_s: float = 300.0
    csat_intent: str = "csat"
    csat_entity: str = "rating"
    auto_assign: bool = True
    store_url: str = "sqlite+aiosqlite:///handoff.db"
    queue: dict[str, Any] = field(default_factory=lambda: {"type": "memory"})
    token_ttl_s: int = 8 * 3600
    max_login_failures: int = 5  # per agent id (per client address: 4x); then locked out
    login_lockout_s: float = 60.0  # first lockout; doubles with each further one
    max_login_lockout_s: float = 900.0
    presence_ttl_s: float = 60.0  # a console silent this long (crashed, closed) goes away
    secret: str = ""
    agents: tuple[AgentSpec, ...] = ()
    canned_replies: dict[str, dict[str, str]] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_token: str | None = None
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    # WeChat outside the 48-hour customer-service window: {template_id, data: {key: "{text}"}, url}
    wechat_template: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, filename: str = "config.yml") -> "HandoffConfig":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown key(s) under 'handoff:': {', '.join(unknown)}.", filename=filename,
                              fix=f"Use only: {', '.join(sorted(known))}.")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("request_human_intents", "complaint_intents", "vip_sensitive_intents"):
                kwargs[key] = tuple(_str_list(value, key, filename))
            elif key == "agents":
                kwargs[key] = tuple(_agent(a, filename) for a in (value or []))
            elif key == "service_hours":
                kwargs[key] = _hours(value, filename)
            elif key in ("max_consecutive_fallbacks", "max_unanswered", "max_action_failures", "token_ttl_s",
                         "vip_lifetime_value_cents", "max_login_failures"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"'handoff.{key}' must be a non-negative integer (0 disables).",
                                      filename=filename, fix=f"Write e.g. '{key}: 3'.")
                kwargs[key] = value
            elif key == "wechat_template":
                if value is not None and (not isinstance(value, dict) or not value.get("template_id")):
                    raise ConfigError("'handoff.wechat_template' needs a 'template_id'.", filename=filename,
                                      fix="Write e.g. 'wechat_template: {template_id: AbC123, data: "
                                          "{first: \"{agent}\", keyword1: \"{text}\"}}'.")
                kwargs[key] = value
            elif key == "queue":
                if not isinstance(value, dict) or value.get("type", "memory") not in ("memory", "redis"):
                    raise ConfigError("'handoff.queue' must be {type: memory} or {type: redis, url: ...}.",
                                      filename=filename, fix="Write e.g. 'queue: {type: redis, url: redis://localhost:6379/0}'.")
                kwargs[key] = dict(value)
            elif key in ("sentiment_threshold", "urgency_threshold", "avg_handle_time_s", "presence_ttl_s",
                         "login_lockout_s", "max_login_lockout_s"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"'handoff.{key}' must be a number.", filename=filename,
                                      fix=f"Write e.g. '{key}: 0.7'.")
                kwargs[key] = float(value)
            elif key == "secret":
                if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                    raise ConfigError(f"'handoff.secret' must be at least {MIN_SECRET_LENGTH} characters.",
                                      filename=filename, fix=SECRET_FIX)
                kwargs[key] = value
            else:
                kwargs[key] = value
        config = cls(**kwargs)
        if not config.secret:  # embedded use without a project folder: valid in this process only
            object.__setattr__(config, "secret", os.environ.get("KEFU_HANDOFF_SECRET") or secrets.token_hex(32))
        return config

    @classmethod
    def from_project(cls, root: str | Path = ".") -> "HandoffConfig":
        """``handoff:`` from config.yml, then endpoints.yml's ``handoff:`` on top.

        Refuses plaintext passwords, hashes of well-known ones and a literal signing secret
        (file and line in the error); the secret otherwise comes from the environment or
        ``.kefu/`` (:mod:`bot.handoff.credentials`, which also fills in agents' hashes).
        """
        from bot.shared.yaml_io import read_yaml_file, to_plain

        merged: dict[str, Any] = {}
        for name in ("config.yml", "endpoints.yml"):
            path = Path(root) / name
            if path.is_file():
                raw = read_yaml_file(path) or {}
                section = raw.get("handoff") if hasattr(raw, "get") else None
                if hasattr(section, "get"):
                    _refuse_checked_in_secrets(section, path)
                    merged.update(to_plain(section))
        if "queue" not in merged:
            redis_url = redis_url_from_endpoints(Path(root) / "endpoints.yml")
            if redis_url:  # several workers share Redis already: share the live queue and presence too
                merged["queue"] = {"type": "redis", "url": redis_url}
        if isinstance(merged.get("store_url"), str):  # docs/database.md: store_url: postgresql://kefu:${PASS}@...
            from bot.shared.endpoints import expand_env_vars

            merged["store_url"] = expand_env_vars(merged["store_url"], str(Path(root) / "config.yml"))
        if merged.get("secret"):
            merged["secret"] = _expand_env(merged["secret"], Path(root) / "config.yml")
        else:
            from bot.handoff.credentials import handoff_secret

            merged["secret"] = handoff_secret(root)
        return cls.from_dict(merged, filename=str(Path(root) / "config.yml"))

    def agent(self, agent_id: str) -> AgentSpec | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def skill_for(self, intent: str | None) -> str:
        return self.skills_by_intent.get(intent or "", self.default_skill)



def _str_list(value: Any, key: str, filename: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"'handoff.{key}' must be a list of intent names.", filename=filename,
                          fix=f"Write e.g. '{key}: [request_human]'.")
    return value


def _set_password_fix(agent_id: str) -> str:
    return (f"Delete 'password:' and run `python -m bot agents set-password {agent_id}` (or set "
            f"KEFU_AGENT_{re.sub(r'[^A-Z0-9]', '_', agent_id.upper())}_PASSWORD in the environment, or remove it "
            "and restart: a password is generated and shown once).")


def _refuse_checked_in_secrets(section: Any, path: Path) -> None:
    """Plaintext passwords, well-known hashes and literal signing secrets in a project file stop the start."""
    from bot.handoff.credentials import check_hash
    from bot.shared.yaml_io import line_of

    secret = section.get("secret")
    if secret and not _ENV_REF.fullmatch(str(secret)):
        raise ConfigError("'handoff.secret' is written into the file: anyone with the repository can sign console "
                          "tokens.", filename=path, line=line_of(section, "secret"), fix=SECRET_FIX)
    agents = section.get("agents") or []
    for entry in agents if isinstance(agents, list) else []:
        if not hasattr(entry, "get"):
            continue
        agent_id = str(entry.get("id"))
        if "password" in entry:
            raise ConfigError(f"Agent '{agent_id}' has a plaintext password in the file.", filename=path,
                              line=line_of(entry, "password"), fix=_set_password_fix(agent_id))
        if entry.get("password_hash"):
            check_hash(agent_id, str(entry["password_hash"]), where="'password_hash'", filename=path,
                       line=line_of(entry, "password_hash"))


def _expand_env(value: Any, path: Path) -> Any:
    match = _ENV_REF.fullmatch(str(value))
    if not match:
        return value
    if not os.environ.get(match.group(1)):
        raise ConfigError(f"'handoff.secret' names ${{{match.group(1)}}}, which is not set.", filename=path,
                          fix=f"Set {match.group(1)} (32+ characters) or remove 'secret:' to have one generated.")
    return os.environ[match.group(1)]


def _agent(data: Any, filename: str) -> AgentSpec:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ConfigError("Each entry of 'handoff.agents' needs an 'id'.", filename=filename,
                          fix="Write e.g. '- {id: li, name: 小李, skills: [after_sales]}'.")
    role = data.get("role", "agent")
    if role not in ROLES:
        raise ConfigError(f"Agent '{data['id']}' has unknown role '{role}'.", filename=filename,
                          fix=f"Use one of: {', '.join(ROLES)}.")
    if "password" in data:
        raise ConfigError(f"Agent '{data['id']}' has a plaintext password.", filename=filename,
                          fix=_set_password_fix(data["id"]))
    password_hash = str(data.get("password_hash") or "")
    if password_hash and not password_hash.startswith("$argon2id$"):
        raise ConfigError(f"Agent '{data['id']}': 'password_hash' is not an argon2id hash.", filename=filename,
                          fix=f"Run `python -m bot agents set-password {data['id']}`.")
    return AgentSpec(
        id=data["id"], name=str(data.get("name", data["id"])), role=role,
        skills=tuple(data.get("skills") or (DEFAULT_SKILL,)), languages=tuple(data.get("languages") or ("zh", "en")),
        max_concurrent=int(data.get("max_concurrent", 5)), password_hash=password_hash,
    )


def _hours(data: Any, filename: str) -> ServiceHours | None:
    if data in (None, False):
        return None
    if not isinstance(data, dict):
        raise ConfigError("'handoff.service_hours' must be a mapping.", filename=filename,
                          fix="Write e.g. 'service_hours: {start: \"09:00\", end: \"21:00\", utc_offset_hours: 8}'.")
    return ServiceHours(start=str(data.get("start", "09:00")), end=str(data.get("end", "21:00")),
                        days=tuple(data.get("days", range(7))), utc_offset_hours=float(data.get("utc_offset_hours", 8)))
