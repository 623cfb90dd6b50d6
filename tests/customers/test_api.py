"""Customer 360 over HTTP: every route's 401/403, unproven claims through the REST channel, audit, paging."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from bot.customers.feature import CustomersFeature
from bot.server.app import create_app
from bot.server.features import project_settings
from bot.shared.events import ActionExecuted, SessionStarted, UserUttered
from bot.shared.message import UserMessage
from bot.stores.audit import SQLAuditLog
from bot.stores.event_broker import InProcessEventBroker
from connectors.rest import RestInput
from connectors.wechat.channel import WeChatInput
from connectors.wechat.crypto import compute_signature
from tests.customers.conftest import T0
from tests.server.conftest import FakeAgent, parse_result

TOKEN = "admin-token-0123456789abcdef0123456789"
WECHAT_TOKEN = "kefutoken"
SECRET = "jwt-secret-0123456789abcdef0123456789abcdef"

READ_ROUTES = [("get", "/customers"), ("get", "/customers/lookup?kind=conversation&value=x"),
               ("get", "/customers/alerts"), ("get", "/customers/cu_x"), ("get", "/customers/cu_x/timeline")]
WRITE_ROUTES = [("post", "/customers/cu_x/merge"), ("post", "/customers/merges/mg_x/undo"),
                ("post", "/customers/recompute"), ("post", "/customers/reload")]


class HookAgent(FakeAgent):
    """The fake agent plus what features use: hooks run after each turn, an in-process broker."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[Any] = []
        self.event_broker = InProcessEventBroker()

    def add_hook(self, hook: Any) -> None:
        self.hooks.append(hook)

    def remove_hook(self, hook: Any) -> None:
        self.hooks.remove(hook)

    async def handle_message(self, message: UserMessage) -> list[dict] | None:
        tracker = await self.get_tracker(message.sender_id)
        if not tracker.events:
            tracker.update(ActionExecuted("action_session_start", timestamp=T0))
            tracker.update(SessionStarted(timestamp=T0))
        tracker.update(UserUttered(message.text, parse_data=parse_result(message.text or ""),
                                   input_channel=message.input_channel, metadata=message.metadata,
                                   message_id=message.message_id))
        for hook in self.hooks:
            await hook.after_turn(None, tracker, message.output_channel)
        await message.output_channel.send_response(message.sender_id, {"text": "ok"})
        return None


def bearer(role: str) -> dict[str, str]:
    token = jwt.encode({"user": {"username": f"{role}-1", "role": role}}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(project: Path) -> Any:
    agent = HookAgent()
    feature = CustomersFeature(project_settings(project))
    wechat = WeChatInput.from_credentials({"app_id": "wx1234567890abcdef", "app_secret": "s3cret",
                                           "token": WECHAT_TOKEN, "mode": "plaintext",
                                           "api_base": "http://127.0.0.1:9"})
    application = create_app(agent, input_channels=[RestInput(), wechat], auth_token=TOKEN, jwt_secret=SECRET,
                             project_root=project, features=[feature],
                             audit=SQLAuditLog(f"sqlite:///{project / 'audit.db'}"))
    application.ctx.test_agent = agent
    return application


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path", READ_ROUTES + WRITE_ROUTES)
async def test_a_stranger_gets_401_on_every_customers_route(app: Any, method: str, path: str) -> None:
    _, resp = await getattr(app.asgi_client, method)(path)
    assert resp.status == 401, resp.text


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path", READ_ROUTES + WRITE_ROUTES)
async def test_a_trainer_gets_403_on_every_customers_route(app: Any, method: str, path: str) -> None:
    _, resp = await getattr(app.asgi_client, method)(path, headers=bearer("trainer"))
    assert resp.status == 403, resp.text


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path", WRITE_ROUTES)
async def test_an_agent_reads_but_gets_403_on_writes(app: Any, method: str, path: str) -> None:
    _, resp = await getattr(app.asgi_client, method)(path, headers=bearer("agent"), json={"merge": "cu_y"})
    assert resp.status == 403, resp.text
    _, resp = await app.asgi_client.get("/customers", headers=bearer("agent"))
    assert resp.status == 200, resp.text


@pytest.mark.asyncio
async def test_rest_sender_and_metadata_claims_never_link(app: Any) -> None:
    body = {"sender": "oFAKEOPENID", "message": "hello",
            "metadata": {"identity": {"customer_id": "42", "verified": True}, "customer_id": "42"}}
    _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json=body)
    assert resp.status == 200, resp.text
    _, resp = await app.asgi_client.get("/customers/lookup?kind=wechat_openid&value=oFAKEOPENID", headers=ADMIN)
    assert resp.status == 404
    _, resp = await app.asgi_client.get("/customers/lookup?kind=shop_customer&value=42", headers=ADMIN)
    assert resp.status == 404
    _, resp = await app.asgi_client.get("/customers/lookup?kind=conversation&value=oFAKEOPENID", headers=ADMIN)
    assert resp.status == 200, resp.text
    record = resp.json
    assert [i["kind"] for i in record["identities"]] == ["conversation"]
    assert record["profile"]["contacts"] == 1 and record["profile"]["preferred_channel"] == "rest"


