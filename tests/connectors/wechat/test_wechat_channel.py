"""The webhook end to end: signed pushes in every mode, replies, retries, async delivery."""
from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from bot.server.app import create_app
from bot.shared.exceptions import ConfigError
from bot.shared.message import UserMessage
from connectors.base import create_input_channels
from connectors.wechat.channel import WeChatConfig, WeChatInput
from connectors.wechat.crypto import compute_signature
from connectors.wechat.messages import parse_xml
from connectors.wechat.policy import SendPath

APP_ID, APP_SECRET, TOKEN = "wx1234567890abcdef", "s3cret", "kefutoken"  # as in conftest.py
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
URL = "/webhooks/wechat/webhook"


class FakeAgent:
    """Records every message (like the tracker store would) and answers by keyword."""

    def __init__(self, language: str | None = None) -> None:
        self.messages: list[UserMessage] = []
        self.language = language
        self.delay = 0.0

    def is_ready(self) -> bool:
        return True

    async def get_tracker(self, sender_id: str) -> Any:
        return SimpleNamespace(get_slot=lambda name: self.language if name == "language" else None)

    async def handle_message(self, message: UserMessage) -> None:
        self.messages.append(message)
        out, text = message.output_channel, message.text or ""
        if self.delay:
            await asyncio.sleep(self.delay)
        if text == "sizes":
            await out.send_response(message.sender_id, {"text": "哪个尺码？", "buttons": [
                {"title": "42", "payload": '/inform{"size": "42"}'},
                {"title": "43", "payload": '/inform{"size": "43"}'}]})
        elif text == "card":
            await out.send_response(message.sender_id, {"elements": [
                {"title": "跑鞋", "subtitle": "¥299", "image_url": "http://p/r.png", "default_action": {"url": "http://shop/r"}}]})
        elif text == "two":
            await out.send_response(message.sender_id, {"text": "看看这款："})
            await out.send_response(message.sender_id, {"custom": {"title": "跑鞋", "url": "http://shop/r"}})
        elif text == "silent":
            return
        else:
            await out.send_response(message.sender_id, {"text": f"echo: {text}"})


def make_channel(fake_api, mode: str = "plaintext", **extra: Any) -> WeChatInput:
    creds = {"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN, "mode": mode,
             "api_base": fake_api.base_url, "retry_backoff": 0.01, **extra}
    if mode != "plaintext":
        creds["encoding_aes_key"] = AES_KEY
    return WeChatInput.from_credentials(creds)


async def push(app, sender, xml: str, **kwargs: Any):
    query, body = sender.request(xml, **kwargs)
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=body)
    return resp


def reply_fields(resp, sender) -> dict[str, Any]:
    """The passive reply as WeChat reads it (decrypting in encrypted modes)."""
    fields = parse_xml(resp.body)
    if "Encrypt" in fields:
        assert fields["MsgSignature"] == compute_signature(TOKEN, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        fields = parse_xml(sender.crypto.decrypt(fields["Encrypt"]))
    return fields


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["app_id", "app_secret", "token"])
def test_credentials_missing_key_is_named(missing):
    creds = {"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN}
    del creds[missing]
    with pytest.raises(ConfigError, match=f"'{missing}'"):
        create_input_channels({"wechat": creds})


def test_credentials_safe_mode_needs_aes_key_and_valid_options():
    base = {"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN}
    with pytest.raises(ConfigError, match="encoding_aes_key"):
        WeChatConfig.from_dict({**base, "mode": "safe"})
    with pytest.raises(ConfigError, match="encoding_aes_key"):
        WeChatConfig.from_dict({**base, "mode": "safe", "encoding_aes_key": "short"})
    with pytest.raises(ConfigError, match="plaintext, compatible, safe"):
        WeChatConfig.from_dict({**base, "mode": "secure"})
    with pytest.raises(ConfigError, match="reply_timeout"):
        WeChatConfig.from_dict({**base, "reply_timeout": 6})
    with pytest.raises(ConfigError, match="app_secert"):
        WeChatConfig.from_dict({**base, "app_secert": "typo"})
    channels = create_input_channels({"wechat": {**base, "menu": {"ORDERS": "/check_order"}}})
    assert isinstance(channels[0], WeChatInput) and channels[0].config.menu == {"ORDERS": "/check_order"}


# --- URL verification ------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_get_verification_echoes_only_with_valid_signature(fake_api, agent):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    ts, nonce = str(int(time.time())), "n1"
    sig = compute_signature(TOKEN, ts, nonce)
    _, resp = await app.asgi_client.get(f"{URL}?signature={sig}&timestamp={ts}&nonce={nonce}&echostr=hello123")
    assert resp.status == 200 and resp.text == "hello123"
    _, resp = await app.asgi_client.get(f"{URL}?signature=bad&timestamp={ts}&nonce={nonce}&echostr=hello123")
    assert resp.status == 403 and "hello123" not in resp.text


# --- messages in every mode ------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
async def test_text_message_gets_passive_reply_in_every_mode(fake_api, agent, sender_factory, mode):
    channel = make_channel(fake_api, mode=mode)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory(mode)
    resp = await push(app, sender, sender.xml("oUser1", "text", Content="你好", MsgId=1001))
    assert resp.status == 200
    fields = reply_fields(resp, sender)
    assert fields["Content"] == "echo: 你好"
    assert fields["ToUserName"] == "oUser1" and fields["FromUserName"] == "gh_kefu_shop"
    if mode != "plaintext":
        assert "Encrypt" in parse_xml(resp.body)
    message = agent.messages[0]
    assert (message.sender_id, message.input_channel, message.message_id) == ("oUser1", "wechat", "1001")
    assert fake_api.custom_sent == []


@pytest.mark.asyncio
async def test_compatible_mode_accepts_plaintext_pushes_too(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="compatible")])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "text", Content="hi", MsgId=1))
    assert reply_fields(resp, sender)["Content"] == "echo: hi"


