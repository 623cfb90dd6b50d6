"""Tracker stores: where conversations live between messages.

Every store keeps the ordered list of a conversation's events (Rasa's JSON form) and
builds ``DialogueStateTracker``s from them with the domain's slots. Saves are
append-only: only events the store has not seen yet are written and published to the
event broker, so saving a long conversation costs as much as its newest turn.

``retrieve`` returns the conversation from its latest ``session_started`` event on (as
Rasa's SQL store does, which keeps long-lived conversations cheap to load; carried-over
slots follow that event); ``retrieve_full_tracker`` returns every event.

The SQL and Redis stores keep each worker's recent sessions in memory (``cache_size``,
an LRU of conversations): a turn then reads only the session's position (how many
events it has and its last event) instead of every event, and rebuilds the tracker
from events decoded once, when they were written or first read. A position that
differs from the cached one (another worker wrote, the conversation was deleted)
reloads from the store, so the store stays the truth.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Protocol, Sequence, runtime_checkable

from bot.shared.exceptions import ConfigError, StoreError
from bot.stores.keys import KeyBuilder
from bot.stores._common import (
    check_positive,
    endpoint_kwargs,
    endpoint_location,
    endpoint_type,
    load_class,
    redis_client,
    unknown_type_error,
)

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.domain import Domain
    from bot.shared.events import Event
    from bot.shared.tracker import DialogueStateTracker
    from bot.stores.event_broker import EventBroker

from bot.stores.sql import (  # noqa: F401 (ASYNC_DRIVERS, async_sql_url re-exported)
    ASYNC_DRIVERS,
    async_sql_url,
    create_async_sql_engine,
    advisory_key,
    create_database_if_missing,
    create_tables,
)
from bot.stores.limits import check_length, check_row, column_limit
from bot.stores.migrate import ensure_schema

logger = logging.getLogger(__name__)

SESSION_STARTED = "session_started"
ACTION_LISTEN = "action_listen"
DEFAULT_SQL_URL = "sqlite:///kefu.db"
DEFAULT_REDIS_KEY_PREFIX = "kefu:tracker:"
# Conversations whose current session a worker keeps decoded (tracker_store `cache_size`).
DEFAULT_SESSION_CACHE_SIZE = 256
# Redis: off unless asked; five benchmark runs showed no gain over Redis' own read path (docs/performance.md).
REDIS_SESSION_CACHE_SIZE = 0


@runtime_checkable
class TrackerStoreProtocol(Protocol):
    """What the processor and the HTTP API need from a tracker store."""

    domain: Optional["Domain"]
    event_broker: Optional["EventBroker"]

    async def save(self, tracker: "DialogueStateTracker") -> None: ...

    async def retrieve(self, sender_id: str) -> Optional["DialogueStateTracker"]: ...

    async def retrieve_full_tracker(self, sender_id: str) -> Optional["DialogueStateTracker"]: ...

    async def keys(self) -> list[str]: ...

    async def delete(self, sender_id: str) -> None: ...


def _event_key(event: dict[str, Any]) -> tuple[Any, Any]:
    """Identity of a stored event: its type and its timestamp."""
    return event.get("event"), event.get("timestamp")


def unsaved_events(
    events: list["Event"],
    stored_total: int,
    stored_since_session: int,
    last_stored: Optional[dict[str, Any]],
) -> list["Event"]:
    """The tail of ``events`` that the store does not hold yet.

    A tracker holds either all stored events (``retrieve_full_tracker``, or one built in
    memory) or those since the latest session start (``retrieve``). The store's last
    event is looked up at those two positions first, then anywhere (searching from the
    end), and everything after it is new.
    """
    if stored_total == 0 or last_stored is None:
        return list(events)
    key = _event_key(last_stored)
    for position in (stored_total - 1, stored_since_session - 1):
        if 0 <= position < len(events) and _event_key(events[position].as_dict()) == key:
            return list(events[position + 1 :])
    for position in range(len(events) - 1, -1, -1):
        if _event_key(events[position].as_dict()) == key:
            return list(events[position + 1 :])
    last_timestamp = last_stored.get("timestamp") or 0
    logger.warning(
        "Tracker does not contain the last stored event; appending only events newer than %s.",
        last_timestamp,
    )
    return [event for event in events if (event.timestamp or 0) > last_timestamp]


def _last_session_start(events: list[dict[str, Any]]) -> int:
    """Index of the latest ``session_started`` event, 0 when there is none."""
    for index in range(len(events) - 1, -1, -1):
        if events[index].get("event") == SESSION_STARTED:
            return index
    return 0


def _mentions_customer(events: list[dict[str, Any]], customer_ids: set[str]) -> bool:
    """True when a user message's metadata or a ``customer_id`` slot names one of ``customer_ids``."""
    for event in events:
        if event.get("event") == "user":
            metadata = event.get("metadata") or {}
            if isinstance(metadata, dict) and str(metadata.get("customer_id", "")) in customer_ids:
                return True
        elif event.get("event") == "slot" and event.get("name") == "customer_id":
            if str(event.get("value", "")) in customer_ids:
                return True
    return False


