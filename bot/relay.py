"""The outbox relay: the project's behaviour events (an :class:`~bot.ports.OutboxPort`) onto the event broker.

The demo shop's actions write state changes (order cancelled, return requested,
recommendation shown) to an outbox table in the rasa_sdk process; the server
relays them to kefu's event broker, where the trigger engine and analytics read
them. The relay knows nothing of the shop: endpoints.yml `ports: outbox` names
the class that reads the outbox.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.ports import OutboxPort, load_configured_port

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX_INTERVAL_S = 2.0
MAX_OUTBOX_BACKOFF_S = 60.0
DEFAULT_BATCH = 100


async def forward_outbox(broker: Any, port: OutboxPort, *, batch: int = DEFAULT_BATCH) -> int:
    """Publish unpublished outbox events to `broker` (bot/stores/event_broker.py), then mark them.

    At-least-once: an event is marked only after `broker.publish` returned, so a
    crash in between republishes it (consumers dedupe on `outbox_id`).
    """
    sent = 0
    while True:
        events = await port.pending(batch)
        if not events:
            return sent
        for event in events:
            await broker.publish(event)
        await port.mark_published([e["outbox_id"] for e in events])
        sent += len(events)


class OutboxRelay:
    """Relays the outbox to the event broker every `interval` seconds, in the server's loop.

    Errors (database locked or missing, broker down) are logged and retried with
    a doubling back-off up to a minute; nothing escapes into the worker. Several
    workers may relay the same outbox: delivery is at-least-once either way and
    consumers dedupe on `outbox_id`.

    Run it either with :meth:`start` / :meth:`stop` or as a background task
    ``await relay.run(stop_event)`` followed by :meth:`close`.
    """

    def __init__(self, broker: Any, port: OutboxPort, *, interval: float = DEFAULT_OUTBOX_INTERVAL_S) -> None:
        self.broker = broker
        self.port = port
        self.interval = interval
        self.forwarded = 0
        self.failures = 0
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name="kefu-shop-outbox")

    async def relay_once(self) -> int:
        sent = await forward_outbox(self.broker, self.port)
        if sent:
            logger.debug("Forwarded %d shop event(s) to the event broker.", sent)
        self.forwarded += sent
        return sent

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until :meth:`stop` is called or ``stop`` is set."""
        stop = stop or self._stop
        delay = self.interval
        while not stop.is_set():
            try:
                await self.relay_once()
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the relay must never take the worker down
                self.failures += 1
                delay = min(max(delay, self.interval) * 2, MAX_OUTBOX_BACKOFF_S)
                logger.warning("Shop outbox relay failed (%s: %s); retrying in %.1fs.", type(e).__name__, e, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def stop(self) -> None:
        """Stop after the current relay (if any) and close the port."""
        self._stop.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, timeout=10)
            except (TimeoutError, asyncio.TimeoutError):
                self.task.cancel()
                logger.warning("Shop outbox relay did not stop within 10s; cancelled.")
            except Exception:  # noqa: BLE001 - run() logs its own errors
                logger.exception("Shop outbox relay ended with an error")
        await self.close()

    async def close(self) -> None:
        """Close the port (once)."""
        if not self._closed:
            self._closed = True
            await self.port.close()


def create_outbox_relay(broker: Any, port: OutboxPort | None) -> OutboxRelay | None:
    """The relay for ``port``, or None without a broker, without a port, or when the port turns it off.

    The port's ``interval`` (seconds) sets the pace: None is the default
    (:data:`DEFAULT_OUTBOX_INTERVAL_S`), 0 or less means no relay.
    """
    if broker is None or port is None:
        return None
    interval = port.interval if port.interval is not None else DEFAULT_OUTBOX_INTERVAL_S
    if interval <= 0:
        return None
    return OutboxRelay(broker, port, interval=interval)


def outbox_relay_for_project(broker: Any, settings: Any) -> OutboxRelay | None:
    """The relay the project's endpoints.yml `ports: outbox` asks for (bot.feature.ProjectSettings), or None."""
    if broker is None:
        return None
    return create_outbox_relay(broker, load_configured_port(settings, "outbox"))
