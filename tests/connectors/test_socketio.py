"""The socketio channel against a real server on 127.0.0.1 and python-socketio's client.

The agent is a small fake (``ShopAgent``) so these tests exercise only the
channel: Rasa's event names and message shapes, kefu's outbox replay, message
ids, pushes from outside, and errors.
"""
from __future__ import annotations

import asyncio
import pickle
import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
import pytest

socketio = pytest.importorskip("socketio")
pytest.importorskip("aiohttp")  # python-socketio's asyncio client needs it

from bot.server.app import create_app  # noqa: E402
from bot.shared.exceptions import ConfigError  # noqa: E402
from bot.shared.message import UserMessage  # noqa: E402
from bot.shared.outputs import OutputRegistry  # noqa: E402
from connectors.base import create_input_channels  # noqa: E402
from connectors.socketio import InMemoryOutbox, SocketIOInput  # noqa: E402

PRODUCT = {
    "type": "product_card",
    "title": "Trail runner X",
    "price": "¥499",
    "image_url": "/webhooks/socketio/static/demo/shoe.svg",
    "buttons": [{"title": "Buy", "payload": "/buy"}],
}


class ShopAgent:
    """Answers like a tiny shop bot; ``boom`` raises, ``flaky`` fails once as if a store were down,
    ``slow`` waits for ``release``."""

    def __init__(self) -> None:
        self.messages: list[UserMessage] = []
        self.release = asyncio.Event()
        self.flaky_failures = 1  # ``flaky`` fails this many times as if Redis were restarting

    def is_ready(self) -> bool:
        return True

    async def handle_message(self, message: UserMessage) -> None:
        self.messages.append(message)
        out, to = message.output_channel, message.sender_id
        if message.text == "boom":
            raise RuntimeError("model exploded")
        if message.text == "flaky" and self.flaky_failures > 0:
            self.flaky_failures -= 1
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        if message.text == "slow":
            await self.release.wait()
            await out.send_response(to, {"text": "done slowly"})
            return
        await out.send_response(to, {"text": f"echo: {message.text}"})
        if message.text == "rich":
            await out.send_response(
                to,
                {"text": "Pick one", "buttons": [{"title": "Shoes", "payload": "/shoes"}]},
            )
            await out.send_response(to, {"image": "https://img.example/a.png"})
            await out.send_response(to, {"custom": PRODUCT})
            await out.send_response(to, {"custom": {"data": {"text": "rasa style"}}})
            await out.send_response(to, {"text": "one\n\ntwo"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def serving(channel: SocketIOInput, agent: Any = None) -> AsyncIterator[str]:
    """The app on a real port of 127.0.0.1, in this event loop."""
    app = create_app(agent or ShopAgent(), input_channels=[channel])
    app.config.TOUCHUP = False  # Sanic's touch-up breaks the second app started in a process
    port = free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    await server.startup()
    task = asyncio.ensure_future(server.serve_forever())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        try:  # a long-poll request may hold the server open until its ping interval
            await asyncio.wait_for(server.wait_closed(), 2)
        except asyncio.TimeoutError:
            pass
        task.cancel()


class Client:
    """A python-socketio client that records what it receives, by event."""

    def __init__(self, events: tuple[str, ...] = ("bot_uttered",)) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = {}
        self.changed = asyncio.Event()
        for name in (*events, "session_confirm", "kefu_history", "bot_typing"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            self.received.setdefault(name, []).append(data)
            self.changed.set()

        return record

    async def connect(self, url: str, path: str = "/socket.io", transports: list[str] | None = None) -> None:
        await self.sio.connect(url, socketio_path=path, transports=transports or ["websocket"])

    async def wait_for(self, event: str, count: int, timeout: float = 5.0) -> list[Any]:
        async def until() -> None:
            while len(self.received.get(event, [])) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.received[event]

    async def session(self, session_id: str | None = None, last_seen: int | None = None) -> str:
        data: dict[str, Any] = {"session_id": session_id}
        if last_seen is not None:
            data["last_seen_seq"] = last_seen
        before = len(self.received.get("session_confirm", []))
        await self.sio.emit("session_request", data)
        return (await self.wait_for("session_confirm", before + 1))[-1]


def persistent() -> SocketIOInput:
    return SocketIOInput.from_credentials({"session_persistence": True})


# ----------------------------------------------------------------------------- protocol
@pytest.mark.asyncio
async def test_socketio_session_request_issues_ids_and_resumes_only_issued_ones() -> None:
    channel = persistent()
    async with serving(channel) as url:
        client = Client()
        await client.connect(url)
        issued = await client.session("shopper-1")  # a client's pick is never taken
        assert issued != "shopper-1" and channel.sessions.verify(issued) and len(issued) > 40
        assert await client.session(issued) == issued  # an id this server issued is resumed
        fresh = await client.session(None)
        assert fresh not in (issued, "shopper-1") and channel.sessions.verify(fresh)
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_user_uttered_gets_rasa_shaped_bot_uttered() -> None:
    agent = ShopAgent()
    async with serving(persistent(), agent) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-rich")
        ack = await client.sio.call(
            "user_uttered", {"message": "rich", "session_id": sid, "metadata": {"page": "/shoes"}}
        )
        assert ack["status"] == "ok" and ack["seq"] == 1
        got = await client.wait_for("bot_uttered", 7)
        shapes = [{k: v for k, v in m.items() if k not in ("message_id", "seq", "timestamp", "reply_to")}
                  for m in got]
        assert shapes == [
            {"text": "echo: rich"},
            {"text": "Pick one", "quick_replies": [
                {"content_type": "text", "title": "Shoes", "payload": "/shoes"}]},
            {"attachment": {"type": "image", "payload": {"src": "https://img.example/a.png"}}},
            {"custom": PRODUCT},
            {"text": "rasa style"},
            {"text": "one"},
            {"text": "two"},
        ]
        assert [m["seq"] for m in got] == [2, 3, 4, 5, 6, 7, 8]
        assert len({m["message_id"] for m in got}) == 7
        assert {m["reply_to"] for m in got} == {ack["message_id"]}  # each reply names its question
        message = agent.messages[0]
        assert (message.sender_id, message.input_channel) == (sid, "socketio")
        assert message.metadata == {"page": "/shoes"}
        assert message.message_id == ack["message_id"]
        # typing indicator went on, then off
        typing = await client.wait_for("bot_typing", 2)
        assert typing == [{"typing": True}, {"typing": False}]
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_polling_transport_works() -> None:
    async with serving(persistent()) as url:
        client = Client()
        await client.connect(url, transports=["polling"])
        sid = await client.session("s-poll")
        await client.sio.emit("user_uttered", {"message": "hi", "session_id": sid})
        got = await client.wait_for("bot_uttered", 1)
        assert got[0]["text"] == "echo: hi"
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_custom_event_names_and_path_from_credentials() -> None:
    channel = SocketIOInput.from_credentials(
        {
            "user_message_evt": "user_says",
            "bot_message_evt": "bot_says",
            "session_persistence": True,
            "socketio_path": "/chat/socket.io",
        }
    )
    async with serving(channel) as url:
        client = Client(events=("bot_says", "bot_uttered"))
        await client.connect(url, path="/chat/socket.io")
        sid = await client.session("s-custom")
        await client.sio.emit("user_uttered", {"message": "ignored", "session_id": sid})
        await client.sio.emit("user_says", {"message": "hello", "session_id": sid})
        got = await client.wait_for("bot_says", 1)
        assert got[0]["text"] == "echo: hello"
        assert "bot_uttered" not in client.received
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_without_persistence_uses_socket_id_as_sender() -> None:
    agent = ShopAgent()
    async with serving(SocketIOInput(), agent) as url:
        client = Client()
        await client.connect(url)
        await client.sio.emit("user_uttered", {"message": "hi"})
        await client.wait_for("bot_uttered", 1)
        assert agent.messages[0].sender_id == client.sio.get_sid()
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_persistence_requires_session_id() -> None:
    agent = ShopAgent()
    async with serving(persistent(), agent) as url:
        client = Client()
        await client.connect(url)
        ack = await client.sio.call("user_uttered", {"message": "hi"})
        assert ack["status"] == "error" and "session_id" in ack["error"]
        ack = await client.sio.call("user_uttered", {"text": "no message key", "session_id": "a"})
        assert ack["status"] == "error"
        assert agent.messages == []
        await client.sio.disconnect()


# ----------------------------------------------------------------------------- delivery
@pytest.mark.asyncio
async def test_socketio_retried_message_id_is_handled_once() -> None:
    agent = ShopAgent()
    async with serving(persistent(), agent) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-dup")
        first = await client.sio.call("user_uttered", {"message": "hi", "session_id": sid, "message_id": "m1"})
        again = await client.sio.call("user_uttered", {"message": "hi", "session_id": sid, "message_id": "m1"})
        assert first["status"] == "ok"
        assert again == {"status": "duplicate", "message_id": "m1", "seq": first["seq"]}
        assert len(agent.messages) == 1
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_reconnect_replays_only_missed_messages() -> None:
    channel = persistent()
    async with serving(channel) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-replay", last_seen=0)
        await client.sio.call("user_uttered", {"message": "hi", "session_id": sid})
        seen = await client.wait_for("bot_uttered", 1)
        last_seq = seen[-1]["seq"]
        await client.sio.disconnect()

        # while the widget is closed: an agent reply and a proactive message
        out = OutputRegistry.from_channels([channel]).output_for("socketio", sid)
        assert out is not None
        await out.send_response(sid, {"text": "Agent Li here, how can I help?"})
        await channel.get_output_channel().send_response(sid, {"text": "Your order shipped."})

        again = Client()
        await again.connect(url)
        await again.session(sid, last_seen=last_seq)
        history = (await again.wait_for("kefu_history", 1))[-1]
        assert history["session_id"] == sid
        assert [(m["sender"], m["text"]) for m in history["messages"]] == [
            ("bot", "Agent Li here, how can I help?"),
            ("bot", "Your order shipped."),
        ]
        assert not any("reply_to" in m for m in history["messages"])  # pushes answer no message
        assert [m["seq"] for m in history["messages"]] == [last_seq + 1, last_seq + 2]

        # a reload asks from 0 and gets the whole conversation, user turns included
        reload = Client()
        await reload.connect(url)
        await reload.session(sid, last_seen=0)
        full = (await reload.wait_for("kefu_history", 1))[-1]["messages"]
        assert [m["sender"] for m in full] == ["user", "bot", "bot", "bot"]
        assert full[0]["text"] == "hi"
        await again.sio.disconnect()
        await reload.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_push_reaches_every_open_socket_of_the_session() -> None:
    channel = persistent()
    async with serving(channel) as url:
        tab1, tab2, other = Client(), Client(), Client()
        for c in (tab1, tab2, other):
            await c.connect(url)
        session = await tab1.session(None)
        assert await tab2.session(session) == session  # the second tab resumes the issued id
        await other.session(None)
        out = OutputRegistry.from_channels([channel]).output_for("socketio", session)
        await out.send_response("ignored-recipient", {"text": "An agent joined."})
        for c in (tab1, tab2):
            assert (await c.wait_for("bot_uttered", 1))[0]["text"] == "An agent joined."
        await asyncio.sleep(0.2)
        assert "bot_uttered" not in other.received
        for c in (tab1, tab2, other):
            await c.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_disconnect_mid_reply_keeps_reply_for_next_connection() -> None:
    agent = ShopAgent()
    async with serving(persistent(), agent) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-drop")
        await client.sio.emit("user_uttered", {"message": "slow", "session_id": sid})
        for _ in range(50):
            if agent.messages:
                break
            await asyncio.sleep(0.05)
        await client.sio.disconnect()
        agent.release.set()
        await asyncio.sleep(0.2)
        back = Client()
        await back.connect(url)
        await back.session(sid, last_seen=0)
        messages = (await back.wait_for("kefu_history", 1))[-1]["messages"]
        assert [(m["sender"], m["text"]) for m in messages] == [("user", "slow"), ("bot", "done slowly")]
        await back.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_failing_agent_records_message_and_acks_error() -> None:
    channel = persistent()
    async with serving(channel) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-boom")
        ack = await client.sio.call("user_uttered", {"message": "boom", "session_id": sid})
        assert ack["status"] == "error" and "exploded" in ack["error"]
        assert ack["retryable"] is False  # a bug, not a store restarting: the widget does not re-send
        # the server keeps serving this socket
        ack = await client.sio.call("user_uttered", {"message": "ok?", "session_id": sid})
        assert ack["status"] == "ok"
        texts = [(m["sender"], m["text"]) for m in await channel.history(sid)]
        assert texts == [("user", "boom"), ("user", "ok?"), ("bot", "echo: ok?")]
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_message_failed_on_a_store_error_is_handled_when_resent() -> None:
    """A retryable error ack, then the same message id again: handled this time (not taken for a
    duplicate of the failed attempt), answered once, and a third send is the duplicate."""
    agent = ShopAgent()
    channel = persistent()
    async with serving(channel, agent) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-flaky")
        request = {"message": "flaky", "session_id": sid, "message_id": "m-flaky"}
        failed = await client.sio.call("user_uttered", request)
        assert failed["status"] == "error" and failed["retryable"] is True
        resent = await client.sio.call("user_uttered", request)
        assert resent == {"status": "ok", "message_id": "m-flaky", "seq": failed["seq"]}
        replies = await client.wait_for("bot_uttered", 1)
        assert [(m["text"], m["reply_to"]) for m in replies] == [("echo: flaky", "m-flaky")]
        again = await client.sio.call("user_uttered", request)
        assert again == {"status": "duplicate", "message_id": "m-flaky", "seq": failed["seq"]}
        assert [m.text for m in agent.messages] == ["flaky", "flaky"]  # failed once, handled once
        assert [(m["sender"], m["text"]) for m in await channel.history(sid)] == [
            ("user", "flaky"), ("bot", "echo: flaky")]  # recorded once
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_oversized_message_is_refused() -> None:
    agent = ShopAgent()
    channel = SocketIOInput.from_credentials({"session_persistence": True, "max_message_length": 10})
    async with serving(channel, agent) as url:
        client = Client()
        await client.connect(url)
        ack = await client.sio.call("user_uttered", {"message": "x" * 11, "session_id": "s"})
        assert ack["status"] == "error" and "10 characters" in ack["error"]
        assert agent.messages == []
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_socketio_jwt_key_refuses_sockets_without_valid_token() -> None:
    import jwt

    channel = SocketIOInput.from_credentials({"jwt_key": "s3cret", "session_persistence": True})
    async with serving(channel) as url:
        refused = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(url)
        client = Client()
        await client.sio.connect(
            url, transports=["websocket"], auth={"token": jwt.encode({"user": "u"}, "s3cret")}
        )
        assert channel.sessions.verify(await client.session("s-jwt"))
        await client.sio.disconnect()


# ----------------------------------------------------------------------------- HTTP
@pytest.mark.asyncio
async def test_socketio_history_endpoint_and_widget_files() -> None:
    channel = persistent()
    session = channel.sessions.issue()
    async with serving(channel) as url:
        await channel.get_output_channel_for(session).send_response(session, {"text": "a"})
        await channel.get_output_channel_for(session).send_response(session, {"text": "b"})
        await channel.get_output_channel_for("s-http").send_response("s-http", {"text": "old plain id"})
        async with httpx.AsyncClient(base_url=url) as http:
            body = (await http.get(f"/webhooks/socketio/history/{session}?after=1")).json()
            assert [m["text"] for m in body["messages"]] == ["b"]
            assert (await http.get(f"/webhooks/socketio/history/{session}?after=x")).status_code == 400
            refused = await http.get("/webhooks/socketio/history/s-http")  # not issued by this server
            assert refused.status_code == 403 and "session_confirm" in refused.json()["message"]
            assert (await http.get("/webhooks/socketio/history/bad%20id")).status_code == 400
            js = await http.get("/webhooks/socketio/widget.js")
            assert js.status_code == 200 and "javascript" in js.headers["content-type"]
            assert js.text.startswith('window.KEFU_CHANNEL_DEFAULTS = {"socketPath": "/socket.io"')
            css = await http.get("/webhooks/socketio/widget.css")
            assert css.status_code == 200 and ".kefu-" in css.text
            assert (await http.get("/webhooks/socketio/static/../socketio.py")).status_code == 404
            assert (await http.get("/webhooks/socketio/")).json() == {"status": "ok"}


# ----------------------------------------------------------------------------- config
def test_socketio_is_a_builtin_channel_with_rasa_credentials() -> None:
    (channel,) = create_input_channels(
        {"socketio": {"user_message_evt": "u", "bot_message_evt": "b", "session_persistence": True}}
    )
    assert isinstance(channel, SocketIOInput)
    assert (channel.user_message_evt, channel.bot_message_evt, channel.session_persistence) == ("u", "b", True)


@pytest.mark.parametrize(
    "credentials, key",
    [
        ({"session_persistence": "yes"}, "session_persistence"),
        ({"user_message_evt": 3}, "user_message_evt"),
        ({"socketio_path": "socket.io"}, "socketio_path"),
        ({"outbox": {"type": "mongo"}}, "outbox"),
        ({"outbox": {"max_messages": 0}}, "outbox.max_messages"),
        ({"max_message_length": -1}, "max_message_length"),
    ],
)
def test_socketio_bad_credentials_fail_naming_the_key(credentials: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SocketIOInput.from_credentials(credentials)
    assert key.split(".")[0] in str(info.value)


def test_socketio_channel_pickles_for_workers_after_blueprint() -> None:
    channel = persistent()
    create_app(ShopAgent(), input_channels=[channel])
    assert channel.sio is not None
    copy = pickle.loads(pickle.dumps(channel))
    assert copy.sio is None and copy.session_persistence is True
    assert isinstance(copy.outbox, InMemoryOutbox)


@pytest.mark.asyncio
async def test_socketio_outbox_keeps_seq_and_trims_old_entries() -> None:
    box = InMemoryOutbox(max_messages=2, max_sessions=2)
    for text in "abc":
        await box.append("s1", {"text": text, "message_id": text})
    assert [(e["seq"], e["text"]) for e in await box.after("s1", 0)] == [(2, "b"), (3, "c")]
    assert await box.find("s1", "a") is None and (await box.find("s1", "c"))["seq"] == 3
    await box.append("s2", {"text": "x"})
    await box.append("s3", {"text": "y"})
    assert await box.after("s1", 0) == []  # least recently used session dropped


# ----------------------------------------------------------------------------- demo page
@pytest.mark.asyncio
async def test_demo_page_embeds_widget_only_with_socketio_channel() -> None:
    from connectors.demo_page import demo_root
    from connectors.rest import RestInput

    with_widget = create_app(ShopAgent(), input_channels=[RestInput(), persistent()], root_handler=demo_root)
    _, resp = await with_widget.asgi_client.get("/?lang=zh")
    assert resp.status == 200 and "text/html" in resp.headers["content-type"]
    assert '<script src="/webhooks/socketio/widget.js" data-title="kefu Sports" data-lang="zh" defer>' in resp.text
    assert 'class="notice"' not in resp.text and "{{" not in resp.text

    without = create_app(ShopAgent(), input_channels=[RestInput()], root_handler=demo_root)
    _, resp = await without.asgi_client.get("/")
    assert resp.status == 200 and "<script src=" not in resp.text
    assert "socketio" in resp.text and 'class="notice"' in resp.text
