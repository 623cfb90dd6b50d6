"""The shop outbox relay runs inside the server: started after the agent, stopped on shutdown.

The project names the demo's outbox port in endpoints.yml (`ports: outbox`); the engine's
relay (bot/relay.py) reads it through that port only.
"""
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
from bot.feature import ProjectSettings
from bot.relay import OutboxRelay, outbox_relay_for_project
from bot.server.run import ServerOptions, build_app
from bot.shared.endpoints import load_endpoints
from bot.stores.event_broker import InProcessEventBroker, RedisStreamsEventBroker
from bot.triggers.events import from_broker_message
from tests.shop.conftest import TINY

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHOP_TZ)
OUTBOX_PORT = "ports:\n  outbox: {type: actions.shop.ports.ShopOutboxPort}\n"


def create_outbox_relay(broker, project: Path) -> OutboxRelay | None:
    """The relay the server builds for ``project`` (its endpoints.yml `ports: outbox`)."""
    settings = ProjectSettings(root=project, endpoints=load_endpoints(project / "endpoints.yml"))
    return outbox_relay_for_project(broker, settings)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outbox") / "shop.db"
    seed_shop(f"sqlite:///{path}", seed=7, size=TINY, now=NOW)
    return path


@pytest.fixture()
def project(seeded: Path, tmp_path: Path) -> Path:
    """A project whose shop is a private copy of the seeded shop, relayed every 50 ms."""
    shutil.copy(seeded, tmp_path / "shop.db")
    (tmp_path / "endpoints.yml").write_text("shop:\n  url: sqlite:///shop.db\n  outbox_interval: 0.05\n" + OUTBOX_PORT)
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
        return json_response({"events": [e["event"] for e in agent.received],
                              "running": request.app.ctx.features["shop_outbox"].running})

    return app


def test_server_relays_outbox_events_to_the_broker_and_stops_cleanly(project: Path) -> None:
    add_outbox_events(project / "shop.db", "order_cancelled", "address_changed", "return_requested")
    app = _app(project, "kefu-outbox-relay")
    _, response = app.test_client.get("/test/outbox", params={"n": 3})
    assert response.json["running"] is True
    assert response.json["events"] == ["order_cancelled", "address_changed", "return_requested"]
    assert unpublished(project / "shop.db") == 0
    # stopped on shutdown, not killed (other features' tasks, e.g. the workbench's, likewise)
    outcomes = app.ctx.features.task_outcomes
    assert outcomes["shop_outbox"] == "stopped" and set(outcomes.values()) == {"stopped"}, outcomes


def test_project_without_shop_gets_no_relay(tmp_path: Path) -> None:
    app = _app(tmp_path, "kefu-outbox-none")
    _, response = app.test_client.get("/test/outbox", params={"n": 0})
    assert response.status == 200 and app.ctx.features["shop_outbox"].relay is None


def test_outbox_interval_zero_turns_the_relay_off(project: Path) -> None:
    (project / "endpoints.yml").write_text("shop:\n  url: sqlite:///shop.db\n  outbox_interval: 0\n" + OUTBOX_PORT)
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
    (tmp_path / "endpoints.yml").write_text("shop:\n  url: sqlite:///missing.db\n" + OUTBOX_PORT)
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


# --- end to end: a shop state change ends a running journey in a real TriggerEngine -------

POST_PURCHASE = """
settings:
  timezone: Asia/Shanghai
  quiet_hours: {start: "21:00", end: "09:00"}
  frequency_caps: {per_day: 3, per_week: 5}
journeys:
  post_purchase:          # as triggers.yml `complementary_products`
    entry: {event: order_delivered}
    exit_on:
      - {event: return_requested, match: [order_id]}
      - {event: order_cancelled, match: [order_id]}
    steps:
      - name: suggest
        delay: 3d
        response: utter_trigger_recommendation
"""


def returnable_order(db: Path) -> tuple[str, int, str]:
    """A delivered order inside the 7-day return window at NOW with a returnable line, its customer,
    and another order of that customer (whose journey must go on)."""
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as c:
        order_id, customer = c.execute(text(
            "select o.id, o.customer_id from orders o where o.status = 'delivered' and o.delivered_at >= :since "
            "and exists (select 1 from order_lines l join products p on p.sku = l.sku where l.order_id = o.id "
            "and p.category not in ('socks', 'nutrition')) "
            "and not exists (select 1 from refunds r where r.order_id = o.id) "
            "and (select count(*) from orders x where x.customer_id = o.customer_id) > 1 order by o.id"),
            {"since": "2026-11-17 00:00:00"}).first()
        other = c.execute(text("select id from orders where customer_id = :c and id != :o order by id"),
                          {"c": customer, "o": order_id}).scalar()
    engine.dispose()
    return order_id, customer, other


