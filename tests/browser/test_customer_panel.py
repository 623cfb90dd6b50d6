"""The console's Customer 360 panel in real headless Chromium, beside the live chat.

A shopper chats in the widget and gets angry; the conversation escalates. The shop's outbox
(trusted) says this widget conversation is customer 42's, who has an order history; Alice
logs into /console, opens the conversation and sees the profile, tags, the health score with
its explanation and trend, and the timeline (conversation, handoff with its summary, orders),
all fetched with her console login. Screenshot: test-artifacts/customer-panel.png.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.customers.conftest import CUSTOMERS_YML, HEALTH_YML
from tests.handoff.conftest import handoff_config_dict, handoff_model  # noqa: F401 (fixtures)
from tests.handoff.helpers import make_config, password_for
from tests.handoff.test_browser import HandoffServer, chromium  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser
TIMEOUT = 15_000
DAY = 86400.0


class CustomerServer(HandoffServer):
    """The handoff test server plus the Customer 360 feature on a real SQLite file, broker in-process."""

    def __init__(self, model: Path, config: Any, project: Path) -> None:
        super().__init__(model, config)
        self.project = project

    async def _start(self) -> None:
        from bot.agent import Agent
        from bot.customers.feature import CustomersFeature, console_principal
        from bot.feature import ProjectSettings
        from bot.handoff import HandoffService
        from bot.handoff.feature import HandoffFeature
        from bot.server.app import create_app
        from bot.stores.event_broker import InProcessEventBroker
        from connectors.demo_page import demo_root
        from connectors.socketio import SocketIOInput

        self.broker = InProcessEventBroker()
        self.agent = Agent(event_broker=self.broker, action_package=None)
        await self.agent.load_model(self.model)
        channel = SocketIOInput.from_credentials({"session_persistence": True})

        async def no_profile(channel: Any, sender: str) -> None:
            return None

        self.service = HandoffService(self.config, profile_provider=no_profile)
        settings = ProjectSettings(root=self.project, config={"customers": {
            "url": f"sqlite:///{self.project / 'customers.db'}"}})
        self.customers = CustomersFeature(settings, console_verify=console_principal(self.config))
        app = create_app(self.agent, input_channels=[channel], root_handler=demo_root,
                         auth_token=secrets.token_hex(24), jwt_secret=secrets.token_hex(32),
                         features=[HandoffFeature(self.service, owns_service=False), self.customers])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()
        self.loop.create_task(self.server.serve_forever())


@pytest.fixture
def server(handoff_model: Path, handoff_config_dict: dict, tmp_path: Path) -> Iterator[CustomerServer]:  # noqa: F811
    (tmp_path / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
    (tmp_path / "customers.yml").write_text(CUSTOMERS_YML, encoding="utf-8")
    s = CustomerServer(handoff_model, make_config(handoff_config_dict, tmp_path / "handoff.db"), tmp_path).start()
    yield s
    s.stop()


def test_console_shows_the_customer_panel_beside_the_chat(server: CustomerServer, chromium: Any,  # noqa: F811
                                                          repo_root: Path) -> None:
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
    [handoff] = server.call(server.service.store.list(("queued",)))
    conversation = handoff["conversation_id"]

    # The shop's outbox (a trusted producer): orders of customer 42, one placed from this chat.
    now = time.time()
    bodies = [
        {"event": "order_paid", "customer_id": "42", "order_id": "E20260101001", "outbox_id": 1,
         "timestamp": now - 200 * DAY, "data": {"total_cents": 129900, "discount_cents": 10000,
                                                  "categories": ["running_shoes"]}},
        {"event": "order_paid", "customer_id": "42", "order_id": "E20260301002", "outbox_id": 2,
         "timestamp": now - 20 * DAY, "data": {"total_cents": 259900, "categories": ["running_shoes", "apparel"]}},
        {"event": "return_requested", "customer_id": "42", "order_id": "E20260301002", "outbox_id": 3,
         "sender_id": conversation, "timestamp": now - 60, "data": {"reason": "size"}},
        {"event": "csat_submitted", "sender_id": conversation, "handoff_id": "h-earlier", "rating": 4,
         "timestamp": now - 30},
    ]

    async def publish() -> None:
        for body in bodies:
            await server.broker.publish(body)
        for _ in range(100):  # the feature's task works through its queue
            if server.customers.queue.empty():
                break
            await asyncio.sleep(0.05)
        await server.customers.drain()

    server.call(publish())
    cid = server.call(server.customers.service.find("conversation", conversation))
    assert cid is not None and cid == server.call(server.customers.service.find("shop_customer", "42"))

    agent_ctx = chromium.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    console = agent_ctx.new_page()
    console.goto(server.url + "/console")
    console.locator("#agent-id").fill("alice")
    console.locator("#password").fill(password_for("alice"))
    console.locator("#login-button").click()
    console.wait_for_function("window.KefuConsole.isLive()", timeout=TIMEOUT)
    item = console.locator("#mine .item")
    item.first.wait_for(timeout=TIMEOUT)
    item.first.click()
    console.locator("#transcript .line.user", has_text="so angry").wait_for(timeout=TIMEOUT)
    panel = console.locator("#c360")
    panel.locator(".c360-score").wait_for(timeout=TIMEOUT)
    record = server.call(server.customers.service.get(cid))
    assert panel.locator(".c360-score").inner_text() == str(round(record["health_score"]))
    assert "高价值" in panel.locator(".c360-tags").inner_text()
    assert panel.locator(".c360-why li").count() == len(record["health"]["factors"]) >= 1
    assert len(record["health_history"]) >= 2 and panel.locator(".c360-trend path").count() == 1
    # the first order alone (200 days ago) scored at-risk: that threshold action's alert is listed
    alerts = [a for a in server.call(server.customers.service.alerts()) if a["customer_id"] == cid]
    assert len(alerts) >= 1 and panel.locator("#c360-alerts li").count() == min(3, len(alerts))
    assert "at risk" in panel.locator("#c360-alerts").inner_text()
    timeline = panel.locator("#c360-timeline")
    timeline.locator(".type-handoff_requested").wait_for(timeout=TIMEOUT)
    text = timeline.inner_text()
    for kind in ("conversation_started", "handoff_requested", "order_paid", "return_requested"):
        assert kind in text, kind
    assert "E20260301002" in text
    console.screenshot(path=str(artifacts / "customer-panel.png"))
    timeline.scroll_into_view_if_needed()
    panel.screenshot(path=str(artifacts / "customer-panel-timeline.png"))
    # A stranger (no console login) is refused by the same routes the panel uses.
    status = console.evaluate("fetch('/customers/" + cid + "').then(r => r.status)")
    assert status == 401
    shopper_ctx.close()
    agent_ctx.close()
