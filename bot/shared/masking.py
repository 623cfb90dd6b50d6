"""Personal data masked where it leaves the engine: logs at INFO and above, and API output
to callers who are not admins (PIPL/GDPR: keep what an operator needs, nothing more).

What is masked and how:

- mainland mobile numbers (``13812345678``, ``+86 138-1234-5678``) → ``*******5678``: the last
  four digits let a shopper and an operator recognise a number, not dial it;
- WeChat openids/unionids (28 characters starting with ``o``) → ``oUpF8u…``: a short prefix is
  enough to tell two conversations apart in a log, not to message anyone;
- e-mail addresses → ``a***@example.com``;
- names and addresses only in *known fields* (a slot, entity or profile key such as ``name``,
  ``ship_address``): free text has no reliable marker for either, so a name inside a sentence
  is not found — which is why message texts are logged only at DEBUG.

Order ids are not masked: an order id names a transaction, not a person, and shows nothing
without the shop's own verification (phone or recipient); operators need it to find an order.
Conversation ids stay too (they are how operators find things), except that a WeChat
conversation id *is* the shopper's openid, so it is masked like any openid.
"""
from __future__ import annotations

import copy
import logging
import re
from typing import Any, Iterable, Mapping

# Mainland mobile numbers, optionally with +86/86 and separators; not inside a longer token.
PHONE_RE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?![0-9A-Za-z])")
# WeChat openids and unionids: 28 characters, starting with "o".
OPENID_RE = re.compile(r"(?<![0-9A-Za-z_-])o[0-9A-Za-z_-]{27}(?![0-9A-Za-z_-])")
EMAIL_RE = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")

OPENID_PREFIX = 6
MASK = "****"

# Known fields (slots, entities, profile and metadata keys), lower-case.
PHONE_FIELDS = frozenset({"phone", "mobile", "phone_number", "ship_phone", "telephone", "tel", "contact_phone",
                          "customer_phone", "order_phone"})
NAME_FIELDS = frozenset({"name", "customer_name", "ship_name", "recipient", "recipient_name", "full_name",
                         "real_name", "nickname", "person", "contact_name"})
ADDRESS_FIELDS = frozenset({"address", "ship_address", "shipping_address", "new_address", "street", "location",
                            "delivery_address"})
OPENID_FIELDS = frozenset({"openid", "wechat_openid", "unionid", "from_user", "fromusername"})
EMAIL_FIELDS = frozenset({"email", "e_mail", "mail"})


def mask_phone(phone: Any) -> str:
    """``*******5678``: only the last four digits (fewer than seven digits: all hidden)."""
    digits = re.sub(r"\D", "", str(phone or ""))
    if len(digits) < 7:
        return MASK
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_openid(openid: Any) -> str:
    """``oUpF8u…``: a prefix to tell conversations apart, never the whole id."""
    text = str(openid or "")
    return text[:OPENID_PREFIX] + "…" if len(text) > OPENID_PREFIX else MASK


def mask_email(email: Any) -> str:
    text = str(email or "")
    local, at, domain = text.partition("@")
    return f"{local[:1]}***@{domain}" if at and local else MASK


def mask_name(name: Any) -> str:
    """``张*`` / ``J***``: the first character only."""
    text = str(name or "").strip()
    return text[:1] + "*" * min(3, max(1, len(text) - 1)) if text else ""