@pytest.mark.asyncio
async def test_merge_and_unmerge_by_a_supervisor_are_audited(app: Any) -> None:
    ids = []
    for sender in ("s-a", "s-b"):
        await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": sender, "message": "hi"})
        _, resp = await app.asgi_client.get(f"/customers/lookup?kind=conversation&value={sender}", headers=ADMIN)
        ids.append(resp.json["id"])
    _, resp = await app.asgi_client.post(f"/customers/{ids[0]}/merge", headers=bearer("supervisor"),
                                         json={"merge": ids[1]})
    assert resp.status == 200, resp.text
    merge_id = resp.json["merge_id"]
    _, resp = await app.asgi_client.get(f"/customers/{ids[0]}", headers=bearer("agent"))
    assert resp.json["profile"]["contacts"] == 2
    _, resp = await app.asgi_client.post(f"/customers/{ids[0]}/merge", headers=bearer("supervisor"), json={"merge": 5})
    assert resp.status == 400 and "merge" in resp.json["message"]
    _, resp = await app.asgi_client.post(f"/customers/merges/{merge_id}/undo", headers=bearer("supervisor"))
    assert resp.status == 200, resp.text
    _, resp = await app.asgi_client.post(f"/customers/merges/{merge_id}/undo", headers=bearer("supervisor"))
    assert resp.status == 409
    _, resp = await app.asgi_client.get("/audit", headers=ADMIN)
    actions = [(r["action"], r["actor"]) for r in resp.json["records"]] if isinstance(resp.json, dict) else \
        [(r["action"], r["actor"]) for r in resp.json]
    assert ("customers.merge", "supervisor-1") in actions
    assert ("customers.unmerge", "supervisor-1") in actions
    assert ("customers.read", "agent-1") in actions


