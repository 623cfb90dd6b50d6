"""The workbench through the real server: REST traffic → inbox → annotate → browse → train → gate → activate.

Real parts: a trained agent on a copy of the tiny shop (a git repository, so the diff of each
save is read by git), SQLite audit log, JWTs signed with the server's secret.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from tests.workbench.conftest import ADMIN, make_app, role_headers

ROUTES = [
    ("get", "/workbench/api/inbox", None),
    ("get", "/workbench/api/conversations", None),
    ("get", "/workbench/api/conversations/c1", None),
    ("get", "/workbench/api/project", None),
    ("post", "/workbench/api/annotate/intent", {"text": "x", "intent": "greet"}),
    ("post", "/workbench/api/annotate/faq", {"text": "x", "entry_id": "e", "language": "en"}),
    ("post", "/workbench/api/annotate/story", {"conversation_id": "c1"}),
    ("post", "/workbench/api/annotate/dismiss", {"texts": ["x"]}),
    ("post", "/workbench/api/train", None),
    ("get", "/workbench/api/train/abc", None),
    ("get", "/workbench/api/models", None),
    ("post", "/workbench/api/models/m1/activate", {}),
    ("post", "/workbench/api/models/rollback", None),
]

TRAFFIC = {
    "s-gift-1": ["hi", "do you sell gift cards"],
    "s-gift-2": ["do you have gift cards?"],
    "s-gift-3": ["can i buy a gift card"],
    "s-cancel": ["please cancel my order right now", "bye"],
    "s-ok": ["where is my order"],
}


def numstat(root: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run(["git", "diff", "--numstat"], cwd=root, check=True, capture_output=True, text=True).stdout
    return [(int(a), int(d), f) for a, d, f in (line.split("\t") for line in out.splitlines())]


@pytest.mark.asyncio
async def test_stranger_gets_401_and_wrong_role_403_on_every_workbench_route(shop: Path, shop_model: Path) -> None:
    app, agent = await make_app(shop, shop_model)
    try:
        for method, path, body in ROUTES:
            kwargs = {"json": body} if body is not None else {}
            _, resp = await getattr(app.asgi_client, method)(path, **kwargs)
            assert resp.status == 401, (path, resp.status)
            _, resp = await getattr(app.asgi_client, method)(path, headers=role_headers("event_producer"), **kwargs)
            assert resp.status == 403, (path, resp.status)
        # a shopper's own-conversation JWT does not open the workbench's transcript route
        _, resp = await app.asgi_client.get("/workbench/api/conversations/c1", headers=role_headers("user", "c1"))
        assert resp.status == 403
        # a trainer may train but not activate
        _, resp = await app.asgi_client.post("/workbench/api/models/m1/activate", json={},
                                             headers=role_headers("trainer"))
        assert resp.status == 403 and "model:write" in resp.json["message"]
        _, resp = await app.asgi_client.get("/workbench")
        assert resp.status == 200 and "<html" in resp.text.lower()
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_trainer_loop_inbox_annotate_browse_train_gate_activate(shop: Path, shop_model: Path) -> None:
    app, agent = await make_app(shop, shop_model)
    trainer = role_headers("trainer", "tina")
    try:
        for sender, texts in TRAFFIC.items():
            for text in texts:
                _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
                assert resp.status == 200

        # 1. the inbox: the gift-card questions are one group, counted, most frequent first
        _, resp = await app.asgi_client.get("/workbench/api/inbox", headers=trainer)
        assert resp.status == 200, resp.text
        inbox = resp.json
        assert inbox["conversations_scanned"] == len(TRAFFIC)
        texts_in = {m["text"] for g in inbox["groups"] for m in g["messages"]}
        assert "where is my order" not in texts_in  # understood with confidence: not for review
        gift = [g for g in inbox["groups"] if any("gift" in m["text"] for m in g["messages"])]
        assert len(gift) == 1 and gift[0]["count"] == 3, inbox["groups"]
        assert inbox["groups"][0]["count"] >= inbox["groups"][-1]["count"]
        assert gift[0]["suggested_intents"], gift[0]

        # 2. annotate: a new intent, then an example with an entity; each save validated, only new lines
        for message in gift[0]["messages"]:
            _, resp = await app.asgi_client.post("/workbench/api/annotate/intent", headers=trainer,
                                                 json={"text": message["text"], "intent": "gift_card"})
            assert resp.status == 201, resp.text
            assert resp.json["validation"]["errors"] == 0
        text = "please cancel my order right now"
        start = text.index("order")
        _, resp = await app.asgi_client.post("/workbench/api/annotate/intent", headers=trainer, json={
            "text": text, "intent": "return_request",
            "entities": [{"start": start, "end": start + 5, "entity": "product"}]})
        assert resp.status == 201, resp.text
        assert resp.json["added"].strip() == "- please cancel my [order](product) right now"
        _, resp = await app.asgi_client.post("/workbench/api/annotate/intent", headers=trainer, json={
            "text": text, "intent": "return_request", "entities": [{"start": 0, "end": 6, "entity": "colour"}]})
        assert resp.status == 422 and "colour" in resp.json["message"]
        changed = {f: (a, d) for a, d, f in numstat(shop)}
        assert changed == {"domain.yml": (1, 0), "data/nlu.yml": (1, 0)}, changed
        assert (shop / "data" / "workbench.yml").is_file()  # the new intent's file, untracked until committed

        _, resp = await app.asgi_client.get("/workbench/api/inbox", headers=trainer)
        remaining = {m["text"] for g in resp.json["groups"] for m in g["messages"]}
        assert not any("gift" in t for t in remaining) and text not in remaining

        # 3. the conversation browser, and a transcript read that is audited
        _, resp = await app.asgi_client.get("/workbench/api/conversations?q=gift&channel=rest", headers=trainer)
        assert resp.status == 200 and resp.json["total"] == 3
        _, resp = await app.asgi_client.get("/workbench/api/conversations?intent=goodbye", headers=trainer)
        ids = [c["conversation_id"] for c in resp.json["conversations"]]
        assert "s-cancel" in ids and "s-ok" not in ids  # "bye" vs. only "where is my order"
        assert all("goodbye" in c["intents"] for c in resp.json["conversations"])
        _, resp = await app.asgi_client.get("/workbench/api/conversations?handoff=true", headers=trainer)
        assert resp.json["total"] == 0
        today = time.strftime("%Y-%m-%d", time.gmtime())
        _, resp = await app.asgi_client.get(f"/workbench/api/conversations?since={today}&until={today}",
                                            headers=trainer)
        assert resp.json["total"] == len(TRAFFIC)  # `until` a date: the whole day
        _, resp = await app.asgi_client.get("/workbench/api/conversations?until=2000-01-01", headers=trainer)
        assert resp.json["total"] == 0
        _, resp = await app.asgi_client.get("/workbench/api/conversations?since=yesterday", headers=trainer)
        assert resp.status == 400 and "since" in resp.json["message"]
        _, resp = await app.asgi_client.get("/workbench/api/conversations/s-cancel", headers=trainer)
        assert resp.status == 200
        user = [m for m in resp.json["messages"] if m["type"] == "user"]
        assert user[0]["text"] == "please cancel my order right now" and user[0]["nlu"]["intent"]["name"]
        _, resp = await app.asgi_client.get("/audit?conversation_id=s-cancel", headers=ADMIN)
        assert resp.status == 200, resp.text
        assert any(r["action"] == "workbench.transcript_read" and r["actor"] == "tina" for r in resp.json["records"]), resp.json

        # a test story from the conversation
        _, resp = await app.asgi_client.post("/workbench/api/annotate/story", headers=trainer,
                                             json={"conversation_id": "s-ok", "name": "order status"})
        assert resp.status == 201, resp.text
        story = (shop / "tests" / "test_workbench_stories.yml").read_text(encoding="utf-8")
        assert "- story: order status" in story and "intent: order_status" in story

        # 4./5. retrain behind the gate; the registry keeps the comparison; only model:write activates
        _, resp = await app.asgi_client.post("/workbench/api/train", headers=trainer)
        assert resp.status == 202
        job = resp.json["job"]
        deadline = time.monotonic() + 180
        while True:
            _, resp = await app.asgi_client.get(f"/workbench/api/train/{job}", headers=trainer)
            if resp.json["status"] != "running" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert resp.json["status"] == "done", resp.json
        name = resp.json["model"]
        _, resp = await app.asgi_client.get("/workbench/api/models", headers=trainer)
        entry = next(m for m in resp.json["models"] if m["name"] == name)
        comparison = entry["comparison"]
        assert comparison["active_saw_holdout"] is True  # the active model was trained on everything
        assert comparison["held_out"] > 0 and comparison["intents"]
        stories = comparison["stories"]  # the test story saved above, run on both models
        assert stories["files"] == ["tests/test_workbench_stories.yml"]
        assert stories["candidate"]["total"] == stories["active"]["total"] == 1
        assert entry["trained_by"] == "tina" and entry["data_version"]
        if entry["gate_passed"] is False:  # then only an admin's override activates it
            _, resp = await app.asgi_client.post(f"/workbench/api/models/{name}/activate", headers=ADMIN, json={})
            assert resp.status == 409
        _, resp = await app.asgi_client.post(f"/workbench/api/models/{name}/activate", headers=ADMIN,
                                             json={"override": True})
        assert resp.status == 200, resp.text
        assert agent.model_id == name
        parsed = await agent.parse_message("do you sell gift cards")
        assert parsed["intent"]["name"] in agent.domain.intents
        assert "gift_card" in agent.domain.intents
        _, resp = await app.asgi_client.post("/workbench/api/models/rollback", headers=ADMIN)
        assert resp.status == 409  # nothing was active before it
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_an_activation_reaches_another_worker_through_the_registry(shop: Path, shop_model: Path) -> None:
    """Two workers (agents) over one project: B follows what A activated, without a restart."""
    import shutil

    from bot.agent import Agent
    from bot.workbench.config import WorkbenchConfig
    from bot.workbench.feature import WorkbenchService

    (shop / "models").mkdir()
    for name in ("m-old", "m-new"):
        shutil.copy(shop_model, shop / "models" / f"{name}.tar.gz")
    a = await Agent.create(shop / "models" / "m-old.tar.gz", None, project_root=shop)
    b = await Agent.create(shop / "models" / "m-old.tar.gz", None, project_root=shop)
    try:
        config = WorkbenchConfig.for_project(shop)
        worker_a, worker_b = WorkbenchService(shop, config, a), WorkbenchService(shop, config, b)
        for name in ("m-old", "m-new"):
            worker_a.registry.add(str(shop / "models" / f"{name}.tar.gz"), "tina", "v", {"passed": True})
        from bot.web.principals import Principal, Role

        admin = Principal("root", Role.ADMIN)
        worker_a.registry.activate("m-old", "root", is_admin=True)
        await worker_a.follow_once()
        await worker_b.follow_once()  # both workers on the registry's m-old
        await worker_a.activate(admin, "m-new", override=False)
        assert a.model_path.endswith("m-new.tar.gz")
        assert b.model_path.endswith("m-old.tar.gz")
        assert await worker_b.follow_once() is True  # what the feature's task does every follow_interval_s
        assert b.model_path.endswith("m-new.tar.gz")
        assert (await b.parse_message("hello"))["intent"]["name"] == "greet"  # serving throughout
        assert await worker_b.follow_once() is False  # nothing new
        await worker_a.activate(admin, "", override=False, rollback=True)
        assert await worker_b.follow_once() is True and b.model_path.endswith("m-old.tar.gz")
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_an_activation_is_announced_over_redis_pub_sub(shop: Path, shop_model: Path, redis_url: str) -> None:
    """With a Redis URL the other worker switches on the message (its polling is made hourly here)."""
    import shutil

    from bot.agent import Agent
    from bot.feature import FeatureContext
    from bot.server.features import project_settings
    from bot.web.principals import Principal, Role
    from bot.workbench.feature import WorkbenchFeature

    config = (shop / "config.yml").read_text(encoding="utf-8")
    (shop / "config.yml").write_text(config.replace("workbench:\n", f"workbench:\n  notify_url: {redis_url}\n"
                                                    "  follow_interval_s: 3600\n"), encoding="utf-8")
    (shop / "models").mkdir()
    for name in ("m-old", "m-new"):
        shutil.copy(shop_model, shop / "models" / f"{name}.tar.gz")
    agents = [await Agent.create(shop / "models" / "m-old.tar.gz", None, project_root=shop) for _ in range(2)]
    features = [WorkbenchFeature(project_settings(shop)) for _ in agents]
    stop = asyncio.Event()
    tasks = []
    try:
        for feature, agent in zip(features, agents):
            await feature.start(FeatureContext(agent=agent, outputs=None, settings=feature.settings))
            assert feature.health().detail["activation_messages"] == "redis"
            tasks += [asyncio.create_task(task(stop)) for task in feature.tasks()]
        a, b = features[0].service, features[1].service
        for name in ("m-old", "m-new"):
            a.registry.add(str(shop / "models" / f"{name}.tar.gz"), "tina", "v", {"passed": True})
        await asyncio.sleep(1.5)  # both subscribed
        await a.activate(Principal("root", Role.ADMIN), "m-new", override=False)
        deadline = asyncio.get_running_loop().time() + 10
        while not agents[1].model_path.endswith("m-new.tar.gz") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert agents[1].model_path.endswith("m-new.tar.gz")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for feature in features:
            await feature.stop()
        for agent in agents:
            await agent.close()
