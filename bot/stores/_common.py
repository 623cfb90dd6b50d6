"""Helpers shared by the tracker store, lock store and event broker factories.

They read an ``EndpointConfig`` defensively (only ``url``, ``type`` and ``kwargs`` are
relied upon), build Redis clients from Rasa's endpoint keys, and load user classes given
as dotted paths.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from bot.shared.exceptions import ConfigError, UnknownComponentError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import redis.asyncio

logger = logging.getLogger(__name__)

REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url_from_endpoints(path: "Path") -> str | None:
    """A Redis URL from endpoints.yml's lock_store (else tracker_store/event_broker) when it is Redis.

    Features that share Redis between workers (handoff queue, workbench activations) follow the
    stores the workers already share, so one Redis needs to be named only once.
    """
    if not path.is_file():
        return None
    from bot.shared.yaml_io import read_yaml_file, to_plain

    data = to_plain(read_yaml_file(path)) or {}
    for key in ("lock_store", "tracker_store", "event_broker"):
        section = data.get(key) if isinstance(data, dict) else None
        if not isinstance(section, dict) or str(section.get("type", "")).lower() != "redis":
            continue
        url = str(section.get("url") or "localhost")
        if url.startswith(REDIS_URL_SCHEMES):
            return url
        password = section.get("password")
        auth = f":{password}@" if password else ""
        scheme = "rediss" if section.get("use_ssl") else "redis"
        return f"{scheme}://{auth}{url}:{int(section.get('port', 6379))}/{int(section.get('db', 0))}"
    return None


def endpoint_type(config: Any) -> str | None:
    """The lower-cased ``type`` of an endpoint config, or None when none is set."""
    if config is None:
        return None
    value = getattr(config, "type", None)
    if value is None:
        return None
    return str(value)


def endpoint_kwargs(config: Any) -> dict[str, Any]:
    """A copy of the endpoint's extra keys (everything but url/type/token)."""
    kwargs = getattr(config, "kwargs", None) or {}
    return dict(kwargs)


def endpoint_location(config: Any) -> tuple[str | None, int | None]:
    """(filename, line) of the endpoint in endpoints.yml when the config knows them."""
    return getattr(config, "filename", None), getattr(config, "line", None)


def unknown_type_error(kind: str, name: str, valid: list[str], config: Any) -> UnknownComponentError:
    filename, line = endpoint_location(config)
    return UnknownComponentError.for_name(kind, name, valid, filename or "endpoints.yml", line)


def load_class(dotted_path: str, kind: str, valid: list[str], config: Any) -> type:
    """Import ``package.module.ClassName``; unknown paths list the built-in types."""
    module_name, _, class_name = dotted_path.rpartition(".")
    if not module_name:
        raise unknown_type_error(kind, dotted_path, valid, config)
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as e:
        raise unknown_type_error(kind, dotted_path, valid, config) from e


def redis_client(
    url: str | None = None,
    *,
    port: int | str | None = None,
    db: int | str | None = None,
    password: str | None = None,
    use_ssl: bool = False,
    socket_timeout: float | None = 10.0,
    cluster: bool = False,
    **unused: Any,
) -> "redis.asyncio.Redis":
    """An asyncio Redis client from Rasa-style keys or a ``redis://`` URL.

    Creating the client does not connect; the first command does, inside the running
    event loop, so stores can be built before the server starts.
    """
    import redis.asyncio as aioredis

    if unused:
        logger.debug("Ignoring unknown Redis options: %s", sorted(unused))
    host = url or "localhost"
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        if host.startswith(REDIS_URL_SCHEMES):
            return RedisCluster.from_url(host, decode_responses=True)
        return RedisCluster(
            host=host,
            port=int(port or 6379),
            password=password,
            ssl=bool(use_ssl),
            socket_timeout=socket_timeout,
            decode_responses=True,
        )
    if host.startswith(REDIS_URL_SCHEMES):
        options: dict[str, Any] = {"decode_responses": True, "socket_timeout": socket_timeout}
        if db is not None:
            options["db"] = int(db)
        if password is not None:
            options["password"] = password
        return aioredis.Redis.from_url(host, **options)
    return aioredis.Redis(
        host=host,
        port=int(port or 6379),
        db=int(db or 0),
        password=password,
        ssl=bool(use_ssl),
        socket_timeout=socket_timeout,
        decode_responses=True,
    )


def check_positive(name: str, value: Any, config: Any = None) -> float | None:
    """Validate an optional positive number from endpoints.yml."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        filename, line = endpoint_location(config)
        raise ConfigError(
            f"'{name}' must be a number, got {value!r}.",
            filename or "endpoints.yml",
            line,
            fix=f"Set '{name}' to a positive number of seconds or remove it.",
        ) from e
    if number <= 0:
        filename, line = endpoint_location(config)
        raise ConfigError(
            f"'{name}' must be positive, got {value!r}.",
            filename or "endpoints.yml",
            line,
            fix=f"Set '{name}' to a positive number of seconds or remove it.",
        )
    return number
