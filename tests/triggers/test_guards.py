"""Guards: handoff, channel rules, expiry, SQL queue parity, quiet-hour edges."""
from __future__ import annotations

import asyncio

import pytest

from bot.triggers.events import BehaviourEvent
from bot.triggers.guards import is_opt_out_text, quiet_hours_end
from bot.triggers.journeys import TriggerSettings
from tests.triggers.conftest import SHANGHAI, local_ts, make_engine


def ev(event_id, kind, customer, ts, **props):
    return BehaviourEvent(event_id, kind, customer, ts, dict(props))


def test_quiet_hours_end_wraps_midnight():
    settings = TriggerSettings(quiet_start=(21, 0), quiet_end=(9, 0))
    assert quiet_hours_end(local_ts(2026, 11, 20, 23, 0), SHANGHAI, settings) == local_ts(2026, 11, 21, 9, 0)
    assert quiet_hours_end(local_ts(2026, 11, 21, 3, 0), SHANGHAI, settings) == local_ts(2026, 11, 21, 9, 0)
    assert quiet_hours_end(local_ts(2026, 11, 21, 9, 0), SHANGHAI, settings) is None
    assert quiet_hours_end(local_ts(2026, 11, 21, 20, 59), SHANGHAI, settings) is None


@pytest.mark.parametrize("text", ["别再发了", "请不要再发了谢谢", "退订", "Unsubscribe", "STOP"])
def test_opt_out_phrases_detected(text):
    assert is_opt_out_text(text)


@pytest.mark.parametrize("text", ["我的订单发了吗", "stop by the store", "", None])
def test_opt_out_phrases_not_overmatched(text):
    assert not is_opt_out_text(text)


@pytest.mark.asyncio
async def test_customer_time_zone_decides_quiet_hours(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    clock.set(local_ts(2026, 11, 20, 23, 0))  # 23:00 in Shanghai is 16:00 in London
    await engine.submit([BehaviourEvent("d", "order_delivered", "uk", clock.now(), {}, {"timezone": "Europe/London"})],
                        trusted=True)  # the time zone is the shop's word (events:trusted)
    clock.advance(5)
    await engine.drain()
    assert len(sender.to("uk")) == 1


@pytest.mark.asyncio
async def test_open_handoff_holds_until_closed(store, sql_queue, sender, clock):
    paused = {"c1": True}

    async def is_open(sender_id):
        return paused.get(sender_id, False)

    engine = make_engine(store, sql_queue, sender, clock, is_handoff_open=is_open)
    await engine.submit([ev("d", "order_delivered", "c1", clock.now())])
    clock.advance(5)
    results = await engine.drain()
    assert [(r.outcome, r.reason) for r in results] == [("hold", "handoff_open")]
    paused["c1"] = False
    clock.advance(engine.settings.handoff_retry)
    assert [r.outcome for r in await engine.drain()] == ["sent"]


@pytest.mark.asyncio
async def test_channel_rule_skip_is_recorded(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    sender.blocked["w1"] = "wechat_window_closed"
    await engine.submit([ev("d", "order_delivered", "w1", clock.now())])
    clock.advance(5)
    await engine.drain()
    assert sender.to("w1") == []
    assert [(d["kind"], d["reason"]) for d in await store.decisions_for("w1")] == [("skip", "wechat_window_closed")]


@pytest.mark.asyncio
async def test_sql_queue_crash_recovery_sends_once(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    await engine.submit([ev(f"e{i}", "order_delivered", f"s{i}", clock.now()) for i in range(6)])
    clock.advance(5)
    sender.block_at = 3
    worker = asyncio.create_task(engine.run_due(limit=10))
    for _ in range(500):
        if len(sender.delivered) == 3:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    sender.block_at = None
    restarted = make_engine(store, sql_queue, sender, clock)
    assert await restarted.run_due() == []
    clock.advance(engine.settings.lease + 1)
    await restarted.drain()
    assert sorted(o.customer_id for o in sender.delivered) == [f"s{i}" for i in range(6)]
    assert await sql_queue.size() == {"due": 0, "in_flight": 0}


@pytest.mark.asyncio
async def test_failed_send_is_retried_then_recorded(store, sql_queue, clock):
    class Broken:
        calls = 0

        async def check(self, outgoing):
            return None

        async def send(self, outgoing):
            Broken.calls += 1
            raise ConnectionError("down")

    engine = make_engine(store, sql_queue, Broken(), clock)
    await engine.submit([ev("d", "order_delivered", "b1", clock.now())])
    for _ in range(8):
        clock.advance(3600)
        await engine.drain()
    assert Broken.calls == 5
    assert [d["reason"] for d in await store.decisions_for("b1")] == ["send_failed"]
    assert await store.sends_for("b1") == []


@pytest.mark.asyncio
async def test_stopping_a_variant_keeps_in_flight_sends(store, sql_queue, sender, clock):
    from tests.triggers.conftest import TEST_TRIGGERS

    engine = make_engine(store, sql_queue, sender, clock)
    await engine.submit([ev(f"s{i}", "subscribed", f"v{i}", clock.now()) for i in range(30)])
    assigned = {i.customer_id: i.variants["hello"] for c in range(30) for i in await store.instances_for(f"v{c}")}
    assert set(assigned.values()) == {"A", "B"}
    stopped = TEST_TRIGGERS.replace("{name: B, weight: 1, response: utter_welcome_b}",
                                    "{name: B, weight: 1, response: utter_welcome_b, stopped: true}")
    engine = make_engine(store, sql_queue, sender, clock, text=stopped)
    await engine.submit([ev(f"n{i}", "subscribed", f"n{i}", clock.now()) for i in range(10)])
    clock.advance(2 * 3600)
    await engine.drain()
    sent = {o.customer_id: o.variant for o in sender.delivered}
    assert all(sent[c] == v for c, v in assigned.items())  # in-flight B sends still went out as B
    assert {sent[f"n{i}"] for i in range(10)} == {"A"}


@pytest.mark.asyncio
async def test_run_forever_worker_sends_and_stops(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    await engine.submit([ev("d", "order_delivered", "r1", clock.now() - 10)])
    stop = asyncio.Event()
    worker = asyncio.create_task(engine.run_forever(stop, idle_sleep=0.01))
    for _ in range(300):
        if sender.to("r1"):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 2)
    assert len(sender.to("r1")) == 1