@pytest.mark.asyncio
async def test_safe_mode_refuses_plaintext_push(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "text", Content="hi", MsgId=1))
    assert resp.status == 400 and agent.messages == []


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["plaintext", "safe"])
async def test_wrong_signature_is_rejected(fake_api, agent, sender_factory, mode):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode=mode)])
    forger = sender_factory(mode, token="not-the-token")
    resp = await push(app, forger, forger.xml("oU", "text", Content="hi", MsgId=1))
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
async def test_tampered_ciphertext_is_rejected(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    sender = sender_factory("safe")
    query, body = sender.request(sender.xml("oU", "text", Content="hi", MsgId=1))
    tampered = body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA")
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=tampered)
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
async def test_stale_timestamp_and_replayed_nonce_are_rejected(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    old = int(time.time()) - 3600
    resp = await push(app, sender, sender.xml("oU", "text", Content="hi", MsgId=1), timestamp=old)
    assert resp.status == 403 and agent.messages == []
    now = int(time.time())
    await push(app, sender, sender.xml("oU", "text", Content="a", MsgId=2), timestamp=now, nonce="same")
    resp = await push(app, sender, sender.xml("oU", "text", Content="b", MsgId=3), timestamp=now, nonce="same")
    assert resp.status == 403 and [m.text for m in agent.messages] == ["a"]


@pytest.mark.asyncio
async def test_malformed_and_oversized_bodies_get_4xx(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, max_body_size=2048)])
    sender = sender_factory("plaintext")
    query, _ = sender.request("")
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=b"<xml><Content>broken")
    assert resp.status == 400
    query, _ = sender.request("")
    _, resp = await app.asgi_client.post(
        f"{URL}?{query}", content=b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>')
    assert resp.status == 400
    resp = await push(app, sender, sender.xml("oU", "text", Content="x" * 5000, MsgId=9))
    assert resp.status == 413
    assert agent.messages == []


@pytest.mark.asyncio
async def test_unknown_message_type_answers_success_without_crash(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "hologram", MsgId=5))
    assert resp.status == 200 and resp.text == "success" and agent.messages == []


# --- retries / dedupe -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_wechat_retry_is_processed_once_and_gets_same_reply(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    xml = sender.xml("oU", "text", Content="hi", MsgId=77)
    first = await push(app, sender, xml)
    retry = await push(app, sender, xml)  # WeChat retries with a new nonce
    assert len(agent.messages) == 1
    assert reply_fields(retry, sender)["Content"] == reply_fields(first, sender)["Content"] == "echo: hi"


