"""Privacy through the real server: a trained agent, the REST and WeChat channels, the API.

Logs at INFO carry no phone, openid or message text (they did: a failing hook logged the
shopper's openid and the exception's copy of their message); a caller who is not an admin
gets a masked tracker; only an admin may export or erase a customer, and both are audited.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest

from bot.agent import Agent
from bot.cli import _setup_logging
from bot.model.training import train
from bot.server.app import create_app
from bot.shared.masking import MaskingFilter
from connectors.rest import RestInput
from connectors.wechat.channel import WeChatInput
from connectors.wechat.crypto import compute_signature

PROJECT = Path(__file__).resolve().parents[1] / "data" / "projects" / "turnbot"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PHONE = "13812345678"
WECHAT_TOKEN = "kefutoken"
SECRET_TEXT = f"我的手机号是{PHONE}请回电"


class FailingHook:
    """A hook whose exception repeats the shopper's message, as real ones do (a bad int(), a KeyError)."""

    async def after_user_message(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        raise ValueError(f"could not read {tracker.latest_message.text!r}")

    async def after_turn(self, processor: Any, tracker: Any, output_channel: Any) -> bool:
        return False


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = train(root=PROJECT, out=tmp_path_factory.mktemp("turnbot-models"))
    return result.model_path


@pytest.fixture
def masking_cleanup() -> Iterator[None]:
    yield
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
            handler.removeFilter(f)


def wechat_push(openid: str, text: str) -> tuple[str, bytes]:
    ts, nonce = str(int(time.time())), "n0nce"
    query = f"signature={compute_signature(WECHAT_TOKEN, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid={openid}"
    xml = (f"<xml><ToUserName><![CDATA[gh_kefu_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
           f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
           f"<MsgId>1234567890</MsgId></xml>")
    return query, xml.encode("utf-8")


async def make_app(model_path: Path, root: Path, **kwargs: Any) -> tuple[Any, Agent]:
    agent = await Agent.create(model_path, None, project_root=PROJECT)
    wechat = WeChatInput.from_credentials({"app_id": "wx1234567890abcdef", "app_secret": "s3cret",
                                           "token": WECHAT_TOKEN, "mode": "plaintext",
                                           "api_base": "http://127.0.0.1:9"})
    return create_app(agent, input_channels=[RestInput(), wechat], project_root=root, **kwargs), agent


@pytest.mark.asyncio
async def test_conversation_logs_hold_no_phone_openid_or_text_at_info(
        model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, masking_cleanup: None) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="bot.dialogue.processor")
    _setup_logging("INFO")  # what `python -m bot run` does
    app, agent = await make_app(model_path, tmp_path)
    agent.add_hook(FailingHook())
    try:
        _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": OPENID, "message": SECRET_TEXT})
        assert resp.status == 200
        query, body = wechat_push(OPENID, SECRET_TEXT)
        _, resp = await app.asgi_client.post(f"/webhooks/wechat/webhook?{query}", content=body)
        assert resp.status == 200
    finally:
        await agent.close()
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any(r.name == "bot.dialogue.processor" and r.levelno >= logging.ERROR for r in info)  # the hook failed
    info_text = "\n".join(caplog.handler.format(r) for r in info)  # message, arguments, traceback
    for secret in (PHONE, OPENID, SECRET_TEXT):
        assert secret not in info_text
    assert "oUpF8u…" in info_text  # enough to tell conversations apart
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(SECRET_TEXT in m for m in debug)  # the text itself only at DEBUG


@pytest.mark.asyncio
async def test_tracker_masked_for_non_admin_and_data_routes_admin_only(
        model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    token, secret = "t0ken-" + str(time.time_ns()), "jwt-" + "x" * 40 + str(time.time_ns())
    app, agent = await make_app(model_path, tmp_path, auth_token=token, jwt_secret=secret)
    try:
        await agent.handle_text('/set_name{"name": "张三"}', OPENID)
        await agent.handle_text(SECRET_TEXT, OPENID)
        shopper = jwt.encode({"user": {"username": OPENID, "role": "user"}}, secret, algorithm="HS256")
        _, resp = await app.asgi_client.get(f"/conversations/{OPENID}/tracker",
                                            headers={"Authorization": f"Bearer {shopper}"})
        assert resp.status == 200
        assert PHONE not in resp.text and "张三" not in resp.text and OPENID not in resp.text
        assert resp.json["slots"]["name"] == "张*"
        _, resp = await app.asgi_client.get(f"/conversations/{OPENID}/tracker", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and PHONE in resp.text and resp.json["slots"]["name"] == "张三"  # the admin

        # data requests: a stranger and a shopper are refused
        _, resp = await app.asgi_client.get(f"/data/customers/{OPENID}/export")
        assert resp.status == 401
        _, resp = await app.asgi_client.delete(f"/data/customers/{OPENID}",
                                               headers={"Authorization": f"Bearer {shopper}"})
        assert resp.status == 403
        assert (await agent.tracker_store.retrieve(OPENID)) is not None

        _, resp = await app.asgi_client.get(f"/data/customers/{OPENID}/export", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and list(resp.json["conversations"]) == [OPENID]
        assert SECRET_TEXT in resp.text
        _, resp = await app.asgi_client.delete(f"/data/customers/{OPENID}", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and resp.json["erased"]["conversations"] == 1
        _, resp = await app.asgi_client.get(f"/data/customers/{OPENID}/export", headers={"Authorization": f"Bearer {token}"})
        assert resp.json["conversations"] == {}
        # every data request is in the server's audit log, without the customer's id itself
        audits = [r for r in await app.ctx.audit.list(limit=50) if r.action.startswith("data.")]
        assert sorted(r.action for r in audits) == ["data.erase", "data.export", "data.export"]
        assert all(r.target and OPENID not in r.target for r in audits)
        assert all(r.role == "admin" for r in audits)
        assert [r.detail.get("conversations") for r in audits if r.action == "data.erase"] == [1]
        _, listed = await app.asgi_client.get("/audit", headers={"Authorization": f"Bearer {token}"})
        assert listed.status == 200  # the admin reads them (with the transcript reads, which name the conversation)
        assert {"data.erase", "data.export", "tracker.read"} <= {r["action"] for r in listed.json["records"]}
    finally:
        await agent.close()
