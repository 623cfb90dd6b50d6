"""The dashboard in a real headless Chromium against a real server thread and a real SQLite history.

Screenshots: ``test-artifacts/dashboard-en.png``, ``dashboard-zh.png``.
"""
from __future__ import annotations

import asyncio
import csv
import io
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser.conftest import _free_port

pytestmark = pytest.mark.browser

TOKEN = "dashboard-browser-token"
ECHARTS = Path(__file__).resolve().parents[2] / "connectors" / "static" / "dashboard" / "vendor" / "echarts.min.js"


# (journey, step, variant, sends, conversions) seeded into a real trigger store
JOURNEY_SENDS = (("welcome", "hello", "A", 100, 10), ("welcome", "hello", "B", 100, 25),
                 ("abandoned_cart", "reminder", "default", 20, 2))
JOURNEY_SKIPS = (("abandoned_cart", "reminder", "quiet_hours", 3), ("abandoned_cart", "reminder", "frequency_cap_day", 2))


async def seeded_trigger_engine(folder: Path) -> Any:
    """A real TriggerEngine over a SQLite trigger store holding sends, conversions and skips on 2026-11-02."""
    from bot.triggers.clock import TestClock
    from bot.triggers.engine import TriggerEngine
    from bot.triggers.journeys import load_triggers_text
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.store import SendRecord, SQLTriggerStore
    from tests.analytics.history import T0
    from tests.triggers.conftest import TEST_TRIGGERS

    store = SQLTriggerStore(f"sqlite+aiosqlite:///{folder / 'triggers.db'}")
    await store.setup()
    for journey, step, variant, sends, conversions in JOURNEY_SENDS:
        for i in range(sends):
            send_id = f"{journey}-{variant}-{i}"
            await store.reserve_send(send_id=send_id, customer_id=f"c{i}", journey=journey, step=step,
                                     variant=variant, message="m", transactional=False, at=T0, per_day=None,
                                     per_week=None)
            await store.mark_sent(send_id, T0)
            if i < conversions:
                await store.record_conversion(SendRecord(send_id, f"c{i}", journey, step, variant, "sent", T0, T0),
                                              f"order-{send_id}", T0 + 60)
    for journey, step, reason, n in JOURNEY_SKIPS:
        for i in range(n):
            await store.record_decision(send_id=f"skip-{reason}-{i}", customer_id=f"s{i}", journey=journey, step=step,
                                        variant="default", kind="skip", reason=reason, at=T0)
    return TriggerEngine(load_triggers_text(TEST_TRIGGERS), store, SQLJobQueue(store.engine), None, TestClock(T0))


