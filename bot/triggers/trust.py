"""What a behaviour event may change, depending on who produced it.

Channel, recipient ids (openids), the conversation (``sender_id``), time zone and consent
decide *where* and *when* a proactive message goes and *whether* one may go at all. Only a
trusted producer may set them: an API caller with ``events:trusted`` or the shop's own
outbox relay. From anyone else these fields are dropped before the event is stored or
matched, and the producer is told which ones (``ignored_fields``), so a shop notices a
misconfigured credential instead of wondering why messages go nowhere.

Consent itself has one more rule (:func:`consent_change`): an opt-out the shopper gave in
chat, or one an admin set, is reversed only by the shopper, never by an event.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

from bot.triggers.events import BehaviourEvent

# Exact names (compared lower-case) an untrusted producer may not set, in the event's
# ``profile`` or ``properties``.
CONTACT_FIELDS = frozenset({
    "channel", "input_channel", "sender_id", "conversation_id", "recipient_id",
    "openid", "wechat_openid", "unionid", "wechat_unionid",
    "timezone", "time_zone", "tz",
})
CONSENT_FIELDS = frozenset({
    "consent", "marketing_consent", "subscribed", "unsubscribed", "opted_in", "opted_out", "opt_in", "opt_out",
    "opted_out_reason", "opted_out_at",
})
# Suffixes/prefixes that catch the spellings a shop invents (``mp_openid``, ``sms_consent``).
_SUFFIXES = ("openid", "unionid", "consent", "timezone")
_PREFIXES = ("opt_", "opted_")

# kefu's own consent bookkeeping: no event sets these, trusted or not.
RESERVED_FIELDS = frozenset({"opted_out", "opted_out_reason", "opted_out_at"})

# Event types that change consent; which way.
OPT_OUT_TYPES = frozenset({"unsubscribed", "opted_out"})
OPT_IN_TYPES = frozenset({"subscribed"})

# Opt-outs only the shopper can reverse (in chat): given in chat, or set by an admin.
STICKY_OPT_OUTS = frozenset({"chat", "admin"})
CHAT = "chat"

CONSENT = "consent"  # the ignored_fields entry for an event type whose consent change was ignored


def is_protected(name: str, extra: Iterable[str] = ()) -> bool:
    """May only a trusted producer set this profile/property field?"""
    key = name.strip().lower()
    if key in CONTACT_FIELDS or key in CONSENT_FIELDS or key in {e.lower() for e in extra}:
        return True
    return key.endswith(_SUFFIXES) or key.startswith(_PREFIXES)


@dataclass(frozen=True)
class Screened:
    """An event as kefu will use it, and what was dropped from it (``profile.channel``, ...)."""

    event: BehaviourEvent
    ignored: tuple[str, ...] = ()


def screen(event: BehaviourEvent, trusted: bool, contact_fields: Iterable[str] = ()) -> Screened:
    """Drop what this producer may not set; ``contact_fields``: the channels' recipient keys.

    A trusted producer keeps everything but kefu's own bookkeeping (:data:`RESERVED_FIELDS`).
    """
    extra = tuple(contact_fields)
    ignored: list[str] = []

    def keep(section: str, data: dict[str, Any], check_protected: bool) -> dict[str, Any]:
        out = {}
        for key, value in data.items():
            if (section == "profile" and str(key) in RESERVED_FIELDS) or (
                    check_protected and is_protected(str(key), extra)):
                ignored.append(f"{section}.{key}")
            else:
                out[key] = value
        return out

    profile = keep("profile", event.profile, not trusted)
    properties = keep("properties", event.properties, not trusted)
    sender_id = event.sender_id
    if not trusted and sender_id is not None and sender_id != event.customer_id:
        ignored.append("sender_id")  # the conversation a message goes to is an identity field too
        sender_id = None
    if not trusted and event.type in OPT_OUT_TYPES | OPT_IN_TYPES:
        ignored.append(CONSENT)
    if not ignored:
        return Screened(event)
    return Screened(replace(event, profile=profile, properties=properties, sender_id=sender_id), tuple(ignored))


@dataclass(frozen=True)
class ConsentChange:
    """What an event does to the opt-out flag: ``opted_out`` None = unchanged; ``refused`` says why not."""

    opted_out: bool | None = None
    refused: str | None = None


def consent_change(event_type: str, trusted: bool, profile: dict[str, Any]) -> ConsentChange:
    """Opt-outs from trusted producers apply; opt-ins apply unless the opt-out is sticky.

    ``profile`` is the stored one (with ``opted_out`` and ``opted_out_reason``).
    """
    if event_type in OPT_OUT_TYPES:
        return ConsentChange(True) if trusted else ConsentChange(refused="untrusted_producer")
    if event_type not in OPT_IN_TYPES:
        return ConsentChange()
    if not trusted:
        return ConsentChange(refused="untrusted_producer")
    reason = str(profile.get("opted_out_reason") or "")
    if profile.get("opted_out") and reason in STICKY_OPT_OUTS:
        return ConsentChange(refused=f"opted_out_by_{reason}")
    return ConsentChange(False)
