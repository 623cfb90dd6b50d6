"""Export, erase and retention reach the analytics store and Customer 360 (real SQLite files).

The shop's customer 42 is known to Customer 360 by its shop id and a WeChat openid (proven
by the shop's event); the dashboard's store keeps the openid's conversation, a survey answer
and 42's order. A request for 42 — or for the openid, or the Customer 360 id — finds them all;
customer 7 is left alone.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.config import AnalyticsConfig
from bot.analytics.ingest import Ingester
from bot.analytics.store import AnalyticsStore
from bot.customers.ingress import from_broker
from bot.customers.profile import CustomerEvent
from bot.customers.rules import load_rules
from bot.customers.service import CustomerService
from bot.customers.store import CustomerStore
from bot.privacy.service import PrivacyService

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
DAY = 86400.0
HEALTH_YML = """\
components:
  repurchase: {signal: days_since_last_order, normalise: {low: 100, high: 0}, weight: 1}
bands: {healthy: 70, at_risk: 0}
actions:
  - {name: winback, when: {band: at_risk}, notify_agents: "at risk"}
"""


def user(sender: str, ts: float, channel: str = "wechat") -> dict[str, Any]:
    return {"event": "user", "sender_id": sender, "timestamp": ts, "text": "hi", "input_channel": channel,
            "parse_data": {"intent": {"name": "greet", "confidence": 0.9}, "entities": []}}


async def fill(root: Path, now: float) -> tuple[CustomerService, AnalyticsStore]:
    (root / "health.yml").write_text(HEALTH_YML, encoding="utf-8")
    c360 = CustomerService(CustomerStore(f"sqlite:///{root / 'customers.db'}"), load_rules(root), clock=lambda: now)
    for body in ({"event": "order_paid", "customer_id": "42", "order_id": "E1", "timestamp": now - 200 * DAY,
                  "data": {"total_cents": 5000}, "outbox_id": "42-E1", "profile": {"wechat_openid": OPENID}},
                 {"event": "order_paid", "customer_id": "7", "order_id": "E2", "timestamp": now - DAY,
                  "data": {"total_cents": 9000}, "outbox_id": "7-E2"}):
        item = from_broker(body)
        await c360.ingest(item.event, item.links, item.proof)
    analytics = AnalyticsStore(f"sqlite:///{root / 'analytics.db'}")
    await analytics.open()
    ingester = Ingester(analytics, AnalyticsConfig())
    for body in (user(OPENID, now - 3600), user("other-sender", now - 3000),
                 {"event": "order_paid", "customer_id": "42", "order_id": "E1", "timestamp": now - 1800,
                  "data": {"total_cents": 5000}},
                 {"event": "order_paid", "customer_id": "7", "order_id": "E2", "timestamp": now - 1700,
                  "data": {"total_cents": 9000}}):
        await ingester.handle(body)
    await ingester.flush()
    await analytics.insert_survey({"id": "sv1", "sender_id": OPENID, "conversation_id": f"{OPENID}@1",
                                   "customer_id": OPENID, "trigger": "goodbye", "day": "2026-12-07",
                                   "asked_at": now - 3500, "step": "done", "csat": 2, "answered_at": now - 3490})
    return c360, analytics


@pytest.mark.asyncio
@pytest.mark.parametrize("asked_for", ["42", OPENID, "c360"])
async def test_export_then_erase_reach_analytics_and_customer_360(tmp_path: Path, asked_for: str) -> None:
    now = time.time()
    c360, analytics = await fill(tmp_path, now)
    record = await c360.find("shop_customer", "42")
    other = await c360.find("shop_customer", "7")
    assert record and other and record != other and await c360.find("wechat_openid", OPENID) == record
    service = PrivacyService(clock=lambda: now, analytics_store=analytics, customer_store=c360.store)
    customer = record if asked_for == "c360" else asked_for
    try:
        data = json.loads(json.dumps(await service.export(customer), default=str))
        assert data["identities"]["c360_ids"] == [record]
        assert {"42", OPENID} <= set(data["identities"]["customer_ids"]) | set(data["identities"]["sender_ids"])
        assert [r["sender_id"] for r in data["analytics"]["conversations"]] == [OPENID]
        assert [(r["id"], r["csat"]) for r in data["analytics"]["surveys"]] == [("sv1", 2)]
        assert [r["order_id"] for r in data["analytics"]["orders"]] == ["E1"]
        c = data["customer_360"]
        assert [r["id"] for r in c["customers"]] == [record]
        assert sorted((r["kind"], r["value"]) for r in c["identities"]) == [
            ("order", "E1"), ("shop_customer", "42"), ("wechat_openid", OPENID)]
        assert [e["type"] for e in c["timeline"]] == ["order_paid", "health_changed", "tags_changed"]
        assert len(c["health_history"]) == 1 and c["health_history"][0]["band"] == "at_risk"
        assert [(a["rule"], a["customer_id"]) for a in c["alerts"]] == [("winback", record)]

        erased = await service.erase(customer)
        assert erased["analytics"] == {"surveys": 1, "conversations": 1, "orders": 1}
        assert erased["customer_360"] == {"identities": 3, "health_history": 1, "timeline": 3, "alerts": 1,
                                          "merges": 0, "conflicts": 0, "customers": 1}
        again = await service.export(customer)
        assert again["analytics"] == {"surveys": [], "conversations": [], "orders": []}
        assert again["customer_360"]["customers"] == [] and again["customer_360"]["identities"] == []
        # customer 7 and the other conversation are untouched
        assert (await c360.get(other))["profile"]["order_count"] == 1
        kept = await analytics.export_customer(["7", "other-sender"])
        assert [r["order_id"] for r in kept["orders"]] == ["E2"] and len(kept["conversations"]) == 1
        assert await c360.find("wechat_openid", OPENID) is None
    finally:
        await analytics.close()
        await c360.close()


@pytest.mark.asyncio
async def test_retention_purges_analytics_rows_and_idle_customer_records(tmp_path: Path) -> None:
    now = time.time()
    c360, analytics = await fill(tmp_path, now)
    service = PrivacyService(clock=lambda: now, analytics_store=analytics, customer_store=c360.store)
    record, other = await c360.find("shop_customer", "42"), await c360.find("shop_customer", "7")
    try:
        # 42's last event was 200 days ago, 7's one day ago; the analytics rows are all from the last hour
        assert await service.purge(100 * DAY, dry_run=True) == {
            "analytics_conversations": 0, "analytics_surveys": 0, "analytics_orders": 0, "customers": 1}
        assert await c360.find("shop_customer", "42") == record  # a dry run deletes nothing
        assert await service.purge(100 * DAY, batch=1) == {
            "analytics_conversations": 0, "analytics_surveys": 0, "analytics_orders": 0, "customers": 1}
        assert await c360.find("shop_customer", "42") is None and await c360.find("wechat_openid", OPENID) is None
        assert await c360.find("shop_customer", "7") == other
        # a retention of 10 minutes: every analytics row is older
        assert await service.purge(600, dry_run=True) == {
            "analytics_conversations": 2, "analytics_surveys": 1, "analytics_orders": 2, "customers": 1}
        assert await service.purge(600, batch=1) == {
            "analytics_conversations": 2, "analytics_surveys": 1, "analytics_orders": 2, "customers": 1}
        assert await analytics.export_customer(["42", "7", OPENID, "other-sender"]) == {
            "surveys": [], "conversations": [], "orders": []}
    finally:
        await analytics.close()
        await c360.close()


def test_data_cli_erases_from_the_projects_analytics_and_customer_stores(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from bot.cli import main

    (tmp_path / "endpoints.yml").write_text(
        "tracker_store:\n  type: sql\n  url: sqlite:///kefu.db\n"
        f"customers:\n  url: sqlite:///{tmp_path / 'customers.db'}\n", encoding="utf-8")
    (tmp_path / "config.yml").write_text("analytics:\n  database: sqlite:///analytics.db\n", encoding="utf-8")

    async def seed() -> None:
        c360, analytics = await fill(tmp_path, time.time())
        await analytics.close()
        await c360.close()

    asyncio.run(seed())
    out = tmp_path / "export.json"
    assert main(["data", "export", "--customer", "42", "--out", str(out), "--root", str(tmp_path)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["order_id"] for r in data["analytics"]["orders"]] == ["E1"]
    assert [r["kind"] for r in data["customer_360"]["identities"]] == ["shop_customer", "order", "wechat_openid"]
    assert main(["data", "erase", "--customer", "42", "--yes", "--root", str(tmp_path)]) == 0
    erased = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["erased"]
    assert erased["analytics"] == {"surveys": 1, "conversations": 1, "orders": 1}
    assert erased["customer_360"]["customers"] == 1 and erased["customer_360"]["identities"] == 3


@pytest.mark.asyncio
async def test_data_routes_reach_analytics_and_customer_360_for_an_admin_only(tmp_path: Path) -> None:
    """The real app built from the project (privacy, customers and analytics features): a stranger
    gets 401, a supervisor 403, the admin token exports and erases in both stores."""
    import jwt

    from bot.agent import Agent
    from bot.server.app import create_app

    (tmp_path / "endpoints.yml").write_text(
        "tracker_store:\n  type: sql\n  url: sqlite:///kefu.db\n"
        f"customers:\n  url: sqlite:///{tmp_path / 'customers.db'}\n", encoding="utf-8")
    (tmp_path / "config.yml").write_text("analytics:\n  database: sqlite:///analytics.db\n", encoding="utf-8")
    c360, analytics = await fill(tmp_path, time.time())
    await analytics.close()
    await c360.close()
    token, secret = "t0ken-" + str(time.time_ns()), "jwt-" + "x" * 40 + str(time.time_ns())
    supervisor = jwt.encode({"user": {"username": "sam", "role": "supervisor"}}, secret, algorithm="HS256")
    app = create_app(Agent(action_package=None), project_root=tmp_path, auth_token=token, jwt_secret=secret)
    admin = {"Authorization": f"Bearer {token}"}
    _, resp = await app.asgi_client.get("/data/customers/42/export")
    assert resp.status == 401
    _, resp = await app.asgi_client.delete("/data/customers/42", headers={"Authorization": f"Bearer {supervisor}"})
    assert resp.status == 403
    _, resp = await app.asgi_client.get(f"/data/customers/{OPENID}/export", headers=admin)
    assert resp.status == 200
    assert [r["order_id"] for r in resp.json["analytics"]["orders"]] == ["E1"]  # found through the openid
    assert sorted(r["kind"] for r in resp.json["customer_360"]["identities"]) == ["order", "shop_customer",
                                                                                  "wechat_openid"]
    _, resp = await app.asgi_client.delete("/data/customers/42", headers=admin)
    assert resp.status == 200
    erased = resp.json["erased"]
    assert erased["analytics"] == {"surveys": 1, "conversations": 1, "orders": 1}
    assert erased["customer_360"]["customers"] == 1 and erased["customer_360"]["timeline"] == 3
    _, resp = await app.asgi_client.get("/data/customers/42/export", headers=admin)
    assert resp.json["analytics"]["orders"] == [] and resp.json["customer_360"]["customers"] == []
