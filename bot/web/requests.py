"""Request parsing helpers shared by the API routes, the channels and the feature blueprints.

Each helper turns a malformed request into a 400 that names the parameter and
where it was expected (``details: {"parameter", "in"}``), as Rasa does.
"""
from __future__ import annotations

import json
from typing import Any

from sanic import Request

from bot.web.errors import bad_request

JSON_CONTENT_TYPE = "application/json"
YAML_CONTENT_TYPE = "application/x-yaml"


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
            data = json.loads(request.body)
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


def accepts_json(request: Request) -> bool:
    """Whether the ``Accept`` header asks for JSON."""
    return JSON_CONTENT_TYPE in (request.headers.get("Accept") or "")
