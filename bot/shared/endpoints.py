"""endpoints.yml: where the action server, stores, broker and model server live.

Same format as Rasa (``action_endpoint``, ``tracker_store``, ``lock_store``,
``event_broker``, ``models``, ``nlg``), with Rasa's ``${ENV_VAR}`` expansion so
secrets stay out of the file. A missing file means "embedded defaults": every
endpoint is ``None`` and the factories pick in-memory/SQLite implementations.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError
from bot.shared.slots import plain_data
from bot.shared.yaml_io import line_of, read_yaml, read_yaml_file

logger = logging.getLogger(__name__)

KNOWN_ENDPOINTS = ("action_endpoint", "tracker_store", "lock_store", "event_broker", "models", "nlg")
_ENV_VAR = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint (Rasa's ``EndpointConfig``): url/type plus free options in ``kwargs``."""

    url: str | None = None
    type: str | None = None
    token: str | None = None
    token_name: str = "token"
    headers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    basic_auth: dict[str, Any] | None = None
    cafile: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    filename: str | None = None
    line: int | None = None

    @classmethod
    def from_dict(
        cls, data: dict[str, Any] | None, filename: str | None = None, line: int | None = None
    ) -> "EndpointConfig":
        data = dict(data or {})
        endpoint_type = data.pop("store_type", None) or data.pop("type", None)
        url = data.pop("url", None)
        headers = data.pop("headers", None) or {}
        params = data.pop("params", None) or {}
        if not isinstance(headers, dict) or not isinstance(params, dict):
            raise ConfigError(
                "`headers` and `params` of an endpoint must be mappings.",
                filename,
                line,
                fix="Write them as `headers:` / `params:` with indented `key: value` lines.",
            )
        return cls(
            url=None if url is None else str(url),
            type=None if endpoint_type is None else str(endpoint_type),
            token=None if data.get("token") is None else str(data.pop("token")),
            token_name=str(data.pop("token_name", None) or "token"),
            headers=headers,
            params=params,
            basic_auth=data.pop("basic_auth", None),
            cafile=data.pop("cafile", None),
            kwargs=data,
            filename=filename,
            line=line,
        )

    def get(self, key: str, default: Any = None) -> Any:
        """An option by name (``url``, ``type`` or anything in ``kwargs``)."""
        if key in ("url", "type", "token", "token_name", "headers", "params", "basic_auth", "cafile"):
            value = getattr(self, key)
            return default if value is None else value
        return self.kwargs.get(key, default)

    def combine_parameters(self, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Query parameters incl. the token (Rasa's behaviour for HTTP endpoints)."""
        params = copy.deepcopy(self.params)
        if self.token:
            params[self.token_name] = self.token
        if kwargs and "params" in kwargs:
            params.update(kwargs["params"])
        return params

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.kwargs)
        for key in ("url", "type", "token", "basic_auth", "cafile"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.headers:
            data["headers"] = dict(self.headers)
        if self.params:
            data["params"] = dict(self.params)
        if self.token_name != "token":
            data["token_name"] = self.token_name
        return data


@dataclass(frozen=True)
class Endpoints:
    """All endpoints of a deployment; ``None`` means the embedded default."""

    action_endpoint: EndpointConfig | None = None
    tracker_store: EndpointConfig | None = None
    lock_store: EndpointConfig | None = None
    event_broker: EndpointConfig | None = None
    models: EndpointConfig | None = None
    nlg: EndpointConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    filename: str | None = None


def expand_env_vars(value: Any, filename: str | None = None, line: int | None = None) -> Any:
    """Replace ``${VAR}`` in strings (recursively); a missing variable is an error."""
    if isinstance(value, str):
        missing = [m for m in _ENV_VAR.findall(value) if m not in os.environ]
        if missing:
            raise ConfigError(
                f"Environment variable(s) {', '.join(repr(m) for m in missing)} used in "
                f"'{value}' are not set.",
                filename,
                line,
                fix=f"Set {', '.join(missing)} in the environment before starting, "
                "or write the value into the file.",
            )
        return _ENV_VAR.sub(lambda m: os.environ[m.group(1)], value)
    if isinstance(value, dict):
        return {
            k: expand_env_vars(v, filename, line_of(value, key=k) or line) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            expand_env_vars(v, filename, line_of(value, index=i) or line) for i, v in enumerate(value)
        ]
    return value


def load_endpoints(path: str | Path | None) -> Endpoints:
    """Read endpoints.yml; no path or no file gives all-``None`` endpoints."""
    if path is None:
        return Endpoints()
    path = Path(path)
    if not path.is_file():
        logger.debug("No endpoints file at %s; using embedded defaults.", path)
        return Endpoints()
    return endpoints_from_raw(read_yaml_file(path), str(path))


def endpoints_from_yaml(text: str, filename: str = "<string>") -> Endpoints:
    return endpoints_from_raw(read_yaml(text, filename), filename)


def endpoints_from_raw(raw: Any, filename: str | None = None) -> Endpoints:
    if raw is None:
        return Endpoints(filename=filename)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"The endpoints file must be a mapping of endpoint names, got {type(raw).__name__}.",
            filename,
            line_of(raw),
            fix="Write e.g. `action_endpoint:` with an indented `url: ...`.",
        )
    found: dict[str, EndpointConfig | None] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        line = line_of(raw, key=key)
        expanded = plain_data(expand_env_vars(value, filename, line))
        if key in KNOWN_ENDPOINTS:
            if expanded is None:
                found[key] = None
                continue
            if not isinstance(expanded, dict):
                raise ConfigError(
                    f"Endpoint '{key}' must be a mapping (url, type, options).",
                    filename,
                    line,
                    fix=f"Write `{key}:` followed by indented `url: ...` / `type: ...`.",
                )
            found[key] = EndpointConfig.from_dict(expanded, filename, line)
        else:
            extra[key] = (
                EndpointConfig.from_dict(expanded, filename, line) if isinstance(expanded, dict) else expanded
            )
    return Endpoints(**found, extra=extra, filename=filename)  # type: ignore[arg-type]
