"""Both sides in real headless Chromium: the shopper's widget and the agent console.

A shopper gets angry in the widget, the conversation escalates (reason
negative_sentiment), Alice logs into /console, sees the transcript, replies,
the shopper sees it, Alice resolves, the shopper rates 5 stars, and the bot
answers the next question again; every step is in the tracker and on the broker.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.handoff.helpers import RecordingBroker, make_config, password_for

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 15_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HandoffServer:
    def __init__(self, model: Path, config: Any) -> None:
        self.model, self.config = model, config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.broker = RecordingBroker()
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:
            self._ready.set_exception(e)
            return
        self._ready.set_result(True)
        self.loop.run_forever()

    async def _start(self) -> None:
        from bot.agent import Agent
        from bot.handoff import HandoffService
        from bot.handoff.feature import HandoffFeature
        from bot.server.app import create_app
        from connectors.demo_page import demo_root
        from connectors.socketio import SocketIOInput

        self.agent = Agent(event_broker=self.broker, action_package=None)
        await self.agent.load_model(self.model)
        channel = SocketIOInput.from_credentials({"session_persistence": True})

        async def no_profile(channel: Any, sender: str) -> None:
            return None

        self.service = HandoffService(self.config, profile_provider=no_profile)
        app = create_app(self.agent, input_channels=[channel], root_handler=demo_root,
                         features=[HandoffFeature(self.service, owns_service=False)])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()  # the server's life cycle: starts the handoff feature
        self.loop.create_task(self.server.serve_forever())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> "HandoffServer":
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def server(handoff_model: Path, handoff_config_dict: dict, tmp_path: Path) -> Iterator[HandoffServer]:
    s = HandoffServer(handoff_model, make_config(handoff_config_dict, tmp_path / "handoff.db")).start()
    yield s
    s.stop()


@pytest.fixture
def chromium() -> Iterator[Any]:
    api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium fonts-wqy-zenhei)")
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True)
        yield browser
        browser.close()


def test_browser_angry_shopper_escalates_agent_replies_resolves_and_shopper_rates(
    server: HandoffServer, chromium: Any, repo_root: Path
) -> None:
    artifacts = repo_root / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shopper_ctx = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    shopper = shopper_ctx.new_page()
    shopper.goto(server.url + "/")
    shopper.wait_for_function("window.KefuWidget && window.KefuWidget.isConnected()", timeout=TIMEOUT)
    if not shopper.locator(".kefu-panel").is_visible():
        shopper.locator(".kefu-launcher").click()

    def say(text: str) -> None:
        shopper.locator(".kefu-input").fill(text)
        shopper.locator(".kefu-send").click()

    say("hi")
    shopper.locator(".kefu-bot", has_text="How can I help you").wait_for(timeout=TIMEOUT)
    say("This is terrible, I am so angry!!")
    shopper.locator(".kefu-bot", has_text="connecting you to a human agent").wait_for(timeout=TIMEOUT)
    session_id = shopper.evaluate("window.KefuWidget.sessionId ? window.KefuWidget.sessionId() : null")
    [handoff] = server.call(server.service.store.list(("queued",)))
    assert handoff["reason"] == "negative_sentiment"
    session_id = session_id or handoff["conversation_id"]

    agent_ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    console = agent_ctx.new_page()
    console.goto(server.url + "/console")
    console.locator("#agent-id").fill("alice")
    console.locator("#password").fill(password_for("alice"))
    console.locator("#login-button").click()
    console.wait_for_function("window.KefuConsole.isLive()", timeout=TIMEOUT)
    item = console.locator("#mine .item")  # logging in online auto-assigned the waiting handoff
    item.first.wait_for(timeout=TIMEOUT)
    item.first.click()
    console.locator("#transcript .line.user", has_text="so angry").wait_for(timeout=TIMEOUT)
    assert "negative_sentiment" in console.locator("#conv-title").inner_text()

    say("are you there?")  # relayed live to the console, no bot reply
    console.locator("#transcript .line.user.live", has_text="are you there?").wait_for(timeout=TIMEOUT)
    console.locator("#reply").fill("Hi, I'm Alice. I'll sort this out for you.")
    console.locator("#send").click()
    shopper.locator(".kefu-bot", has_text="I'm Alice").wait_for(timeout=TIMEOUT)
    console.screenshot(path=str(artifacts / "handoff-console.png"))
    console.locator("#resolve").click()
    stars = shopper.locator(".kefu-csat .kefu-star")
    stars.first.wait_for(timeout=TIMEOUT)
    stars.nth(4).click()
    shopper.locator(".kefu-bot", has_text="Thanks for your rating").wait_for(timeout=TIMEOUT)
    say("shoes")
    shopper.locator(".kefu-bot", has_text="Trail runner X").wait_for(timeout=TIMEOUT)
    shopper.screenshot(path=str(artifacts / "handoff-widget.png"))

    # nothing duplicated on the shopper's side
    assert shopper.locator(".kefu-bot", has_text="I'm Alice").count() == 1
    stored = server.call(server.service.store.get(handoff["id"]))
    assert stored["status"] == "resolved" and stored["csat"] == 5 and stored["agent_id"] == "alice"
    tracker = server.call(server.agent.get_tracker(handoff["conversation_id"]))
    kinds = [e.type_name for e in tracker.events]
    assert "pause" in kinds and "resume" in kinds and kinds.index("pause") < kinds.index("resume")
    assert any((e.metadata or {}).get("agent_id") == "alice" for e in tracker.events if e.type_name == "bot")
    names = [e.get("event") for e in server.broker.events if e.get("sender_id") == handoff["conversation_id"]]
    for name in ("handoff_requested", "handoff_assigned", "handoff_resolved", "csat_submitted"):
        assert name in names, name
    shopper_ctx.close()
    agent_ctx.close()