class DashboardServer:
    """``create_app`` with only the analytics feature, served from its own loop in a thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._run, name="kefu-dashboard-server", daemon=True)

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
        from bot.analytics.config import AnalyticsConfig
        from bot.analytics.feature import AnalyticsFeature
        from bot.analytics.ingest import Ingester
        from bot.analytics.store import AnalyticsStore
        from bot.feature import ProjectSettings
        from bot.server.app import create_app
        from bot.triggers.feature import TriggersFeature
        from tests.analytics.history import DAY, T0, history

        url = f"sqlite:///{self.db}"
        store = AnalyticsStore(url)
        await store.open()
        ingester = Ingester(store, AnalyticsConfig())
        for body in history():
            await ingester.handle(body)
        await ingester.close_idle(T0 + 10 * DAY)
        await store.close()
        triggers = TriggersFeature(ProjectSettings(root=None), engine=await seeded_trigger_engine(self.db.parent))
        app = create_app(None, auth_token=TOKEN, features=[AnalyticsFeature(AnalyticsConfig(), url), triggers])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        self.loop.create_task(self.server.serve_forever())

    def start(self) -> "DashboardServer":
        self._thread.start()
        self._ready.result(timeout=60)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    server = DashboardServer(tmp_path_factory.mktemp("dashboard") / "analytics.db").start()
    yield server
    server.stop()


def card(page: Any, metric: str) -> str:
    return page.locator(f'.card[data-metric="{metric}"] .value').inner_text()


def test_dashboard_sign_in_figures_charts_language_and_csv(browser: Any, dashboard_server: DashboardServer,
                                                           artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1500}, locale="en-US", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{dashboard_server.url}/dashboard?start=2026-11-02&end=2026-11-04&lang=en")
    assert "Sign in with a token" in page.locator("#status").inner_text()
    assert page.locator("#content").is_hidden()

    page.fill("#token", "wrong-token")
    page.click("#login button")
    page.wait_for_selector("body[data-loaded=error]")
    assert "Sign in" in page.locator("#status").inner_text()

    page.fill("#token", TOKEN)
    page.click("#login button")
    page.wait_for_selector("body[data-loaded=true]")
    assert card(page, "conversations") == "5"
    assert card(page, "escalation_rate") == "20.0%"
    assert card(page, "fallback_rate") == "37.5%"
    assert card(page, "frt_bot") == "3.2 s"
    assert card(page, "csat") == "4"
    definition = page.locator('.card[data-metric="repeat_rate"] .def').inner_text()
    assert "same first intent within 7 days" in definition
    assert page.locator('.table[data-table="top_unanswered"] td').first.inner_text() == "where is my parcel?"
    assert page.locator("#tables .table").count() == 9  # the figures and eight tables, each with its CSV button
    if ECHARTS.is_file():
        page.wait_for_function("document.querySelectorAll('.chart canvas').length >= 4")
        assert page.locator("#nocharts").is_hidden()
    else:
        assert page.locator("#nocharts").is_visible()
    page.screenshot(path=str(artifacts / "dashboard-en.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click('.table[data-table="escalation_reasons"] button.csv')
    download = download_info.value
    assert download.suggested_filename == "kefu-escalation_reasons-2026-11-02-2026-11-04.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows == [{"name": "asked_for_human", "count": "1"}]

    # journeys: the trigger engine's report, as three tables with the report's A/B significance
    from bot.triggers.report import two_proportion_z

    page.wait_for_selector("#journeys[data-state=loaded]")
    funnel = page.locator('.table[data-table="journey_funnel"] tr')
    cells = [funnel.nth(i).locator("td").all_inner_texts() for i in range(1, funnel.count())]
    _, p_value = two_proportion_z(10, 100, 25, 100)
    assert ["welcome", "hello", "B", "100", "25", "0.25", "A", str(round(p_value, 4)), "yes"] in cells
    assert ["welcome", "hello", "A", "100", "10", "0.1", "A", "–", ""] in cells
    skips = page.locator('.table[data-table="journey_skips"] td').all_inner_texts()
    assert skips == ["abandoned_cart", "frequency_cap_day", "2", "abandoned_cart", "quiet_hours", "3"]
    with page.expect_download() as download_info:
        page.click('.table[data-table="journeys"] button.csv')
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8-sig"))))
    assert rows == [{"journey": "abandoned_cart", "sends": "20", "conversions": "2", "conversion_rate": "0.1", "skips": "5"},
                    {"journey": "welcome", "sends": "200", "conversions": "35", "conversion_rate": "0.175", "skips": "0"}]
    page.screenshot(path=str(artifacts / "dashboard-journeys.png"), full_page=True)

    page.select_option("#channel", "wechat")
    page.click("#apply")
    page.wait_for_selector("body[data-loaded=true]")
    page.wait_for_function("document.querySelector('.card[data-metric=conversations] .value').textContent === '2'")

    page.click("#lang")
    page.wait_for_selector("body[data-loaded=true]")
    page.wait_for_function("document.querySelector('h1').textContent === '运营看板'")
    assert page.locator('.card[data-metric="fcr"] .name').inner_text() == "首次接触解决率"
    page.screenshot(path=str(artifacts / "dashboard-zh.png"), full_page=True)
    assert errors == []
    context.close()


# ----------------------------------------------------------------- with Customer 360 running
HEALTH_YML = """\
components:
  repurchase: {signal: days_since_last_order, normalise: {low: 100, high: 0}, weight: 1}
bands: {healthy: 70, watch: 40, at_risk: 0}
"""
CUSTOMERS_YML = """\
segments:
  流失风险: {when: {health_band: at_risk}}
  活跃: {when: {health_band: healthy}}
