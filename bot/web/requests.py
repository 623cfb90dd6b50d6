"""Request parsing helpers shared by the API routes, the channels and the feature blueprints.

Each helper turns a malformed request into a 400 that names the parameter and
where it was expected (``details: {"parameter", "in"}``), as Rasa does.

Bodies are bounded twice: by size per route (``BodyLimits``, enforced by the
server before the body is read) and by JSON nesting (``MAX_JSON_DEPTH``, checked
by a linear scan before ``json.loads``, whose C scanner recurses per level and
would otherwise end a 100 000-deep body in a ``RecursionError``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sanic import Request

from bot.web.errors import bad_request

JSON_CONTENT_TYPE = "application/json"
YAML_CONTENT_TYPE = "application/x-yaml"

MAX_JSON_DEPTH = 64
KIB = 1024
MIB = 1024 * KIB

# A whole string (skipped in one C-level match), a bracket, or a quote that never closes.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)
_OPENERS = frozenset(b"[{")


def json_depth_exceeds(body: bytes | str, limit: int = MAX_JSON_DEPTH) -> int | None:
    """The byte offset where ``body`` nests deeper than ``limit``, or None.

    One pass of a regular expression that matches whole strings (so brackets in
    text do not count) and brackets; linear in the body. Malformed JSON (an
    unterminated string) is left for ``json.loads`` to report.
    """
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if data.count(b"[") + data.count(b"{") <= limit:
        return None  # cannot nest deeper than the number of openers
    depth = 0
    for match in _JSON_TOKEN.finditer(data):
        char = data[match.start()]
        if char in _OPENERS:
            depth += 1
            if depth > limit:
                return match.start()
        elif char != 0x22:  # a closing bracket
            depth -= 1
        elif match.end() - match.start() == 1:
            return None  # an unterminated string: not JSON at all
    return None


def loads_bounded(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (a ``ValueError``).

    Also the app's loader for Sanic's ``request.json``.
    """
    offset = json_depth_exceeds(body, max_depth)
    if offset is not None:
        raise ValueError(
            f"JSON nested deeper than {max_depth} levels (at byte {offset}). "
            "Fix: send flatter JSON; kefu's API bodies nest a few levels at most"
        )
    return json.loads(body)


@dataclass(frozen=True)
class BodyLimits:
    """The largest request body each route accepts, by path prefix (longest wins).

    The server applies it as soon as the route is known, before the body is read
    (a larger ``Content-Length`` is a 413 that names the limit; a chunked body is
    cut off at it). ``default`` covers every path no prefix matches.
    """

    default: int = 1 * MIB
    prefixes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_server(cls, large: int, events: int = 1 * MIB) -> "BodyLimits":
        """kefu's table: channels and parsing small, training and knowledge large."""
        small = min(64 * KIB, large)
        return cls(
            default=min(1 * MIB, large),
            prefixes={
                "/webhooks/": small,  # channel webhooks: one shopper message each
                "/model/parse": small,
                "/model": small,  # PUT /model: a file name
                "/model/train": large,
                "/model/test": large,  # NLU test data (YAML)
                "/knowledge/": large,  # knowledge entries and imports
                "/events": min(events, large),  # bot/triggers/events.py MAX_BODY_BYTES
                "/conversations/": min(8 * MIB, large),  # whole trackers (PUT .../tracker/events)
            },
        )

    def limit_for(self, path: str) -> int:
        best, best_len = self.default, -1
        for prefix, limit in self.prefixes.items():
            if path.startswith(prefix) and len(prefix) > best_len:
                best, best_len = limit, len(prefix)
        return best


def json_body(request: Request, expect: type | tuple[type, ...] | None = dict) -> Any:
    """The parsed JSON body (cached on the request); 400 if empty, invalid or mistyped."""
    if hasattr(request.ctx, "kefu_json_body"):
        data = request.ctx.kefu_json_body
    else:
        if not request.body:
            raise bad_request(
                "The request body is empty. Fix: send a JSON body "
                "with Content-Type: application/json.",
                "",
            )
        try:
            data = loads_bounded(request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"The request body is not valid JSON: {e}.", "") from e
        request.ctx.kefu_json_body = data
    if expect is not None and not isinstance(data, expect):
        names = (
            " or ".join(_json_type(t) for t in expect)
            if isinstance(expect, tuple)
            else _json_type(expect)
        )
        raise bad_request(
            f"The request body must be a JSON {names}, got {_json_type(type(data))}.", ""
        )
    return data


def _json_type(t: type) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(t, t.__name__)


def bool_arg(request: Request, name: str, default: bool = False) -> bool:
    """Rasa's ``bool_arg``: only ``true`` (any case) is true."""
    value = request.args.get(name)
    if value is None:
        return default
    return str(value).lower() == "true"


def float_arg(request: Request, name: str) -> float | None:
    """A float query parameter, ``None`` when absent, 400 when not a number."""
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError as e:
        raise bad_request(
            f"Query parameter '{name}' must be a number (a UNIX timestamp), got '{value}'.",
            name,
            "query",
        ) from e


def int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``low..high``; ``default`` when absent, 400 otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise bad_request(f"Query parameter '{name}' must be an integer, got '{raw}'.", name, "query") from e
    if not low <= value <= high:
        raise bad_request(f"Query parameter '{name}' must be between {low} and {high}.", name, "query")
    return value


def accepts_json(request: Request) -> bool:
    """Whether the ``Accept`` header asks for JSON."""
    return JSON_CONTENT_TYPE in (request.headers.get("Accept") or "")
