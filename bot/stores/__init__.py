"""Stores behind endpoints.yml: tracker stores, lock stores and event brokers.

Each has an embedded default (in-memory / in-process) and a Redis (and, for trackers,
SQL) implementation that lets many stateless workers share one bot. Redis and
SQLAlchemy are imported only when such a store is created.
"""
from __future__ import annotations

from bot.stores.event_broker import (
    EventBroker,
    InProcessEventBroker,
    RedisStreamsEventBroker,
    create_event_broker,
)
from bot.stores.lock_store import (
    InMemoryLockStore,
    LockStore,
    RedisLockStore,
    Ticket,
    create_lock_store,
)
from bot.stores.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
    TrackerStoreProtocol,
    create_tracker_store,
)

__all__ = [
    "EventBroker",
    "InMemoryLockStore",
    "InMemoryTrackerStore",
    "InProcessEventBroker",
    "LockStore",
    "RedisLockStore",
    "RedisStreamsEventBroker",
    "RedisTrackerStore",
    "SQLTrackerStore",
    "Ticket",
    "TrackerStore",
    "TrackerStoreProtocol",
    "create_event_broker",
    "create_lock_store",
    "create_tracker_store",
]
