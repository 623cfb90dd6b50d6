"""WeChat push XML: safe parsing into a value, and passive-reply XML rendering.

WeChat posts ``<xml><ToUserName>…</ToUserName>…</xml>`` documents. They are small, have
no DTD and no namespaces. Every parse goes through ``defusedxml`` with DTDs forbidden
(the "billion laughs" and external-entity attacks need one) and only after a size
check. The channel calls the parser only on a body whose signature it has verified;
in safe mode the ciphertext is taken from the unauthenticated envelope by
:func:`encrypt_candidates`, a bounded byte scan that is not an XML parser, so nothing
a stranger sends ever reaches one.
"""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Mapping

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

__all__ = [
    "Article",
    "IncomingMessage",
    "MalformedMessageError",
    "encrypt_candidates",
    "parse_xml",
    "parse_message",
    "render_encrypted_envelope",
    "render_news_reply",
    "render_image_reply",
    "render_text_reply",
]

DEFAULT_MAX_XML_BYTES = 256 * 1024
MAX_XML_DEPTH = 8

KNOWN_MESSAGE_TYPES = frozenset(
    {"text", "voice", "image", "video", "shortvideo", "location", "link", "file", "event"}
)


class MalformedMessageError(ValueError):
    """The body is not a WeChat XML document we can read; the webhook answers 400."""


def parse_xml(body: bytes | str, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> dict[str, Any]:
    """``<xml>`` children as a dict (nested elements become dicts).

    Call it only on authenticated bytes (see the module docstring). ``defusedxml``
    refuses any DTD, entity declaration or external reference before expanding it.
    """
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(data) > max_bytes:
        raise MalformedMessageError(f"XML body is {len(data)} bytes, above the {max_bytes}-byte limit.")
    if not data.strip():
        raise MalformedMessageError("Empty body; WeChat posts an <xml> document.")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise MalformedMessageError(
            f"XML with a DTD, entity or external reference is refused (defusedxml: {type(e).__name__})."
        ) from e
    except ET.ParseError as e:
        raise MalformedMessageError(f"Body is not well-formed XML: {e}.") from e
    if root.tag != "xml":
        raise MalformedMessageError(f"Root element must be <xml>, got <{root.tag}>.")
    return _element_to_dict(root)


_ENCRYPT_OPEN, _ENCRYPT_CLOSE = b"<Encrypt>", b"</Encrypt>"
_CDATA_OPEN, _CDATA_CLOSE = b"<![CDATA[", b"]]>"
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
MAX_ENCRYPT_CANDIDATES = 4


def encrypt_candidates(body: bytes, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> list[str]:
    """The base64 strings between ``<Encrypt>`` and ``</Encrypt>`` in an encrypted push.

    Deliberately not an XML parser: the envelope is not authenticated (``msg_signature``
    covers only the ciphertext), so it is scanned as bytes: size-capped, at most
    :data:`MAX_ENCRYPT_CANDIDATES` occurrences, each a plain or CDATA-wrapped base64
    run. Entities, DTDs and nesting mean nothing here. A shopper's text in compatible
    mode may contain ``<Encrypt>`` too; the caller keeps the candidate that
    ``msg_signature`` vouches for, so a decoy can only fail the check.
    """
    if len(body) > max_bytes:
        raise MalformedMessageError(f"XML body is {len(body)} bytes, above the {max_bytes}-byte limit.")
    found: list[str] = []
    start = body.find(_ENCRYPT_OPEN)
    while start != -1 and len(found) < MAX_ENCRYPT_CANDIDATES:
        end = body.find(_ENCRYPT_CLOSE, start)
        if end == -1:
            break
        value = body[start + len(_ENCRYPT_OPEN):end].strip()
        if value.startswith(_CDATA_OPEN) and value.endswith(_CDATA_CLOSE):
            value = value[len(_CDATA_OPEN):-len(_CDATA_CLOSE)].strip()
        if value and _BASE64.issuperset(value):
            found.append(value.decode("ascii"))
        start = body.find(_ENCRYPT_OPEN, end)
    if not found:
        raise MalformedMessageError("Encrypted push lacks a base64 <Encrypt> element.")
    return found


def _element_to_dict(element: ET.Element, depth: int = 0) -> dict[str, Any]:
    # WeChat nests three levels at most (xml/Articles/item); a deep body is an attack
    # that would otherwise end in RecursionError, i.e. a 500.
    if depth >= MAX_XML_DEPTH:
        raise MalformedMessageError(f"XML nests deeper than {MAX_XML_DEPTH} levels; WeChat pushes never do.")
    result: dict[str, Any] = {}
    for child in element:
        if len(child):
            value: Any = _element_to_dict(child, depth + 1)
        else:
            value = child.text or ""
        if child.tag in result:  # repeated tags (e.g. <item>) collect into a list
            existing = result[child.tag]
            result[child.tag] = existing + [value] if isinstance(existing, list) else [existing, value]
        else:
            result[child.tag] = value
    return result


@dataclass(frozen=True)
class IncomingMessage:
    """One decrypted push from WeChat, with the fields the channel uses."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    msg_id: str | None = None
    content: str | None = None
    recognition: str | None = None
    media_id: str | None = None
    pic_url: str | None = None
    event: str | None = None
    event_key: str | None = None
    ticket: str | None = None
    location: Mapping[str, str] | None = None
    link: Mapping[str, str] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        """WeChat retries carry the same MsgId; events have none, so sender+time."""
        if self.msg_id:
            return f"msg:{self.msg_id}"
        return f"evt:{self.from_user}:{self.create_time}:{self.event or ''}"

    @property
    def is_known_type(self) -> bool:
        return self.msg_type in KNOWN_MESSAGE_TYPES


def parse_message(fields: Mapping[str, Any]) -> IncomingMessage:
    """Build an ``IncomingMessage``; MalformedMessageError when required fields lack."""
    missing = [k for k in ("ToUserName", "FromUserName", "MsgType") if not _text(fields.get(k))]
    if missing:
        raise MalformedMessageError(f"WeChat message lacks {', '.join(missing)}.")
    try:
        create_time = int(_text(fields.get("CreateTime")) or 0)
    except ValueError as e:
        raise MalformedMessageError("CreateTime must be an integer.") from e
    msg_type = _text(fields.get("MsgType")).lower()
    location = None
    if msg_type == "location":
        location = {
            "latitude": _text(fields.get("Location_X")),
            "longitude": _text(fields.get("Location_Y")),
            "scale": _text(fields.get("Scale")),
            "label": _text(fields.get("Label")),
        }
    link = None
    if msg_type == "link":
        link = {
            "title": _text(fields.get("Title")),
            "description": _text(fields.get("Description")),
            "url": _text(fields.get("Url")),
        }
    event = _text(fields.get("Event")) or None
    return IncomingMessage(
        to_user=_text(fields.get("ToUserName")),
        from_user=_text(fields.get("FromUserName")),
        create_time=create_time,
        msg_type=msg_type,
        msg_id=_text(fields.get("MsgId")) or _text(fields.get("MsgID")) or None,
        content=_text(fields.get("Content")) if "Content" in fields else None,
        recognition=_text(fields.get("Recognition")) or None,
        media_id=_text(fields.get("MediaId")) or None,
        pic_url=_text(fields.get("PicUrl")) or None,
        event=event.lower() if event else None,
        event_key=_text(fields.get("EventKey")) or None,
        ticket=_text(fields.get("Ticket")) or None,
        location=location,
        link=link,
        raw=dict(fields),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- passive replies ------------------------------------------------------------------------

def cdata(value: str) -> str:
    """A CDATA section; a ``]]>`` inside the text is split so it cannot close it."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _header(to_user: str, from_user: str, msg_type: str, create_time: int | None) -> str:
    return (
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time if create_time is not None else time.time())}</CreateTime>"
        f"<MsgType>{cdata(msg_type)}</MsgType>"
    )


