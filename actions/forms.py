"""Validation of the order form: the order id (or a phone), then (when needed) the check.

The shopper must be verified before anything about an order is revealed: a
trusted identity (the widget's shop-signed token, or the WeChat openid) owns the
order, or the last 4 digits of the order's phone are confirmed here
(`phone_last4`, three tries per conversation). Failures also count per order and
per phone across all conversations (`actions/shop/attempts.py`): a stranger who
opens a new chat for each guess is locked out all the same.

Shoppers who don't know the order id may give their phone number instead. A
phone number is no secret, so the look-up by phone is verified by the channel
identity owning that phone, or by the recipient's full name on the orders
(`recipient_name`, three tries); `actions/shop/rules.py` states the rule.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.common import conversation, identity_customer, language, locked_text, now, owns_order
from actions.shop import ShopError, get_shop, mask_phone, rules
from actions.shop.attempts import get_limiter
from actions.shop.config import shop_config
from actions.shop_data import normalize_order_id

logger = logging.getLogger(__name__)

# Shoppers type ids as "e2026 1101 001" or with full-width digits; after NFKC
# these find the id in free text. Exactly 11 digits, spaces allowed between.
_SPACED_ID_RE = re.compile(r"(?<![A-Za-z0-9])[Ee](?:[ \t]*\d){11}(?![ \t]*\d)")
# Something that was meant as an order id but is malformed ("E123").
_ATTEMPT_RE = re.compile(r"(?<![A-Za-z0-9])[Ee][ \t]*\d[\d \t]*")
_DIGITS_RE = re.compile(r"\d{5,}")
_LAST4_RE = re.compile(r"(?<!\d)(\d{4}|1[3-9]\d{5}(\d{4}))(?!\d)")
MAX_VERIFY_ATTEMPTS = rules.MAX_VERIFY_ATTEMPTS
# A phone attempt: a digit run starting with 1 (optionally +86), separators allowed.
_PHONE_ATTEMPT_RE = re.compile(r"(?<![A-Za-z0-9])(?:\+?86[ \t-]*)?1(?:[ \t-]?\d){6,12}(?!\d)")
# Intents that mean "not an answer" while the form asks for the recipient's name.
_NOT_A_NAME_INTENTS = frozenset({
    "affirm", "deny", "request_human", "bot_challenge", "faq", "goodbye", "thank", "complaint",
    "order_status", "cancel_order", "change_address", "return_request", "exchange_request", "refund_status",
})
_FORM_SLOTS = ("order_id", "phone", "recipient_name", "phone_last4")


class ValidateOrderForm(FormValidationAction):
    """Accepts order ids however they are typed; rejects malformed ones."""

    def name(self) -> str:
        return "validate_order_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        """The order id (or a phone instead), then the check the shopper still needs.

        Ask for the phone digits only when the shopper is not yet verified for a
        known order; for a phone look-up, ask the recipient's name unless the
        channel identity owns the phone.
        """
        slots = [s for s in domain_slots if s not in _FORM_SLOTS] + ["order_id"]
        order_id = tracker.get_slot("order_id")
        if not order_id:
            return await self._phone_slots(slots, tracker)
        if tracker.get_slot("verified_order") == order_id:
            return slots
        if int(tracker.get_slot("verify_attempts") or 0) >= MAX_VERIFY_ATTEMPTS:
            return slots  # give up asking; action_order_request refuses politely
        try:
            order = await get_shop().find_order(order_id)
        except ShopError as e:  # action_order_request reports the failure
            logger.warning("Order look-up failed while verifying conversation %s: %s", conversation(tracker), e)
            return slots
        if order is None or await owns_order(tracker, order):
            return slots
        try:
            if await get_limiter().locked(now=now(), order_id=order.id, phone=order.ship_phone):
                return slots  # don't ask: action_order_request says it is locked
        except ShopError as e:
            logger.warning("Attempt store failed while verifying conversation %s: %s", conversation(tracker), e)
        return slots + ["phone_last4"]

    async def _phone_slots(self, slots: list[str], tracker: Tracker) -> list[str]:
        """No order id: accept a phone instead; once given, only the phone check remains."""
        phone = tracker.get_slot("phone")
        base = [s for s in slots if s != "order_id"] + ["phone"]
        if not phone:
            return slots + ["phone"]  # the form asks for the order id; a phone is accepted too
        if int(tracker.get_slot("verify_attempts") or 0) >= MAX_VERIFY_ATTEMPTS:
            return base  # give up asking; action_order_request refuses politely
        if tracker.get_slot("recipient_name") and tracker.get_slot("verified_orders"):
            return base + ["recipient_name"]
        try:
            if await identity_owns_phone(tracker, phone):
                return base
        except ShopError as e:
            logger.warning("Identity look-up failed while verifying conversation %s: %s", conversation(tracker), e)
        return base + ["recipient_name"]

    async def extract_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """A phone the NLU missed or that is malformed (validation explains the format)."""
        if tracker.get_slot("phone") or tracker.get_slot("order_id"):
            return {}
        if tracker.get_slot("requested_slot") not in (None, "order_id"):
            return {}
        text = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "")
        if text.startswith("/") or _SPACED_ID_RE.search(text):
            return {}
        match = _PHONE_ATTEMPT_RE.search(text)
        return {"phone": match.group(0).strip()} if match else {}

    async def validate_phone(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """An 11-digit mainland mobile, else a polite explanation (and the form asks again)."""
        if isinstance(slot_value, list):
            slot_value = slot_value[0] if slot_value else None
        if slot_value is None:
            return {"phone": None}
        if (tracker.get_slot("order_request") == "change_address"
                and tracker.get_slot("requested_slot") is None):
            return {"phone": None}  # "change the phone to 139…": a new phone, not a look-up
        phone = rules.normalise_phone(slot_value)
        if phone is None or _inside_longer_number(phone, tracker.latest_message.get("text") or ""):
            logger.info("Malformed phone in conversation %s", conversation(tracker))
            dispatcher.utter_message(response="utter_invalid_phone")
            return {"phone": None}
        return {"phone": phone}

    async def extract_recipient_name(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "recipient_name":
            return {}
        text = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "").strip()
        if not text or text.startswith("/"):
            return {}
        if (tracker.latest_message.get("intent") or {}).get("name") in _NOT_A_NAME_INTENTS:
            return {}
        return {"recipient_name": text[:40]}

    async def validate_recipient_name(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The recipient's full name on the phone's orders → those orders are verified."""
        phone = tracker.get_slot("phone")
        if not slot_value or not phone:
            return {"recipient_name": None}
        current = now()
        limiter = get_limiter()
        try:
            if await limiter.locked(now=current, phone=phone):
                logger.info("Phone look-up (%s) locked after too many failures; conversation %s",
                            mask_phone(phone), conversation(tracker))
                dispatcher.utter_message(text=locked_text(language(tracker)))
                return {"recipient_name": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
            # the rule needs the order rows only (recipient, customer, date): no lines or tracking loaded
            orders = await get_shop().orders_by_phone(phone, since=current - rules.PHONE_LOOKUP_WINDOW, limit=20,
                                                      details=False)
            matched = rules.phone_lookup_orders(orders, now=current, recipient=str(slot_value))
            if matched:
                await limiter.succeeded(phone=phone)
            else:
                locked = await limiter.failed(now=current, phone=phone)
        except ShopError as e:
            logger.error("Phone look-up failed for conversation %s: %s", conversation(tracker), e)
            dispatcher.utter_message(response="utter_shop_unavailable")
            return {"recipient_name": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
        if matched:
            logger.info("Phone look-up verified for conversation %s (%s, %d order(s))",
                        conversation(tracker), mask_phone(phone), len(matched))
            return {"recipient_name": str(slot_value), "verified_orders": [o.id for o in matched],
                    "verify_attempts": 0}
        attempts = int(tracker.get_slot("verify_attempts") or 0) + 1
        logger.info("Recipient check failed for conversation %s (%s, attempt %d)",
                    conversation(tracker), mask_phone(phone), attempts)
        if locked:
            dispatcher.utter_message(text=locked_text(language(tracker)))
            return {"recipient_name": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
        if attempts >= MAX_VERIFY_ATTEMPTS:
            dispatcher.utter_message(response="utter_verification_failed")
        else:
            dispatcher.utter_message(response="utter_recipient_mismatch")
        return {"recipient_name": None, "verify_attempts": attempts}

    async def extract_phone_last4(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "phone_last4":
            return {}
        text = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "")
        match = _LAST4_RE.search(text)
        if match:
            return {"phone_last4": match.group(2) or match.group(1)}
        if tracker.latest_message.get("intent", {}).get("name") in ("inform", None) or re.search(r"\d", text):
            return {"phone_last4": text.strip()[:20] or None}
        return {}

    async def validate_phone_last4(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Right digits → verified; wrong → try again (3 tries here, 5 per order/phone anywhere); malformed →
        explain the format."""
        value = str(slot_value or "")
        if not re.fullmatch(r"\d{4}", value):
            dispatcher.utter_message(response="utter_invalid_phone_last4")
            return {"phone_last4": None}
        order_id = tracker.get_slot("order_id")
        current = now()
        limiter = get_limiter()
        try:
            order = await get_shop().find_order(order_id) if order_id else None
            phone = order.ship_phone if order is not None else None
            if await limiter.locked(now=current, order_id=order_id, phone=phone):
                logger.info("Phone check locked after too many failures for the order; conversation %s",
                            conversation(tracker))
                dispatcher.utter_message(text=locked_text(language(tracker)))
                return {"phone_last4": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
            passed = order is not None and order.ship_phone.endswith(value)
            if passed:
                await limiter.succeeded(order_id=order_id, phone=phone)
            else:
                locked = await limiter.failed(now=current, order_id=order_id, phone=phone)
        except ShopError as e:
            logger.error("Verification look-up failed for conversation %s: %s", conversation(tracker), e)
            dispatcher.utter_message(response="utter_shop_unavailable")
            return {"phone_last4": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
        if passed:
            return {"phone_last4": value, "verified_order": order.id, "verify_attempts": 0}
        attempts = int(tracker.get_slot("verify_attempts") or 0) + 1
        logger.info("Phone check failed for conversation %s (attempt %d)", conversation(tracker), attempts)
        if locked:
            dispatcher.utter_message(text=locked_text(language(tracker)))
            return {"phone_last4": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
        if attempts >= MAX_VERIFY_ATTEMPTS:
            dispatcher.utter_message(response="utter_verification_failed")
            return {"phone_last4": None, "verify_attempts": attempts}
        dispatcher.utter_message(response="utter_phone_mismatch")
        return {"phone_last4": None, "verify_attempts": attempts}

    async def extract_order_id(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Find an id the NLU missed (spaces, lower case, full-width digits)."""
        if tracker.get_slot("order_id"):
            return {}
        text = unicodedata.normalize("NFKC", tracker.latest_message.get("text") or "")
        if tracker.get_slot("phone") or (_PHONE_ATTEMPT_RE.search(text) and not _SPACED_ID_RE.search(text)):
            return {}  # a phone instead of the order id: `extract_phone` takes it
        candidate = _order_id_candidate(
            tracker.latest_message.get("text") or "",
            asked=tracker.get_slot("requested_slot") == "order_id",
        )
        return {"order_id": candidate} if candidate else {}

    def validate_order_id(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        if isinstance(slot_value, list):
            slot_value = slot_value[0] if slot_value else None
        if slot_value is None:
            return {"order_id": None}
        order_id = normalize_order_id(slot_value)
        if shop_config().order_id_re.fullmatch(order_id):  # shop.yml `formats: order_id`
            return {"order_id": order_id}
        logger.debug("Rejected malformed order id %r", slot_value)
        dispatcher.utter_message(response="utter_invalid_order_id")
        return {"order_id": None}


def _order_id_candidate(text: str, asked: bool) -> Optional[str]:
    """The order id in `text`, a malformed attempt at one, or None."""
    text = unicodedata.normalize("NFKC", text)
    match = _SPACED_ID_RE.search(text) or _ATTEMPT_RE.search(text)
    if match:
        return match.group(0).strip()
    if asked:
        # Only digits while we asked for the order id: most likely an id
        # without its E (or a phone number); let validation explain the format.
        digits = _DIGITS_RE.search(text)
        if digits:
            return digits.group(0)
    return None


async def identity_owns_phone(tracker: Tracker, phone: str) -> bool:
    """The trusted identity's customer has this phone on their account (rule 1 of the phone look-up)."""
    customer = await identity_customer(tracker)
    return customer is not None and rules.normalise_phone(customer.phone) == phone


def _inside_longer_number(phone: str, text: str) -> bool:
    """True when the text's digits around the phone are longer than it ("138123456789")."""
    text = unicodedata.normalize("NFKC", text)
    runs = re.findall(r"\d+", re.sub(r"(?<=\d)[ \t-]+(?=\d)", "", text))
    return any(phone in run and run not in (phone, "86" + phone) for run in runs)
