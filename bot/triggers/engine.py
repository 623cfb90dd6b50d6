"""The trigger engine: events in, journey instances, scheduled steps, guarded sends.

``process(event)`` is idempotent (instance ids derive from the entry event id, exits and
conversions are keyed), so at-least-once delivery from the broker is safe. ``run_due``
claims due jobs from the queue and dispatches each through the guards; a crash anywhere
leaves the job's lease to expire, and the retry finds the send reservation by its id.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

from bot.triggers.clock import Clock, SystemClock
from bot.triggers.events import BehaviourEvent, EventRejected, from_broker_message
from bot.triggers.guards import HOLD, SKIP, QuietWindows, Verdict, consent, expiry, handoff
from bot.triggers.journeys import Journey, Step, TriggerConfig, Variant, assign_variant, matches
from bot.triggers.queue import Job, JobQueue
from bot.triggers.senders import Outgoing, Sender
from bot.triggers.store import BatchWrites, Instance, Reservation, SentMark, Snapshot, SQLTriggerStore, decision
from bot.triggers.trust import CHAT, OPT_IN_TYPES, OPT_OUT_TYPES, STICKY_OPT_OUTS, consent_change, screen

logger = logging.getLogger(__name__)

HandoffCheck = Callable[[str], Awaitable[bool]]
SEND_RETRY_S = 60.0
MAX_SEND_ATTEMPTS = 5
SEND_TIMEOUT_S = 30.0
STOPS_TTL_S = 1.0
IN_FLIGHT_MODES = ("reroute", "send")


_SEND = Verdict.send()


class SwitchRejected(EventRejected):
    """A journey/variant switch the caller must fix (unknown name, last running variant)."""


async def _many(queue: Any, op: str, items: list[Any]) -> None:
    """``queue.<op>_many(items)`` when the queue has it, else one call per item."""
    bulk = getattr(queue, f"{op}_many", None)
    if bulk is not None:
        await bulk(items)
        return
    single = getattr(queue, op)
    for item in items:
        await single(item)


@dataclass
class _Plan:
    """A batch's pending writes (accumulated, then flushed once)."""

    writes: BatchWrites = field(default_factory=BatchWrites)
    enqueues: list[Job] = field(default_factory=list)
    reschedules: list[Job] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    pos: int
    job: Job
    instance: Instance
    journey: Journey
    index: int
    step: Step
    variant: Variant
    outgoing: Outgoing
    profile: dict[str, Any]


def tracker_handoff_check(tracker_store: Any) -> HandoffCheck:
    """A handoff is open while the conversation is paused (``ConversationPaused``)."""

    async def is_open(sender_id: str) -> bool:
        tracker = await tracker_store.retrieve(sender_id)
        return bool(tracker is not None and tracker.is_paused())

    return is_open


async def _never(sender_id: str) -> bool:
    return False


