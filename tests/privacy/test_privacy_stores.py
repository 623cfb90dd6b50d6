"""Export, erase and purge of one customer over real stores: SQLite files, a real redis-server,
the demo shop's SQLite database through its erasure port."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from actions.shop.ports import ShopErasurePort
from bot.handoff.store import RESOLVED, SQLHandoffStore
from bot.privacy.service import PrivacyService
from bot.shared.events import ActionExecuted, SlotSet, UserUttered
from bot.shared.tracker import DialogueStateTracker
from bot.stores.tracker_store import RedisTrackerStore, SQLTrackerStore
from bot.triggers.events import BehaviourEvent
from bot.triggers.store import Instance, SQLTriggerStore

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
OTHER = "oOTHERuMuAJO_M2pxb1Q9zNjWe99"
PHONE = "13812345678"
DAY = 86400.0


def seed_shop(path: Path) -> str:
    from sqlalchemy.orm import Session

    from actions.shop import models as m
    from actions.shop.sql import create_schema, make_engine

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    create_schema(engine)
    now = datetime.now(timezone.utc)
    with Session(engine) as s, s.begin():
        s.add_all([m.Customer(id=42, name="张三", phone=PHONE, created_at=now),
                   m.Customer(id=7, name="李四", phone="13900001111", created_at=now)])
        s.flush()
        s.add_all([m.ChannelIdentity(customer_id=42, channel="wechat", external_id=OPENID),
                   m.ChannelIdentity(customer_id=7, channel="wechat", external_id=OTHER)])
        s.add(m.Order(id="E20261101001", customer_id=42, status="shipped", created_at=now, ship_name="张三",
                      ship_phone=PHONE, ship_address="上海市浦东新区世纪大道100号", total_cents=29900))
    engine.dispose()
    return url


async def conversation(store: Any, sender_id: str, text: str, at: float, metadata: dict | None = None) -> None:
    tracker = DialogueStateTracker(sender_id, None)
    tracker.update(ActionExecuted("action_listen", timestamp=at))
    tracker.update(UserUttered(text, {"name": "inform"}, metadata=metadata, timestamp=at + 1))
    tracker.update(SlotSet("phone", PHONE, timestamp=at + 2))
    await store.save(tracker)


async def fill(tracker_store: Any, handoffs: SQLHandoffStore, triggers: Any, now: float) -> None:
    await conversation(tracker_store, OPENID, f"我的电话 {PHONE}", now - 1)  # WeChat: the openid is the id
    await conversation(tracker_store, "widget-session-1", "我要退货", now - 1, {"customer_id": "42"})  # bound widget
    await conversation(tracker_store, OTHER, "someone else", now - 1)
    await conversation(tracker_store, "old-session", "long ago", now - 400 * DAY)
    h = await handoffs.create({"conversation_id": OPENID, "reason": "asked_for_human", "queue": "default",
                               "customer_id": "42", "record": {"phone": PHONE}})
    await handoffs.add_message(h["id"], "m1", "user", f"电话 {PHONE}")
    await handoffs.add_message(h["id"], "n1", "note", "VIP, be nice", agent_id="a1")
    old = await handoffs.create({"conversation_id": "old-session", "reason": "asked_for_human", "queue": "default",
                                 "created_at": now - 400 * DAY})
    await handoffs.resolve(old["id"])
    await handoffs.update(old["id"], resolved_at=now - 399 * DAY)
    await triggers.add_events([
        BehaviourEvent("ev-1", "order_shipped", "42", now - 10, {"order_id": "E20261101001"}, {"wechat_openid": OPENID}),
        BehaviourEvent("ev-old", "page_view", "7", now - 400 * DAY),
    ])
    await triggers.update_profile("42", {"wechat_openid": OPENID, "name": "张三"}, now)
    await triggers.create_instance(Instance("42:j1", "42", "j1", now - 5, OPENID))


async def check_export_erase(service: PrivacyService, tracker_store: Any) -> None:
    data = await service.export("42")
    text = json.dumps(data, ensure_ascii=False, default=str)
    assert set(data["conversations"]) == {OPENID, "widget-session-1"}
    assert OTHER not in text and "someone else" not in text
    assert len(data["handoffs"]) == 1 and [m["text"] for m in data["handoffs"][0]["messages"]][0] == f"电话 {PHONE}"
    assert data["handoffs"][0]["messages"][1]["sender"] == "note"
    trig = data["triggers"]["42"]
    assert [e["id"] for e in trig["events"]] == ["ev-1"] and trig["profile"]["wechat_openid"] == OPENID
    assert [i["id"] for i in trig["instances"]] == ["42:j1"]
    assert data["shop"]["customer"]["phone"] == PHONE and data["shop"]["orders"][0]["ship_address"]

    # the same customer found from their openid alone
    assert set((await service.export(OPENID))["conversations"]) == {OPENID, "widget-session-1"}

    result = await service.erase("42")
    assert result["conversations"] == 2 and result["handoffs"] == 1
    assert result["triggers"]["events"] == 1 and result["shop"]["orders_blanked"] == 1
    assert "42" not in json.dumps(result["customer_ref"])

    again = await service.export("42")
    assert again["conversations"] == {} and again["handoffs"] == []
    trig = again["triggers"]["42"]
    assert trig["events"] == [] and trig["instances"] == [] and trig["sends"] == []
    assert set(trig["profile"]) <= {"erased_at", "opted_out", "updated_at"} and trig["profile"]["opted_out"] is True
    shop_text = json.dumps(again["shop"], ensure_ascii=False)
    assert PHONE not in shop_text and "张三" not in shop_text and "世纪大道" not in shop_text
    assert again["shop"]["orders"][0]["total_cents"] == 29900  # kept for accounting
    # the other customer is untouched
    assert await tracker_store.retrieve(OTHER) is not None
    assert (await service.export("7"))["shop"]["customer"]["name"] == "李四"


@pytest.mark.asyncio
async def test_export_erase_purge_sqlite(tmp_path: Path) -> None:
    now = time.time()
    tracker_store = SQLTrackerStore(url=f"sqlite:///{tmp_path / 'kefu.db'}")
    handoffs = SQLHandoffStore(f"sqlite:///{tmp_path / 'handoff.db'}")
    triggers = SQLTriggerStore(f"sqlite:///{tmp_path / 'triggers.db'}")
    shop = ShopErasurePort(tmp_path, url=seed_shop(tmp_path / "shop.db"))
    service = PrivacyService(tracker_store, handoffs, triggers, shop, clock=lambda: now,
                             owned=(tracker_store, handoffs, triggers, shop))
    try:
        await fill(tracker_store, handoffs, triggers, now)
        # purge: only what is older than the retention period
        assert await service.purge(365 * DAY, dry_run=True) == {"conversations": 1, "handoffs": 1, "trigger_events": 1}
        assert await tracker_store.retrieve("old-session") is not None  # a dry run deletes nothing
        assert await service.purge(365 * DAY, batch=1) == {"conversations": 1, "handoffs": 1, "trigger_events": 1}
        assert await tracker_store.retrieve("old-session") is None
        assert sorted(await tracker_store.keys()) == sorted([OPENID, "widget-session-1", OTHER])
        assert len(await handoffs.list()) == 1
        assert [e.id for e in await triggers.events_for("42")] == ["ev-1"] and await triggers.events_for("7") == []
        assert await service.purge(365 * DAY) == {"conversations": 0, "handoffs": 0, "trigger_events": 0}

        await check_export_erase(service, tracker_store)
        # the handoff audit keeps who did what, not whose conversation
        await handoffs.audit("a1", "reply", conversation_id=OTHER)
        assert all(r["conversation_id"] != OPENID for r in await handoffs.audit_log())
    finally:
        await service.close()


@pytest.mark.asyncio
@pytest.mark.redis
async def test_export_erase_purge_redis(tmp_path: Path, redis_url: str) -> None:
    from bot.triggers.redis_store import RedisTriggerStore

    now = time.time()
    tracker_store = RedisTrackerStore(None, None, redis_url.split("//", 1)[1].split(":")[0],
                                      port=int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    handoffs = SQLHandoffStore(f"sqlite:///{tmp_path / 'handoff.db'}")
    triggers = RedisTriggerStore(redis_url)
    shop = ShopErasurePort(tmp_path, url=seed_shop(tmp_path / "shop.db"))
    service = PrivacyService(tracker_store, handoffs, triggers, shop, clock=lambda: now,
                             owned=(tracker_store, handoffs, triggers, shop))
    try:
        await fill(tracker_store, handoffs, triggers, now)
        assert await service.purge(365 * DAY, dry_run=True) == {"conversations": 1, "handoffs": 1, "trigger_events": 1}
        assert await service.purge(365 * DAY, batch=1) == {"conversations": 1, "handoffs": 1, "trigger_events": 1}
        assert await tracker_store.retrieve("old-session") is None
        assert sorted(await tracker_store.keys()) == sorted([OPENID, "widget-session-1", OTHER])
        assert [e.id for e in await triggers.events_for("42")] == ["ev-1"] and await triggers.events_for("7") == []
        await check_export_erase(service, tracker_store)
        # nothing of the customer is left in the shared hashes either
        assert await triggers.redis.hget(triggers.k("ev"), "ev-1") is None
        assert await triggers.redis.hget(triggers.k("inst"), "42:j1") is None
    finally:
        await service.close()


def test_data_cli_export_erase_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from bot.cli import main

    (tmp_path / "endpoints.yml").write_text("tracker_store:\n  type: sql\n  url: sqlite:///kefu.db\n", encoding="utf-8")

    async def seed() -> None:
        store = SQLTrackerStore(url=f"sqlite:///{tmp_path / 'kefu.db'}")
        await conversation(store, OPENID, f"电话 {PHONE}", time.time() - 1)
        await conversation(store, "old", "long ago", time.time() - 400 * DAY)
        await store.close()

    asyncio.run(seed())
    out = tmp_path / "export.json"
    assert main(["data", "export", "--customer", OPENID, "--out", str(out), "--root", str(tmp_path)]) == 0
    assert list(json.loads(out.read_text(encoding="utf-8"))["conversations"]) == [OPENID]
    assert main(["data", "erase", "--customer", OPENID, "--yes", "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"erased": {"conversations": 1}}
    assert main(["data", "export", "--customer", OPENID, "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["conversations"] == {}
    assert main(["data", "purge", "--older-than", "365", "--dry-run", "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["conversations"] == 1
    assert main(["data", "purge", "--older-than", "365", "--root", str(tmp_path)]) == 0
    assert main(["data", "purge", "--older-than", "365", "--dry-run", "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["conversations"] == 0
