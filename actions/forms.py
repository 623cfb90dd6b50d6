"""Validation of the order form: one slot, the order id."""
from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.shop_data import ORDER_ID_RE, normalize_order_id

logger = logging.getLogger(__name__)

# Shoppers type ids as "e2026 1101 001" or with full-width digits; after NFKC
# these find the id in free text. Exactly 11 digits, spaces allowed between.
_SPACED_ID_RE = re.compile(r"(?<![A-Za-z0-9])[Ee](?:[ \t]*\d){11}(?![ \t]*\d)")
# Something that was meant as an order id but is malformed ("E123").
_ATTEMPT_RE = re.compile(r"(?<![A-Za-z0-9])[Ee][ \t]*\d[\d \t]*")
_DIGITS_RE = re.compile(r"\d{5,}")


class ValidateOrderForm(FormValidationAction):
    """Accepts order ids however they are typed; rejects malformed ones."""

    def name(self) -> str:
        return "validate_order_form"

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
