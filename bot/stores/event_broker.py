"""Event brokers: where tracker events go after they are saved.

The in-process broker (the default) calls subscribers inside this process; the Redis
Streams broker lets any number of worker processes consume the same events through
consumer groups, with redelivery of messages a crashed consumer never acknowledged.
Published bodies are Rasa's: the event's ``as_dict()`` plus ``sender_id``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any, Awaitable, Callable, Optional

from bot.shared.exceptions import StoreError
from bot.stores._common import (
    endpoint_kwargs,
    endpoint_type,
    load_class,
    redis_client,
    unknown_type_error,
)

logger = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[Any]]

DEFAULT_STREAM = "kefu:events"
DEFAULT_MAXLEN = 100_000
DEFAULT_CLAIM_IDLE_MS = 60_000
DEFAULT_MAX_DELIVERIES = 5


class EventBroker:
    """Base class: ``publish`` events, ``subscribe`` async handlers, ``close``."""

    async def publish(self, event: dict[str, Any], headers: Optional[dict[str, str]] = None) -> None:
        raise NotImplementedError

    def subscribe(self, handler: EventHandler) -> None:
        raise NotImplementedError

    def unsubscribe(self, handler: EventHandler) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections and stop background consumers."""

    def is_ready(self) -> bool:
        return True


async def _call_handler(handler: EventHandler, event: dict[str, Any]) -> bool:
    """Run one subscriber; a failure is logged and reported, never raised."""
    try:
        await handler(event)
        return True
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a broken subscriber must not break the others
        logger.exception(
            "Event subscriber %r failed on '%s' event of conversation '%s'.",
            handler,
            event.get("event"),
            event.get("sender_id"),
        )
        return False


class InProcessEventBroker(EventBroker):
    """Delivers each published event to every subscriber of this process, in order."""

    def __init__(self) -> None:
        self._subscribers: list[EventHandler] = []

    def subscribe(self, handler: EventHandler) -> None:
        if handler not in self._subscribers:
            self._subscribers.append(handler)

    def unsubscribe(self, handler: EventHandler) -> None:
        if handler in self._subscribers:
            self._subscribers.remove(handler)

    async def publish(self, event: dict[str, Any], headers: Optional[dict[str, str]] = None) -> None:
        for handler in list(self._subscribers):
            await _call_handler(handler, event)

    async def close(self) -> None:
        self._subscribers.clear()


