"""Where Customer 360's events come from, and which identities they prove.

* :class:`CustomerHook` (a processor hook): each chat turn — the conversation, its channel,
  the message's sentiment and intent, and identities the channel verified: the WeChat openid
  (the WeChat channel verified the message's signature; its sender id is the openid), the
  shop-signed widget token (``metadata["identity"]`` that only the widget channel sets), and
  an order or phone the project's verification actions confirmed in this turn (slots
  ``verified_order`` / ``verified_orders`` that only actions set; see docs/customers.md).
* :func:`from_broker` (the event broker): shop events, ``POST /events`` behaviour events,
  handoff and CSAT events. Only trusted producers (the shop outbox, ``events:trusted``) link a
  conversation or a contact id to a shop customer; an untrusted event's claims link nothing.
"""
from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from bot.customers.profile import CustomerEvent
from bot.customers.service import Link

logger = logging.getLogger(__name__)

WECHAT_CHANNEL = "wechat"
WIDGET_CHANNEL = "socketio"
_PHONE = re.compile(r"^1\d{10}$")
# Broker events this package reads itself (kefu's own tracker events come through the hook).
HANDOFF_EVENTS = ("handoff_requested", "handoff_assigned", "handoff_resolved", "csat_submitted")
SKIP_EVENTS = ("customer_health_changed",)  # our own, published for journeys


@dataclass(frozen=True)
class Verification:
    """The slots the project's verification actions set (config ``customers: verification``)."""

    order_slot: str = "verified_order"
    orders_slot: str = "verified_orders"
    phone_slot: str = "phone"


@dataclass(frozen=True)
class Ingest:
    """One unit of work for the service: an event (or None: links only), its links and base proof."""

    event: CustomerEvent | None
    links: tuple[Link, ...]
    proof: str
    key: tuple[str, str]


def normalise_phone(value: Any) -> str | None:
    text = unicodedata.normalize("NFKC", str(value or ""))
    digits = re.sub(r"[\s\-()]", "", text)
    digits = re.sub(r"^(?:\+?86|0086)(?=1\d{10}$)", "", digits)
    return digits if _PHONE.fullmatch(digits) else None


def _slot(tracker: Any, events: list[Any], name: str) -> Any:
    """The slot's value (also on a tracker built without the domain's slots)."""
    value = tracker.get_slot(name)
    if value is not None:
        return value
    return next((e.value for e in reversed(events) if getattr(e, "type_name", "") == "slot" and e.key == name), None)


def turn_items(tracker: Any, verification: Verification = Verification()) -> list[Ingest]:
    """What one chat turn tells Customer 360 (pure: reads the tracker only)."""
    sender = str(tracker.sender_id)
    key = ("conversation", sender)
    events = list(tracker.events)
    last_user = next((i for i in range(len(events) - 1, -1, -1) if getattr(events[i], "type_name", "") == "user"), None)
    if last_user is None:
        return []
    user = events[last_user]
    channel = getattr(user, "input_channel", None) or tracker.get_latest_input_channel()
    links: list[Link] = []
    if channel == WECHAT_CHANNEL:
        links.append(Link("wechat_openid", sender, "wechat_signature"))
    identity = (getattr(user, "metadata", None) or {}).get("identity")
    if channel == WIDGET_CHANNEL and isinstance(identity, dict) and identity.get("verified") is True \
            and identity.get("customer_id"):
        customer = str(identity["customer_id"])
        links += [Link("widget", customer, "widget_token"), Link("shop_customer", customer, "widget_token")]
        phone = normalise_phone(identity.get("phone"))
        if phone:
            links.append(Link("phone", phone, "widget_token"))
    for event in events[last_user + 1:]:  # what the actions of this turn verified
        if getattr(event, "type_name", "") != "slot":
            continue
        if event.key == verification.order_slot and event.value:
            links.append(Link("order", str(event.value), "order_verification"))
        elif event.key == verification.orders_slot and event.value:
            phone = normalise_phone(_slot(tracker, events, verification.phone_slot))
            if phone:
                links.append(Link("phone", phone, "phone_verification"))
            for order in event.value if isinstance(event.value, list) else [event.value]:
                links.append(Link("order", str(order), "order_verification"))
    parse = getattr(user, "parse_data", None) or {}
    sentiment = (parse.get("sentiment") or {}).get("score")
    intent = (parse.get("intent") or {}).get("name")
    ts = float(getattr(user, "timestamp", 0.0) or 0.0)
    items: list[Ingest] = []
    session_start = next((e for e in reversed(events[:last_user]) if getattr(e, "type_name", "") == "session_started"),
                         None)
    start_index = events.index(session_start) if session_start is not None else -1
    users_in_session = sum(1 for e in events[start_index + 1:] if getattr(e, "type_name", "") == "user")
    if users_in_session == 1:
        start_ts = float(getattr(session_start, "timestamp", ts) or ts) if session_start is not None else ts
        items.append(Ingest(CustomerEvent(f"conv:{sender}:{start_ts!r}", "conversation_started", ts,
                                          {"channel": channel, "conversation_id": sender}, key),
                            tuple(links), "conversation", key))
        links = []
    message_id = getattr(user, "message_id", None) or f"{ts!r}"
    data: dict[str, Any] = {"channel": channel, "conversation_id": sender}
    if isinstance(sentiment, (int, float)) and not isinstance(sentiment, bool):
        data["sentiment"] = float(sentiment)
    if intent:
        data["intent"] = intent
    items.append(Ingest(CustomerEvent(f"msg:{sender}:{message_id}", "message", ts, data, key), tuple(links),
                        "conversation", key))
    return items