def _clone_event(event: "Event") -> "Event":
    """A shallow copy of an event (several times faster than ``copy.copy``, which goes
    through ``__reduce_ex__``): a tracker gets its own event objects, sharing the values."""
    state = getattr(event, "__dict__", None)
    if state is None:  # pragma: no cover - events have no __slots__ today
        return copy.copy(event)
    clone = object.__new__(type(event))
    clone.__dict__.update(state)
    return clone


def loads_events(rows: Sequence[str | bytes]) -> list[dict[str, Any]]:
    """Stored event JSON documents as dicts, decoded in one ``json.loads`` call.

    A conversation is read on every turn; one C-level parse of ``[a,b,...]`` costs about
    a third less than a ``json.loads`` per event. A corrupt row fails the same way.
    """
    if not rows:
        return []
    parts = [row.decode("utf-8") if isinstance(row, (bytes, bytearray)) else row for row in rows]
    try:
        events = json.loads("[" + ",".join(parts) + "]")
    except ValueError:
        events = None
    if not isinstance(events, list) or len(events) != len(parts):  # a corrupt row: fail as row by row would
        events = [json.loads(part) for part in parts]
    return events


@dataclass
class CachedSession:
    """A conversation's current session as the store holds it, decoded.

    ``rows`` and ``last`` are the store's position: how many events the session has
    and its last event (as stored); ``events`` were deserialised from the stored JSON,
    so a tracker built from them equals one built from a fresh read.
    """

    rows: int
    last: dict[str, Any]
    events: list["Event"]


@dataclass
class SessionWrite:
    """What one ``_append`` saw and wrote: the session's position before, the JSON rows after it."""

    rows_before: int
    last_before: Optional[dict[str, Any]]
    written: list[str]


