"""Validation of the order form: the order id, then (when needed) the phone check.

The shopper must be verified before anything about an order is revealed: the
channel identity (e.g. WeChat openid) owns the order, or the last 4 digits of
the order's phone are confirmed here (`phone_last4`, three tries).
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

from actions.common import conversation, owns_order
from actions.shop import ShopError, get_shop
from actions.shop_data import ORDER_ID_RE, normalize_order_id

logger = logging.getLogger(__name__)

# Shoppers type ids as "e2026 1101 001" or with full-width digits; after NFKC
# these find the id in free text. Exactly 11 digits, spaces allowed between.
_SPACED_ID_RE = re.compile(r"(?<![A-Za-z0-9])[Ee](?:[ \t]*\d){11}(?![ \t]*\d)")
# Something that was meant as an order id but is malformed ("E123").
_ATTEMPT_RE = re.compile(r"(?<![A-Za-z0-9])[Ee][ \t]*\d[\d \t]*")
_DIGITS_RE = re.compile(r"\d{5,}")
_LAST4_RE = re.compile(r"(?<!\d)(\d{4}|1[3-9]\d{5}(\d{4}))(?!\d)")
MAX_VERIFY_ATTEMPTS = 3


class ValidateOrderForm(FormValidationAction):
    """Accepts order ids however they are typed; rejects malformed ones."""

    def name(self) -> str:
        return "validate_order_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        """Ask for the phone digits only when the shopper is not yet verified for a known order."""
        slots = [s for s in domain_slots if s != "phone_last4"]
        order_id = tracker.get_slot("order_id")
        if not order_id or tracker.get_slot("verified_order") == order_id:
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
        return slots + ["phone_last4"]

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
        """Right digits → verified; wrong → try again (3 tries); malformed → explain the format."""
        value = str(slot_value or "")
        if not re.fullmatch(r"\d{4}", value):
            dispatcher.utter_message(response="utter_invalid_phone_last4")
            return {"phone_last4": None}
        order_id = tracker.get_slot("order_id")
        try:
            order = await get_shop().find_order(order_id) if order_id else None
        except ShopError as e:
            logger.error("Verification look-up failed for conversation %s: %s", conversation(tracker), e)
            dispatcher.utter_message(response="utter_shop_unavailable")
            return {"phone_last4": None, "verify_attempts": MAX_VERIFY_ATTEMPTS}
        if order is not None and order.ship_phone.endswith(value):
            return {"phone_last4": value, "verified_order": order.id, "verify_attempts": 0}
        attempts = int(tracker.get_slot("verify_attempts") or 0) + 1
        logger.info("Phone check failed for conversation %s (attempt %d)", conversation(tracker), attempts)
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
        if ORDER_ID_RE.fullmatch(order_id):
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
