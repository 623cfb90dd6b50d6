"""The REST and callback channels, mounted through the app factory."""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bot.server.app import create_app
from bot.shared.exceptions import ConfigError, UnknownComponentError
from bot.shared.message import UserMessage
from connectors.base import InputChannel, channel_class, create_input_channels
from connectors.rest import CallbackInput, CallbackOutput, RestInput


class EchoAgent:
    """Just enough of the Agent contract for channels."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.messages: list[UserMessage] = []

    def is_ready(self) -> bool:
        return self.ready

    async def handle_message(self, message: UserMessage) -> None:
        self.messages.append(message)
        out = message.output_channel
        await out.send_response(message.sender_id, {"text": f"echo: {message.text}"})
        await out.send_response(
            message.sender_id,
            {"text": "Pick a size", "buttons": [{"title": "42", "payload": "/inform{\"size\": \"42\"}"}]},
        )
        await out.send_response(message.sender_id, {"image": "https://img.example/shoe.png"})
        await out.send_response(message.sender_id, {"custom": {"card": "order"}})


async def post(app: Any, path: str, **kwargs: Any) -> Any:
    _, resp = await app.asgi_client.post(path, **kwargs)
    return resp


@pytest.mark.asyncio
async def test_rest_webhook_returns_rasa_rest_messages():
    agent = EchoAgent()
    app = create_app(agent, input_channels=[RestInput()])
    resp = await post(
        app, "/webhooks/rest/webhook",
        json={"sender": "shopper-1", "message": "hi", "metadata": {"locale": "zh-CN"}},
    )
    assert resp.status == 200
    assert resp.json == [
        {"recipient_id": "shopper-1", "text": "echo: hi"},
        {"recipient_id": "shopper-1", "text": "Pick a size",
         "buttons": [{"title": "42", "payload": "/inform{\"size\": \"42\"}"}]},
        {"recipient_id": "shopper-1", "image": "https://img.example/shoe.png"},
        {"recipient_id": "shopper-1", "custom": {"card": "order"}},
    ]
    message = agent.messages[0]
    assert (message.sender_id, message.text, message.input_channel) == ("shopper-1", "hi", "rest")
    assert message.metadata == {"locale": "zh-CN"}


@pytest.mark.asyncio
async def test_rest_webhook_without_sender_uses_default_sender():
    agent = EchoAgent()
    resp = await post(create_app(agent, input_channels=[RestInput()]), "/webhooks/rest/webhook", json={"message": "hi"})
    assert resp.status == 200
    assert agent.messages[0].sender_id == UserMessage.DEFAULT_SENDER_ID


@pytest.mark.asyncio
async def test_rest_webhook_ignores_client_supplied_input_channel(caplog):
    """Issue #15: a caller of the public webhook cannot claim to be WeChat (openid = identity)."""
    agent = EchoAgent()
    with caplog.at_level("DEBUG", logger="connectors.rest"):
        await post(
            create_app(agent, input_channels=[RestInput()]), "/webhooks/rest/webhook",
            json={"sender": "demo-wechat-openid", "message": "hi", "input_channel": "wechat"},
        )
    assert agent.messages[0].input_channel == "rest"
    assert "Ignored client-supplied input_channel 'wechat'" in caplog.text


@pytest.mark.asyncio
async def test_rest_webhook_drops_identity_keys_from_client_metadata(caplog):
    agent = EchoAgent()
    metadata = {"page": "/shoes", "identity": {"customer_id": 1, "source": "widget_token", "verified": True},
                "customer_id": 1, "openid": "demo-wechat-openid", "phone": "13812345678", "verified": True}
    with caplog.at_level("DEBUG", logger="connectors.base"):
        await post(
            create_app(agent, input_channels=[RestInput()]), "/webhooks/rest/webhook",
            json={"sender": "u", "message": "hi", "metadata": metadata},
        )
    assert agent.messages[0].metadata == {"page": "/shoes"}
    assert "dropped client-supplied metadata key(s)" in caplog.text