def cache_size_option(value: Any, config: Any = None, default: int = DEFAULT_SESSION_CACHE_SIZE) -> int:
    """``cache_size`` of endpoints.yml's tracker_store: a whole number >= 0 (0 turns the cache off)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        filename, line = endpoint_location(config) if config is not None else (None, None)
        raise ConfigError(
            f"tracker_store cache_size must be a whole number of conversations >= 0, got {value!r}.",
            filename or "endpoints.yml",
            line,
            fix=f"Set e.g. `cache_size: {DEFAULT_SESSION_CACHE_SIZE}` under tracker_store, or 0 to read every "
            "turn's events from the store.",
        )
    return value


class TrackerStore:
    """Base class with the shared tracker logic; subclasses store event dicts.

    Subclasses implement ``_load(sender_id, full)``, ``_append(sender_id, events, tracker)``
    (returning the events actually written), ``keys`` and ``delete``. A subclass that also
    implements ``_session_position`` and reports its writes with ``_note_write`` can set
    ``cache_size`` > 0 to keep recent sessions decoded in memory.
    """

    def __init__(
        self, domain: Optional["Domain"] = None, event_broker: Optional["EventBroker"] = None
    ) -> None:
        self.domain = domain
        self.event_broker = event_broker
        self.cache_size = 0
        self._sessions: OrderedDict[str, CachedSession] = OrderedDict()
        self._writes: dict[str, SessionWrite] = {}

    # --- tracker construction ---------------------------------------------------
    def _slots(self) -> Optional[list[Any]]:
        """The domain's slots (the tracker copies them); None keeps any slot a store sees."""
        if self.domain is None:
            return None
        return list(self.domain.slots)

    def init_tracker(self, sender_id: str, max_event_history: Optional[int] = None) -> "DialogueStateTracker":
        """A new, empty tracker with the domain's slots."""
        from bot.shared.tracker import DialogueStateTracker

        return DialogueStateTracker(sender_id, self._slots(), max_event_history=max_event_history)

    def deserialise_tracker(self, sender_id: str, events: list[dict[str, Any]]) -> "DialogueStateTracker":
        from bot.shared.tracker import DialogueStateTracker

        return DialogueStateTracker.from_dict(sender_id, events, self._slots())

    async def create_tracker(
        self, sender_id: str, max_event_history: Optional[int] = None, append_action_listen: bool = True
    ) -> "DialogueStateTracker":
        """Create, optionally start with ``action_listen`` (as Rasa), and save a tracker."""
        tracker = self.init_tracker(sender_id, max_event_history)
        if append_action_listen:
            from bot.shared.events import ActionExecuted

            tracker.update(ActionExecuted(ACTION_LISTEN))
        await self.save(tracker)
        return tracker

    async def get_or_create_tracker(
        self, sender_id: str, max_event_history: Optional[int] = None, append_action_listen: bool = True
    ) -> "DialogueStateTracker":
        tracker = await self.retrieve(sender_id)
        if tracker is None:
            tracker = await self.create_tracker(sender_id, max_event_history, append_action_listen)
        return tracker

    # --- public API -------------------------------------------------------------
    async def retrieve(self, sender_id: str) -> Optional["DialogueStateTracker"]:
        """The conversation from its latest session start on, or None if unknown."""
        if self.cache_size:
            return await self._retrieve_cached(sender_id)
        events = await self._load(sender_id, full=False)
        return self.deserialise_tracker(sender_id, events) if events else None

    # --- the session cache ----------------------------------------------------------
    async def _retrieve_cached(self, sender_id: str) -> Optional["DialogueStateTracker"]:
        from bot.shared.events import deserialise_events

        cached = self._sessions.get(sender_id)
        if cached is not None:
            if await self._session_position(sender_id) == (cached.rows, cached.last):
                self._sessions.move_to_end(sender_id)
                return self._tracker_from_cache(sender_id, cached)
            self._sessions.pop(sender_id, None)
        rows = await self._load(sender_id, full=False)
        if not rows:
            return None
        events = deserialise_events(rows)
        tracker = self._tracker_from_events(sender_id, events)
        # the cache keeps its own event objects: the tracker's may be changed by its user
        self._remember(sender_id, CachedSession(len(rows), rows[-1], [_clone_event(e) for e in events]))
        return tracker

    def _tracker_from_events(self, sender_id: str, events: list["Event"]) -> "DialogueStateTracker":
        from bot.shared.tracker import DialogueStateTracker

        return DialogueStateTracker.from_events(sender_id, events, self._slots())

    def _tracker_from_cache(self, sender_id: str, cached: CachedSession) -> "DialogueStateTracker":
        """A tracker of its own (shallow copies of the cached events: replaying or re-stamping
        them never reaches the cache; stored events are never changed in place)."""
        return self._tracker_from_events(sender_id, [_clone_event(e) for e in cached.events])

    def _remember(self, sender_id: str, session: CachedSession) -> None:
        self._sessions[sender_id] = session
        self._sessions.move_to_end(sender_id)
        while len(self._sessions) > self.cache_size:
            self._sessions.popitem(last=False)

    def _forget(self, sender_ids: Iterable[str]) -> None:
        for sender_id in sender_ids:
            self._sessions.pop(sender_id, None)
            self._writes.pop(sender_id, None)

    def _note_write(
        self, sender_id: str, rows_before: int, last_before: Optional[dict[str, Any]], written: list[str]
    ) -> None:
        """Called by ``_append``: the session's position it read and the JSON rows it wrote."""
        if self.cache_size:
            self._writes[sender_id] = SessionWrite(rows_before, last_before, written)

    def _cache_write(self, sender_id: str) -> None:
        """Extend the cached session by what ``_append`` just wrote on top of it."""
        from bot.shared.events import deserialise_events

        write = self._writes.pop(sender_id, None)
        if write is None or not write.written:
            return
        cached = self._sessions.get(sender_id)
        if cached is not None:
            on_top = (cached.rows, cached.last) == (write.rows_before, write.last_before)
        else:  # a new conversation: the store had nothing before this write
            on_top = write.rows_before == 0 and write.last_before is None
        if not on_top:
            self._sessions.pop(sender_id, None)
            return
        rows = loads_events(write.written)
        start = _last_session_start(rows)
        if rows[start].get("event") == SESSION_STARTED:  # a new session: the cache holds it alone
            rows, previous, count = rows[start:], [], 0
        else:
            previous, count = (cached.events, cached.rows) if cached is not None else ([], 0)
        self._remember(sender_id, CachedSession(count + len(rows), rows[-1], previous + deserialise_events(rows)))

    async def _session_position(self, sender_id: str) -> Optional[tuple[int, Optional[dict[str, Any]]]]:
        """(events of the current session, its last event) as stored; None: the store has no cache."""
        return None

    async def retrieve_full_tracker(self, sender_id: str) -> Optional["DialogueStateTracker"]:
        """The whole conversation (all sessions), or None if unknown."""
        events = await self._load(sender_id, full=True)
        return self.deserialise_tracker(sender_id, events) if events else None

    async def exists(self, sender_id: str) -> bool:
        return sender_id in await self.keys()

    async def save(self, tracker: "DialogueStateTracker") -> None:
        """Append the tracker's new events and publish them to the event broker."""
        written = await self._append(tracker.sender_id, list(tracker.events), tracker)
        if self.cache_size:
            self._cache_write(tracker.sender_id)
        if written:
            logger.debug("Saved %d new event(s) of conversation '%s'.", len(written), tracker.sender_id)
        await self.stream_events(tracker.sender_id, written)

    async def stream_events(self, sender_id: str, events: Iterable["Event"]) -> None:
        """Publish Rasa's broker body (``sender_id`` + the event dict) per new event."""
        if self.event_broker is None:
            return
        for event in events:
            body: dict[str, Any] = {"sender_id": sender_id}
            body.update(event.as_dict())
            await self.event_broker.publish(body)

    async def keys(self) -> list[str]:
        raise NotImplementedError

    async def delete(self, sender_id: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""

    # --- privacy: export, erase, purge (bot/privacy) -------------------------------
    async def conversations_of(self, sender_ids: Iterable[str], customer_ids: Iterable[str] = ()) -> list[str]:
        """Conversations that belong to a customer: those whose id is one of ``sender_ids``
        (the customer's openids, widget sessions), plus those whose user messages carry one of
        ``customer_ids`` as ``customer_id`` in their metadata (a session bound to a customer)."""
        wanted, customers = set(sender_ids), {str(c) for c in customer_ids}
        found = []
        for key in await self.keys():
            if key in wanted:
                found.append(key)
            elif customers and _mentions_customer(await self._load(key, full=True), customers):
                found.append(key)
        return sorted(found)

    async def export_conversations(self, sender_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Every stored event (all sessions) of each conversation, as Rasa event dicts."""
        out = {}
        for sender_id in sender_ids:
            events = await self._load(sender_id, full=True)
            if events:
                out[sender_id] = events
        return out

    async def erase_conversations(self, sender_ids: Iterable[str]) -> int:
        """Delete the conversations; returns how many existed."""
        erased = 0
        for sender_id in sender_ids:
            if await self._load(sender_id, full=True):
                erased += 1
            await self.delete(sender_id)
        return erased

    async def delete_many(self, sender_ids: list[str]) -> None:
        for sender_id in sender_ids:
            await self.delete(sender_id)

    async def idle_since(self, cutoff: float, limit: int = 500) -> list[str]:
        """Up to ``limit`` conversations whose latest event is older than ``cutoff`` (epoch s)."""
        idle = []
        for key in await self.keys():
            events = await self._load(key, full=True)
            if events and float(events[-1].get("timestamp") or 0) < cutoff:
                idle.append(key)
                if len(idle) >= limit:
                    break
        return idle

    async def purge_idle(self, cutoff: float, batch: int = 500, dry_run: bool = False) -> int:
        """Delete, batch by batch, every conversation idle since before ``cutoff``; returns the count."""
        total = 0
        while True:
            if dry_run:
                return len(await self.idle_since(cutoff, limit=2**31))
            idle = await self.idle_since(cutoff, batch)
            if not idle:
                return total
            await self.delete_many(idle)
            total += len(idle)
            if len(idle) < batch:
                return total

    # --- storage primitives -----------------------------------------------------
    async def _load(self, sender_id: str, full: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _append(
        self, sender_id: str, events: list["Event"], tracker: "DialogueStateTracker"
    ) -> list["Event"]:
        raise NotImplementedError


class InMemoryTrackerStore(TrackerStore):
    """Event dicts in a dict; for tests and single-process demos (lost on restart)."""

    def __init__(
        self, domain: Optional["Domain"] = None, event_broker: Optional["EventBroker"] = None, **_: Any
    ) -> None:
        super().__init__(domain, event_broker)
        self.store: dict[str, list[dict[str, Any]]] = {}

    async def _load(self, sender_id: str, full: bool) -> list[dict[str, Any]]:
        events = self.store.get(sender_id)
        if not events:
            return []
        start = 0 if full else _last_session_start(events)
        return copy.deepcopy(events[start:])

    async def _append(
        self, sender_id: str, events: list["Event"], tracker: "DialogueStateTracker"
    ) -> list["Event"]:
        stored = self.store.setdefault(sender_id, [])
        since_session = len(stored) - _last_session_start(stored)
        new = unsaved_events(events, len(stored), since_session, stored[-1] if stored else None)
        # A JSON round trip stores exactly what SQL / Redis would, and detaches the dicts.
        stored.extend(json.loads(json.dumps([e.as_dict() for e in new], default=str)))
        return new

    async def keys(self) -> list[str]:
        return [key for key, events in self.store.items() if events]

    async def delete(self, sender_id: str) -> None:
        self.store.pop(sender_id, None)


# --- SQL -------------------------------------------------------------------------


def sql_url_from_rasa_keys(
    dialect: str = "sqlite",
    host: Optional[str] = None,
    port: Optional[int] = None,
    db: str = "kefu.db",
    username: Optional[str] = None,
    password: Optional[str] = None,
    query: Optional[dict[str, Any]] = None,
) -> str:
    """Rasa's ``dialect/url/port/db/username/password`` keys as one SQLAlchemy URL.

    As in Rasa's ``SQLTrackerStore.get_db_url``, ``url`` may carry the port
    (``db.example.com:5433``), which then wins over ``port``.
    """
    import sqlalchemy as sa
    from urllib.parse import urlsplit

    if dialect.startswith("sqlite"):
        return f"{dialect}:///{db}"
    if host:
        parsed = urlsplit(f"scheme://{host}")
        port = parsed.port or port
        host = parsed.hostname or host
    url = sa.engine.URL.create(
        drivername=dialect,
        username=username,
        password=password,
        host=host,
        port=int(port) if port else None,
        database=db,
        query=query or {},
    )
    return url.render_as_string(hide_password=False)


EVENT_FIELDS = {"sender_id": "conversation id", "type_name": "event", "intent_name": "intent name",
                "action_name": "name"}  # the event's fields as a client sends them


def _events_table(metadata: Any, table_name: str) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        table_name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sender_id", sa.String(255), nullable=False),
        sa.Column("type_name", sa.String(255), nullable=False),
        sa.Column("timestamp", sa.Float),
        sa.Column("intent_name", sa.String(255)),
        sa.Column("action_name", sa.String(255)),
        sa.Column("data", sa.Text),
        sa.Index(f"ix_{table_name}_sender_id_id", "sender_id", "id"),
        sa.Index(f"ix_{table_name}_sender_id_type_name", "sender_id", "type_name"),
    )


class SQLTrackerStore(TrackerStore):
    """One row per event in an ``events`` table (Rasa's columns), via SQLAlchemy async.

    Any SQLAlchemy URL works; sync drivers are swapped for asyncio ones. SQLite files
    use WAL so readers never block the writer. The table is created on first use.
    """

    def __init__(
        self,
        domain: Optional["Domain"] = None,
        event_broker: Optional["EventBroker"] = None,
        url: str = DEFAULT_SQL_URL,
        table_name: str = "events",
        engine_kwargs: Optional[dict[str, Any]] = None,
        login_db: Optional[str] = None,
        cache_size: int = DEFAULT_SESSION_CACHE_SIZE,
    ) -> None:
        super().__init__(domain, event_broker)
        import sqlalchemy as sa

        self.login_db = login_db  # Rasa's key: connect here first and create the database if missing
        self.cache_size = cache_size

        self.engine, self.url = create_async_sql_engine(url, engine_kwargs)
        self.metadata = sa.MetaData()
        self.events = _events_table(self.metadata, table_name)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._position_statement: Any = None

    async def prepare(self) -> None:
        """Check or upgrade the schema now (the server's start), not on the first turn."""
        await self._ensure_schema()

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            if self.login_db:
                try:
                    if await create_database_if_missing(self.url, self.login_db):
                        logger.info("Created the tracker database %s.", self.engine.url.database)
                except ConfigError:
                    raise
                except Exception as e:  # sqlalchemy.exc.SQLAlchemyError, OSError
                    raise StoreError(f"Could not create the tracker database via login_db '{self.login_db}' at "
                                     f"'{self.engine.url!r}': {e}. Fix: check that the user may CREATE DATABASE, "
                                     "or create it and remove login_db.") from e
            await ensure_schema(self.engine, "tracker", "SQL tracker store",
                                "check tracker_store.url in endpoints.yml and that the database is reachable "
                                "and writable.", tables={"events": self.events.name})
            self._schema_ready = True

    def _session_start_id(self, sender_id: str) -> Any:
        import sqlalchemy as sa

        table = self.events
        return (
            sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
            .where(table.c.sender_id == sender_id, table.c.type_name == SESSION_STARTED)
            .scalar_subquery()
        )

    async def _load(self, sender_id: str, full: bool) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        await self._ensure_schema()
        table = self.events
        query = sa.select(table.c.data).where(table.c.sender_id == sender_id)
        if not full:
            query = query.where(table.c.id >= self._session_start_id(sender_id))
        query = query.order_by(table.c.id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).scalars().all()
        return loads_events(rows)

    def _position_query(self) -> Any:
        """One statement, built once (``:sender_id`` bound per call): (all events, events since
        the session start, the last event's JSON)."""
        if self._position_statement is None:
            import sqlalchemy as sa

            table = self.events
            sender = sa.bindparam("sender_id")
            start = (
                sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
                .where(table.c.sender_id == sender, table.c.type_name == SESSION_STARTED)
                .scalar_subquery()
            )
            total = sa.select(sa.func.count()).select_from(table).where(table.c.sender_id == sender)
            since_session = (
                sa.select(sa.func.count()).select_from(table).where(table.c.sender_id == sender, table.c.id >= start)
            )
            last = sa.select(table.c.data).where(table.c.sender_id == sender).order_by(table.c.id.desc()).limit(1)
            self._position_statement = sa.select(
                total.scalar_subquery(), since_session.scalar_subquery(), last.scalar_subquery()
            )
        return self._position_statement

    async def _session_position(self, sender_id: str) -> Optional[tuple[int, Optional[dict[str, Any]]]]:
        await self._ensure_schema()
        async with self.engine.connect() as connection:
            _, since_session, last_data = (await connection.execute(self._position_query(), {"sender_id": sender_id})).one()
        return int(since_session or 0), json.loads(last_data) if last_data else None

    async def _append(
        self, sender_id: str, events: list["Event"], tracker: "DialogueStateTracker"
    ) -> list["Event"]:
        import sqlalchemy as sa

        await self._ensure_schema()
        table = self.events
        # PostgreSQL refuses a longer value mid-transaction, SQLite would store it: both refuse it here.
        check_length(sender_id, "conversation id", column_limit(table, "sender_id"))
        async with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # Two workers saving one conversation at once (no lock store) would both count
                # the same stored events and write the new ones twice: one at a time per sender.
                await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                         {"key": advisory_key(f"tracker:{table.name}:{sender_id}")})
            total, since_session, last_data = (await connection.execute(self._position_query(), {"sender_id": sender_id})).one()
            total, since_session = int(total or 0), int(since_session or 0)
            last_stored = json.loads(last_data) if total and last_data else None
            new = unsaved_events(events, total, since_session if total else 0, last_stored)
            rows = [self._row(sender_id, e) for e in new]
            for row in rows:
                check_row(table, row, "tracker event", names=EVENT_FIELDS)
            if rows:
                await connection.execute(table.insert(), rows)
        self._note_write(sender_id, since_session if total else 0, last_stored, [row["data"] for row in rows])
        return new

    @staticmethod
    def _row(sender_id: str, event: "Event") -> dict[str, Any]:
        data = event.as_dict()
        parse_data = data.get("parse_data") or {}
        intent = parse_data.get("intent") or {}
        return {
            "sender_id": sender_id,
            "type_name": data.get("event"),
            "timestamp": data.get("timestamp"),
            "intent_name": intent.get("name") if isinstance(intent, dict) else None,
            "action_name": data.get("name"),
            "data": json.dumps(data, ensure_ascii=False, default=str),
        }

    async def keys(self) -> list[str]:
        import sqlalchemy as sa

        await self._ensure_schema()
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(self.events.c.sender_id).distinct().order_by(self.events.c.sender_id)
            )
            return list(rows.scalars().all())

    async def delete(self, sender_id: str) -> None:
        self._forget([sender_id])
        await self._ensure_schema()
        async with self.engine.begin() as connection:
            await connection.execute(self.events.delete().where(self.events.c.sender_id == sender_id))

    async def close(self) -> None:
        await self.engine.dispose()

    # --- privacy (bot/privacy): one query instead of loading every conversation ------
    async def conversations_of(self, sender_ids: Iterable[str], customer_ids: Iterable[str] = ()) -> list[str]:
        import sqlalchemy as sa

        await self._ensure_schema()
        wanted, customers = sorted(set(sender_ids)), {str(c) for c in customer_ids}
        table = self.events
        found: set[str] = set()
        async with self.engine.connect() as connection:
            for start in range(0, len(wanted), 400):
                rows = await connection.execute(sa.select(table.c.sender_id).distinct()
                                                .where(table.c.sender_id.in_(wanted[start:start + 400])))
                found.update(rows.scalars().all())
            for customer in customers:  # candidates by text, confirmed on the parsed event
                rows = await connection.execute(
                    sa.select(table.c.sender_id, table.c.data)
                    .where(table.c.type_name.in_(("user", "slot")), table.c.data.contains(customer)))
                for sender_id, data in rows.all():
                    if sender_id not in found and _mentions_customer([json.loads(data)], customers):
                        found.add(sender_id)
        return sorted(found)

    async def idle_since(self, cutoff: float, limit: int = 500) -> list[str]:
        import sqlalchemy as sa

        await self._ensure_schema()
        table = self.events
        query = (sa.select(table.c.sender_id).group_by(table.c.sender_id)
                 .having(sa.func.max(sa.func.coalesce(table.c.timestamp, 0)) < cutoff)
                 .order_by(table.c.sender_id).limit(limit))
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).scalars().all())

    async def delete_many(self, sender_ids: list[str]) -> None:
        self._forget(sender_ids)
        await self._ensure_schema()
        async with self.engine.begin() as connection:
            for start in range(0, len(sender_ids), 400):
                await connection.execute(self.events.delete().where(
                    self.events.c.sender_id.in_(sender_ids[start:start + 400])))