@pytest.mark.asyncio
async def test_event_retries_deduplicated_by_sender_and_create_time(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, menu={"ORDERS": "/check_order"})])
    sender = sender_factory("plaintext")
    xml = sender.xml("oU", "event", create_time=int(time.time()), Event="CLICK", EventKey="ORDERS")
    await push(app, sender, xml)
    await push(app, sender, xml)
    assert [m.text for m in agent.messages] == ["/check_order"]
    assert agent.messages[0].metadata["wechat"]["event_key"] == "ORDERS"


# --- message and event types ------------------------------------------------------------------

@pytest.mark.asyncio
async def test_voice_uses_recognition_text(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "voice", MediaId="m1", Format="amr", Recognition="查订单", MsgId=11))
    assert reply_fields(resp, sender)["Content"] == "echo: 查订单"
    assert agent.messages[0].metadata["wechat"]["voice"] is True


@pytest.mark.asyncio
@pytest.mark.parametrize("language,expected", [(None, "抱歉"), ("en", "Sorry")])
async def test_image_answered_politely_in_conversation_language(fake_api, sender_factory, language, expected):
    agent = FakeAgent(language=language)
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "image", PicUrl="http://x/p.jpg", MediaId="m", MsgId=12))
    assert reply_fields(resp, sender)["Content"].startswith(expected)
    resp = await push(app, sender, sender.xml("oU", "location", Location_X="31.2", Location_Y="121.4",
                                              Scale=15, Label="上海", MsgId=13))
    assert reply_fields(resp, sender)["Content"]
    assert agent.messages == []


@pytest.mark.asyncio
async def test_subscribe_welcomes_and_records_profile_event_then_unsubscribe_opts_out(fake_api, agent, sender_factory):
    channel = make_channel(fake_api)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oNew", "event", Event="subscribe", EventKey="qrscene_store42"))
    assert reply_fields(resp, sender)["Content"] == "echo: /greet"
    assert agent.messages[0].metadata["wechat"] == {
        "msg_type": "event", "create_time": agent.messages[0].metadata["wechat"]["create_time"],
        "event": "subscribe", "scene": "store42"}
    assert await channel.allowed_send_path("oNew") is SendPath.CUSTOMER_SERVICE
    resp = await push(app, sender, sender.xml("oNew", "event", create_time=int(time.time()) + 1, Event="unsubscribe"))
    assert resp.text == "success"
    assert await channel.allowed_send_path("oNew") is SendPath.NONE
    assert await channel.send_proactive("oNew", [{"text": "sale!"}]) is SendPath.NONE
    assert fake_api.custom_sent == []


@pytest.mark.asyncio
async def test_unmapped_menu_click_and_scan_answer_success(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "event", Event="CLICK", EventKey="UNKNOWN"))
    assert resp.text == "success"
    resp = await push(app, sender, sender.xml("oU", "event", create_time=int(time.time()) + 5, Event="SCAN", EventKey="42"))
    assert resp.text == "success" and agent.messages == []


@pytest.mark.asyncio
async def test_numbered_buttons_map_back_to_payload(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "text", Content="sizes", MsgId=21))
    content = reply_fields(resp, sender)["Content"]
    assert "1. 42" in content and "2. 43" in content and "回复数字" in content
    await push(app, sender, sender.xml("oU", "text", Content="2", MsgId=22))
    assert agent.messages[-1].text == '/inform{"size": "43"}'
    await push(app, sender, sender.xml("oU", "text", Content="2", MsgId=23))  # choice consumed
    assert agent.messages[-1].text == "2"


