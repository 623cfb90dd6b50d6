"""A supervisor's console shows an operational alert live, and its clearing; an agent's console shows neither.

Real headless Chromium against a kefu server on 127.0.0.1 with the handoff and alerts
features (no model needed: the console does not chat). A shopper has waited 7 minutes
for an agent (a ``queue_wait`` rule of 5), the alerts task evaluates, the alert goes over
the handoff bus to the supervisor's websocket and the panel lists it; when the handoff
is claimed the next evaluation clears it. Screenshot: test-artifacts/alerts-console.png.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.handoff.helpers import make_config, password_for

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 15_000
REPO_ROOT = Path(__file__).resolve().parents[2]
HANDOFF_PROJECT = REPO_ROOT / "tests" / "handoff" / "data" / "project"
RULES = {"rules": [{"name": "queue_slow", "kind": "queue_wait", "max_wait_minutes": 5, "severity": "critical"},
                   {"name": "csat_low", "kind": "csat_drop", "threshold": 3.5, "min_ratings": 3}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AlertServer:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
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
        from bot.alerts.config import parse_alerts
        from bot.alerts.feature import AlertsFeature
        from bot.handoff import HandoffService
        from bot.handoff.feature import HandoffFeature
        from bot.server.app import create_app

        self.agent = Agent(action_package=None, project_root=HANDOFF_PROJECT)
        self.service = HandoffService(self.config, profile_provider=None)
        self.alerts = AlertsFeature(parse_alerts({**RULES, "evaluate_every_s": 3600}))  # the test evaluates
        app = create_app(self.agent, features=[HandoffFeature(self.service, owns_service=False), self.alerts])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()
        self.loop.create_task(self.server.serve_forever())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> "AlertServer":
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
def server(tmp_path: Path) -> Iterator[AlertServer]:
    from bot.shared.yaml_io import read_yaml_file, to_plain

    base = to_plain(read_yaml_file(HANDOFF_PROJECT / "config.yml"))["handoff"]
    s = AlertServer(make_config(base, tmp_path / "handoff.db", auto_assign=False)).start()
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


def login(chromium: Any, server: AlertServer, agent_id: str, locale: str = "en-US") -> Any:
    context = chromium.new_context(viewport={"width": 1280, "height": 760}, locale=locale)
    page = context.new_page()
    page.goto(server.url + "/console")
    page.locator("#agent-id").fill(agent_id)
    page.locator("#password").fill(password_for(agent_id))
    page.locator("#login-button").click()
    page.wait_for_function("window.KefuConsole.isLive()", timeout=TIMEOUT)
    return page


def test_browser_supervisor_sees_an_alert_fire_and_clear_agent_sees_none(server: AlertServer, chromium: Any) -> None:
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    supervisor = login(chromium, server, "sue")
    agent = login(chromium, server, "alice")
    supervisor.locator("#alerts-panel .alert-none").wait_for(timeout=TIMEOUT)  # a supervisor's panel, empty
    assert supervisor.locator("#alerts-panel .alert").count() == 0

    row = server.call(server.service.store.create({
        "conversation_id": "waiting-shopper", "reason": "request_human", "queue": "general",
        "created_at": time.time() - 7 * 60}))
    fired = server.call(server.alerts.evaluate_once())
    assert [(a["rule"], a["state"]) for a in fired] == [("queue_slow", "firing")]

    alert = supervisor.locator("#alerts-panel .alert.critical[data-rule='queue_slow']")
    alert.wait_for(timeout=TIMEOUT)  # pushed over the websocket, no reload
    text = alert.inner_text()
    assert "waited 7 min" in text and "limit 5 min" in text, text
    assert "(1)" in supervisor.locator("#alerts-title").inner_text()
    supervisor.screenshot(path=str(artifacts / "alerts-console.png"))

    agent.wait_for_timeout(500)
    assert agent.locator("#alerts-panel").count() == 0 or agent.locator("#alerts-panel").is_hidden()

    assert server.call(server.service.store.try_assign(row["id"], "alice"))
    cleared = server.call(server.alerts.evaluate_once())
    assert [(a["rule"], a["state"]) for a in cleared] == [("queue_slow", "cleared")]
    supervisor.locator("#alerts-panel .alert.cleared[data-rule='queue_slow']").wait_for(timeout=TIMEOUT)
    assert supervisor.locator("#alerts-panel .alert.critical").count() == 0
    supervisor.locator("#lang-toggle").click()
    supervisor.locator("#alerts-title", has_text="告警").wait_for(timeout=TIMEOUT)
    # the live badge keeps its state through a language switch (it read "未连接" while connected)
    assert supervisor.locator("#live").inner_text() == "实时"
    assert "on" in (supervisor.locator("#live").get_attribute("class") or "")
    supervisor.screenshot(path=str(artifacts / "alerts-console-cleared-zh.png"))
