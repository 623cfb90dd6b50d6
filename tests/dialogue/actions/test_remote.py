"""RemoteAction against a real rasa_sdk action server (``bot.action_server``) on 127.0.0.1."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot.dialogue.actions.factory import action_for_name_or_text
from bot.dialogue.actions.inprocess import InProcessAction, create_executor
from bot.dialogue.actions.remote import RemoteAction, action_call_payload
from bot.shared.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from bot.shared.exceptions import ActionExecutionError, ActionExecutionRejection, ConfigError
from bot.shared.message import CollectingOutputChannel
from bot.shared.tracker import DialogueStateTracker

from tests.dialogue.actions.conftest import ACTION_PACKAGE, ACTION_PACKAGE_DIR, FakeDomain, FakeNLG

REPO_ROOT = ACTION_PACKAGE_DIR.parents[2]


@dataclass
class Endpoint:
    """Stand-in for ``bot.shared.endpoints.EndpointConfig``."""

    url: str
    token: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def action_server_url():
    port = free_port()
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from bot.action_server import run_action_server\n"
        "run_action_server(%r, port=%d, host='127.0.0.1')\n" % (str(ACTION_PACKAGE_DIR), ACTION_PACKAGE, port)
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"action server did not start:\n{out[-3000:]}")
            time.sleep(0.2)
        yield f"{base}/webhook"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


DOMAIN_KW = dict(
    intents=["greet"],
    slots={"order_id": {"type": "text"}, "order_status": {"type": "text"}, "name": {"type": "text"}},
    responses={"utter_greet": [{"text": "Hello {name}!"}]},
    actions=["action_check_order", "action_slow", "action_fail", "action_reject", "action_missing"],
)


def make_tracker(domain: FakeDomain) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(
        "shopper-1",
        [ActionExecuted("action_listen"), UserUttered("where is E1", {"name": "greet"}), SlotSet("order_id", "E1"), SlotSet("name", "Ann")],
        slots=domain.slots,
    )


async def run_action(action, domain: FakeDomain) -> list:
    return await action.run(CollectingOutputChannel(), FakeNLG(domain.responses), make_tracker(domain), domain)


def assert_check_order_events(events: list) -> None:
    assert [type(e) for e in events] == [BotUttered, BotUttered, SlotSet]
    assert events[0].text == "Order E1 has shipped."
    assert events[0].data["buttons"] == [{"title": "ok", "payload": "/affirm"}]
    assert events[1].text == "Hello Ann!"
    assert events[1].metadata["utter_action"] == "utter_greet"
    assert events[2] == SlotSet("order_status", "shipped")


def test_action_call_payload_has_rasa_sdk_shape() -> None:
    domain = FakeDomain(**DOMAIN_KW)
    payload = action_call_payload("action_check_order", make_tracker(domain), domain)
    assert set(payload) == {"next_action", "sender_id", "tracker", "domain", "version"}
    assert payload["sender_id"] == "shopper-1"
    assert payload["tracker"]["slots"]["order_id"] == "E1"
    assert [e["event"] for e in payload["tracker"]["events"]] == ["action", "user", "slot", "slot"]
    assert payload["domain"]["responses"]["utter_greet"]


@pytest.mark.asyncio
async def test_remote_action_runs_sdk_action(action_server_url: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    action = action_for_name_or_text("action_check_order", domain, Endpoint(action_server_url))
    assert isinstance(action, RemoteAction)
    assert_check_order_events(await run_action(action, domain))


@pytest.mark.asyncio
async def test_remote_action_rejection_maps_to_rejection(action_server_url: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    with pytest.raises(ActionExecutionRejection) as info:
        await run_action(RemoteAction("action_reject", Endpoint(action_server_url)), domain)
    assert info.value.action_name == "action_reject"
    assert "not now" in info.value.message


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["action_fail", "action_missing"])
async def test_remote_action_server_error_names_action_and_url(action_server_url: str, name: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    with pytest.raises(ActionExecutionError) as info:
        await run_action(RemoteAction(name, Endpoint(action_server_url)), domain)
    assert name in str(info.value) and action_server_url in str(info.value)


@pytest.mark.asyncio
async def test_remote_action_timeout(action_server_url: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    started = time.monotonic()
    with pytest.raises(ActionExecutionError, match="timed out"):
        await run_action(RemoteAction("action_slow", Endpoint(action_server_url, kwargs={"timeout": 0.5})), domain)
    assert time.monotonic() - started < 2.5


@pytest.mark.asyncio
async def test_remote_action_server_down_fails_fast() -> None:
    domain = FakeDomain(**DOMAIN_KW)
    url = f"http://127.0.0.1:{free_port()}/webhook"
    started = time.monotonic()
    with pytest.raises(ActionExecutionError) as info:
        await run_action(RemoteAction("action_check_order", Endpoint(url)), domain)
    assert time.monotonic() - started < 2
    assert "action_check_order" in str(info.value) and url in str(info.value)


@pytest.mark.asyncio
async def test_remote_action_without_endpoint_explains_fix() -> None:
    domain = FakeDomain(**DOMAIN_KW)
    with pytest.raises(ActionExecutionError, match="endpoints.yml"):
        await run_action(RemoteAction("action_check_order", None), domain)


def test_remote_action_request_options_carry_token_and_headers() -> None:
    action = RemoteAction("a", Endpoint("http://x/webhook", token="s3cret", kwargs={"headers": {"X-K": "1"}}))
    options = action._request_options()
    assert options["params"] == {"token": "s3cret"}
    assert options["headers"] == {"X-K": "1"}


@pytest.mark.asyncio
async def test_inprocess_action_runs_sdk_action(action_package_path: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    executor = create_executor(action_package_path)
    action = action_for_name_or_text("action_check_order", domain, None, executor)
    assert isinstance(action, InProcessAction)
    assert_check_order_events(await run_action(action, domain))


@pytest.mark.asyncio
async def test_inprocess_action_errors(action_package_path: str) -> None:
    domain = FakeDomain(**DOMAIN_KW)
    executor = create_executor(action_package_path)
    with pytest.raises(ActionExecutionError, match="boom in user code") as info:
        await run_action(InProcessAction("action_fail", executor), domain)
    assert "action_fail" in str(info.value)
    with pytest.raises(ActionExecutionRejection):
        await run_action(InProcessAction("action_reject", executor), domain)
    with pytest.raises(ActionExecutionError, match="not registered"):
        await run_action(InProcessAction("action_missing", executor), domain)


def test_create_executor_unknown_package_is_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_actions_pkg"):
        create_executor("no_such_actions_pkg")


def test_create_action_app_serves_webhook(action_package_path: str) -> None:
    from bot.action_server import create_action_app

    app = create_action_app(action_package_path)
    paths = {route.path for route in app.router.routes}
    assert {"webhook", "health", "actions"} <= {p.strip("/") for p in paths}


class CountingProxy:
    """A TCP proxy in front of the action server that counts the connections opened to it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self.server: Any = None

    async def __aenter__(self) -> "CountingProxy":
        import asyncio

        async def pipe(reader: Any, writer: Any) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_reader: Any, client_writer: Any) -> None:
            self.connections += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()

    def url(self, path: str = "/webhook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.asyncio
async def test_remote_action_reuses_one_pooled_connection(action_server_url: str) -> None:
    from bot.dialogue.actions.remote import close_action_clients

    domain = FakeDomain(**DOMAIN_KW)
    async with CountingProxy(_port_of(action_server_url)) as proxy:
        for _ in range(4):  # one after the other, as the turns of a conversation
            events = await run_action(RemoteAction("action_check_order", Endpoint(proxy.url())), domain)
            assert_check_order_events(events)
        assert proxy.connections == 1
        await close_action_clients()
        assert_check_order_events(await run_action(RemoteAction("action_check_order", Endpoint(proxy.url())), domain))
        assert proxy.connections == 2  # a closed pool is replaced by a new one
        await close_action_clients()


@pytest.mark.asyncio
async def test_warm_up_action_server_opens_the_connection_the_first_action_uses(action_server_url: str) -> None:
    from bot.dialogue.actions.remote import close_action_clients, warm_up_action_server

    domain = FakeDomain(**DOMAIN_KW)
    async with CountingProxy(_port_of(action_server_url)) as proxy:
        assert await warm_up_action_server(Endpoint(proxy.url())) is True
        assert proxy.connections == 1
        assert_check_order_events(await run_action(RemoteAction("action_check_order", Endpoint(proxy.url())), domain))
        assert proxy.connections == 1
        await close_action_clients()


@pytest.mark.asyncio
async def test_warm_up_action_server_down_is_not_an_error() -> None:
    from bot.dialogue.actions.remote import close_action_clients, warm_up_action_server

    assert await warm_up_action_server(Endpoint(f"http://127.0.0.1:{free_port()}/webhook")) is False
    assert await warm_up_action_server(Endpoint("")) is False
    await close_action_clients()


# --------------------------------------------------------------------------- the domain in action calls
class RecordingProxy(CountingProxy):
    """The TCP proxy, also keeping the bytes each way (HTTP/1.1 requests and responses, in order)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.sent = bytearray()
        self.received = bytearray()

    async def __aenter__(self) -> "RecordingProxy":
        import asyncio

        async def pipe(reader: Any, writer: Any, record: bytearray) -> None:
            try:
                while data := await reader.read(65536):
                    record.extend(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_reader: Any, client_writer: Any) -> None:
            self.connections += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(pipe(client_reader, writer, self.sent), pipe(reader, client_writer, self.received))

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @staticmethod
    def messages(stream: bytes) -> list[tuple[str, bytes]]:
        """(start line, body) of each HTTP/1.1 message with a Content-Length."""
        out, rest = [], bytes(stream)
        while rest:
            head, _, rest = rest.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
            out.append((lines[0], rest[:length]))
            rest = rest[length:]
        return out

    def calls(self) -> list[tuple[dict[str, Any], int]]:
        """(JSON body sent, HTTP status answered) per action call."""
        import json

        requests = [json.loads(body) for _, body in self.messages(self.sent)]
        statuses = [int(line.split()[1]) for line, _ in self.messages(self.received)]
        return list(zip(requests, statuses))


class SelectiveDomain(FakeDomain):
    """A domain that lists actions with `send_domain: true` (Rasa 3.6) and can be made unique."""

    def __init__(self, *, need_domain: list[str] = (), marker: str = "", **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "intents": [*kwargs.get("intents", []), *([marker] if marker else [])]})
        self.actions_which_explicitly_need_domain = list(need_domain)


def test_request_body_is_rasas_payload_with_the_cached_domain_and_a_digest() -> None:
    import json

    from bot.dialogue.actions.remote import action_request_body, domain_json

    domain = FakeDomain(**DOMAIN_KW)
    tracker = make_tracker(domain)
    body = json.loads(action_request_body("action_check_order", tracker, domain))
    text, digest = domain_json(domain)
    assert body == {**action_call_payload("action_check_order", tracker, domain), "domain_digest": digest}
    assert domain_json(domain)[0] is text  # serialised once per domain object
    other = SelectiveDomain(**DOMAIN_KW, marker="another_intent")
    assert domain_json(other)[1] != digest and "another_intent" in domain_json(other)[0]
    without = json.loads(action_request_body("action_check_order", tracker, domain, include_domain=False))
    assert "domain" not in without and without["domain_digest"] == digest


@pytest.mark.asyncio
async def test_the_domain_goes_with_every_call_by_default(action_server_url: str) -> None:
    from bot.dialogue.actions.remote import close_action_clients

    domain = FakeDomain(**DOMAIN_KW)
    async with RecordingProxy(_port_of(action_server_url)) as proxy:
        for _ in range(2):
            assert_check_order_events(await run_action(RemoteAction("action_check_order", Endpoint(proxy.url())), domain))
        await close_action_clients()
    calls = proxy.calls()
    assert [status for _, status in calls] == [200, 200]
    assert all(body["domain"]["responses"]["utter_greet"] for body, _ in calls)


@pytest.mark.asyncio
async def test_selective_domain_sends_it_when_the_action_server_asks(action_server_url: str) -> None:
    """enable_selective_domain (Rasa 3.6): no domain for actions without send_domain; rasa_sdk
    (>= 3.8) answers 449 for a digest it has not seen, and the call is repeated with the domain."""
    from bot.dialogue.actions.remote import close_action_clients, domain_json

    domain = SelectiveDomain(**DOMAIN_KW, marker="selective_test_intent")  # a digest the server has not seen
    endpoint_kwargs = {"enable_selective_domain": True}
    async with RecordingProxy(_port_of(action_server_url)) as proxy:
        for _ in range(3):
            events = await run_action(RemoteAction("action_check_order", Endpoint(proxy.url(), kwargs=endpoint_kwargs)),
                                      domain)
            assert_check_order_events(events)
        await close_action_clients()
    calls = proxy.calls()
    assert [("domain" in body, status) for body, status in calls] == [(False, 449), (True, 200), (False, 200), (False, 200)]
    assert {body["domain_digest"] for body, _ in calls} == {domain_json(domain)[1]}


@pytest.mark.asyncio
async def test_selective_domain_still_sends_it_to_send_domain_actions(action_server_url: str) -> None:
    from bot.dialogue.actions.remote import close_action_clients

    domain = SelectiveDomain(**DOMAIN_KW, need_domain=["action_check_order"], marker="send_domain_test_intent")
    async with RecordingProxy(_port_of(action_server_url)) as proxy:
        assert_check_order_events(await run_action(
            RemoteAction("action_check_order", Endpoint(proxy.url(), kwargs={"enable_selective_domain": True})), domain))
        await close_action_clients()
    assert [("domain" in body, status) for body, status in proxy.calls()] == [(True, 200)]