@pytest.mark.asyncio
async def test_timeline_pages_are_chronological_and_complete(app: Any) -> None:
    broker = app.ctx.test_agent.event_broker
    await app.asgi_client.get("/customers", headers=ADMIN)  # one start/stop: tables exist
    feature = app.ctx.features["customers"]
    # events from the shop outbox (trusted), delivered through the broker during a request's life
    for i in range(120):
        await feature.on_broker_message({"event": "product_viewed", "customer_id": "9", "outbox_id": i,
                                         "timestamp": T0 + i, "data": {"sku": f"S{i}"}})
    assert feature.queue.qsize() == 120
    _, resp = await app.asgi_client.get("/customers/alerts", headers=ADMIN)  # the task drains at stop
    _, resp = await app.asgi_client.get("/customers/lookup?kind=shop_customer&value=9", headers=ADMIN)
    cid = resp.json["id"]
    seen: list[float] = []
    cursor = None
    pages = 0
    while True:
        path = f"/customers/{cid}/timeline?limit=50" + (f"&before={cursor}" if cursor else "")
        _, resp = await app.asgi_client.get(path, headers=bearer("agent"))
        assert resp.status == 200, resp.text
        seen += [item["ts"] for item in resp.json["items"] if item["type"] == "product_viewed"]
        pages += 1
        cursor = resp.json["next"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 120 and len(set(seen)) == 120
    assert pages == 3
    _, resp = await app.asgi_client.get(f"/customers/{cid}/timeline?before=nonsense", headers=ADMIN)
    assert resp.status == 400 and "before" in resp.json["message"]
    assert broker is not None


@pytest.mark.asyncio
async def test_reload_takes_a_new_weight_and_rejects_a_broken_file_with_its_line(app: Any, project: Path) -> None:
    text = (project / "health.yml").read_text(encoding="utf-8")
    (project / "health.yml").write_text(text.replace("weight: 2", "weight: -1"), encoding="utf-8")
    _, resp = await app.asgi_client.post("/customers/reload", headers=bearer("supervisor"))
    assert resp.status == 400
    assert "health.yml:9:" in resp.json["message"] and "weight" in resp.json["message"]
    (project / "health.yml").write_text(text.replace("weight: 2", "weight: 4"), encoding="utf-8")
    _, resp = await app.asgi_client.post("/customers/reload", headers=bearer("supervisor"))
    assert resp.status == 200, resp.text
    assert app.ctx.features["customers"].rules.health.weights()["satisfaction"] == 4


@pytest.mark.asyncio
async def test_phones_and_openids_are_masked_for_agents_not_for_admins(app: Any) -> None:
    feature = app.ctx.features["customers"]
    await feature.on_broker_message({"event": "order_paid", "customer_id": "7", "outbox_id": 1, "timestamp": T0,
                                     "data": {"total_cents": 100},
                                     "profile": {"phone": "13812345678", "wechat_openid": "oAbCdEfGhIjKlMn123"}})
    await app.asgi_client.get("/customers/alerts", headers=ADMIN)  # the feature's task drains its queue at stop
    _, resp = await app.asgi_client.get("/customers/lookup?kind=shop_customer&value=7", headers=bearer("agent"))
    values = {i["kind"]: i["value"] for i in resp.json["identities"]}
    assert values["phone"] != "13812345678" and values["phone"].endswith("5678")
    assert values["wechat_openid"] != "oAbCdEfGhIjKlMn123"
    _, resp = await app.asgi_client.get("/customers/lookup?kind=shop_customer&value=7", headers=ADMIN)
    values = {i["kind"]: i["value"] for i in resp.json["identities"]}
    assert values["phone"] == "13812345678" and values["wechat_openid"] == "oAbCdEfGhIjKlMn123"


def wechat_push(openid: str, text: str, token: str = WECHAT_TOKEN) -> tuple[str, bytes]:
    ts, nonce = str(int(time.time())), "n0nce"
    query = f"signature={compute_signature(token, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid={openid}"
    xml = (f"<xml><ToUserName><![CDATA[gh_kefu_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
           f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
           f"<MsgId>{ts}1</MsgId></xml>")
    return query, xml.encode("utf-8")


@pytest.mark.asyncio
async def test_a_signed_wechat_push_links_the_openid_a_forged_one_does_not(app: Any) -> None:
    query, body = wechat_push("oSIGNED0000000000000001", "你好")
    _, resp = await app.asgi_client.post(f"/webhooks/wechat/webhook?{query}", content=body)
    assert resp.status == 200, resp.text
    forged, body = wechat_push("oFORGED0000000000000002", "你好", token="not-the-token")
    _, resp = await app.asgi_client.post(f"/webhooks/wechat/webhook?{forged}", content=body)
    assert resp.status in (401, 403), resp.text
    await app.asgi_client.get("/customers/alerts", headers=ADMIN)  # drain
    _, resp = await app.asgi_client.get("/customers/lookup?kind=wechat_openid&value=oSIGNED0000000000000001",
                                        headers=ADMIN)
    assert resp.status == 200, resp.text
    assert resp.json["profile"]["preferred_channel"] == "wechat"
    _, resp = await app.asgi_client.get("/customers/lookup?kind=wechat_openid&value=oFORGED0000000000000002",
                                        headers=ADMIN)
    assert resp.status == 404