@pytest.mark.asyncio
async def test_product_card_becomes_news_reply(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    sender = sender_factory("safe")
    resp = await push(app, sender, sender.xml("oU", "text", Content="card", MsgId=31))
    fields = reply_fields(resp, sender)
    assert fields["MsgType"] == "news"
    assert fields["Articles"]["item"]["Title"] == "跑鞋" and fields["Articles"]["item"]["Url"] == "http://shop/r"


# --- async delivery -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_several_replies_go_through_customer_service_api_in_order(fake_api, agent, sender_factory):
    channel = make_channel(fake_api)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory("plaintext")
    resp = await push(app, sender, sender.xml("oU", "text", Content="two", MsgId=41))
    assert resp.text == "success"
    await channel.drain()
    assert [m["msgtype"] for m in fake_api.custom_sent] == ["text", "news"]
    assert fake_api.custom_sent[0]["text"]["content"] == "看看这款："
    assert (await channel.policy.state("oU")).customer_service_sent == 2


@pytest.mark.asyncio
async def test_slow_bot_answers_success_then_sends_async(fake_api, agent, sender_factory):
    agent.delay = 2.0  # far beyond the 0.2 s reply window, so a loaded machine cannot blur the order
    channel = make_channel(fake_api, mode="safe", reply_timeout=0.2)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory("safe")
    resp = await push(app, sender, sender.xml("oSlow", "text", Content="慢", MsgId=51))
    assert resp.status == 200 and resp.text == "success"
    assert fake_api.custom_sent == []  # WeChat got its answer while the bot was still working
    await channel.drain()
    assert fake_api.custom_sent == [{"touser": "oSlow", "msgtype": "text", "text": {"content": "echo: 慢"}}]


@pytest.mark.asyncio
async def test_message_recorded_when_delivery_fails_and_transient_errors_retried(fake_api, agent, sender_factory):
    agent.delay = 0.3
    channel = make_channel(fake_api, reply_timeout=0.1)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory("plaintext")
    fake_api.fail_next("custom", -1, 500)  # system busy, then an HTTP 500: both retried
    await push(app, sender, sender.xml("oU", "text", Content="retry me", MsgId=61))
    await channel.drain()
    assert [m["text"]["content"] for m in fake_api.custom_sent] == ["echo: retry me"]
    fake_api.fail_next("custom", 45015)  # window closed: permanent, not retried
    await push(app, sender, sender.xml("oU", "text", Content="lost", MsgId=62))
    await channel.drain()
    assert [m.text for m in agent.messages] == ["retry me", "lost"]  # both recorded
    assert len(fake_api.custom_sent) == 1
    assert channel.failed_deliveries[0][1]["text"]["content"] == "echo: lost"


@pytest.mark.asyncio
async def test_token_error_during_async_delivery_refreshes_and_retries(fake_api, agent, sender_factory):
    channel = make_channel(fake_api)
    app = create_app(agent, input_channels=[channel])
    sender = sender_factory("plaintext")
    await push(app, sender, sender.xml("oU", "text", Content="two", MsgId=71))
    await channel.drain()
    fake_api.fail_next("custom", 42001)
    await push(app, sender, sender.xml("oU", "text", Content="two", MsgId=72))
    await channel.drain()
    assert len(fake_api.custom_sent) == 4 and fake_api.token_requests == 2


@pytest.mark.asyncio
async def test_processing_error_returns_500_so_wechat_retries(fake_api, sender_factory):
    class Broken(FakeAgent):
        def __init__(self) -> None:
            super().__init__()
            self.fail = True

        async def handle_message(self, message: UserMessage) -> None:
            if self.fail:
                self.fail = False
                raise RuntimeError("tracker store down")
            await super().handle_message(message)

    agent = Broken()
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    sender = sender_factory("plaintext")
    xml = sender.xml("oU", "text", Content="hi", MsgId=81)
    assert (await push(app, sender, xml)).status == 500
    retry = await push(app, sender, xml)
    assert reply_fields(retry, sender)["Content"] == "echo: hi"


# --- proactive sends -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_proactive_send_uses_template_outside_window(fake_api, agent, sender_factory):
    clock_now = [time.time()]
    channel = make_channel(fake_api)
    channel.clock = lambda: clock_now[0]
    await channel.policy.record_inbound("oU", clock_now[0])
    assert await channel.send_proactive("oU", [{"text": "您的订单已发货"}]) is SendPath.CUSTOMER_SERVICE
    clock_now[0] += 49 * 3600
    path = await channel.send_proactive("oU", [{"text": "x"}], template_id="TPL", template_data={"order": "A1"})
    assert path is SendPath.TEMPLATE
    assert fake_api.template_sent[0]["template_id"] == "TPL"
    assert len(fake_api.custom_sent) == 1
    await channel.close()


def test_channel_pickles_for_sanic_worker_processes(fake_api):
    import pickle

    channel = make_channel(fake_api, mode="safe")
    copy = pickle.loads(pickle.dumps(channel))
    assert copy.config == channel.config
    assert copy.crypto.decrypt(channel.crypto.encrypt("<xml/>")) == "<xml/>"
