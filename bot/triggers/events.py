"""Behaviour events: the schema of ``POST /events`` and of events read off the broker.

An event is ``{"id", "type", "customer_id", "timestamp", "properties", "profile"}``.
Validation is strict and all-or-nothing so a bad batch changes nothing; every
rejection carries a machine-readable ``code`` and a sentence saying how to fix it.
Shop outbox bodies (``bot/relay.forward_outbox``) and Rasa tracker events on the
broker are converted to the same shape by :func:`from_broker_message`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

logger = logging.getLogger(__name__)

SHOP_EVENT_TYPES = (
    "product_viewed",
    "cart_item_added",
    "cart_item_removed",
    "checkout_started",
    "order_paid",
    "order_shipped",
    "order_delivered",
    "order_cancelled",
    "return_requested",
    "exchange_requested",
    "address_changed",
    "refund_completed",
    "review_posted",
    "subscribed",
    "unsubscribed",
    "customer_birthday",
    # issue #20: shop operations (actions/shop publishes them through its outbox)
    "customer_registered",
    "order_out_for_delivery",
    "back_in_stock",
    "coupon_issued",
    "coupon_redeemed",
    "points_earned",
)
BOT_EVENT_TYPES = (
    "conversation_started",
    "intent_detected",
    "handoff_started",
    "handoff_ended",
    "csat_submitted",
    "recommendation_shown",
    "recommendation_clicked",
    "opted_out",
    "customer_health_changed",  # Customer 360: a health.yml threshold action names a journey
)
EVENT_TYPES = frozenset(SHOP_EVENT_TYPES + BOT_EVENT_TYPES)

MAX_EVENT_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
MAX_CLOCK_SKEW_S = 300.0
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class BehaviourEvent:
    """One thing a customer did (or the bot did with them), kept in the event log."""

    id: str
    type: str
    customer_id: str
    timestamp: float
    properties: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    sender_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "customer_id": self.customer_id,
            "timestamp": self.timestamp,
            "properties": dict(self.properties),
            "profile": dict(self.profile),
            "sender_id": self.sender_id,
        }

    def as_broker_message(self, trusted: bool = False) -> dict[str, Any]:
        """The broker body, shaped like the shop's outbox events (``event`` + ``data``).

        ``kefu_trusted`` carries the producer's trust (``events:trusted``) to the consumer;
        it is set here from the verified caller, never copied from a request.
        """
        return {
            "event": self.type,
            "event_id": self.id,
            "sender_id": self.sender_id or self.customer_id,
            "customer_id": self.customer_id,
            "timestamp": self.timestamp,
            "data": dict(self.properties),
            "profile": dict(self.profile),
            "kefu_behaviour": True,
            "kefu_trusted": bool(trusted),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BehaviourEvent":
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            customer_id=str(data["customer_id"]),
            timestamp=float(data["timestamp"]),
            properties=dict(data.get("properties") or {}),
            profile=dict(data.get("profile") or {}),
            sender_id=data.get("sender_id"),
        )


class EventRejected(Exception):
    """A request the client must fix; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str, index: int | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.index = index
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


def validate_event(data: Any, now: float, index: int | None = None) -> BehaviourEvent:
    """Check one event dict; raise :class:`EventRejected` naming the field and the fix."""
    where = f"event[{index}]" if index is not None else "event"
    if not isinstance(data, dict):
        raise EventRejected(400, "invalid_event", f"{where} must be a JSON object, got {type(data).__name__}.", index)
    size = len(json.dumps(data, ensure_ascii=False, default=str).encode("utf-8"))
    if size > MAX_EVENT_BYTES:
        raise EventRejected(
            413, "event_too_large",
            f"{where} is {size} bytes; the limit is {MAX_EVENT_BYTES}. Fix: send ids and small "
            "properties, not whole documents.", index)
    kind = data.get("type", data.get("event"))
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise EventRejected(
            400, "unknown_event_type",
            f"{where} has unknown type {kind!r}. Fix: use one of: {', '.join(sorted(EVENT_TYPES))}.", index)
    customer = data.get("customer_id")
    if customer is None or (isinstance(customer, str) and not customer.strip()) or isinstance(customer, (dict, list, bool)):
        raise EventRejected(
            400, "missing_customer",
            f"{where} ({kind}) has no 'customer_id'. Fix: send the shop's customer id as a string.", index)
    if len(str(customer)) > MAX_ID_LENGTH:  # the stores' customer_id columns (PostgreSQL enforces them)
        raise EventRejected(
            400, "field_too_long",
            f"{where} ({kind}): 'customer_id' is {len(str(customer))} characters long; the limit is "
            f"{MAX_ID_LENGTH}. Fix: send the shop's customer id (at most {MAX_ID_LENGTH} characters).", index)
    event_id = data.get("id", data.get("event_id"))
    if event_id is None:
        event_id = uuid.uuid4().hex
        logger.debug("Event without id: generated %s (retries of it will not be deduplicated).", event_id)
    if not isinstance(event_id, (str, int)) or isinstance(event_id, bool) or not str(event_id) or len(str(event_id)) > MAX_ID_LENGTH:
        raise EventRejected(
            400, "invalid_id", f"{where} has an invalid 'id' (the limit is {MAX_ID_LENGTH} characters). Fix: a string "
            f"of 1-{MAX_ID_LENGTH} characters.", index)
    ts = data.get("timestamp", now)
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise EventRejected(
            400, "invalid_timestamp",
            f"{where} has timestamp {ts!r}. Fix: seconds since the epoch as a number.", index)
    if ts > now + MAX_CLOCK_SKEW_S:
        raise EventRejected(
            400, "future_timestamp",
            f"{where} has timestamp {ts} which is {ts - now:.0f}s in the future. Fix: check the sender's "
            f"clock (at most {MAX_CLOCK_SKEW_S:.0f}s of skew is accepted).", index)
    properties = data.get("properties", data.get("data")) or {}
    profile = data.get("profile") or {}
    for name, value in (("properties", properties), ("profile", profile)):
        if not isinstance(value, dict):
            raise EventRejected(400, "invalid_event", f"{where}: '{name}' must be an object.", index)
    sender = data.get("sender_id")
    return BehaviourEvent(
        id=str(event_id),
        type=kind,
        customer_id=str(customer),
        timestamp=float(ts),
        properties=dict(properties),
        profile=dict(profile),
        sender_id=str(sender) if sender else None,
    )


