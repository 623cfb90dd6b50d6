"""Behaviour events and the trigger scheduler (lifecycle messages without spam).

Pieces: :mod:`events` (schema of ``POST /events``), :mod:`journeys` (``triggers.yml``),
:mod:`store` (event log, profiles, sends; SQL), :mod:`queue` (Redis sorted sets + Lua, or
SQL), :mod:`guards`, :mod:`senders`, :mod:`engine`, :mod:`report`, :mod:`server`
(Sanic blueprint), :mod:`hooks` (opt-out in chat), :mod:`cli`. See docs/triggers.md.

Configuration in endpoints.yml (all optional)::

    triggers:
      file: triggers.yml
      store_url: sqlite:///triggers.db      # any SQLAlchemy URL, or redis://... (production)
      store: redis                          # or sql (default); redis uses `url` unless store_url is redis://
      queue: redis                          # or sql (the embedded default; needs an SQL store)
      url: redis://127.0.0.1:6379/0
      prefix: kefu:triggers                 # Redis key prefix (queue and store)
      workers: 1                            # scheduler tasks in this process (0: none)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.triggers.clock import Clock, SystemClock, TestClock
from bot.triggers.engine import TriggerEngine, tracker_handoff_check
from bot.triggers.events import BehaviourEvent, EventRejected
from bot.triggers.journeys import TriggerConfig, load_triggers
from bot.triggers.queue import Job, RedisJobQueue, SQLJobQueue
from bot.shared.exceptions import ConfigError
from bot.shared.outputs import OutputRegistry
from bot.triggers.store import DEFAULT_URL, SQLTriggerStore

if TYPE_CHECKING:  # pragma: no cover
    from bot.triggers.senders import ChannelSender

logger = logging.getLogger(__name__)

__all__ = [
    "BehaviourEvent", "Clock", "EventRejected", "Job", "RedisJobQueue", "SQLJobQueue", "SQLTriggerStore",
    "SystemClock", "TestClock", "TriggerConfig", "TriggerEngine", "create_trigger_engine", "load_triggers",
    "open_store", "triggers_settings",
]


def triggers_settings(endpoints: Any) -> dict[str, Any]:
    """The ``triggers:`` section of endpoints.yml (empty when absent)."""
    extra = getattr(endpoints, "extra", None) or {}
    section = extra.get("triggers") if isinstance(extra, dict) else None
    if section is None:
        return {}
    if isinstance(section, dict):
        return dict(section)
    # load_endpoints turns mappings into EndpointConfig(url, type, kwargs)
    settings = dict(getattr(section, "kwargs", None) or {})
    if getattr(section, "url", None):
        settings["url"] = section.url
    if getattr(section, "type", None) and "queue" not in settings:
        settings["queue"] = section.type
    return settings


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_OPTIONS = ("port", "db", "password", "use_ssl")


def open_store(url: str | None = None, *, prefix: str = "kefu:triggers", **redis_options: Any) -> Any:
    """The trigger store for a URL: ``redis://`` → :class:`RedisTriggerStore`, else SQL."""
    url = url or DEFAULT_URL
    if url.startswith(REDIS_SCHEMES):
        from bot.triggers.redis_store import RedisTriggerStore

        return RedisTriggerStore(url, prefix=prefix, **redis_options)
    return SQLTriggerStore(url)


def default_sender(agent: Any, outputs: OutputRegistry | None = None, default_channel: str | None = None) -> ChannelSender:
    """Route by the customer's ``channel`` profile field to the server's output registry.

    Each registered channel's capabilities decide how (the widget: its outbox, delivered
    when the widget next opens; WeChat: 客服/template messages under the 48 h rule); without
    channels, the agent alone (the message is recorded in the conversation, e.g. for the
    REST channel to poll). See :class:`bot.triggers.senders.ChannelSender`.
    """
    from bot.triggers.senders import ChannelSender

    return ChannelSender(agent, outputs, default_channel)


def create_trigger_engine(
    agent: Any = None,
    project_root: str | Path = ".",
    settings: dict[str, Any] | None = None,
    sender: Any = None,
    clock: Clock | None = None,
    outputs: OutputRegistry | None = None,
) -> TriggerEngine | None:
    """Build the engine for a server/worker; ``None`` when there is no triggers file.

    ``outputs`` is the server's registry of channels that can reach a shopper (see
    :mod:`bot.shared.outputs`); None sends through the agent alone. Nothing connects here:
    the store creates its tables and Redis connects on first use, inside the running loop.
    """
    root = Path(project_root)
    settings = settings if settings is not None else triggers_settings(getattr(agent, "endpoints", None))
    path = root / str(settings.get("file", "triggers.yml"))
    if not path.exists():
        return None
    config = load_triggers(path)
    prefix = str(settings.get("prefix", "kefu:triggers"))
    options = {k: v for k, v in settings.items() if k in REDIS_OPTIONS}
    redis_url = str(settings.get("url") or "localhost")
    store_url = str(settings.get("store_url") or DEFAULT_URL)
    store: Any
    if store_url.startswith(REDIS_SCHEMES) or str(settings.get("store", "sql")).lower() == "redis":
        from bot.triggers.redis_store import RedisTriggerStore

        url = store_url if store_url.startswith(REDIS_SCHEMES) else redis_url
        store = RedisTriggerStore(url, prefix=prefix, **options)
    else:
        if store_url.startswith("sqlite") and ":///" in store_url and not store_url.split(":///", 1)[1].startswith("/"):
            store_url = store_url.split(":///", 1)[0] + ":///" + str(root / store_url.split(":///", 1)[1])
        store = SQLTriggerStore(store_url)
    queue_kind = str(settings.get("queue", "redis" if not isinstance(store, SQLTriggerStore) else "sql")).lower()
    if queue_kind == "redis":
        queue_url = settings.get("url") or (store.url if not isinstance(store, SQLTriggerStore) else redis_url)
        queue: Any = RedisJobQueue(str(queue_url), prefix=prefix, **options)
    elif isinstance(store, SQLTriggerStore):
        queue = SQLJobQueue(store.engine)
    else:
        raise ConfigError("triggers: 'queue: sql' needs an SQL store, but the store is Redis.", "endpoints.yml", None,
                          "use 'queue: redis' with a Redis store (or an SQL store_url with the SQL queue)")
    if sender is None:
        sender = default_sender(agent, outputs, settings.get("default_channel"))
    handoff = tracker_handoff_check(agent.tracker_store) if agent is not None else None
    engine = TriggerEngine(config, store, queue, sender, clock or SystemClock(), handoff,
                           send_concurrency=int(settings.get("send_concurrency", 8)))
    logger.info("Trigger engine: %d journeys, %s store, %s queue.", len(config.journeys),
                "Redis" if not isinstance(store, SQLTriggerStore) else store.engine.dialect.name, queue_kind)
    return engine
