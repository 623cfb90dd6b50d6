"""The socketio channel's HTTP side: the socket.io server mount, history, and kefu's widget files.

Mounted at ``/webhooks/socketio/``: ``GET /`` (health), ``GET /history/<session_id>?after=<seq>``
(only for a session id this server issued - see :mod:`.sessions` -; a signed-in shopper's session
also needs their identity token in the ``X-Kefu-Identity-Token`` header), ``GET /widget.js``
(with the channel's settings prepended), ``GET /widget.css`` and ``GET /static/<path>``
(files under ``connectors/static/``, the widget's and the demo shop page's).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.web.errors import ErrorResponse, bad_request
from connectors.socketio.protocol import valid_session_id

if TYPE_CHECKING:  # pragma: no cover
    from connectors.socketio.channel import SocketIOInput

__all__ = ["IDENTITY_TOKEN_HEADER", "STATIC_DIR", "widget_blueprint"]

IDENTITY_TOKEN_HEADER = "X-Kefu-Identity-Token"

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class _SocketBlueprint(Blueprint):
    """Attaches the socket.io server to the app when the blueprint is registered."""

    def __init__(self, sio: Any, socketio_path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx.sio = sio  # Sanic forbids plain attributes on blueprints
        self.ctx.socketio_path = socketio_path

    def register(self, app: Any, options: dict) -> None:
        self.ctx.sio.attach(app, self.ctx.socketio_path)
        super().register(app, options)


def widget_blueprint(channel: "SocketIOInput") -> Blueprint:
    """The blueprint of ``channel``, whose socket.io server (``channel.sio``) is already built."""
    bp = _SocketBlueprint(channel.sio, channel.socketio_path, channel.blueprint_name(), url_prefix=None)

    @bp.route("/", methods=["GET"])
    async def health(request: Request) -> HTTPResponse:
        return response.json({"status": "ok"})

    @bp.route("/history/<session_id>", methods=["GET"])
    async def history(request: Request, session_id: str) -> HTTPResponse:
        if valid_session_id(session_id) is None:
            raise bad_request("Invalid session id.", "session_id", "path")
        if not channel.may_read_history(session_id, request.headers.get(IDENTITY_TOKEN_HEADER)):
            raise ErrorResponse(
                403, "Forbidden",
                "This session id was not issued by this server, or it belongs to a signed-in shopper. "
                f"Use the id from 'session_confirm'; for a signed-in shopper send their identity token in "
                f"the {IDENTITY_TOKEN_HEADER} header.",
            )
        after_arg = request.args.get("after", "0")
        if not after_arg.isdigit():
            raise bad_request("'after' must be a non-negative integer (a seq).", "after", "query")
        messages = await channel.history(session_id, int(after_arg))
        return response.json({"session_id": session_id, "messages": messages})

    @bp.route("/widget.js", methods=["GET"])
    async def widget_js(request: Request) -> HTTPResponse:
        source = (STATIC_DIR / "kefu-widget.js").read_text(encoding="utf-8")
        config = json.dumps(channel.widget_config())
        return response.text(
            f"window.KEFU_CHANNEL_DEFAULTS = {config};\n{source}",
            content_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    @bp.route("/widget.css", methods=["GET"])
    async def widget_css(request: Request) -> HTTPResponse:
        return await response.file(
            STATIC_DIR / "kefu-widget.css", mime_type="text/css; charset=utf-8"
        )

    @bp.route("/static/<name:path>", methods=["GET"])
    async def static(request: Request, name: str) -> HTTPResponse:
        path = (STATIC_DIR / name).resolve()
        if STATIC_DIR not in path.parents or not path.is_file():
            raise ErrorResponse(404, "NotFound", f"No static file '{name}'.")
        return await response.file(path)

    return bp