@pytest.mark.asyncio
async def test_rest_health():
    _, resp = await create_app(EchoAgent(), input_channels=[RestInput()]).asgi_client.get("/webhooks/rest/")
    assert resp.status == 200 and resp.json == {"status": "ok"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body,parameter",
    [
        ({"sender": "u"}, "message"),
        ({"sender": "u", "message": 5}, "message"),
        ({"sender": {"id": 1}, "message": "hi"}, "sender"),
        ({"sender": "u", "message": "hi", "metadata": "x"}, "metadata"),
    ],
)
async def test_rest_webhook_bad_body_is_400_naming_field(body, parameter):
    agent = EchoAgent()
    resp = await post(create_app(agent, input_channels=[RestInput()]), "/webhooks/rest/webhook", json=body)
    assert resp.status == 400
    assert resp.json["details"]["parameter"] == parameter
    assert agent.messages == []


@pytest.mark.asyncio
async def test_rest_webhook_invalid_json_is_400():
    resp = await post(create_app(EchoAgent(), input_channels=[RestInput()]), "/webhooks/rest/webhook", content=b"{{")
    assert resp.status == 400
    assert resp.json["reason"] == "BadRequest"


@pytest.mark.asyncio
async def test_rest_webhook_without_model_is_409():
    resp = await post(
        create_app(EchoAgent(ready=False), input_channels=[RestInput()]),
        "/webhooks/rest/webhook", json={"sender": "u", "message": "hi"},
    )
    assert resp.status == 409


def test_rest_webhook_stream_sends_json_lines():
    app = create_app(EchoAgent(), input_channels=[RestInput()])
    _, resp = app.test_client.post("/webhooks/rest/webhook?stream=true", json={"sender": "u", "message": "hi"})
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    lines = [json.loads(line) for line in resp.text.splitlines() if line]
    assert [m.get("text") for m in lines[:2]] == ["echo: hi", "Pick a size"]
    assert lines[3] == {"recipient_id": "u", "custom": {"card": "order"}}


def test_rest_webhook_stream_validates_before_streaming():
    app = create_app(EchoAgent(), input_channels=[RestInput()])
    _, resp = app.test_client.post("/webhooks/rest/webhook?stream=true", json={"sender": "u"})
    assert resp.status == 400


@pytest.mark.asyncio
async def test_callback_webhook_posts_replies_to_callback_url():
    sent: list[tuple[str, dict]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)

    channel = CallbackInput("http://127.0.0.1:5034/bot", transport=httpx.MockTransport(record))
    agent = EchoAgent()
    app = create_app(agent, input_channels=[channel])
    resp = await post(app, "/webhooks/callback/webhook", json={"sender": "u", "message": "hi"})
    assert resp.status == 200 and resp.text == "success"
    assert isinstance(agent.messages[0].output_channel, CallbackOutput)
    assert sent[0] == ("http://127.0.0.1:5034/bot", {"recipient_id": "u", "text": "echo: hi"})
    assert len(sent) == 4


@pytest.mark.asyncio
async def test_callback_delivery_failure_is_logged_not_raised(caplog):
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    output = CallbackOutput("http://127.0.0.1:5034/bot", transport=httpx.MockTransport(refuse))
    await output.send_text_message("u", "hi")
    assert output.messages == [{"recipient_id": "u", "text": "hi"}]
    assert "Could not deliver" in caplog.text


def test_callback_without_url_is_config_error():
    with pytest.raises(ConfigError, match="callback"):
        CallbackInput.from_credentials({})


def test_create_input_channels_from_credentials():
    channels = create_input_channels({"rest": None, "callback": {"url": "http://127.0.0.1:1/x"}})
    assert [type(c) for c in channels] == [RestInput, CallbackInput]
    assert channel_class("connectors.rest.RestInput") is RestInput


def test_unknown_channel_lists_valid_ones():
    with pytest.raises(UnknownComponentError) as info:
        create_input_channels({"telegramm": {}})
    assert "rest" in str(info.value) and "telegramm" in str(info.value)


def test_non_channel_class_is_rejected():
    with pytest.raises(ConfigError, match="InputChannel"):
        channel_class("bot.shared.message.UserMessage")


def test_input_channel_defaults():
    class MyChannel(InputChannel):
        pass

    channel = MyChannel.from_credentials({"ignored": 1})
    assert channel.name() == "MyChannel" == channel.url_prefix()
    assert channel.get_output_channel() is None
    with pytest.raises(NotImplementedError):
        channel.blueprint(lambda m: None)


def test_two_channels_with_same_prefix_are_rejected():
    with pytest.raises(ConfigError, match="URL prefix 'rest'"):
        create_app(EchoAgent(), input_channels=[RestInput(), RestInput()])