class RedisStreamsEventBroker(EventBroker):
    """Redis Streams: ``XADD`` on publish, consumer groups on consume.

    Each message holds ``event`` (JSON) and ``headers`` (JSON). A handler that raises
    leaves its message pending; after ``claim_idle_ms`` any consumer of the group
    claims it (``XPENDING`` + ``XCLAIM``) and retries, up to ``max_deliveries`` times,
    then moves it to ``<stream>:dead`` so one poisoned event cannot block the group.
    """

    def __init__(
        self,
        url: str | None = "localhost",
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int | None = DEFAULT_MAXLEN,
        group: str = "kefu",
        client: Any = None,
        **redis_options: Any,
    ) -> None:
        self.stream = stream
        self.dead_letter_stream = f"{stream}:dead"
        self.maxlen = int(maxlen) if maxlen else None
        self.group = group
        self.redis = client if client is not None else redis_client(url, **redis_options)
        self._created_groups: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- publishing -------------------------------------------------------------
    async def publish(self, event: dict[str, Any], headers: Optional[dict[str, str]] = None) -> None:
        fields = {
            "event": json.dumps(event, ensure_ascii=False, default=str),
            "headers": json.dumps(headers or {}, ensure_ascii=False),
        }
        try:
            if self.maxlen:
                await self.redis.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            else:
                await self.redis.xadd(self.stream, fields)
        except Exception as e:  # redis.RedisError, OSError
            raise StoreError(
                f"Could not publish '{event.get('event')}' event to Redis stream "
                f"'{self.stream}': {e}. Fix: check the event_broker url in endpoints.yml "
                f"and that Redis is running."
            ) from e

    # --- consuming --------------------------------------------------------------
    async def ensure_group(self, group: str) -> None:
        """Create the consumer group (and the stream) if they do not exist yet."""
        if group in self._created_groups:
            return
        import redis.exceptions

        try:
            await self.redis.xgroup_create(self.stream, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise StoreError(
                    f"Could not create consumer group '{group}' on '{self.stream}': {e}."
                ) from e
        self._created_groups.add(group)

    async def _handle(
        self, group: str, message_id: str, fields: dict[str, str], handler: EventHandler
    ) -> bool:
        try:
            event = json.loads(fields.get("event", "{}"))
        except json.JSONDecodeError:
            logger.error("Dropping malformed message %s on stream '%s'.", message_id, self.stream)
            await self.redis.xack(self.stream, group, message_id)
            return False
        if await _call_handler(handler, event):
            await self.redis.xack(self.stream, group, message_id)
            return True
        return False

    async def _claim_stale(
        self, group: str, consumer: str, claim_idle_ms: int, max_deliveries: int, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Take over messages other (crashed) consumers left unacknowledged."""
        pending = await self.redis.xpending_range(
            self.stream, group, min="-", max="+", count=count, idle=claim_idle_ms
        )
        if not pending:
            return []
        retry_ids: list[str] = []
        for entry in pending:
            if entry["times_delivered"] >= max_deliveries:
                await self._dead_letter(group, entry["message_id"], entry["times_delivered"])
            else:
                retry_ids.append(entry["message_id"])
        if not retry_ids:
            return []
        claimed = await self.redis.xclaim(
            self.stream, group, consumer, min_idle_time=claim_idle_ms, message_ids=retry_ids
        )
        # Entries trimmed from the stream come back as (id, None): acknowledge and drop.
        result = []
        for message_id, fields in claimed:
            if fields is None:
                await self.redis.xack(self.stream, group, message_id)
            else:
                result.append((message_id, fields))
        return result

    async def _dead_letter(self, group: str, message_id: str, deliveries: int) -> None:
        entries = await self.redis.xrange(self.stream, min=message_id, max=message_id)
        if entries:
            fields = dict(entries[0][1])
            fields.update({"group": group, "original_id": message_id, "deliveries": str(deliveries)})
            await self.redis.xadd(self.dead_letter_stream, fields)
        await self.redis.xack(self.stream, group, message_id)
        logger.error(
            "Event %s on '%s' failed %d times in group '%s'; moved to '%s'.",
            message_id,
            self.stream,
            deliveries,
            group,
            self.dead_letter_stream,
        )

    async def process_batch(
        self,
        group: str,
        consumer: str,
        handler: EventHandler,
        *,
        count: int = 10,
        block_ms: int | None = None,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    ) -> int:
        """One round: claim stale pending messages, then read new ones.

        Returns the number of messages the handler processed successfully.
        """
        await self.ensure_group(group)
        handled = 0
        for message_id, fields in await self._claim_stale(
            group, consumer, claim_idle_ms, max_deliveries, count
        ):
            handled += await self._handle(group, message_id, fields, handler)
        response = await self.redis.xreadgroup(
            group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        for _stream, messages in response or []:
            for message_id, fields in messages:
                handled += await self._handle(group, message_id, fields, handler)
        return handled

    async def consume(
        self,
        group: str,
        consumer: str,
        handler: EventHandler,
        *,
        count: int = 10,
        block_ms: int = 1000,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Consume until cancelled or ``stop`` is set; connection errors back off and retry."""
        current = asyncio.current_task()
        while (stop is None or not stop.is_set()) and not self._closing:
            # redis-py may swallow a cancellation inside a blocking read; honour it here.
            if current is not None and current.cancelling():
                raise asyncio.CancelledError()
            try:
                await self.process_batch(
                    group,
                    consumer,
                    handler,
                    count=count,
                    block_ms=block_ms,
                    claim_idle_ms=claim_idle_ms,
                    max_deliveries=max_deliveries,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the consumer alive through outages
                if self._closing or (current is not None and current.cancelling()):
                    raise asyncio.CancelledError() from None
                logger.exception("Consumer '%s/%s' on '%s' failed; retrying.", group, consumer, self.stream)
                self._created_groups.discard(group)
                await asyncio.sleep(1.0)

    def subscribe(self, handler: EventHandler, group: str | None = None, consumer: str | None = None) -> None:
        """Consume in a background task of the running loop (stopped by ``close``)."""
        consumer_name = consumer or f"{socket.gethostname()}-{os.getpid()}-{len(self._tasks)}"
        task = asyncio.get_running_loop().create_task(
            self.consume(group or self.group, consumer_name, handler)
        )
        task.handler = handler  # type: ignore[attr-defined]
        self._tasks.append(task)

    def unsubscribe(self, handler: EventHandler) -> None:
        for task in list(self._tasks):
            if getattr(task, "handler", None) == handler:  # == : bound methods are new objects each time
                task.cancel()
                self._tasks.remove(task)

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        await self.redis.aclose()


BROKER_TYPES: dict[str, type[EventBroker]] = {
    "in_process": InProcessEventBroker,
    "inprocess": InProcessEventBroker,
    "in_memory": InProcessEventBroker,
    "memory": InProcessEventBroker,
    "redis": RedisStreamsEventBroker,
    "redis_streams": RedisStreamsEventBroker,
}


def create_event_broker(endpoint_config: Any | None) -> EventBroker:
    """The broker named by ``event_broker:`` in endpoints.yml (in-process by default)."""
    kind = endpoint_type(endpoint_config)
    if kind is None:
        return InProcessEventBroker()
    cls = BROKER_TYPES.get(kind.lower())
    if cls is InProcessEventBroker:
        return InProcessEventBroker()
    kwargs = endpoint_kwargs(endpoint_config)
    url = getattr(endpoint_config, "url", None)
    if cls is RedisStreamsEventBroker:
        return RedisStreamsEventBroker(url or "localhost", **kwargs)
    if "." not in kind:
        raise unknown_type_error("event broker type", kind, sorted(BROKER_TYPES), endpoint_config)
    custom = load_class(kind, "event broker type", sorted(BROKER_TYPES), endpoint_config)
    if hasattr(custom, "from_endpoint_config"):
        return custom.from_endpoint_config(endpoint_config)
    return custom(url, **kwargs)


create_event_broker_from_endpoint = create_event_broker