def from_broker(body: dict[str, Any]) -> Ingest | None:
    """A broker body → an event under its proven key, with the links its producer may make."""
    kind = body.get("event")
    if not isinstance(kind, str) or kind in SKIP_EVENTS:
        return None
    sender = body.get("sender_id")
    ts = float(body.get("timestamp") or 0.0)
    data = dict(body.get("data") or {})
    if kind in HANDOFF_EVENTS:
        if not sender:
            return None
        for field in ("handoff_id", "reason", "detail", "duration_s", "rating", "agent_id", "summary"):
            if body.get(field) is not None:
                data[field] = body[field]
        key = ("conversation", str(sender))
        event_id = f"{kind}:{body.get('handoff_id') or sender}:{ts!r}"
        return Ingest(CustomerEvent(event_id, kind, ts, data, key), (), "conversation", key)
    customer = body.get("customer_id")
    if customer is None or str(customer) == "" or "sender_id" in body and kind in ("user", "bot", "action", "slot"):
        return None  # kefu's own tracker events: the hook reads conversations directly
    if body.get("order_id") and "order_id" not in data:
        data["order_id"] = body["order_id"]
    behaviour = bool(body.get("kefu_behaviour"))
    trusted = not behaviour or body.get("kefu_trusted") is True
    proof = ("trusted_event" if behaviour else "shop_event") if trusted else "event_producer"
    key = ("shop_customer", str(customer))
    links: list[Link] = []
    if trusted:
        if sender and str(sender) != str(customer):
            links.append(Link("conversation", str(sender), proof))
        if data.get("order_id"):
            links.append(Link("order", str(data["order_id"]), proof))
        contact = dict(body.get("profile") or {})
        if contact.get("wechat_openid"):
            links.append(Link("wechat_openid", str(contact["wechat_openid"]), proof))
        phone = normalise_phone(contact.get("phone"))
        if phone:
            links.append(Link("phone", phone, proof))
    if body.get("event_id"):
        event_id = str(body["event_id"])
    elif body.get("outbox_id") is not None:
        event_id = f"outbox-{body['outbox_id']}"
    else:
        event_id = f"{kind}-{customer}-{ts!r}"
    return Ingest(CustomerEvent(event_id, kind, ts, data, key), tuple(links), proof, key)


def send_outcomes(outcomes: list[dict[str, Any]]) -> list[Ingest]:
    """Proactive sends and their outcome (sent, skip, hold) from the trigger scheduler: timeline items
    of the shop customer the journey runs for (kefu's own scheduler: trusted, but it links nothing)."""
    items = []
    for o in outcomes:
        customer = o.get("customer_id")
        if not customer:
            continue
        key = ("shop_customer", str(customer))
        data = {k: o.get(k) for k in ("journey", "step", "variant", "outcome", "reason", "path", "send_id")
                if o.get(k) is not None}
        event = CustomerEvent(f"send:{o.get('send_id')}:{o.get('outcome')}:{o.get('at')!r}", "proactive_send",
                              float(o.get("at") or 0.0), data, key)
        items.append(Ingest(event, (), "trigger_scheduler", key))
    return items


class CustomerHook:
    """Queues each turn's items; the feature's task feeds them to the service in order."""

    def __init__(self, queue: "asyncio.Queue[Ingest]", verification: Verification = Verification()) -> None:
        self.queue = queue
        self.verification = verification

    async def after_user_message(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        return False

    async def after_turn(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        try:
            for item in turn_items(tracker, self.verification):
                self.queue.put_nowait(item)
        except Exception:  # a profile must never break a chat
            logger.exception("Customer 360 could not read a turn of %s", getattr(tracker, "sender_id", "?"))
        return False