@dataclass(frozen=True)
class Accepted:
    """What became of one submitted event: the per-event part of the ``POST /events`` answer.

    ``ignored_fields``: what the producer may not set (``profile.channel``, ``sender_id``,
    ``consent``...; see :mod:`bot.triggers.trust`). ``too_old``: older than
    ``max_event_age``; ``not_started``: journeys it would enter but is too old for.
    """

    id: str
    ignored_fields: tuple[str, ...] = ()
    age: float = 0.0
    too_old: bool = False
    not_started: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "age_s": round(self.age, 3), "too_old": self.too_old}
        if self.ignored_fields:
            out["ignored_fields"] = list(self.ignored_fields)
        if self.not_started:
            out["not_started"] = list(self.not_started)
        return out


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
        send_concurrency: int = 8,
        send_timeout: float = SEND_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.sender = sender
        self.clock = clock or SystemClock()
        self.is_handoff_open = is_handoff_open or _never
        self.broker = broker
        self.settings = config.settings
        self.send_concurrency = send_concurrency
        self.send_timeout = send_timeout
        self._stops: dict[tuple[str, str, str], dict[str, Any]] | None = None
        self._stops_read_at = 0.0
        self._journeys: dict[str, Journey] = {}
        self._journeys_of: TriggerConfig | None = None
        self._tzs: dict[str | None, Any] = {}
        self._quiet = QuietWindows(self.settings)
        self._effective: dict[tuple[str, str, int], tuple[Step, Step]] = {}
        self._effective_of: Any = None
        # Customer 360 (optional): tags/segments and health for entry filters under `profile: customer.*`
        self.customer_context: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
        # ... and each batch's outcomes (sends, skips) for its timeline, after they are stored
        self.outcome_listener: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None

    def _journey(self, name: str) -> Journey | None:
        """``config.journey`` by dict (rebuilt if ``config`` is replaced), not a scan per job."""
        if self._journeys_of is not self.config:
            self._journeys = {j.name: j for j in self.config.journeys}
            self._journeys_of = self.config
        return self._journeys.get(name)

    def _tz(self, name: str | None) -> Any:
        """The customer's zone, resolved once per name (``settings.tz`` per job was a hot spot)."""
        tz = self._tzs.get(name)
        if tz is None:
            tz = self._tzs[name] = self.settings.tz(name)
        return tz

    # ------------------------------------------------------------------ events in
    def contact_fields(self) -> tuple[str, ...]:
        """Profile fields holding a channel's own recipient id (the sender's channels declare them)."""
        fields = getattr(self.sender, "contact_fields", None)
        return tuple(fields()) if fields is not None else ()

    def max_age(self, journey: Journey | None = None) -> float:
        if journey is not None and journey.max_event_age is not None:
            return journey.max_event_age
        return self.settings.max_event_age

    def too_old_for(self, event: BehaviourEvent, now: float) -> tuple[str, ...]:
        """Journeys this event's type enters that it is too old to start."""
        age = now - event.timestamp
        return tuple(j.name for j in self.config.journeys
                     if j.enabled and event.type in j.entry.events and age > self.max_age(j))

    async def submit(self, events: list[BehaviourEvent], *, trusted: bool = False) -> list[Accepted]:
        """Store a validated batch (all or nothing), then publish/process each event.

        ``trusted``: the producer may set channel, recipient ids, conversation, time zone and
        consent (``events:trusted``); otherwise those are dropped before anything is stored
        and listed in each :class:`Accepted`. Raises :class:`EventRejected` (409) naming the
        ids that were seen before.
        """
        now = self.clock.now()
        contact = self.contact_fields()
        screened = [screen(e, trusted, contact) for e in events]
        clean = [s.event for s in screened]
        duplicates = await self.store.add_events(clean)
        if duplicates:
            raise EventRejected(409, "duplicate_event_id",
                                f"Event id(s) already received: {', '.join(duplicates[:10])}. Nothing was stored. "
                                "Fix: resend only new events (ids are idempotency keys).")
        for s in screened:
            if s.ignored:
                logger.info("Event %s (%s) from a producer without events:trusted: ignored %s.",
                            s.event.id, s.event.type, ", ".join(s.ignored))
        for event in clean:
            if self.broker is not None:
                await self.broker.publish(event.as_broker_message(trusted=trusted))
            else:
                await self.process(event, trusted=trusted)
        max_age = self.max_age()
        return [Accepted(s.event.id, s.ignored, max(0.0, now - s.event.timestamp), now - s.event.timestamp > max_age,
                         self.too_old_for(s.event, now)) for s in screened]

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

    def detach(self) -> None:
        """Stop consuming the broker's events (the server stops this engine)."""
        if self.broker is not None:
            self.broker.unsubscribe(self.handle_broker_message)

    async def handle_broker_message(self, body: dict[str, Any]) -> None:
        """One broker body. Trust: ``POST /events`` bodies (``kefu_behaviour``) carry the
        caller's trust in ``kefu_trusted``, set by :meth:`submit`; without it they are
        untrusted. Everything else on the broker is trusted: the shop outbox relay
        (``bot/relay.py``) reads the shop's own database through the ``ports: outbox`` port
        that the operator configured in endpoints.yml, and tracker events are kefu's own.
        """
        event = from_broker_message(body)
        if event is None:
            return
        trusted = not body.get("kefu_behaviour") or body.get("kefu_trusted") is True
        if not body.get("kefu_behaviour"):  # POST /events stored it already
            await self.store.add_event(event)
        await self.process(event, trusted=trusted)

    async def _consent_decision(self, customer_id: str, event_id: str, reason: str, now: float) -> None:
        """Why consent changed or did not (``opted_out:chat``, ``refused:opted_out_by_chat``)."""
        await self.store.record_decision(send_id=event_id, customer_id=customer_id, journey="-", step="consent",
                                         variant="-", kind="consent", reason=reason, at=now)

    async def opt_out(self, customer_id: str, reason: str = "opted_out", source_id: str | None = None) -> None:
        """Opt a customer out; ``reason`` ``chat`` (the shopper) or ``admin`` makes it sticky:
        only the shopper reverses it (:meth:`opt_in`), no event does."""
        now = self.clock.now()
        current = await self.store.get_profile(customer_id)
        kept = str(current.get("opted_out_reason") or "")
        if current.get("opted_out") and kept in STICKY_OPT_OUTS and reason not in STICKY_OPT_OUTS:
            reason = kept  # a later event's opt-out must not turn a sticky one into a reversible one
        await self.store.update_profile(customer_id, {"opted_out_reason": reason, "opted_out_at": now}, now,
                                        opted_out=True)
        await self._consent_decision(customer_id, source_id or f"{reason}:{now}", f"opted_out:{reason}", now)
        for instance in await self.store.instances_for(customer_id, status="active"):
            journey = self._journey(instance.journey)
            if journey is not None:
                await self._exit(instance, journey, "opted_out", now)

    async def opt_in(self, customer_id: str, reason: str = CHAT, source_id: str | None = None) -> None:
        """Reverse an opt-out: the shopper in chat (``reason="chat"``), or a trusted event that
        :func:`~bot.triggers.trust.consent_change` allowed."""
        now = self.clock.now()
        await self.store.update_profile(customer_id, {"opted_out_reason": None, "opted_out_at": None}, now,
                                        opted_out=False)
        await self._consent_decision(customer_id, source_id or f"{reason}:{now}", f"opted_in:{reason}", now)

    def is_too_old(self, event: BehaviourEvent, journey: Journey, now: float) -> bool:
        return now - event.timestamp > self.max_age(journey)

    async def process(self, event: BehaviourEvent, *, trusted: bool = False) -> None:
        """Apply one event: profile, consent, exits, conversions, journey entries.

        ``trusted`` as in :meth:`submit` (screening again is a no-op for screened events).
        """
        now = self.clock.now()
        event = screen(event, trusted, self.contact_fields()).event
        change = None
        if event.type in OPT_IN_TYPES | OPT_OUT_TYPES:
            change = consent_change(event.type, trusted, await self.store.get_profile(event.customer_id))
            if change.refused:
                logger.info("Consent change by event %s (%s) for customer %s refused: %s.",
                            event.id, event.type, event.customer_id, change.refused)
                await self._consent_decision(event.customer_id, event.id, f"refused:{change.refused}", now)
        profile = await self.store.update_profile(event.customer_id, event.profile, now)
        if change is not None and change.opted_out is True:
            await self.opt_out(event.customer_id, event.type, source_id=event.id)
            profile = await self.store.get_profile(event.customer_id)
        elif change is not None and change.opted_out is False:
            await self.opt_in(event.customer_id, event.type, source_id=event.id)
            profile = await self.store.get_profile(event.customer_id)
        await self._exits(event, now)
        await self._conversions(event)
        if self.customer_context is not None:
            customer = await self.customer_context(event.customer_id)
            if customer:
                profile = {**profile, "customer": customer}
        for journey in self.config.journeys:
            if journey.enabled and event.type in journey.entry.events:
                if self.is_too_old(event, journey, now):
                    logger.info("Event %s (%s) is %.0f s old, over max_event_age %.0f s: journey %s not started.",
                                event.id, event.type, now - event.timestamp, self.max_age(journey), journey.name)
                    continue
                await self._maybe_enter(journey, event, profile, now)

    async def _exits(self, event: BehaviourEvent, now: float) -> None:
        for instance in await self.store.instances_for(event.customer_id, status="active"):
            journey = self._journey(instance.journey)
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
        await self.stops()
        variants = {step.name: assign_variant(self.effective_step(journey.name, step), journey.name, event.customer_id).name
                    for step in journey.steps}
        instance = Instance(instance_id, event.customer_id, journey.name, event.timestamp,
                            event.sender_id or event.customer_id, event.as_dict(), variants)
        if not await self.store.create_instance(instance):
            return  # the same event processed twice
        tz = self._tz(profile.get("timezone"))
        due = journey.steps[0].delay.due(event.timestamp, tz)
        await self._enqueue_step(instance, 0, due)
        logger.debug("Customer %s entered journey %s (due %.0f).", event.customer_id, journey.name, due)

    @staticmethod
    def _step_job(instance: Instance, index: int, due: float) -> Job:
        return Job(f"{instance.id}:{index}", due, {
            "instance": instance.id, "journey": instance.journey, "step": index,
            "customer": instance.customer_id, "first_due": due})

    async def _enqueue_step(self, instance: Instance, index: int, due: float) -> None:
        await self.queue.enqueue(self._step_job(instance, index, due))

    # ------------------------------------------------------------------ variant switches
    async def stops(self, refresh: bool = False) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Variants stopped at run time (API/CLI), cached for ``STOPS_TTL_S`` so every worker
        sees a stop within that long without a store read per job."""
        if refresh or self._stops is None or time.monotonic() - self._stops_read_at > STOPS_TTL_S:
            self._stops = await self.store.stopped_variants()
            self._stops_read_at = time.monotonic()
        return self._stops

    def effective_step(self, journey: str, step: Step) -> Step:
        """The step with run-time stops applied (what new assignments choose from); memoised
        per stops read, since a batch asks for the same few steps thousands of times."""
        stops = self._stops or {}
        if self._effective_of is not stops:
            self._effective, self._effective_of = {}, stops
        key = (journey, step.name, id(step))
        found = self._effective.get(key)
        if found is not None and found[0] is step:
            return found[1]
        stopped = {v for (j, s, v) in stops if j == journey and s == step.name}
        result = step if not stopped else replace(
            step, variants=tuple(replace(v, stopped=True) if v.name in stopped else v for v in step.variants))
        self._effective[key] = (step, result)
        return result

    def _locate(self, journey_name: str, step_name: str, variant_name: str | None = None) -> tuple[Journey, Step]:
        journey = self.config.journey(journey_name)
        if journey is None:
            raise SwitchRejected(404, "unknown_journey", f"No journey '{journey_name}' in {self.config.filename}. "
                                 f"Fix: use one of: {', '.join(j.name for j in self.config.journeys)}.")
        step = next((s for s in journey.steps if s.name == step_name), None)
        if step is None:
            raise SwitchRejected(404, "unknown_step", f"Journey '{journey_name}' has no step '{step_name}'. "
                                 f"Fix: use one of: {', '.join(s.name for s in journey.steps)}.")
        if variant_name is not None and step.variant(variant_name) is None:
            raise SwitchRejected(404, "unknown_variant", f"Step '{journey_name}/{step_name}' has no variant "
                                 f"'{variant_name}'. Fix: use one of: {', '.join(v.name for v in step.variants)}.")
        return journey, step

    async def stop_variant(self, journey_name: str, step_name: str, variant_name: str, reason: str = "",
                           in_flight: str = "reroute") -> dict[str, Any]:
        """Stop a variant for good (persisted in the store, so it survives restarts).

        New entries are assigned among the remaining running variants (the same
        deterministic weighted hash, over fewer variants). Sends already queued for the
        stopped variant are, with ``in_flight="reroute"`` (default), sent with the
        customer's re-assigned variant when they come due, and a ``reroute`` decision is
        recorded; with ``"send"`` they go out as assigned. Reserved sends (a retry after a
        crash) always keep their variant. Raises :class:`SwitchRejected` (404/409/400).
        """
        if in_flight not in IN_FLIGHT_MODES:
            raise SwitchRejected(400, "invalid_in_flight", f"'in_flight' must be one of {', '.join(IN_FLIGHT_MODES)}, "
                                 f"got {in_flight!r}.")
        journey, step = self._locate(journey_name, step_name, variant_name)
        stops = await self.stops(refresh=True)
        if (journey.name, step.name, variant_name) in stops or step.variant(variant_name).stopped:  # type: ignore[union-attr]
            return {"journey": journey.name, "step": step.name, "variant": variant_name, "stopped": True,
                    "already_stopped": True, "running": [v.name for v in self.effective_step(journey.name, step).active_variants()]}
        running = [v.name for v in self.effective_step(journey.name, step).active_variants() if v.name != variant_name]
        if not running:
            raise SwitchRejected(409, "last_variant", f"'{variant_name}' is the last running variant of "
                                 f"'{journey.name}/{step.name}'. Fix: resume another variant first, or disable the journey.")
        now = self.clock.now()
        await self.store.stop_variant(journey.name, step.name, variant_name, now, reason, in_flight)
        await self.stops(refresh=True)
        logger.info("Variant %s/%s/%s stopped (in-flight sends: %s).", journey.name, step.name, variant_name, in_flight)
        return {"journey": journey.name, "step": step.name, "variant": variant_name, "stopped": True,
                "stopped_at": now, "in_flight": in_flight, "running": running}

    async def resume_variant(self, journey_name: str, step_name: str, variant_name: str) -> dict[str, Any]:
        journey, step = self._locate(journey_name, step_name, variant_name)
        resumed = await self.store.resume_variant(journey.name, step.name, variant_name)
        await self.stops(refresh=True)
        return {"journey": journey.name, "step": step.name, "variant": variant_name, "stopped": not resumed and bool(
            step.variant(variant_name).stopped), "resumed": resumed}  # type: ignore[union-attr]

    def _dispatch_variant(self, journey: Journey, step: Step, instance: Instance, snap: Snapshot) -> tuple[Variant, str | None]:
        """(variant to send, the stopped variant it replaces or None)."""
        if snap.send_status is not None and snap.send_variant and step.variant(snap.send_variant):
            return step.variant(snap.send_variant), None  # type: ignore[return-value]
        assigned = step.variant(instance.variants.get(step.name, ""))
        if assigned is None:
            return assign_variant(self.effective_step(journey.name, step), journey.name, instance.customer_id), None
        stop = (self._stops or {}).get((journey.name, step.name, assigned.name))
        if stop is not None and stop.get("in_flight", "reroute") == "reroute":
            return assign_variant(self.effective_step(journey.name, step), journey.name, instance.customer_id), assigned.name
        return assigned, None

    # ------------------------------------------------------------------ dispatch
    async def run_due(self, limit: int = 100) -> list[DispatchResult]:
        """Claim and dispatch up to ``limit`` due jobs; returns what happened to each."""
        now = self.clock.now()
        jobs = await self.queue.claim(now, limit, self.settings.lease)
        if not jobs:
            return []
        return await self.dispatch_batch(jobs)

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

    async def dispatch(self, job: Job) -> DispatchResult:
        return (await self.dispatch_batch([job]))[0]

    async def dispatch_batch(self, jobs: list[Job]) -> list[DispatchResult]:
        """Dispatch a claimed batch with batched store/queue writes.

        Reads: one snapshot round trip. Writes: one reservation call (caps, atomic), the
        sends, then one store commit (confirmations, decisions, closes), one enqueue of next
        steps, one reschedule of holds/retries, one ack. A crash anywhere before the ack
        leaves the leases to expire: the retry finds ``sent`` (ack only) or ``pending``
        (resend with the same send id, which idempotent channels and
        ``Agent.send_proactive`` drop).
        """
        now = self.clock.now()
        keys = [(str(j.data.get("instance")), str(j.data.get("customer")), j.id) for j in jobs]
        reads = getattr(self.store, "dispatch_reads", None)
        if reads is not None:  # snapshots and stops in one round trip
            batch = await reads(keys)
            snaps: Any = batch.snapshots
            self._stops, self._stops_read_at = batch.stops, time.monotonic()
        else:
            await self.stops()
            snaps = await self.store.dispatch_snapshots(keys)
        plan = _Plan()
        results: list[DispatchResult | None] = [None] * len(jobs)
        candidates: list[_Candidate] = []
        for pos, (job, snap) in enumerate(zip(jobs, snaps)):
            result = await self._prepare(pos, job, snap, now, plan, candidates)
            if result is not None:
                results[pos] = result
        statuses = await self.store.reserve_sends(
            [Reservation(c.job.id, c.instance.customer_id, c.journey.name, c.step.name, c.variant.name,
                         c.variant.message.name, c.journey.transactional) for c in candidates],
            now, self.settings.per_day, self.settings.per_week) if candidates else []
        to_send: list[_Candidate] = []
        for c, status in zip(candidates, statuses):
            if status.startswith("frequency_cap"):
                self._decide(plan, c.job, c.instance, c.step.name, c.variant.name, Verdict.skip(status), now)
                self._next(plan, c.job, c.instance, c.journey, c.index, c.profile)
                plan.acks.append(c.job.id)
                results[c.pos] = DispatchResult(c.job.id, "skip", status)
            elif status == "sent":  # another worker confirmed it meanwhile
                self._next(plan, c.job, c.instance, c.journey, c.index, c.profile, completed=True)
                plan.acks.append(c.job.id)
                results[c.pos] = DispatchResult(c.job.id, "sent")
            else:
                to_send.append(c)
        for c, outcome in zip(to_send, await self._send_all(to_send)):
            results[c.pos] = self._after_send(plan, c, outcome, now)
        await self._flush(plan)
        return [r for r in results if r is not None]

    async def _prepare(self, pos: int, job: Job, snap: Snapshot, now: float, plan: "_Plan",
                       candidates: list["_Candidate"]) -> DispatchResult | None:
        """Everything up to the cap check; a result, or None with a send candidate added."""
        journey = self._journey(str(job.data.get("journey")))
        instance, profile = snap.instance, snap.profile
        if journey is None or instance is None or instance.status != "active":
            plan.acks.append(job.id)
            return DispatchResult(job.id, "gone", "journey_removed" if journey is None else "instance_closed")
        index = int(job.data.get("step", 0))
        if index >= len(journey.steps):
            plan.acks.append(job.id)
            return DispatchResult(job.id, "gone", "step_removed")
        step = journey.steps[index]
        if snap.send_status == "sent":  # crashed after sending, before the ack
            self._next(plan, job, instance, journey, index, profile)
            plan.acks.append(job.id)
            return DispatchResult(job.id, "sent", "already_sent")
        variant, replaced = self._dispatch_variant(journey, step, instance, snap)
        outgoing = Outgoing(job.id, instance.customer_id, instance.sender_id, journey.name, step.name, variant.name,
                            variant.message, resolve_slots(variant.message.slots, instance.entry),
                            journey.transactional, profile)
        verdict = await self._guards(job, journey, step, instance, outgoing, profile, now)
        if verdict.kind == SKIP:
            self._decide(plan, job, instance, step.name, variant.name, verdict, now)
            if verdict.reason in ("opted_out", "no_consent"):
                plan.writes.closes.append((instance.id, "exited", verdict.reason))
            else:
                self._next(plan, job, instance, journey, index, profile)
            plan.acks.append(job.id)
            return DispatchResult(job.id, "skip", verdict.reason)
        if verdict.kind == HOLD:
            until = verdict.until if verdict.until and verdict.until > now else now + SEND_RETRY_S
            verdict = Verdict.hold(verdict.reason, until)
            self._decide(plan, job, instance, step.name, variant.name, verdict, now)
            data = dict(job.data)
            data.setdefault("held_since", now)
            plan.reschedules.append(Job(job.id, until, data))
            return DispatchResult(job.id, "hold", verdict.reason)
        if replaced is not None:
            self._decide(plan, job, instance, step.name, replaced, Verdict("reroute", f"variant_stopped:{variant.name}"), now)
        candidates.append(_Candidate(pos, job, instance, journey, index, step, variant, outgoing, profile))
        return None

    async def _send_all(self, candidates: list["_Candidate"]) -> list[Any]:
        """Send each candidate; an outcome is the path (str) or the exception raised."""

        async def one(c: _Candidate) -> Any:
            try:
                async with asyncio.timeout(self.send_timeout):  # no task per send, unlike wait_for
                    return await self.sender.send(c.outgoing)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed send is retried, then recorded
                return e

        if self.send_concurrency <= 1 or len(candidates) <= 1:
            return [await one(c) for c in candidates]
        gate = asyncio.Semaphore(self.send_concurrency)

        async def gated(c: _Candidate) -> Any:
            async with gate:
                return await one(c)

        return list(await asyncio.gather(*(gated(c) for c in candidates)))

    def _after_send(self, plan: "_Plan", c: "_Candidate", outcome: Any, now: float) -> DispatchResult:
        if isinstance(outcome, BaseException):
            attempts = int(c.job.data.get("attempts", 0)) + 1
            logger.warning("Trigger send %s failed (attempt %d): %s", c.job.id, attempts, outcome)
            if attempts >= MAX_SEND_ATTEMPTS:
                plan.writes.releases.append((c.job.id, c.instance.customer_id))
                self._decide(plan, c.job, c.instance, c.step.name, c.variant.name, Verdict.skip("send_failed"), now)
                plan.acks.append(c.job.id)
                return DispatchResult(c.job.id, "skip", "send_failed")
            plan.reschedules.append(Job(c.job.id, now + SEND_RETRY_S * 2 ** (attempts - 1),
                                        {**c.job.data, "attempts": attempts}))
            return DispatchResult(c.job.id, "retry", type(outcome).__name__)
        plan.writes.sent.append(SentMark(c.job.id, now, str(outcome) if outcome is not None else None,
                                         c.instance.customer_id, c.journey.name, c.step.name, c.variant.name))
        if c.index + 1 >= len(c.journey.steps):
            plan.writes.completed.append(c.instance.id)
        self._next(plan, c.job, c.instance, c.journey, c.index, c.profile, completed=True)
        plan.acks.append(c.job.id)
        return DispatchResult(c.job.id, "sent")

    def _decide(self, plan: "_Plan", job: Job, instance: Instance, step: str, variant: str, verdict: Verdict,
                now: float) -> None:
        plan.writes.decisions.append(decision(
            send_id=job.id, customer_id=instance.customer_id, journey=instance.journey, step=step, variant=variant,
            kind=verdict.kind, reason=verdict.reason, at=now, until=verdict.until))

    def _next(self, plan: "_Plan", job: Job, instance: Instance, journey: Journey, index: int, profile: dict[str, Any],
              completed: bool = False) -> None:
        if index + 1 < len(journey.steps):
            tz = self._tz(profile.get("timezone"))
            base = float(job.data.get("first_due", job.due))
            plan.enqueues.append(self._step_job(instance, index + 1, journey.steps[index + 1].delay.due(base, tz)))
        elif not completed:
            plan.writes.closes.append((instance.id, "completed", "last_step"))

    async def _flush(self, plan: "_Plan") -> None:
        """Store first, queue after: a crash in between is repaired by the retry (see dispatch_batch)."""
        await self.store.commit_batch(plan.writes)
        if self.outcome_listener is not None and (plan.writes.sent or plan.writes.decisions):
            outcomes = [{"send_id": m.send_id, "customer_id": m.customer_id, "journey": m.journey, "step": m.step,
                         "variant": m.variant, "outcome": "sent", "path": m.path, "at": m.at}
                        for m in plan.writes.sent]
            outcomes += [{"send_id": d["send_id"], "customer_id": d["customer_id"], "journey": d["journey"],
                          "step": d["step"], "variant": d["variant"], "outcome": d["kind"], "reason": d["reason"],
                          "at": d["at"]} for d in plan.writes.decisions if d.get("kind") != "consent"]
            try:
                await self.outcome_listener(outcomes)
            except Exception:  # a listener must never stop the scheduler
                logger.exception("Send outcome listener failed")
        if plan.enqueues:
            await _many(self.queue, "enqueue", plan.enqueues)
        if plan.reschedules:
            await _many(self.queue, "reschedule", plan.reschedules)
        if plan.acks:
            await _many(self.queue, "ack", plan.acks)

    async def _guards(self, job: Job, journey: Journey, step: Any, instance: Instance, outgoing: Outgoing,
                      profile: dict[str, Any], now: float) -> Verdict:
        """consent → expiry → handoff → quiet hours → channel (see :mod:`guards`)."""
        verdict = consent(profile)
        if verdict is not None:
            return verdict
        data = job.data
        verdict = expiry(now, float(data.get("first_due", job.due)), step.expires, data.get("held_since"), self.settings)
        if verdict is not None:
            return verdict
        verdict = handoff(await self.is_handoff_open(instance.sender_id), now, self.settings)
        if verdict is not None:
            return verdict
        if journey.quiet_hours and not self._quiet.off:
            verdict = self._quiet(now, self._tz(profile.get("timezone")))
            if verdict is not None:
                return verdict
        verdict = await self.sender.check(outgoing)
        if verdict is not None:
            return verdict
        return _SEND