"""
HEALTH_START, HEALTH_END = "2026-10-22", "2026-11-04"


class Customer360DashboardServer(DashboardServer):
    """The analytics and customers features together; Customer 360 seeded with 14 days of orders."""

    def __init__(self, db: Path) -> None:
        super().__init__(db)
        self.expected: dict[str, Any] = {}

    async def _start(self) -> None:
        import datetime as dt
        import random

        from bot.agent import Agent
        from bot.analytics.config import AnalyticsConfig
        from bot.analytics.feature import AnalyticsFeature
        from bot.customers.feature import CustomersFeature
        from bot.customers.ingress import from_broker
        from bot.customers.rules import load_rules
        from bot.customers.service import CustomerService
        from bot.customers.store import CustomerStore
        from bot.feature import ProjectSettings
        from bot.server.app import create_app
        from tests.browser.test_alerts import HANDOFF_PROJECT

        root = self.db.parent
        (root / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
        (root / "customers.yml").write_text(CUSTOMERS_YML, encoding="utf-8")
        clock = [0.0]
        c360 = CustomerService(CustomerStore(f"sqlite:///{root / 'customers.db'}"), load_rules(root),
                               clock=lambda: clock[0])
        rng = random.Random(3)
        first = dt.datetime.fromisoformat(HEALTH_START).replace(tzinfo=dt.timezone.utc).timestamp()
        n = 0
        for day in range(14):  # each day some customers order (score 100); the first day sets everyone's start
            clock[0] = first + day * 86400 + 3600
            for customer in range(40):
                if day == 0:
                    days_ago = rng.randint(0, 100)
                elif rng.random() < 0.06:
                    days_ago = 0
                else:
                    continue
                n += 1
                item = from_broker({"event": "order_paid", "customer_id": str(customer), "order_id": f"o{n}",
                                    "outbox_id": n, "timestamp": clock[0] - days_ago * 86400,
                                    "data": {"total_cents": 10000}})
                await c360.ingest(item.event, item.links, item.proof)
        self.expected = await c360.health_overview(None, [first + (d + 1) * 86400 for d in range(14)])
        await c360.close()
        settings = ProjectSettings(root=root, config={"customers": {"url": f"sqlite:///{root / 'customers.db'}"}})
        url = f"sqlite:///{self.db}"
        agent = Agent(action_package=None, project_root=HANDOFF_PROJECT)
        app = create_app(agent, auth_token=TOKEN,
                         features=[CustomersFeature(settings), AnalyticsFeature(AnalyticsConfig(), url)])
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()
        self.loop.create_task(self.server.serve_forever())


def test_dashboard_health_score_distribution_and_trend_from_customer_360(browser: Any, tmp_path: Path,
                                                                         artifacts: Path) -> None:
    server = Customer360DashboardServer(tmp_path / "analytics.db").start()
    try:
        expected = server.expected
        context = browser.new_context(viewport={"width": 1280, "height": 1400}, locale="en-US")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/dashboard?start={HEALTH_START}&end={HEALTH_END}&lang=en")
        page.fill("#token", TOKEN)
        page.click("#login button")
        page.wait_for_selector("body[data-loaded=true]")
        assert page.locator("#health-trend").is_visible() and page.locator("#health-dist").is_visible()
        assert "latest recorded score" in page.locator("#def-health-trend").inner_text()
        assert "10-point score bin" in page.locator("#def-health-dist").inner_text()
        # the trend table (also its CSV): the values Customer 360 computes, one row per day
        rows = page.locator('.table[data-table="health_trend"] tr')
        assert rows.count() == 1 + 14
        last = rows.nth(14).locator("td").all_inner_texts()
        point = expected["trend"][-1]
        assert last[:2] == [HEALTH_END, str(point["customers"])] and float(last[2]) == point["mean"]
        assert [int(x) for x in last[3:]] == [point["bands"][b] for b in ("healthy", "watch", "at_risk")]
        assert point["customers"] == 40 and point["bands"]["healthy"] > expected["trend"][0]["bands"]["healthy"]
        if ECHARTS.is_file():
            page.wait_for_function("document.querySelectorAll('#chart-health-trend canvas, #chart-health-dist canvas')"
                                   ".length == 2")
        page.locator("#health-trend").scroll_into_view_if_needed()
        page.locator(".charts").screenshot(path=str(artifacts / "dashboard-health.png"))
        assert errors == []
        context.close()
    finally:
        server.stop()