async def post_purchase_engine(tmp_path: Path) -> tuple:
    """(clock, store, sender, engine, broker): a real TriggerEngine running POST_PURCHASE on a SQLite
    store, attached to an in-process broker, with a test clock an hour before NOW and a recording sender."""
    from bot.triggers.clock import TestClock
    from bot.triggers.engine import TriggerEngine
    from bot.triggers.journeys import load_triggers_text
    from bot.triggers.queue import SQLJobQueue
    from bot.triggers.store import SQLTriggerStore
    from tests.triggers.conftest import RecordingSender

    clock = TestClock(NOW.timestamp() - 3600)
    store = SQLTriggerStore(f"sqlite+aiosqlite:///{tmp_path / 'triggers.db'}")
    await store.setup()
    sender = RecordingSender()
    engine = TriggerEngine(load_triggers_text(POST_PURCHASE), store, SQLJobQueue(store.engine), sender, clock)
    broker = InProcessEventBroker()
    engine.attach(broker)
    return clock, store, sender, engine, broker


async def deliver(broker: InProcessEventBroker, clock, order_id: str, customer: int) -> None:
    """The shop's order_delivered event for ``order_id``, published at the clock's now."""
    await broker.publish({"event": "order_delivered", "event_id": f"delivered-{order_id}",
                          "customer_id": str(customer), "order_id": order_id, "timestamp": clock.now()})


def test_return_requested_in_the_shop_ends_the_post_purchase_journey(project: Path, tmp_path: Path) -> None:
    """Shop transaction → outbox → OutboxRelay → in-process broker → TriggerEngine: the journey exits."""
    from actions.shop.sql import SqlShopStore

    db = project / "shop.db"
    returned, customer, other = returnable_order(db)

    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        clock, store, sender, engine, broker = await post_purchase_engine(tmp_path)
        relay = create_outbox_relay(broker, project)  # the server's relay, on the same broker

        await deliver(broker, clock, returned, customer)
        seen["entered"] = await store.instances_for(str(customer), "post_purchase", status="active")

        # a return of another order of the same customer does not end this journey (match: [order_id])
        engine_db = create_engine(f"sqlite:///{db}")
        with engine_db.begin() as c:
            c.execute(text("insert into outbox (event, sender_id, customer_id, order_id, payload, created_at) "
                           "values ('return_requested', 'shopper', :c, :o, '{}', '2026-11-23 01:00:00.000000')"),
                      {"c": customer, "o": other})
        engine_db.dispose()
        seen["other_forwarded"] = await relay.relay_once()
        seen["after_other"] = await store.instances_for(str(customer), "post_purchase", status="active")

        shop = SqlShopStore(f"sqlite:///{db}")  # what action_apply_order_change does for a return
        seen["result"] = await shop.request_after_sale(returned, "return", "size", sender_id="shopper", now=NOW)
        await shop.close()
        seen["forwarded"] = await relay.relay_once()
        await relay.stop()

        clock.advance(4 * 24 * 3600)  # past the step's 3-day delay: an exited journey sends nothing
        await engine.drain()
        seen["final"] = await store.instances_for(str(customer), "post_purchase")
        seen["exits"] = [(d["kind"], d["reason"]) for d in await store.decisions_for(str(customer)) if d["kind"] == "exit"]
        seen["sent"] = sender.to(str(customer))
        await store.close()
        return seen

    seen = asyncio.run(scenario())
    assert [i.entry["properties"]["order_id"] for i in seen["entered"]] == [returned]
    assert seen["other_forwarded"] == 1 and len(seen["after_other"]) == 1
    assert seen["result"].ok and seen["result"].event["event"] == "return_requested"
    assert seen["forwarded"] == 1
    (final,) = seen["final"]
    assert final.status == "exited"
    assert seen["exits"] == [("exit", "exit:return_requested")]
    assert seen["sent"] == []
    assert unpublished(db) == 0


def test_without_the_return_the_post_purchase_journey_sends(project: Path, tmp_path: Path) -> None:
    """The control for the test above: the same journey, no return → the suggestion goes out."""
    returned, customer, _ = returnable_order(project / "shop.db")

    async def scenario() -> list:
        clock, store, sender, engine, broker = await post_purchase_engine(tmp_path)
        await deliver(broker, clock, returned, customer)
        relay = create_outbox_relay(broker, project)
        await relay.relay_once()
        await relay.stop()
        clock.advance(4 * 24 * 3600)
        await engine.drain()
        await store.close()
        return sender.to(str(customer))

    sent = asyncio.run(scenario())
    assert len(sent) == 1 and sent[0].journey == "post_purchase"
