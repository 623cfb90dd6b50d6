"""The trigger engine: events in, journey instances, scheduled steps, guarded sends.

``process(event)`` is idempotent (instance ids derive from the entry event id, exits and
conversions are keyed), so at-least-once delivery from the broker is safe. ``run_due``
claims due jobs from the queue and dispatches each through the guards; a crash anywhere
leaves the job's lease to expire, and the retry finds the send reservation by its id.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from bot.triggers.clock import Clock, SystemClock
from bot.triggers.events import BehaviourEvent, EventRejected, from_broker_message
from bot.triggers.guards import HOLD, SKIP, Verdict, consent, expiry, handoff, quiet_hours
from bot.triggers.journeys import Journey, TriggerConfig, assign_variant, matches
from bot.triggers.queue import Job, JobQueue
from bot.triggers.senders import Outgoing, Sender
from bot.triggers.store import Instance, SQLTriggerStore

logger = logging.getLogger(__name__)

HandoffCheck = Callable[[str], Awaitable[bool]]
SEND_RETRY_S = 60.0
MAX_SEND_ATTEMPTS = 5


def tracker_handoff_check(tracker_store: Any) -> HandoffCheck:
    """A handoff is open while the conversation is paused (``ConversationPaused``)."""

    async def is_open(sender_id: str) -> bool:
        tracker = await tracker_store.retrieve(sender_id)
        return bool(tracker is not None and tracker.is_paused())

    return is_open


async def _never(sender_id: str) -> bool:
    return False


@dataclass(frozen=True)
class DispatchResult:
    job_id: str
    outcome: str  # sent, skip, hold, retry, gone
    reason: str = ""


def resolve_slots(mapping: dict[str, str], entry: dict[str, Any]) -> dict[str, Any]:
    """Slot values from the entry event: ``properties.sku``, ``profile.name`` or a bare property."""
    values: dict[str, Any] = {}
    for slot, path in mapping.items():
        current: Any = entry
        parts = path.split(".")
        if parts[0] not in entry:
            current = entry.get("properties") or {}
        for part in parts:
            if isinstance(current, dict) and part in current:
                current = current[part]
            else:
                current = None
                break
        values[slot] = current
    return values


class TriggerEngine:
    def __init__(
        self,
        config: TriggerConfig,
        store: SQLTriggerStore,
        queue: JobQueue,
        sender: Sender,
        clock: Clock | None = None,
        is_handoff_open: HandoffCheck | None = None,
        broker: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.sender = sender
        self.clock = clock or SystemClock()
        self.is_handoff_open = is_handoff_open or _never
        self.broker = broker
        self.settings = config.settings

    # ------------------------------------------------------------------ events in
    async def submit(self, events: list[BehaviourEvent]) -> int:
        """Store a validated batch (all or nothing), then publish/process each event.

        Raises :class:`EventRejected` (409) naming the ids that were seen before.
        """
        duplicates = await self.store.add_events(events)
        if duplicates:
            raise EventRejected(409, "duplicate_event_id",
                                f"Event id(s) already received: {', '.join(duplicates[:10])}. Nothing was stored. "
                                "Fix: resend only new events (ids are idempotency keys).")
        for event in events:
            if self.broker is not None:
                await self.broker.publish(event.as_broker_message())
            else:
                await self.process(event)
        return len(events)

    def attach(self, broker: Any, group: str = "kefu-triggers") -> None:
        """Consume behaviour, shop-outbox and tracker events from the event broker.

        On Redis Streams the engine reads in its own consumer group, so other consumers
        of the stream still see every event.
        """
        import inspect

        self.broker = broker
        if "group" in inspect.signature(broker.subscribe).parameters:
            broker.subscribe(self.handle_broker_message, group=group)
        else:
            broker.subscribe(self.handle_broker_message)

    async def handle_broker_message(self, body: dict[str, Any]) -> None:
        event = from_broker_message(body)
        if event is None:
            return
        if not body.get("kefu_behaviour"):  # POST /events stored it already
            await self.store.add_event(event)
        await self.process(event)

    async def opt_out(self, customer_id: str, reason: str = "opted_out") -> None:
        now = self.clock.now()
        await self.store.update_profile(customer_id, {"opted_out_reason": reason}, now, opted_out=True)
        for instance in await self.store.instances_for(customer_id, status="active"):
            journey = self.config.journey(instance.journey)
            if journey is not None:
                await self._exit(instance, journey, "opted_out", now)

    async def process(self, event: BehaviourEvent) -> None:
        now = self.clock.now()
        opted: bool | None = None
        if event.type in ("unsubscribed", "opted_out"):
            opted = True
        elif event.type == "subscribed":
            opted = False
        profile = await self.store.update_profile(event.customer_id, event.profile, now, opted_out=opted)
        if opted:
            await self.opt_out(event.customer_id, event.type)
        await self._exits(event, now)
        await self._conversions(event)
        for journey in self.config.journeys:
            if journey.enabled and event.type in journey.entry.events:
                await self._maybe_enter(journey, event, profile, now)

    async def _exits(self, event: BehaviourEvent, now: float) -> None:
        for instance in await self.store.instances_for(event.customer_id, status="active"):
            journey = self.config.journey(instance.journey)
            if journey is None:
                continue
            for condition in journey.exits:
                if event.type not in condition.events or not matches(condition.properties, event.properties):
                    continue
                entry_props = instance.entry.get("properties") or {}
                if all(entry_props.get(k) == event.properties.get(k) for k in condition.match):
                    await self._exit(instance, journey, f"exit:{event.type}", now)
                    break

    async def _exit(self, instance: Instance, journey: Journey, reason: str, now: float) -> None:
        if not await self.store.close_instance(instance.id, "exited", reason):
            return
        await self.queue.cancel([f"{instance.id}:{i}" for i in range(len(journey.steps))])
        await self.store.record_decision(send_id=instance.id, customer_id=instance.customer_id, journey=journey.name,
                                         step="-", variant="-", kind="exit", reason=reason, at=now)

    async def _conversions(self, event: BehaviourEvent) -> None:
        windows = {j.name: j.conversion_window for j in self.config.journeys if j.conversion_event == event.type}
        if not windows:
            return
        since = event.timestamp - max(windows.values())
        for send in await self.store.sends_for(event.customer_id, since=since):
            window = windows.get(send.journey)
            if window is not None and send.sent_at is not None and 0 <= event.timestamp - send.sent_at <= window:
                await self.store.record_conversion(send, event.id, event.timestamp)

    async def _maybe_enter(self, journey: Journey, event: BehaviourEvent, profile: dict[str, Any], now: float) -> None:
        if not matches(journey.entry.properties, event.properties) or not matches(journey.entry.profile, profile):
            return
        instance_id = f"{journey.name}:{event.customer_id}:{event.id}"
        previous = await self.store.instances_for(event.customer_id, journey.name)
        previous = [p for p in previous if p.id != instance_id]
        active = [p for p in previous if p.status == "active"]
        if journey.reentry == "never" and previous:
            return
        if journey.reentry == "after" and previous and event.timestamp - previous[-1].entered_at < journey.reentry_after:
            return
        if journey.reentry == "after_exit" and active:
            return
        for old in active:  # "always" (and "after" once the wait is over) restart the journey
            await self._exit(old, journey, "reentered", now)
        variants = {step.name: assign_variant(step, journey.name, event.customer_id).name for step in journey.steps}
        instance = Instance(instance_id, event.customer_id, journey.name, event.timestamp,
                            event.sender_id or event.customer_id, event.as_dict(), variants)
        if not await self.store.create_instance(instance):
            return  # the same event processed twice
        tz = self.settings.tz(profile.get("timezone"))
        due = journey.steps[0].delay.due(event.timestamp, tz)
        await self._enqueue_step(instance, 0, due)
        logger.debug("Customer %s entered journey %s (due %.0f).", event.customer_id, journey.name, due)

    async def _enqueue_step(self, instance: Instance, index: int, due: float) -> None:
        await self.queue.enqueue(Job(f"{instance.id}:{index}", due, {
            "instance": instance.id, "journey": instance.journey, "step": index,
            "customer": instance.customer_id, "first_due": due}))

    # ------------------------------------------------------------------ dispatch
    async def run_due(self, limit: int = 100) -> list[DispatchResult]:
        """Claim and dispatch up to ``limit`` due jobs; returns what happened to each."""
        now = self.clock.now()
        jobs = await self.queue.claim(now, limit, self.settings.lease)
        results = []
        for job in jobs:
            results.append(await self.dispatch(job))
        return results

    async def drain(self, limit: int = 100) -> list[DispatchResult]:
        """Run until nothing is due at the current clock time (tests, simulate)."""
        results: list[DispatchResult] = []
        while True:
            batch = await self.run_due(limit)
            if not batch:
                return results
            results.extend(batch)

    async def run_forever(self, stop: asyncio.Event, batch: int = 100, idle_sleep: float = 0.2) -> None:
        """A scheduler worker: any number may run against the same queue and store."""
        while not stop.is_set():
            try:
                done = await self.run_due(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the worker alive through outages
                logger.exception("Trigger scheduler round failed; retrying.")
                done = []
            if not done:
                try:
                    await asyncio.wait_for(stop.wait(), idle_sleep)
                except asyncio.TimeoutError:
                    pass

    async def _record(self, job: Job, instance: Instance, step: str, variant: str, verdict: Verdict, now: float) -> None:
        await self.store.record_decision(send_id=job.id, customer_id=instance.customer_id, journey=instance.journey,
                                         step=step, variant=variant, kind=verdict.kind, reason=verdict.reason,
                                         at=now, until=verdict.until)

    async def _next(self, job: Job, instance: Instance, journey: Journey, index: int, profile: dict[str, Any],
                    completed: bool = False) -> None:
        if index + 1 < len(journey.steps):
            tz = self.settings.tz(profile.get("timezone"))
            base = float(job.data.get("first_due", job.due))
            await self._enqueue_step(instance, index + 1, journey.steps[index + 1].delay.due(base, tz))
        elif not completed:
            await self.store.close_instance(instance.id, "completed", "last_step")

    async def dispatch(self, job: Job) -> DispatchResult:
        now = self.clock.now()
        journey = self.config.journey(str(job.data.get("journey")))
        instance, profile, send_status = await self.store.dispatch_snapshot(
            str(job.data.get("instance")), str(job.data.get("customer")), job.id)
        if journey is None or instance is None or instance.status != "active":
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "gone", "journey_removed" if journey is None else "instance_closed")
        index = int(job.data.get("step", 0))
        if index >= len(journey.steps):
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "gone", "step_removed")
        step = journey.steps[index]
        variant = step.variant(instance.variants.get(step.name, "")) or assign_variant(step, journey.name, instance.customer_id)
        if send_status == "sent":  # crashed after sending, before the ack
            await self._next(job, instance, journey, index, profile)
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "sent", "already_sent")
        outgoing = Outgoing(job.id, instance.customer_id, instance.sender_id, journey.name, step.name, variant.name,
                            variant.message, resolve_slots(variant.message.slots, instance.entry),
                            journey.transactional, profile)
        verdict = await self._guards(job, journey, step, instance, outgoing, profile, now)
        if verdict.kind == SKIP:
            await self._record(job, instance, step.name, variant.name, verdict, now)
            if verdict.reason in ("opted_out", "no_consent"):
                await self.store.close_instance(instance.id, "exited", verdict.reason)
            else:
                await self._next(job, instance, journey, index, profile)
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "skip", verdict.reason)
        if verdict.kind == HOLD:
            until = verdict.until if verdict.until and verdict.until > now else now + SEND_RETRY_S
            verdict = Verdict.hold(verdict.reason, until)
            await self._record(job, instance, step.name, variant.name, verdict, now)
            data = dict(job.data)
            data.setdefault("held_since", now)
            await self.queue.reschedule(Job(job.id, until, data))
            return DispatchResult(job.id, "hold", verdict.reason)
        status = await self.store.reserve_send(
            send_id=job.id, customer_id=instance.customer_id, journey=journey.name, step=step.name,
            variant=variant.name, message=variant.message.name, transactional=journey.transactional, at=now,
            per_day=self.settings.per_day, per_week=self.settings.per_week)
        if status.startswith("frequency_cap"):
            skip = Verdict.skip(status)
            await self._record(job, instance, step.name, variant.name, skip, now)
            await self._next(job, instance, journey, index, profile)
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "skip", status)
        if status != "sent":
            try:
                path = await self.sender.send(outgoing)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed send is retried, then recorded
                return await self._send_failed(job, instance, step.name, variant.name, e, now)
            last = index + 1 >= len(journey.steps)
            await self.store.mark_sent(job.id, now, path, complete_instance=instance.id if last else None)
        await self._next(job, instance, journey, index, profile, completed=status != "sent")
        await self.queue.ack(job.id)
        return DispatchResult(job.id, "sent")

    async def _send_failed(self, job: Job, instance: Instance, step: str, variant: str, error: Exception,
                           now: float) -> DispatchResult:
        attempts = int(job.data.get("attempts", 0)) + 1
        logger.warning("Trigger send %s failed (attempt %d): %s", job.id, attempts, error)
        if attempts >= MAX_SEND_ATTEMPTS:
            await self.store.release_send(job.id)
            await self._record(job, instance, step, variant, Verdict.skip("send_failed"), now)
            await self.queue.ack(job.id)
            return DispatchResult(job.id, "skip", "send_failed")
        await self.queue.reschedule(Job(job.id, now + SEND_RETRY_S * 2 ** (attempts - 1), {**job.data, "attempts": attempts}))
        return DispatchResult(job.id, "retry", type(error).__name__)

    async def _guards(self, job: Job, journey: Journey, step: Any, instance: Instance, outgoing: Outgoing,
                      profile: dict[str, Any], now: float) -> Verdict:
        tz = self.settings.tz(profile.get("timezone"))
        checks = (
            lambda: consent(profile),
            lambda: expiry(now, float(job.data.get("first_due", job.due)), step.expires, job.data.get("held_since"), self.settings),
        )
        for check in checks:
            verdict = check()
            if verdict is not None:
                return verdict
        verdict = handoff(await self.is_handoff_open(instance.sender_id), now, self.settings)
        if verdict is not None:
            return verdict
        verdict = quiet_hours(now, tz, self.settings)
        if verdict is not None:
            return verdict
        verdict = await self.sender.check(outgoing)
        if verdict is not None:
            return verdict
        return Verdict.send()