def parse_body(body: bytes, now: float) -> list[BehaviourEvent]:
    """A request body (one event or ``{"events": [...]}`` or a list) → events, all or nothing."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRejected(
            413, "payload_too_large",
            f"Request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}. Fix: split it into batches "
            f"of at most {MAX_BATCH} small events.")
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EventRejected(400, "invalid_json", f"Request body is not valid JSON: {e}.") from e
    if isinstance(data, dict) and "events" in data:
        items = data["events"]
        if not isinstance(items, list):
            raise EventRejected(400, "invalid_event", "'events' must be a list of event objects.")
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    if not items:
        raise EventRejected(400, "empty_batch", "No events in the request. Fix: send one event or a non-empty list.")
    if len(items) > MAX_BATCH:
        raise EventRejected(413, "batch_too_large", f"{len(items)} events in one request; the limit is {MAX_BATCH}.")
    single = len(items) == 1 and not isinstance(data, list) and not (isinstance(data, dict) and "events" in data)
    events = [validate_event(item, now, None if single else i) for i, item in enumerate(items)]
    seen: set[str] = set()
    for i, event in enumerate(events):
        if event.id in seen:
            raise EventRejected(409, "duplicate_event_id", f"event[{i}] repeats id '{event.id}' within the batch.", i)
        seen.add(event.id)
    return events


# Rasa tracker events on the broker that become behaviour events.
_TRACKER_EVENT_MAP = {"session_started": "conversation_started", "pause": "handoff_started", "resume": "handoff_ended"}


def from_broker_message(body: dict[str, Any]) -> BehaviourEvent | None:
    """Convert a broker body (kefu behaviour event, shop outbox event, Rasa tracker event).

    One whose customer id is longer than the stores' column (128; a conversation id may
    have 255 characters) is dropped with a warning; a derived event id that long is
    replaced by its SHA-1 (stable, so a redelivery is still recognised).
    """
    event = _from_broker_message(body)
    if event is None:
        return None
    if len(event.customer_id) > MAX_ID_LENGTH:
        logger.warning("Dropped the broker event %s: its customer id has %d characters, over the limit of %d.",
                       event.type, len(event.customer_id), MAX_ID_LENGTH)
        return None
    if len(event.id) > MAX_ID_LENGTH:
        event = replace(event, id="sha1-" + hashlib.sha1(event.id.encode("utf-8")).hexdigest())
    return event


def _from_broker_message(body: dict[str, Any]) -> BehaviourEvent | None:
    kind = body.get("event")
    sender = body.get("sender_id")
    ts = float(body.get("timestamp") or 0.0)
    if kind in EVENT_TYPES:
        customer = body.get("customer_id") or sender
        if customer is None:
            return None
        if body.get("event_id"):
            event_id = str(body["event_id"])
        elif body.get("outbox_id") is not None:
            event_id = f"outbox-{body['outbox_id']}"
        else:
            event_id = f"{kind}-{customer}-{ts}"
        properties = dict(body.get("data") or {})
        if body.get("order_id") and "order_id" not in properties:
            properties["order_id"] = body["order_id"]
        return BehaviourEvent(event_id, kind, str(customer), ts, properties, dict(body.get("profile") or {}),
                              str(sender) if sender else None)
    if sender is None:
        return None
    if kind in _TRACKER_EVENT_MAP:
        mapped = _TRACKER_EVENT_MAP[kind]
        return BehaviourEvent(f"{mapped}-{sender}-{ts}", mapped, str(sender), ts, {}, {}, str(sender))
    if kind == "user":
        intent = ((body.get("parse_data") or {}).get("intent") or {}).get("name")
        if not intent:
            return None
        return BehaviourEvent(f"intent-{sender}-{ts}", "intent_detected", str(sender), ts,
                              {"intent": intent}, {}, str(sender))
    return None


def event_types() -> Iterable[str]:
    return sorted(EVENT_TYPES)
