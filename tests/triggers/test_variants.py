"""Stopping an A/B variant at run time (engine, HTTP, CLI), on both backends: persisted,
new entries re-assigned deterministically, queued sends re-routed (or sent as assigned)."""
from __future__ import annotations

import json

import pytest

from bot.triggers.engine import SwitchRejected
from bot.triggers.events import BehaviourEvent
from bot.triggers.journeys import assign_variant
from bot.triggers.report import build_report
from tests.triggers.conftest import make_engine

pytestmark = pytest.mark.redis


def subscribed(prefix: str, n: int, ts: float) -> list[BehaviourEvent]:
    return [BehaviourEvent(f"{prefix}{i}", "subscribed", f"{prefix}{i}", ts) for i in range(n)]


@pytest.mark.asyncio
async def test_stop_variant_reroutes_queued_sends_and_survives_restart(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    await engine.submit(subscribed("q", 30, clock.now()))  # queued, due in 1 h, assigned A or B
    assigned = {i.customer_id: i.variants["hello"] for n in range(30) for i in await store.instances_for(f"q{n}")}
    assert set(assigned.values()) == {"A", "B"}
    result = await engine.stop_variant("welcome", "hello", "B", reason="coupon typo")
    assert result["running"] == ["A"] and result["in_flight"] == "reroute"

    store2, queue2 = await backend.open()  # a restarted worker reads the stop from the store
    restarted = make_engine(store2, queue2, sender, clock)
    await restarted.submit(subscribed("n", 10, clock.now()))
    assert {i.variants["hello"] for n in range(10) for i in await store2.instances_for(f"n{n}")} == {"A"}
    clock.advance(2 * 3600)
    results = await restarted.drain()
    assert len(results) == 40 and {r.outcome for r in results} == {"sent"}  # no in-flight send lost
    assert {o.variant for o in sender.delivered} == {"A"}
    rerouted = [c for c, v in assigned.items() if v == "B"]
    reroutes = [d for c in rerouted for d in await store2.decisions_for(c) if d["kind"] == "reroute"]
    assert len(reroutes) == len(rerouted) and {(d["variant"], d["reason"]) for d in reroutes} == {("B", "variant_stopped:A")}

    report = build_report(await store2.report_counts(), restarted.config, stops=await restarted.stops(refresh=True))
    welcome = report["journeys"]["welcome"]
    assert welcome["steps"]["hello"]["A"]["sends"] == 40 and welcome["reroutes"] == {"variant_stopped:A": len(rerouted)}
    assert report["stopped_variants"][0]["variant"] == "B" and report["stopped_variants"][0]["reason"] == "coupon typo"


@pytest.mark.asyncio
async def test_stop_variant_in_flight_send_keeps_assignment(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    await engine.submit(subscribed("s", 20, clock.now()))
    assigned = {i.customer_id: i.variants["hello"] for n in range(20) for i in await store.instances_for(f"s{n}")}
    await engine.stop_variant("welcome", "hello", "B", in_flight="send")
    clock.advance(2 * 3600)
    await engine.drain()
    assert {o.customer_id: o.variant for o in sender.delivered} == assigned
    step = engine.effective_step("welcome", engine.config.journey("welcome").steps[0])
    assert [v.name for v in step.active_variants()] == ["A"]
    assert all(assign_variant(step, "welcome", f"x{i}").name == "A" for i in range(20))


@pytest.mark.asyncio
async def test_stop_variant_rejects_unknown_names_and_the_last_variant(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    for args, status, code in ((("nope", "hello", "A"), 404, "unknown_journey"),
                               (("welcome", "nope", "A"), 404, "unknown_step"),
                               (("welcome", "hello", "C"), 404, "unknown_variant")):
        with pytest.raises(SwitchRejected) as info:
            await engine.stop_variant(*args)
        assert (info.value.status, info.value.code) == (status, code)
    await engine.stop_variant("welcome", "hello", "A")
    assert (await engine.stop_variant("welcome", "hello", "A"))["already_stopped"] is True
    with pytest.raises(SwitchRejected) as info:
        await engine.stop_variant("welcome", "hello", "B")
    assert info.value.status == 409 and "last running variant" in info.value.message
    assert (await engine.resume_variant("welcome", "hello", "A"))["resumed"] is True
    assert await store.stopped_variants() == {}


@pytest.mark.asyncio
async def test_stop_variant_over_http(store, sql_queue, sender, clock):
    from bot.server.app import create_app
    from bot.feature import ProjectSettings
    from bot.triggers.feature import TriggersFeature

    engine = make_engine(store, sql_queue, sender, clock)
    app = create_app(agent=None, auth_token="secret",
                     features=[TriggersFeature(ProjectSettings(root=None), engine=engine)])
    url = "/triggers/journeys/welcome/steps/hello/variants/B/stop"
    AUTH = {"Authorization": "Bearer secret"}
    _, res = await app.asgi_client.post(url, content=json.dumps({"reason": "bad"}))
    assert res.status == 401 and await store.stopped_variants() == {}
    _, res = await app.asgi_client.post(url, headers=AUTH, content=json.dumps({"reason": "bad", "in_flight": "later"}))
    assert res.status == 400 and res.json["reason"] == "invalid_in_flight"
    _, res = await app.asgi_client.post(url, headers=AUTH, content=json.dumps({"reason": "bad"}))
    assert res.status == 200 and res.json["stopped"] is True and res.json["running"] == ["A"]
    _, res = await app.asgi_client.post(url.replace("/B/", "/A/"), headers=AUTH)
    assert res.status == 409 and res.json["reason"] == "last_variant"
    _, res = await app.asgi_client.post(url.replace("welcome", "nope"), headers=AUTH)
    assert res.status == 404 and res.json["reason"] == "unknown_journey"
    _, res = await app.asgi_client.get("/triggers/report", headers=AUTH)
    assert res.json["stopped_variants"][0]["variant"] == "B"
    _, res = await app.asgi_client.post(url.replace("/stop", "/resume"), headers=AUTH)
    assert res.status == 200 and res.json["resumed"] is True


def test_stop_variant_cli(tmp_path, capsys):
    import asyncio

    from bot.triggers.cli import add_triggers_parser, run_triggers
    from bot.triggers.store import SQLTriggerStore
    from tests.triggers.conftest import TEST_TRIGGERS
    import argparse

    (tmp_path / "triggers.yml").write_text(TEST_TRIGGERS, encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_triggers_parser(parser.add_subparsers(dest="command"))
    url = f"sqlite:///{tmp_path / 't.db'}"
    args = parser.parse_args(["triggers", "stop-variant", "welcome", "hello", "A", "--store", url,
                              "--file", str(tmp_path / "triggers.yml"), "--reason", "test"])
    assert run_triggers(args) == 0
    assert json.loads(capsys.readouterr().out)["running"] == ["B"]
    args = parser.parse_args(["triggers", "stop-variant", "welcome", "hello", "B", "--store", url,
                              "--file", str(tmp_path / "triggers.yml")])
    assert run_triggers(args) == 1
    assert "last running variant" in capsys.readouterr().out

    async def stops():
        store = SQLTriggerStore(url)
        try:
            return await store.stopped_variants()
        finally:
            await store.close()

    assert list(asyncio.run(stops())) == [("welcome", "hello", "A")]
