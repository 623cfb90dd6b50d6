"""A kefu server with the shopbot model on 127.0.0.1, and headless Debian Chromium.

The server runs in a background thread with its own event loop, so tests can
use Playwright's sync API and still push messages into the server's loop
(``ShopServer.push``). Screenshots go to ``test-artifacts/`` (git-ignored).
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = REPO_ROOT / "tests" / "data" / "projects" / "shopbot"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ShopServer:
    """``create_app`` with the socketio channel and the demo page, served from a thread."""

    def __init__(self, model_path: Path, channel_credentials: dict[str, Any] | None = None) -> None:
        self.model_path = model_path
        self.channel_credentials = dict(channel_credentials or {})  # e.g. a Redis outbox
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.channel: Any = None
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._run, name="kefu-browser-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:  # surface start failures in the test thread
            self._ready.set_exception(e)
            return
        self._ready.set_result(True)
        self.loop.run_forever()

    async def _start(self) -> None:
        from bot.agent import Agent
        from bot.server.app import create_app
        from connectors.demo_page import demo_root
        from connectors.rest import RestInput
        from connectors.socketio import SocketIOInput

        agent = Agent(project_root=PROJECT, action_package=None)
        await agent.load_model(self.model_path)
        # a per-run secret: shops sign identity tokens with theirs (docs/channels.md)
        self.identity_secret = secrets.token_urlsafe(32)
        self.channel = SocketIOInput.from_credentials(
            {"session_persistence": True, "identity_secret": self.identity_secret, **self.channel_credentials}
        )
        app = create_app(agent, input_channels=[RestInput(), self.channel], root_handler=demo_root)
        app.config.TOUCHUP = False
        self.server = await app.create_server(
            host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False
        )
        await self.server.startup()
        self.loop.create_task(self.server.serve_forever())

    def start(self) -> "ShopServer":
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def push(self, session_id: str, message: dict[str, Any]) -> None:
        """Send a bot message to a session from outside, as handoff and triggers will."""
        out = self.channel.get_output_channel_for(session_id)
        asyncio.run_coroutine_threadsafe(out.send_response(session_id, message), self.loop).result(10)

    def history(self, session_id: str) -> list[dict[str, Any]]:
        """The session's outbox as the server keeps it (user and bot messages, in order)."""
        return asyncio.run_coroutine_threadsafe(self.channel.history(session_id), self.loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def shop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopServer]:
    from bot.model.training import train

    result = train(root=PROJECT, out=tmp_path_factory.mktemp("shopbot-model"))
    server = ShopServer(result.model_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread
    # while it is open, which breaks every asyncio test that runs after it.
    # Missing browser parts fail the run (CI must not count a skip as a pass), unless
    # KEFU_SKIP_BROWSER=1 says so explicitly.
    skip = os.environ.get("KEFU_SKIP_BROWSER") == "1"
    try:
        import playwright.sync_api as playwright_api
    except ImportError:
        if skip:
            pytest.skip("playwright not installed and KEFU_SKIP_BROWSER=1")
        pytest.fail("playwright is not installed: run `bash scripts/install.sh --test`")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if skip:
            pytest.skip("chromium not installed and KEFU_SKIP_BROWSER=1")
        pytest.fail("Debian's chromium is not installed: run `bash scripts/install.sh --test`")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def phone(browser: Any) -> Iterator[Any]:
    """A fresh phone-sized browser context (its own localStorage)."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="en-US")
    yield context
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
