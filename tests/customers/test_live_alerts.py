"""Customer 360 health alerts reach the consoles live, through the handoff notifier (as bot/alerts does).

Real headless Chromium against a kefu server on 127.0.0.1 with the handoff and customers
features (no model: the consoles do not chat). Shopper conversation ``conv-42`` waits in the
``after_sales:en`` queue; the shop's outbox says it is customer 42's and that 42's last order
was 200 days ago: the health score falls into ``at_risk``, health.yml's ``winback`` action
(``notify_agents``) fires, and the alert is pushed over the console websocket. Sue
(supervisor) and Alice (an agent of ``after_sales``) see it without a reload; Bob (an agent
of ``product`` only) does not. Screenshot: test-artifacts/customer-alert-live.png.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser.test_alerts import HANDOFF_PROJECT, REPO_ROOT, TIMEOUT, AlertServer, chromium, login  # noqa: F401
from tests.customers.conftest import CUSTOMERS_YML, HEALTH_YML
from tests.handoff.helpers import make_config

pytestmark = pytest.mark.browser
DAY = 86400.0


class CustomerAlertServer(AlertServer):
    def __init__(self, config: Any, project: Path) -> None:
        super().__init__(config)
        self.project = project
        self.heard: list[dict[str, Any]] = []

    async def _start(self) -> None:
        from bot.agent import Agent
        from bot.customers.feature import CustomersFeature, console_principal
        from bot.feature import ProjectSettings
        from bot.handoff import HandoffService
        from bot.handoff.feature import HandoffFeature
        from bot.server.app import create_app

        self.agent = Agent(action_package=None, project_root=HANDOFF_PROJECT)
        self.service = HandoffService(self.config, profile_provider=None)
        settings = ProjectSettings(root=self.project, config={"customers": {
            "url": f"sqlite:///{self.project / 'customers.db'}"}})
        self.customers = CustomersFeature(settings, console_verify=console_principal(self.config))
        app = create_app(self.agent, features=[HandoffFeature(self.service, owns_service=False), self.customers])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()

        async def listen(event: dict[str, Any]) -> None:
            self.heard.append(event)

        self.service.notifier.subscribe(listen)
        self.loop.create_task(self.server.serve_forever())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CustomerAlertServer]:
    from bot.shared.yaml_io import read_yaml_file, to_plain

    (tmp_path / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
    (tmp_path / "customers.yml").write_text(CUSTOMERS_YML, encoding="utf-8")
    base = to_plain(read_yaml_file(HANDOFF_PROJECT / "config.yml"))["handoff"]
    s = CustomerAlertServer(make_config(base, tmp_path / "handoff.db", auto_assign=False), tmp_path).start()
    yield s
    s.stop()


def test_a_health_alert_is_pushed_to_the_supervisor_and_the_queues_agent_not_to_others(
        server: CustomerAlertServer, chromium: Any) -> None:  # noqa: F811
    from bot.customers.ingress import from_broker

    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    sue, alice, bob = (login(chromium, server, name) for name in ("sue", "alice", "bob"))
    handoff = server.call(server.service.store.create({
        "conversation_id": "conv-42", "reason": "request_human", "queue": "after_sales:en", "created_at": time.time()}))

    now = time.time()
    bodies = [{"event": "return_requested", "customer_id": "42", "order_id": "E1", "outbox_id": 1,
               "sender_id": "conv-42", "timestamp": now - 60, "data": {"reason": "size"}},
              {"event": "order_paid", "customer_id": "42", "order_id": "E1", "outbox_id": 2,
               "timestamp": now - 200 * DAY, "data": {"total_cents": 5000}}]

    async def ingest() -> str:
        cid = ""
        for body in bodies:
            item = from_broker(body)
            cid = await server.customers.service.ingest(item.event, item.links, item.proof)
        return cid

    cid = server.call(ingest())
    record = server.call(server.customers.service.get(cid))
    assert record["health_band"] == "at_risk"
    [stored] = [a for a in server.call(server.customers.service.alerts()) if a["customer_id"] == cid]
    assert stored["rule"] == "winback"

    # What went over the bus: one customer_alert naming the open handoff's queue and no shopper data.
    [event] = [e for e in server.heard if e.get("type") == "customer_alert"]
    assert {k: event[k] for k in ("customer_id", "rule", "message", "band", "queue", "agent_id", "handoff_id",
                                  "skill_group")} == {
        "customer_id": cid, "rule": "winback", "message": "at risk", "band": "at_risk", "queue": "after_sales:en",
        "agent_id": None, "handoff_id": handoff["id"], "skill_group": "senior"}
    assert "conv-42" not in str(event) and "42" != event["customer_id"]

    selector = f"#c360-live .c360-live-alert[data-customer='{cid}'][data-rule='winback']"
    sue.locator(selector).wait_for(timeout=TIMEOUT)  # pushed over the websocket, no reload
    alice.locator(selector).wait_for(timeout=TIMEOUT)
    text = alice.locator(selector).inner_text()
    assert "Customer alert" in text and "at risk" in text and "senior" in text and cid in text, text
    alice.screenshot(path=str(artifacts / "customer-alert-live.png"))
    bob.wait_for_timeout(700)
    assert bob.locator("#c360-live .c360-live-alert").count() == 0
