"""End to end over scripts/cluster.py: nginx -> 3 kefu worker processes -> PostgreSQL + Redis.

Real parts only: nginx from Debian's package rendered from deploy/nginx/kefu.conf, three
``python -m bot run`` processes (own ports, nothing shared in memory), redis-server,
PostgreSQL, the action server, the demo project's trained model. Shoppers and the agent go
through nginx; nginx's ip_hash picks the worker by client address, so each client binds a
loopback source address (127.0.N.1) that nginx maps to the worker the test wants. Every
response names its worker (``X-Kefu-Worker``, set because the cluster sets
``KEFU_WORKER_NAME``), so the test checks where each request really landed.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_asyncio

socketio = pytest.importorskip("socketio")
aiohttp = pytest.importorskip("aiohttp")

from scripts.cluster import Cluster, find_nginx  # noqa: E402
from tests.postgres_server import find_pg_bin, postgres_skipped  # noqa: E402
from tests.redis_server import find_redis_server, redis_skipped  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

TRIGGER_DELAY_S = 20  # long enough to stop the worker that accepted the event before it is due
TRIGGERS_YML = f"""\
version: "1"
settings:
  timezone: Asia/Shanghai
  # no quiet hours: the default window (21:00-09:00 Shanghai) would hold the step
  # whenever this runs after 13:00 UTC
  quiet_hours: {{start: "00:00", end: "00:00"}}
  lease: 10s
journeys:
  cluster_cart:
    description: the cluster test's abandoned cart, due {TRIGGER_DELAY_S} s after the event
    entry: {{event: cart_item_added}}
    priority: transactional
    steps:
      - name: reminder
        delay: {TRIGGER_DELAY_S}s
        expires: 1h
        response: utter_trigger_cart_reminder
        slots: {{product: properties.product_name}}
"""
PRODUCT = "集群测试跑鞋"


def _missing() -> str | None:
    if find_nginx() is None:
        return "nginx is not installed"
    if find_redis_server() is None or redis_skipped():
        return "redis-server is not installed (or KEFU_SKIP_REDIS)"
    if find_pg_bin() is None or postgres_skipped():
        return "PostgreSQL is not installed (or KEFU_SKIP_POSTGRES)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    model: Path | None = None
    if not any((REPO_ROOT / "models").glob("*.tar.gz")):  # a fresh checkout: train the demo once
        from bot.model.training import train

        model = train(root=REPO_ROOT, out=tmp_path_factory.mktemp("cluster-model")).model_path
    # agents claim by hand (no auto-assignment) and the console is open whatever the hour
    with Cluster(tmp_path_factory.mktemp("cluster"), workers=3, model=model, triggers_yml=TRIGGERS_YML,
                 endpoints_extra={"handoff": {"auto_assign": False, "service_hours": None}}) as running:
        yield running


@pytest.fixture(scope="module")
def addresses(cluster: Cluster) -> dict[str, str]:
    """A loopback source address per worker: the one nginx's ip_hash sends to it."""
    found = cluster.source_addresses()
    assert sorted(found) == sorted(w.name for w in cluster.workers), found
    for worker, address in found.items():  # the ready body and the header agree on who answered
        connection = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10, source_address=(address, 0))
        connection.request("GET", "/health/ready")
        answer = connection.getresponse()
        body = json.loads(answer.read())
        connection.close()
        assert (answer.status, body["worker"], answer.getheader("X-Kefu-Worker")) == (200, worker, worker)
    return found


def session_from(address: str) -> "aiohttp.ClientSession":
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60))


async def rest_turn(cluster: Cluster, address: str, sender: str, text: str) -> tuple[str, list[dict[str, Any]]]:
    async with session_from(address) as http:
        async with http.post(cluster.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}) as r:
            assert r.status == 200, await r.text()
            return r.headers["X-Kefu-Worker"], await r.json()