# --- Redis -----------------------------------------------------------------------
# KEYS: events list, session start index (same hash tag). The current session's events.
_SESSION_EVENTS_SCRIPT = """
local start = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
return redis.call('LRANGE', KEYS[1], start, -1)
"""
# KEYS as above. The session's position: {events since the session start, the last event}.
_SESSION_POSITION_SCRIPT = """
local start = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
local total = redis.call('LLEN', KEYS[1])
local last = redis.call('LINDEX', KEYS[1], -1)
if not last then return {total - start} end
return {total - start, last}
"""


class RedisTrackerStore(TrackerStore):
    """One Redis list per conversation, appended with ``RPUSH``.

    Keys are ``{<prefix><sender_id>}`` (events) and ``{<prefix><sender_id>}:session``
    (index of the latest session start): a :class:`KeyBuilder` per conversation whose whole
    prefix is the hash tag, so both land in the same Redis Cluster slot and are written in
    one ``MULTI`` transaction. (This layout predates ``KeyBuilder``'s ``prefix:{tag}``; it is
    kept so stored conversations survive upgrades.) ``record_exp``
    (seconds) expires idle conversations. Saves of one conversation are serialised by
    the lock store (the processor saves under the conversation's lock).
    """

    def __init__(
        self,
        domain: Optional["Domain"] = None,
        event_broker: Optional["EventBroker"] = None,
        host: str = "localhost",
        *,
        key_prefix: str = DEFAULT_REDIS_KEY_PREFIX,
        record_exp: Optional[float] = None,
        client: Any = None,
        cache_size: int = DEFAULT_SESSION_CACHE_SIZE,
        **redis_options: Any,
    ) -> None:
        super().__init__(domain, event_broker)
        self.cache_size = cache_size
        self.key_prefix = key_prefix if key_prefix.endswith(":") else f"{key_prefix}:"
        self.record_exp = record_exp
        self.redis = client if client is not None else redis_client(host, **redis_options)
        self._session_events_script = self.redis.register_script(_SESSION_EVENTS_SCRIPT)
        self._session_position_script = self.redis.register_script(_SESSION_POSITION_SCRIPT)

    def _conversation(self, sender_id: str) -> KeyBuilder:
        return KeyBuilder(f"{self.key_prefix}{sender_id}")

    def events_key(self, sender_id: str) -> str:
        return self._conversation(sender_id).key()

    def session_key(self, sender_id: str) -> str:
        return self._conversation(sender_id).key("session")

    def _error(self, action: str, sender_id: str, e: Exception) -> StoreError:
        return StoreError(
            f"Could not {action} conversation '{sender_id}' in Redis: {e}. "
            f"Fix: check tracker_store url/port/password in endpoints.yml and that Redis is running."
        )

    async def _load(self, sender_id: str, full: bool) -> list[dict[str, Any]]:
        try:
            if full:
                raw = await self.redis.lrange(self.events_key(sender_id), 0, -1)
            else:  # the session's start index and its events in one round trip
                raw = await self._session_events_script(
                    keys=[self.events_key(sender_id), self.session_key(sender_id)]
                )
        except Exception as e:  # redis.RedisError, OSError
            raise self._error("load", sender_id, e) from e
        return loads_events(raw)

    async def _session_position(self, sender_id: str) -> Optional[tuple[int, Optional[dict[str, Any]]]]:
        try:
            reply = await self._session_position_script(
                keys=[self.events_key(sender_id), self.session_key(sender_id)]
            )
        except Exception as e:  # redis.RedisError, OSError
            raise self._error("load", sender_id, e) from e
        return int(reply[0]), json.loads(reply[1]) if len(reply) > 1 and reply[1] else None

    async def _append(
        self, sender_id: str, events: list["Event"], tracker: "DialogueStateTracker"
    ) -> list["Event"]:
        events_key, session_key = self.events_key(sender_id), self.session_key(sender_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.llen(events_key)
                pipe.get(session_key)
                pipe.lindex(events_key, -1)
                total, session_start, last_raw = await pipe.execute()
            session_start = int(session_start or 0)
            last_stored = json.loads(last_raw) if last_raw else None
            new = unsaved_events(events, total, total - session_start, last_stored)
            if not new and not self.record_exp:
                return new
            payload = [e.as_dict() for e in new]
            rows = [json.dumps(d, ensure_ascii=False, default=str) for d in payload]
            async with self.redis.pipeline(transaction=True) as pipe:
                if payload:
                    pipe.rpush(events_key, *rows)
                    latest = _last_session_start(payload)
                    if payload[latest].get("event") == SESSION_STARTED:
                        pipe.set(session_key, total + latest)
                if self.record_exp:
                    ttl_ms = max(1, int(self.record_exp * 1000))
                    pipe.pexpire(events_key, ttl_ms)
                    pipe.pexpire(session_key, ttl_ms)
                await pipe.execute()
        except StoreError:
            raise
        except Exception as e:  # redis.RedisError, OSError
            raise self._error("save", sender_id, e) from e
        self._note_write(sender_id, total - session_start, last_stored, rows)
        return new

    async def keys(self) -> list[str]:
        prefix = "{" + self.key_prefix
        found: list[str] = []
        try:
            async for key in self.redis.scan_iter(match=f"{prefix}*", count=500):
                if key.endswith("}") and not key.endswith("}:session"):
                    found.append(key[len(prefix) : -1])
        except Exception as e:  # redis.RedisError, OSError
            raise StoreError(
                f"Could not list conversations in Redis: {e}. "
                f"Fix: check tracker_store in endpoints.yml and that Redis is running."
            ) from e
        return sorted(set(found))

    async def delete(self, sender_id: str) -> None:
        self._forget([sender_id])
        try:
            await self.redis.delete(self.events_key(sender_id), self.session_key(sender_id))
        except Exception as e:  # redis.RedisError, OSError
            raise self._error("delete", sender_id, e) from e

    async def close(self) -> None:
        await self.redis.aclose()

    # --- privacy (bot/privacy) ---------------------------------------------------------
    async def idle_since(self, cutoff: float, limit: int = 500) -> list[str]:
        """The latest event of each conversation (``LINDEX -1``), not the whole list."""
        idle = []
        for key in await self.keys():
            try:
                last = await self.redis.lindex(self.events_key(key), -1)
            except Exception as e:  # redis.RedisError, OSError
                raise self._error("read", key, e) from e
            if last and float(json.loads(last).get("timestamp") or 0) < cutoff:
                idle.append(key)
                if len(idle) >= limit:
                    break
        return idle


# --- factory ---------------------------------------------------------------------
TRACKER_STORE_TYPES: dict[str, type[TrackerStore]] = {
    "memory": InMemoryTrackerStore,
    "in_memory": InMemoryTrackerStore,
    "inmemory": InMemoryTrackerStore,
    "sql": SQLTrackerStore,
    "redis": RedisTrackerStore,
}


def _create_sql(config: Any, domain: Any, event_broker: Any) -> SQLTrackerStore:
    kwargs = endpoint_kwargs(config)
    url = getattr(config, "url", None)
    table_name = kwargs.pop("table_name", "events")
    engine_kwargs = kwargs.pop("engine_kwargs", None)
    login_db = kwargs.pop("login_db", None)
    cache_size = cache_size_option(kwargs.pop("cache_size", None), config)
    if url and "://" in str(url):
        full_url = str(url)
    else:
        full_url = sql_url_from_rasa_keys(
            dialect=kwargs.pop("dialect", "sqlite"),
            host=url,
            port=kwargs.pop("port", None),
            db=kwargs.pop("db", "kefu.db"),
            username=kwargs.pop("username", None),
            password=kwargs.pop("password", None),
            query=kwargs.pop("query", None),
        )
    for ignored in ("login_db", "dialect", "db", "port", "username", "password", "query"):
        kwargs.pop(ignored, None)
    if kwargs:
        filename, line = endpoint_location(config)
        raise ConfigError(
            f"Unknown SQL tracker store option(s): {', '.join(sorted(kwargs))}.",
            filename or "endpoints.yml",
            line,
            fix="Use url (an SQLAlchemy URL) or dialect/url/port/db/username/password/login_db/query, "
            "table_name, engine_kwargs, cache_size.",
        )
    return SQLTrackerStore(domain, event_broker, url=full_url, table_name=table_name, engine_kwargs=engine_kwargs,
                           login_db=str(login_db) if login_db else None, cache_size=cache_size)


def _create_redis(config: Any, domain: Any, event_broker: Any) -> RedisTrackerStore:
    kwargs = endpoint_kwargs(config)
    record_exp = check_positive("record_exp", kwargs.pop("record_exp", None), config)
    key_prefix = kwargs.pop("key_prefix", None) or DEFAULT_REDIS_KEY_PREFIX
    cache_size = cache_size_option(kwargs.pop("cache_size", None), config, default=REDIS_SESSION_CACHE_SIZE)
    return RedisTrackerStore(
        domain,
        event_broker,
        getattr(config, "url", None) or "localhost",
        key_prefix=key_prefix,
        record_exp=record_exp,
        cache_size=cache_size,
        **kwargs,
    )


def create_tracker_store(
    endpoint_config: Any | None,
    domain: Optional["Domain"] = None,
    event_broker: Optional["EventBroker"] = None,
) -> TrackerStore:
    """The store named by ``tracker_store:`` in endpoints.yml (in-memory by default)."""
    kind = endpoint_type(endpoint_config)
    if kind is None:
        return InMemoryTrackerStore(domain, event_broker)
    cls = TRACKER_STORE_TYPES.get(kind.lower())
    if cls is InMemoryTrackerStore:
        return InMemoryTrackerStore(domain, event_broker)
    if cls is SQLTrackerStore:
        return _create_sql(endpoint_config, domain, event_broker)
    if cls is RedisTrackerStore:
        return _create_redis(endpoint_config, domain, event_broker)
    if "." not in kind:
        raise unknown_type_error("tracker store type", kind, sorted(TRACKER_STORE_TYPES), endpoint_config)
    custom = load_class(kind, "tracker store type", sorted(TRACKER_STORE_TYPES), endpoint_config)
    if hasattr(custom, "from_endpoint_config"):
        return custom.from_endpoint_config(endpoint_config, domain=domain, event_broker=event_broker)
    return custom(
        host=getattr(endpoint_config, "url", None),
        domain=domain,
        event_broker=event_broker,
        **endpoint_kwargs(endpoint_config),
    )


create_tracker_store_from_endpoint = create_tracker_store
