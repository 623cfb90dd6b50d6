"""The shop outbox relay runs inside the server: started after the agent, stopped on shutdown."""
from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sanic import Sanic, json as json_response
from sqlalchemy import create_engine, text

from actions.shop.base import SHOP_TZ
from actions.shop.seed import seed_shop
from bot.server.run import ServerOptions, build_app
from bot.shop_cli import OutboxRelay, create_outbox_relay
from bot.stores.event_broker import InProcessEventBroker, RedisStreamsEventBroker
from bot.triggers.events import from_broker_message
from tests.shop.conftest import TINY

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHOP_TZ)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outbox") / "shop.db"
    seed_shop(f"sqlite:///{path}", seed=7, size=TINY, now=NOW)
    return path


@pytest.fixture()
def project(seeded: Path, tmp_path: Path) -> Path:
    """A project whose shop is a private copy of the seeded shop, relayed every 50 ms."""
    shutil.copy(seeded, tmp_path / "shop.db")
    (tmp_path / "endpoints.yml").write_text("shop:\n  url: sqlite:///shop.db\n  outbox_interval: 0.05\n")
    return tmp_path


def add_outbox_events(db: Path, *names: str) -> None:
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as c:
        for i, name in enumerate(names):
            c.execute(text("insert into outbox (event, sender_id, customer_id, order_id, payload, created_at) "
                           "values (:e, 'shopper', 7, :o, '{}', '2026-11-23 02:00:00.000000')"),
                      {"e": name, "o": f"E2026112300{i}"})
    engine.dispose()


def unpublished(db: Path) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as c:
        count = c.execute(text("select count(*) from outbox where published_at is null")).scalar()
    engine.dispose()
    return count


class BrokerAgent:
    """The parts of an agent the server touches, with a real in-process broker."""

    domain = None
    model_id = "outbox"
    model_path = "outbox.tar.gz"
    fingerprint: dict = {}

    def __init__(self) -> None:
        self.event_broker = InProcessEventBroker()
        self.received: list[dict] = []

        async def collect(event: dict) -> None:
            self.received.append(event)

        self.event_broker.subscribe(collect)

    def is_ready(self) -> bool:
        return True


def _app(project: Path, name: str) -> Sanic:
    app = build_app(BrokerAgent, ServerOptions(app_name=name, project_root=str(project)))

    @app.get("/test/outbox")
    async def wait_for_events(request):  # the relay runs in the server's loop while we wait
        agent = request.app.ctx.agent
        for _ in range(100):
            if len(agent.received) >= int(request.args.get("n", 1)):
                break
            await asyncio.sleep(0.05)
        relay = request.app.ctx.shop_outbox
        return json_response({"events": [e["event"] for e in agent.received],
                              "running": relay is not None and not relay.task.done()})

    return app


def test_server_relays_outbox_events_to_the_broker_and_stops_cleanly(project: Path) -> None:
    add_outbox_events(project / "shop.db", "order_cancelled", "address_changed", "return_requested")
    app = _app(project, "kefu-outbox-relay")
    _, response = app.test_client.get("/test/outbox", params={"n": 3})
    assert response.json["running"] is True
    assert response.json["events"] == ["order_cancelled", "address_changed", "return_requested"]
    assert unpublished(project / "shop.db") == 0
    relay = app.ctx.shop_outbox
    assert relay.task.done() and not relay.task.cancelled()  # stopped on shutdown, not killed


def test_project_without_shop_gets_no_relay(tmp_path: Path) -> None:
    app = _app(tmp_path, "kefu-outbox-none")
    _, response = app.test_client.get("/test/outbox", params={"n": 0})
    assert response.status == 200 and app.ctx.shop_outbox is None


def test_outbox_interval_zero_turns_the_relay_off(project: Path) -> None:
    (project / "endpoints.yml").write_text("shop:\n  url: sqlite:///shop.db\n  outbox_interval: 0\n")
    assert create_outbox_relay(InProcessEventBroker(), project) is None


def test_relay_logs_and_retries_when_the_broker_fails(project: Path, caplog) -> None:
    add_outbox_events(project / "shop.db", "order_cancelled")

    class FlakyBroker:
        def __init__(self) -> None:
            self.calls = 0
            self.events: list[dict] = []

        async def publish(self, event: dict) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("broker down")
            self.events.append(event)

    async def scenario() -> FlakyBroker:
        broker = FlakyBroker()
        relay = create_outbox_relay(broker, project)
        relay.interval = 0.02
        relay.start()
        for _ in range(200):
            if broker.events:
                break
            await asyncio.sleep(0.02)
        await relay.stop()
        return broker

    broker = asyncio.run(scenario())
    assert [e["event"] for e in broker.events] == ["order_cancelled"]
    assert "Shop outbox relay failed (ConnectionError" in caplog.text
    assert unpublished(project / "shop.db") == 0


def test_relay_waits_for_a_missing_shop_database(tmp_path: Path) -> None:
    (tmp_path / "endpoints.yml").write_text("shop:\n  url: sqlite:///missing.db\n")
    relay = create_outbox_relay(InProcessEventBroker(), tmp_path)
    assert asyncio.run(relay.relay_once()) == 0
    assert not (tmp_path / "missing.db").exists()  # never created empty (the actions seed it)


def test_return_requested_reaches_the_trigger_engine_as_a_behaviour_event(project: Path) -> None:
    add_outbox_events(project / "shop.db", "return_requested")

    async def scenario() -> list:
        broker = InProcessEventBroker()
        seen: list = []

        async def engine_handler(body: dict) -> None:  # what TriggerEngine.handle_broker_message converts
            seen.append(from_broker_message(body))

        broker.subscribe(engine_handler)
        relay = create_outbox_relay(broker, project)
        await relay.relay_once()
        await relay.stop()
        return seen

    (event,) = asyncio.run(scenario())
    assert event.type == "return_requested" and event.properties["order_id"] == "E20261123000"
    assert event.customer_id == "7"  # matches journeys' exit_on: return_requested, match [order_id]


def test_relay_publishes_to_redis_streams(project: Path, redis_url: str) -> None:
    add_outbox_events(project / "shop.db", "order_cancelled", "return_requested")

    async def scenario() -> list[dict]:
        broker = RedisStreamsEventBroker(redis_url)
        relay = create_outbox_relay(broker, project)
        assert isinstance(relay, OutboxRelay)
        await relay.relay_once()
        await relay.stop()
        entries = await broker.redis.xrange(broker.stream)
        await broker.close()
        return entries

    entries = asyncio.run(scenario())
    assert len(entries) == 2
    assert "return_requested" in "".join(str(v) for _, fields in entries for v in fields.values())