async def tracker(cluster: Cluster, sender: str, worker: str) -> dict[str, Any]:
    """The conversation as one worker reads it from PostgreSQL (API token, straight to that worker)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.worker(worker).url}/conversations/{sender}/tracker",
                            headers={"Authorization": f"Bearer {cluster.secrets.auth_token}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


class Widget:
    """A socket.io shopper (websocket transport, like the widget) from one source address."""

    def __init__(self, address: str) -> None:
        self.http = session_from(address)
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.http)
        self.replies: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.session_id: str | None = None
        confirmed: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        self._confirmed = confirmed

        @self.sio.on("bot_uttered")
        async def bot_uttered(data: Any) -> None:
            self.replies.append(data)
            self.changed.set()

        @self.sio.on("session_confirm")
        async def session_confirm(data: Any) -> None:
            if not confirmed.done():
                confirmed.set_result(data)

    async def open(self, url: str) -> str:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=30)
        await self.sio.emit("session_request", {"session_id": None})
        confirmed = await asyncio.wait_for(self._confirmed, 30)
        self.session_id = confirmed["session_id"] if isinstance(confirmed, dict) else confirmed
        return self.session_id

    async def say(self, text: str) -> None:
        await self.sio.emit("user_uttered", {"message": text, "session_id": self.session_id,
                                             "message_id": uuid.uuid4().hex})

    async def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for reply in self.replies:
                if predicate(reply):
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching bot_uttered within {timeout} s; got {self.replies}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.http.close()


@pytest_asyncio.fixture
async def widgets() -> AsyncIterator[list[Widget]]:
    opened: list[Widget] = []
    yield opened
    for widget in opened:
        await widget.close()


def text_of(reply: dict[str, Any]) -> str:
    return str(reply.get("text") or "")


# ------------------------------------------------------------------------------------ tests
@pytest.mark.asyncio
async def test_rest_shoppers_spread_and_a_conversation_moves_between_workers(
        cluster: Cluster, addresses: dict[str, str]) -> None:
    assert len(addresses) == 3
    landed = {}
    for worker, address in addresses.items():
        landed[worker], replies = await rest_turn(cluster, address, f"rest-{worker}", "你好")
        assert replies and replies[0]["text"], replies  # answered by the model, not an error
    assert landed == {w: w for w in addresses}  # each shopper reached the worker its address maps to
    # one conversation, each turn on another worker: the state is in PostgreSQL, not in a process
    sender = f"mover-{uuid.uuid4().hex[:8]}"
    order = list(addresses)
    texts = ["你好", "我想退货", "人工服务"][:len(order)]
    for worker, text in zip(order, texts):
        where, replies = await rest_turn(cluster, addresses[worker], sender, text)
        assert where == worker and replies
    events = (await tracker(cluster, sender, order[0]))["events"]
    users = [e["text"] for e in events if e["event"] == "user"]
    assert users == texts  # every turn stored once, in order, whichever worker took it
    starts = [e for e in events if e["event"] == "action" and e.get("name") == "action_session_start"]
    assert len(starts) == 1  # the 2nd and 3rd workers continued the session rather than starting one
    assert events == (await tracker(cluster, sender, order[-1]))["events"]


@pytest.mark.asyncio
async def test_widgets_spread_and_agent_on_another_worker_claims_a_handoff(
        cluster: Cluster, addresses: dict[str, str], widgets: list[Widget]) -> None:
    shopper_worker, agent_worker = sorted(addresses)[0], sorted(addresses)[1]
    for worker, address in addresses.items():  # one widget per worker, each answered
        widget = Widget(address)
        widgets.append(widget)
        await widget.open(cluster.url)
        await widget.say("你好")
        await widget.wait_for(lambda r: bool(text_of(r)), 60)
    shopper = widgets[sorted(addresses).index(shopper_worker)]

    # the agent's console: login and websocket through nginx, landing on another worker
    async with session_from(addresses[agent_worker]) as http:
        async with http.post(cluster.url + "/handoff/api/login",
                             json={"agent_id": "alice", "password": cluster.secrets.agent_passwords["alice"]}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["X-Kefu-Worker"] == agent_worker
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.ws_connect(cluster.url.replace("http", "ws") + "/handoff/ws") as console:
            await console.send_json({"type": "auth", "token": token})
            hello = await asyncio.wait_for(console.receive_json(), 30)
            assert hello["type"] == "hello", hello

            await shopper.say("人工服务")  # escalated on the shopper's worker
            queued = None
            deadline = time.monotonic() + 60
            while queued is None and time.monotonic() < deadline:
                event = await asyncio.wait_for(console.receive_json(), max(0.1, deadline - time.monotonic()))
                if (event.get("type") == "handoff_queued"
                        and event["handoff"].get("conversation_id") == shopper.session_id):
                    queued = event["handoff"]
            assert queued is not None, "the console on another worker never heard of the handoff"

            async with http.post(f"{cluster.url}/handoff/api/handoffs/{queued['id']}/claim", headers=auth) as r:
                assert r.status == 200, await r.text()
                assert r.headers["X-Kefu-Worker"] == agent_worker
                assert (await r.json())["status"] == "assigned"
            greeting = f"您好，我是 Alice（{uuid.uuid4().hex[:6]}）"
            async with http.post(f"{cluster.url}/handoff/api/handoffs/{queued['id']}/messages", headers=auth,
                                 json={"text": greeting, "client_id": uuid.uuid4().hex}) as r:
                assert r.status == 200, await r.text()
    # the reply typed on the agent's worker reaches the socket held by the shopper's worker
    await shopper.wait_for(lambda r: greeting in text_of(r), 30)


@pytest.mark.asyncio
async def test_trigger_scheduled_on_one_worker_is_sent_once_by_another(
        cluster: Cluster, addresses: dict[str, str], widgets: list[Widget]) -> None:
    producer = subprocess.run(
        [sys.executable, "-m", "bot", "token", "create", "--role", "event_producer", "--subject", "cluster-test",
         f"--jwt-secret={cluster.secrets.jwt_secret}", "--ttl-days", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True).stdout.strip().splitlines()[-1]
    first = cluster.workers[0]
    others = [w for w in cluster.workers if w is not first]
    shopper = Widget(addresses[others[0].name])  # the shopper's widget is held by a surviving worker
    widgets.append(shopper)
    customer = await shopper.open(cluster.url)
    event = {"id": f"evt-{uuid.uuid4().hex}", "type": "cart_item_added", "customer_id": customer,
             "timestamp": time.time(), "properties": {"sku": "RUN-1", "product_name": PRODUCT}}
    async with aiohttp.ClientSession() as http:  # straight to worker1: it schedules the journey
        async with http.post(first.url + "/events", json=event, headers={"Authorization": f"Bearer {producer}"}) as r:
            assert r.status in (200, 202), await r.text()
            assert (await r.json())["accepted"] == 1
    first.stop()  # SIGTERM, before the step is due: worker1 cannot be the one that sends
    assert not first.alive()
    reminder = await shopper.wait_for(lambda r: PRODUCT in text_of(r), TRIGGER_DELAY_S + 60)
    await asyncio.sleep(8)  # a second send (another worker, a retry) would arrive by now
    assert [text_of(r) for r in shopper.replies if PRODUCT in text_of(r)] == [text_of(reminder)]
    events = (await tracker(cluster, customer, others[1].name))["events"]
    sent = [e for e in events if e["event"] == "bot" and PRODUCT in (e.get("text") or "")]
    assert len(sent) == 1, sent  # exactly once in the conversation too
    cluster.restart_worker(first)  # the module's cluster stays whole for any later test