def render_text_reply(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    return f"<xml>{_header(to_user, from_user, 'text', create_time)}<Content>{cdata(content)}</Content></xml>"


def render_image_reply(to_user: str, from_user: str, media_id: str, create_time: int | None = None) -> str:
    return (
        f"<xml>{_header(to_user, from_user, 'image', create_time)}"
        f"<Image><MediaId>{cdata(media_id)}</MediaId></Image></xml>"
    )


@dataclass(frozen=True)
class Article:
    """One 图文 (news) item: a product card in WeChat's terms."""

    title: str
    description: str = ""
    pic_url: str = ""
    url: str = ""

    def as_api(self) -> dict[str, str]:
        return {"title": self.title, "description": self.description, "url": self.url, "picurl": self.pic_url}


def render_news_reply(
    to_user: str, from_user: str, articles: list[Article], create_time: int | None = None
) -> str:
    items = "".join(
        f"<item><Title>{cdata(a.title)}</Title><Description>{cdata(a.description)}</Description>"
        f"<PicUrl>{cdata(a.pic_url)}</PicUrl><Url>{cdata(a.url)}</Url></item>"
        for a in articles
    )
    return (
        f"<xml>{_header(to_user, from_user, 'news', create_time)}"
        f"<ArticleCount>{len(articles)}</ArticleCount><Articles>{items}</Articles></xml>"
    )


def render_encrypted_envelope(encrypted: str, signature: str, timestamp: str, nonce: str) -> str:
    return (
        f"<xml><Encrypt>{cdata(encrypted)}</Encrypt><MsgSignature>{cdata(signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>"
    )
