"""End-to-end trigger behaviour with a real Redis queue, a SQLite store and a test clock."""
from __future__ import annotations

import asyncio

import pytest

from bot.triggers.events import BehaviourEvent, EventRejected
from bot.triggers.queue import RedisJobQueue
from tests.triggers.conftest import local_ts, make_engine

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


def ev(event_id: str, kind: str, customer: str, ts: float, **props: object) -> BehaviourEvent:
    return BehaviourEvent(event_id, kind, customer, ts, dict(props))


async def run_until(engine, clock, until: float, step: float = 3600.0) -> list:
    """Advance the test clock in steps, dispatching whatever is due at each step."""
    results = []
    while clock.now() < until:
        clock.set(min(until, clock.now() + step))
        results.extend(await engine.drain())
    return results


async def test_abandoned_cart_gets_one_reminder_48h_later(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    start = clock.now()
    await engine.submit([ev("e1", "cart_item_added", "c1", start, product_name="跑鞋")])
    await run_until(engine, clock, start + 48 * 3600 - 60, step=600)
    assert sender.to("c1") == []
    await run_until(engine, clock, start + 10 * 86400, step=600)
    reminders = sender.to("c1")
    assert len(reminders) == 1
    assert reminders[0].message.response == "utter_cart_reminder"
    assert reminders[0].slots == {"product": "跑鞋"}
    sent = await store.sends_for("c1")
    assert len(sent) == 1 and start + 48 * 3600 <= sent[0].sent_at <= start + 48 * 3600 + 600


async def test_abandoned_cart_paid_first_gets_nothing(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    start = clock.now()
    await engine.submit([ev("e1", "cart_item_added", "c1", start)])
    clock.advance(5 * 3600)
    await engine.submit([ev("e2", "order_paid", "c1", clock.now(), order_id="O1")])
    await run_until(engine, clock, start + 5 * 86400)
    assert sender.to("c1") == []
    assert (await redis_queue.size()) == {"due": 0, "in_flight": 0}
    decisions = await store.decisions_for("c1")
    assert [(d["kind"], d["reason"]) for d in decisions] == [("exit", "exit:order_paid")]


async def test_delivery_at_23_is_held_until_quiet_hours_end(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    clock.set(local_ts(2026, 11, 20, 23, 0))
    await engine.submit([ev("d1", "order_delivered", "c2", clock.now(), order_id="O9")])
    await run_until(engine, clock, local_ts(2026, 11, 21, 8, 59), step=60)
    assert sender.to("c2") == []
    holds = [d for d in await store.decisions_for("c2") if d["kind"] == "hold"]
    assert holds and holds[0]["reason"] == "quiet_hours"
    assert holds[0]["until"] == local_ts(2026, 11, 21, 9, 0)
    await run_until(engine, clock, local_ts(2026, 11, 21, 9, 1), step=60)
    assert len(sender.to("c2")) == 1
    assert (await store.sends_for("c2"))[0].sent_at >= local_ts(2026, 11, 21, 9, 0)


async def test_opted_out_customer_gets_nothing(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    t = clock.now()
    await engine.submit([ev("a", "cart_item_added", "c3", t), ev("b", "order_delivered", "c3", t)])
    await engine.opt_out("c3", "chat:别再发了")
    await engine.submit([ev("c", "order_delivered", "c3", t + 10, order_id="O2"),
                         ev("d", "order_shipped", "c3", t + 10, order_id="O2")])
    await run_until(engine, clock, t + 5 * 86400)
    assert sender.to("c3") == []
    reasons = {d["reason"] for d in await store.decisions_for("c3")}
    assert "opted_out" in reasons


async def test_unsubscribed_event_opts_out(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    t = clock.now()
    await engine.submit([ev("a", "cart_item_added", "c4", t)])
    await engine.submit([ev("b", "unsubscribed", "c4", t + 1)])
    await run_until(engine, clock, t + 3 * 86400)
    assert sender.to("c4") == []
    assert (await store.get_profile("c4"))["opted_out"] is True


async def test_frequency_cap_holds_across_journeys(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    t = clock.now()  # 10:00 local: both steps due the same day
    await engine.submit([ev("a", "order_delivered", "c5", t), ev("b", "order_delivered", "c5", t + 1, order_id="x"),
                         ev("s", "order_shipped", "c5", t + 2)])
    await run_until(engine, clock, t + 600, step=10)
    # delivered_survey is not re-entered while active: one instance; the shipped notice is
    # transactional and goes out even though the daily marketing cap (1) is used.
    journeys = sorted(o.journey for o in sender.to("c5"))
    assert journeys == ["delivered_survey", "shipped_notice"]
    # A second marketing journey on the same day is capped.
    await engine.submit([ev("c", "cart_item_added", "c5", t - 48 * 3600 + 700)])
    await run_until(engine, clock, t + 1200, step=10)
    assert sorted(o.journey for o in sender.to("c5")) == ["delivered_survey", "shipped_notice"]
    skips = [d for d in await store.decisions_for("c5") if d["kind"] == "skip"]
    assert [(d["journey"], d["reason"]) for d in skips] == [("abandoned_cart", "frequency_cap_day")]


async def test_scheduler_killed_mid_batch_sends_each_due_message_once(store, redis_url, sender, clock):
    queue = RedisJobQueue(redis_url, prefix="test:kill")
    engine = make_engine(store, queue, sender, clock)
    t = clock.now()
    customers = [f"k{i}" for i in range(20)]
    await engine.submit([ev(f"e{i}", "order_delivered", c, t) for i, c in enumerate(customers)])
    clock.advance(5)
    sender.block_at = 7
    worker = asyncio.create_task(engine.run_due(limit=50))
    for _ in range(500):  # wait until the worker is inside its batch, mid-send of the 7th
        if len(sender.delivered) == 7:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    worker.cancel()  # killed: 6 acknowledged, 1 delivered but unrecorded, 13 claimed and untouched
    with pytest.raises(asyncio.CancelledError):
        await worker
    await queue.close()
    assert (len(sender.delivered), (await (q := RedisJobQueue(redis_url, prefix="test:kill")).size())["in_flight"]) == (7, 14)

    sender.block_at = None
    restarted = make_engine(store, q, sender, clock)
    assert await restarted.run_due(limit=50) == []  # leases still held: nothing is taken twice
    clock.advance(engine.settings.lease + 1)
    results = await restarted.drain()
    assert len(results) == 14
    assert sorted(o.customer_id for o in sender.delivered) == sorted(customers)
    assert all(n == 1 for sid, n in sender.attempts.items() if sid != sender.delivered[6].send_id)
    assert sender.attempts[sender.delivered[6].send_id] == 2  # retried with the same send id, delivered once
    assert len({s.send_id for c in customers for s in await store.sends_for(c)}) == 20
    assert await q.size() == {"due": 0, "in_flight": 0}
    await q.close()


async def test_two_workers_never_claim_the_same_job(redis_queue, clock):
    from bot.triggers.queue import Job

    await redis_queue.enqueue_many([Job(f"j{i}", clock.now() - 1) for i in range(500)])
    batches = await asyncio.gather(*(redis_queue.claim(clock.now(), 40, 60) for _ in range(20)))
    ids = [j.id for b in batches for j in b]
    assert len(ids) == 500 and len(set(ids)) == 500


async def test_duplicate_event_is_rejected_and_changes_nothing(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    await engine.submit([ev("dup", "cart_item_added", "c6", clock.now())])
    with pytest.raises(EventRejected) as info:
        await engine.submit([ev("new", "order_paid", "c6", clock.now()), ev("dup", "cart_item_added", "c6", clock.now())])
    assert info.value.status == 409 and "dup" in info.value.message
    assert [e.id for e in await store.events_for("c6")] == ["dup"]
    assert len(await store.instances_for("c6", status="active")) == 1


async def test_variant_assignment_is_deterministic_and_conversions_attributed(store, redis_queue, sender, clock):
    engine = make_engine(store, redis_queue, sender, clock)
    t = clock.now()
    await engine.submit([ev(f"s{i}", "subscribed", f"v{i}", t) for i in range(40)])
    await run_until(engine, clock, t + 2 * 3600, step=600)
    variants = {o.customer_id: o.variant for o in sender.delivered}
    assert set(variants.values()) == {"A", "B"}
    again = make_engine(store, redis_queue, sender, clock).config.journey("welcome").steps[0]
    from bot.triggers.journeys import assign_variant

    assert all(assign_variant(again, "welcome", c).name == v for c, v in variants.items())
    buyers = [c for c in variants if variants[c] == "B"][:3]
    await engine.submit([ev(f"p{c}", "order_paid", c, clock.now()) for c in buyers])
    from bot.triggers.report import build_report

    report = build_report(await store.report_counts(), engine.config)
    welcome = report["journeys"]["welcome"]["steps"]["hello"]
    assert welcome["B"]["conversions"] == 3 and welcome["A"]["conversions"] == 0
    assert welcome["B"]["vs_control"]["p_value"] is not None
