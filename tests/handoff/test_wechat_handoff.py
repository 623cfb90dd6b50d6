"""A handed-off WeChat conversation end to end: webhook in, agent replies out as 客服 messages.

Uses the fake WeChat API server of the WeChat connector tests (a real HTTP server on
127.0.0.1) and a controllable channel clock for WeChat's 48-hour window.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.wechat.conftest import APP_ID, APP_SECRET, TOKEN, WeChatSender, fake_api  # noqa: F401
from tests.handoff.helpers import RecordingBroker

URL = "/webhooks/wechat/webhook"
OPENID = "oShopper42"


async def make_app(model: Path, config: Any, api: Any, clock: Any) -> tuple[Any, Any, Any]:
    from bot.agent import Agent
    from bot.handoff import HandoffService
    from bot.handoff.feature import HandoffFeature
    from bot.server.app import create_app
    from connectors.wechat.channel import WeChatInput

    channel = WeChatInput.from_credentials({"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN,
                                            "api_base": api.base_url, "retry_backoff": 0.01})
    channel.clock = clock
    agent = Agent(event_broker=RecordingBroker(), action_package=None)
    await agent.load_model(model)

    async def no_profile(channel_name: Any, sender: str) -> None:
        return None

    # The server's own wiring: the feature gets the registry built from the mounted channels
    # (WeChat declares its 48-hour window and template messages; the handoff reads only that).
    service = HandoffService(config, profile_provider=no_profile)
    app = create_app(agent, input_channels=[channel], features=[HandoffFeature(service, owns_service=False)])
    return app, service, channel


async def push(app: Any, text: str, msg_id: int, at: float | None = None) -> Any:
    """A signed push as WeChat sends it, stamped with the (fake) time ``at``."""
    sender = WeChatSender("plaintext")
    stamp = int(at if at is not None else time.time())
    query, body = sender.request(sender.xml(OPENID, "text", create_time=stamp, Content=text, MsgId=msg_id),
                                 timestamp=stamp)
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=body)
    return resp


def sent_texts(api: Any) -> list[str]:
    return [m["text"]["content"] for m in api.custom_sent if m.get("msgtype") == "text"]


@pytest.mark.asyncio
async def test_wechat_handoff_agent_reply_goes_out_as_customer_service_message(
        handoff_model: Path, config_factory: Any, fake_api: Any) -> None:  # noqa: F811
    from bot.handoff import HandoffError

    now = [time.time()]
    app, service, channel = await make_app(handoff_model, config_factory(auto_assign=False), fake_api,
                                           lambda: now[0])
    resp = await push(app, "human", 1)
    assert resp.status == 200 and "connecting you to a human" in resp.text  # the passive XML reply
    h = await service.store.active_for(OPENID)
    assert h is not None and h["channel"] == "wechat" and h["reason"] == "request_human"

    resp = await push(app, "where is my parcel?", 2)
    assert resp.text == "success"  # the bot stays quiet while paused
    assert [m["text"] for m in await service.store.messages(h["id"])] == ["where is my parcel?"]

    alice = service.config.agent("alice")
    await service.claim(h["id"], "alice")
    row = await service.agent_reply(h["id"], alice, text="It left the warehouse today.", client_id="w-1")
    await channel.drain()
    assert row["delivery"] == "delivered"
    assert sent_texts(fake_api)[-1] == "It left the warehouse today."
    assert fake_api.custom_sent[-1]["touser"] == OPENID
    assert any("has joined" in t for t in sent_texts(fake_api))  # the assignment notice went out too
    tracker = await app.ctx.agent.get_tracker(OPENID)
    agent_lines = [e for e in tracker.events if e.type_name == "bot" and (e.metadata or {}).get("agent_id")]
    assert [e.text for e in agent_lines] == ["It left the warehouse today."]

    # 49 hours later without a word from the shopper: WeChat would refuse a 客服 message
    now[0] += 49 * 3600
    count = len(fake_api.custom_sent)
    with pytest.raises(HandoffError) as refused:
        await service.agent_reply(h["id"], alice, text="Are you still there?", client_id="w-2")
    assert refused.value.status == 409 and "48 hours" in refused.value.message
    assert "wechat_template" in refused.value.message
    assert len(fake_api.custom_sent) == count
    assert [m["text"] for m in await service.store.messages(h["id"]) if m["sender"] == "agent"] == [
        "It left the warehouse today."]  # nothing recorded as if it had been sent

    # the shopper writes again: the window reopens and replies flow
    resp = await push(app, "sorry, I was away", 3, at=now[0])
    assert resp.text == "success"
    row = await service.agent_reply(h["id"], alice, text="Welcome back!", client_id="w-3")
    assert row["delivery"] == "delivered" and sent_texts(fake_api)[-1] == "Welcome back!"
    await channel.close()
    await service.close()


@pytest.mark.asyncio
async def test_wechat_handoff_outside_window_uses_configured_template(
        handoff_model: Path, config_factory: Any, fake_api: Any) -> None:  # noqa: F811
    now = [time.time()]
    template = {"template_id": "TPL-reply", "data": {"first": "{agent} replied", "keyword1": "{text}"},
                "url": "https://shop.example/chat"}
    app, service, channel = await make_app(handoff_model, config_factory(auto_assign=False, wechat_template=template),
                                           fake_api, lambda: now[0])
    await push(app, "human", 11)
    h = await service.store.active_for(OPENID)
    alice = service.config.agent("alice")
    await service.claim(h["id"], "alice")
    now[0] += 49 * 3600
    row = await service.agent_reply(h["id"], alice, text="Your refund is done.", client_id="t-1")
    assert row["delivery"] == "template"
    sent = fake_api.template_sent[-1]
    assert sent["touser"] == OPENID and sent["template_id"] == "TPL-reply" and sent["url"] == "https://shop.example/chat"
    assert sent["data"] == {"first": {"value": "Alice replied"}, "keyword1": {"value": "Your refund is done."}}
    assert "Your refund is done." not in sent_texts(fake_api)
    tracker = await app.ctx.agent.get_tracker(OPENID)
    last = [e for e in tracker.events if e.type_name == "bot"][-1]
    assert last.text == "Your refund is done." and last.metadata["delivery"] == "template"
    await channel.close()
    await service.close()


@pytest.mark.asyncio
async def test_wechat_handoff_api_failure_is_reported_to_the_agent(
        handoff_model: Path, config_factory: Any, fake_api: Any) -> None:  # noqa: F811
    app, service, channel = await make_app(handoff_model, config_factory(auto_assign=False), fake_api, time.time)
    await push(app, "human", 21)
    h = await service.store.active_for(OPENID)
    alice = service.config.agent("alice")
    await service.claim(h["id"], "alice")
    fake_api.fail_next("custom", 45015)  # "response out of time limit": not retryable
    row = await service.agent_reply(h["id"], alice, text="Hello?", client_id="f-1")
    assert row["delivery"] == "failed"
    await channel.close()
    await service.close()
