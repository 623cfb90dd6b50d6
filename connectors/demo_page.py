"""``GET /``: a demo sports-shop page with kefu's chat widget, so ``kefu run`` leads to a chat.

Wire it with ``create_app(..., root_handler=demo_root)`` (``serve(...,
app_kwargs={"root_handler": demo_root})``; a module-level function, so it
pickles for Sanic workers). The widget needs the ``socketio`` channel in
``credentials.yml``; without it the page says how to enable it.
``?lang=zh`` / ``?lang=en`` force the widget's language (default: the browser's).
"""
from __future__ import annotations

import html
import logging
from pathlib import Path

from sanic import Request, response
from sanic.response import HTTPResponse

from connectors.socketio import SocketIOInput

logger = logging.getLogger(__name__)

DEMO_PAGE = Path(__file__).resolve().parent / "static" / "demo" / "index.html"
WEBHOOK_PREFIX = "/webhooks/"

NOTICE_NO_CHANNEL = (
    '<p class="notice">The chat widget needs the <code>socketio</code> channel. Add '
    "<code>socketio:</code> with <code>session_persistence: true</code> to "
    "<code>credentials.yml</code> and restart <code>kefu run</code>.</p>"
)


def widget_tag(request: Request, title: str = "kefu Sports") -> str | None:
    """The ``<script>`` tag for the app's socketio channel, or ``None`` if it has none."""
    channels = getattr(request.app.ctx, "input_channels", None) or []
    channel = next((c for c in channels if isinstance(c, SocketIOInput)), None)
    if channel is None:
        return None
    src = f"{WEBHOOK_PREFIX}{channel.url_prefix()}/widget.js"
    attrs = [f'src="{html.escape(src)}"', f'data-title="{html.escape(title)}"']
    lang = request.args.get("lang")
    if lang in ("zh", "en"):
        attrs.append(f'data-lang="{lang}"')
    return f"<script {' '.join(attrs)} defer></script>"


async def demo_root(request: Request) -> HTTPResponse:
    """The demo shop page with the widget (or with a notice saying how to enable it)."""
    page = DEMO_PAGE.read_text(encoding="utf-8")
    tag = widget_tag(request)
    page = page.replace("{{NOTICE}}", "" if tag else NOTICE_NO_CHANNEL)
    page = page.replace("{{WIDGET}}", tag or "")
    return response.html(page)