def mask_address(address: Any) -> str:
    """Province and city (the first few characters), never the street and number."""
    text = str(address or "").strip()
    if not text:
        return ""
    keep = max(2, min(6, len(text) // 3))
    return text[:keep] + MASK


def mask_text(text: Any) -> str:
    """Phones, openids and e-mails found anywhere in ``text`` masked; the rest kept."""
    if text is None:
        return ""
    value = str(text)
    if not value:
        return value
    value = PHONE_RE.sub(lambda m: "*******" + m.group(3), value)
    value = OPENID_RE.sub(lambda m: mask_openid(m.group(0)), value)
    return EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_identifier(value: Any) -> str:
    """A conversation or customer id for a log or a non-admin: openids masked, the rest kept."""
    return mask_text(value)


def mask_field(key: Any, value: Any) -> Any:
    """``value`` masked by what its field holds (``key``); unknown fields get :func:`mask_text`."""
    name = str(key or "").lower()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return mask_phone(value) if name in PHONE_FIELDS else value
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, (list, tuple)):
        return [mask_field(key, item) for item in value]
    if name in PHONE_FIELDS:
        return mask_phone(value)
    if name in NAME_FIELDS:
        return mask_name(value)
    if name in ADDRESS_FIELDS:
        return mask_address(value)
    if name in OPENID_FIELDS:
        return mask_openid(value)
    if name in EMAIL_FIELDS:
        return mask_email(value)
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every field masked by :func:`mask_field` (nested mappings too)."""
    return {key: mask_field(key, value) for key, value in data.items()}


def _mask_entities(entities: Iterable[Any]) -> list[Any]:
    out = []
    for entity in entities or []:
        if isinstance(entity, dict):
            entity = dict(entity)
            if "value" in entity:
                entity["value"] = mask_field(entity.get("entity"), entity["value"])
            if "text" in entity:
                entity["text"] = mask_field(entity.get("entity"), entity["text"])
        out.append(entity)
    return out


def _mask_parse_data(parse: Any) -> Any:
    if not isinstance(parse, dict):
        return parse
    parse = dict(parse)
    if "text" in parse:
        parse["text"] = mask_text(parse["text"])
    if "entities" in parse:
        parse["entities"] = _mask_entities(parse["entities"])
    return parse


def mask_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """One Rasa event dict as a non-admin may see it: texts, slot values, entities, metadata masked."""
    out = dict(event)
    kind = out.get("event")
    if "text" in out and out["text"] is not None:
        out["text"] = mask_text(out["text"])
    if kind == "slot" and "value" in out:
        out["value"] = mask_field(out.get("name"), out["value"])
    if "parse_data" in out:
        out["parse_data"] = _mask_parse_data(out["parse_data"])
    if "entities" in out and isinstance(out["entities"], list):
        out["entities"] = _mask_entities(out["entities"])
    if isinstance(out.get("metadata"), Mapping):
        out["metadata"] = mask_mapping(out["metadata"])
    if isinstance(out.get("data"), Mapping):  # BotUttered's buttons/custom payloads
        out["data"] = mask_mapping(out["data"])
    if "sender_id" in out:
        out["sender_id"] = mask_identifier(out["sender_id"])
    return out


def mask_tracker_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A tracker's JSON (``current_state``) as a caller who is not an admin may see it.

    Texts keep their words (trainers read conversations to improve the bot) with phones,
    openids and e-mails masked; slot values and entities are masked by the field they are in
    (a ``phone`` slot, an ``address`` entity); a WeChat conversation id (an openid) is masked.
    """
    out = copy.deepcopy(dict(state))
    known = _personal_values(out)
    if known:  # a name or address the bot understood is masked wherever the shopper typed it
        _replace_known(out, known)
    if "sender_id" in out:
        out["sender_id"] = mask_identifier(out["sender_id"])
    if isinstance(out.get("slots"), Mapping):
        out["slots"] = {name: mask_field(name, value) for name, value in out["slots"].items()}
    if isinstance(out.get("latest_message"), Mapping):
        latest = _mask_parse_data(out["latest_message"])
        if isinstance(latest.get("metadata"), Mapping):
            latest["metadata"] = mask_mapping(latest["metadata"])
        out["latest_message"] = latest
    if isinstance(out.get("events"), list):
        out["events"] = [mask_event(e) if isinstance(e, Mapping) else e for e in out["events"]]
    return out


PERSONAL_FIELDS = PHONE_FIELDS | NAME_FIELDS | ADDRESS_FIELDS | OPENID_FIELDS | EMAIL_FIELDS


def _personal_values(state: Mapping[str, Any]) -> dict[str, str]:
    """Raw personal values the tracker holds in known fields (slots, slot events, entities) → masked."""
    found: dict[str, str] = {}

    def add(key: Any, value: Any) -> None:
        if isinstance(value, str) and len(value.strip()) >= 2 and str(key or "").lower() in PERSONAL_FIELDS:
            found[value] = str(mask_field(key, value))

    for name, value in (state.get("slots") or {}).items():
        add(name, value)
    parses = [state.get("latest_message") or {}]
    for event in state.get("events") or []:
        if isinstance(event, Mapping):
            if event.get("event") == "slot":
                add(event.get("name"), event.get("value"))
            parses.append(event.get("parse_data") or {})
    for parse in parses:
        for entity in (parse.get("entities") or []) if isinstance(parse, Mapping) else []:
            if isinstance(entity, Mapping):
                add(entity.get("entity"), entity.get("value"))
                add(entity.get("entity"), entity.get("text"))
    return found


def _replace_known(node: Any, known: dict[str, str]) -> None:
    """Replace every known personal value inside the ``text`` fields of ``node`` (in place)."""
    values = sorted(known, key=len, reverse=True)
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                for raw in values:
                    value = value.replace(raw, known[raw])
                node[key] = value
            else:
                _replace_known(value, known)
    elif isinstance(node, list):
        for item in node:
            _replace_known(item, known)


# ---------------------------------------------------------------------- logging
class MaskingFilter(logging.Filter):
    """Masks phones, openids and e-mails in every record at INFO and above.

    Installed on handlers (not loggers), so it sees records from every logger that reaches
    the handler. DEBUG records pass untouched: message texts are logged only there, for a
    developer on their own machine. The message, its string arguments and the formatted
    exception are masked; numbers stay numbers so ``%d`` still formats.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or getattr(record, "_kefu_masked", False):
            return True
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if record.args:
            if isinstance(record.args, Mapping):
                record.args = {k: self._arg(v) for k, v in record.args.items()}
            else:
                record.args = tuple(self._arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        record._kefu_masked = True  # several handlers: mask once
        return True

    @staticmethod
    def _arg(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else str(value)
        masked = mask_text(text)
        return value if masked == text and not isinstance(value, str) else masked


def install_log_masking(logger: logging.Logger | None = None) -> int:
    """Add one :class:`MaskingFilter` to every handler of ``logger`` (default: the root logger)
    and of Sanic's loggers; safe to call again (after adding a handler, or in each worker).
    Returns how many handlers got the filter now."""
    loggers = [logger] if logger is not None else [logging.getLogger()] + [
        logging.getLogger(name) for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server",
                                             "sanic.websockets")]
    added = 0
    for lg in loggers:
        for handler in lg.handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
                added += 1
    return added
