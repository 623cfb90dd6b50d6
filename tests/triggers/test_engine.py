"""End-to-end trigger behaviour with a test clock, on both backends: the embedded default
(SQLite store + SQL queue) and production (Redis store + Redis queue, a real redis-server)."""
from __future__ import annotations

import asyncio

import pytest

from bot.triggers.events import BehaviourEvent, EventRejected
from tests.triggers.conftest import BACKDATING_TRIGGERS, local_ts, make_engine

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


async def test_abandoned_cart_gets_one_reminder_48h_later(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
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


async def test_abandoned_cart_paid_first_gets_nothing(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    start = clock.now()
    await engine.submit([ev("e1", "cart_item_added", "c1", start)])
    clock.advance(5 * 3600)
    await engine.submit([ev("e2", "order_paid", "c1", clock.now(), order_id="O1")])
    await run_until(engine, clock, start + 5 * 86400)
    assert sender.to("c1") == []
    assert (await queue.size()) == {"due": 0, "in_flight": 0}
    decisions = await store.decisions_for("c1")
    assert [(d["kind"], d["reason"]) for d in decisions] == [("exit", "exit:order_paid")]


async def test_delivery_at_23_is_held_until_quiet_hours_end(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
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


async def test_a_journey_with_quiet_hours_off_sends_at_23(backend, sender, clock):
    """`quiet_hours: false` on a journey: its step goes out at night; the other journeys
    of the same file are still held by the settings' window."""
    from tests.triggers.conftest import TEST_TRIGGERS

    store, queue = await backend.open()
    triggers = TEST_TRIGGERS.replace("    priority: transactional\n", "    priority: transactional\n    quiet_hours: false\n", 1)
    engine = make_engine(store, queue, sender, clock, text=triggers)
    assert engine.config.journey("shipped_notice").quiet_hours is False
    clock.set(local_ts(2026, 11, 20, 23, 0))
    await engine.submit([ev("s1", "order_shipped", "c7", clock.now(), order_id="O7"),
                         ev("d7", "order_delivered", "c7", clock.now(), order_id="O7")])
    await run_until(engine, clock, local_ts(2026, 11, 20, 23, 5), step=60)
    assert [o.message.response for o in sender.to("c7")] == ["utter_order_shipped"]
    holds = [d for d in await store.decisions_for("c7") if d["kind"] == "hold"]
    assert [(d["journey"], d["reason"]) for d in holds] == [("delivered_survey", "quiet_hours")]


async def test_opted_out_customer_gets_nothing(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    t = clock.now()
    await engine.submit([ev("a", "cart_item_added", "c3", t), ev("b", "order_delivered", "c3", t)])
    await engine.opt_out("c3", "chat:别再发了")
    await engine.submit([ev("c", "order_delivered", "c3", t + 10, order_id="O2"),
                         ev("d", "order_shipped", "c3", t + 10, order_id="O2")])
    await run_until(engine, clock, t + 5 * 86400)
    assert sender.to("c3") == []
    reasons = {d["reason"] for d in await store.decisions_for("c3")}
    assert "opted_out" in reasons


async def test_unsubscribed_event_opts_out(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    t = clock.now()
    await engine.submit([ev("a", "cart_item_added", "c4", t)])
    await engine.submit([ev("b", "unsubscribed", "c4", t + 1)], trusted=True)  # the shop's own word
    await run_until(engine, clock, t + 3 * 86400)
    assert sender.to("c4") == []
    assert (await store.get_profile("c4"))["opted_out"] is True


async def test_frequency_cap_holds_across_journeys(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock, BACKDATING_TRIGGERS)
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


async def test_scheduler_killed_mid_batch_sends_each_due_message_once(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock, send_concurrency=1)
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
    worker.cancel()  # killed: 6 delivered, the 7th mid-send, 13 claimed and untouched; nothing recorded yet
    with pytest.raises(asyncio.CancelledError):
        await worker
    await queue.close()
    store2, q2 = await backend.open()
    assert (len(sender.delivered), (await q2.size())["in_flight"]) == (7, 20)

    sender.block_at = None
    restarted = make_engine(store2, q2, sender, clock)
    assert await restarted.run_due(limit=50) == []  # leases still held: nothing is taken twice
    clock.advance(engine.settings.lease + 1)
    results = await restarted.drain()
    assert len(results) == 20 and {r.outcome for r in results} == {"sent"}
    assert sorted(o.customer_id for o in sender.delivered) == sorted(customers)  # each exactly once
    first_seven = {o.send_id for o in sender.delivered[:7]}
    # the interrupted batch's sends are retried with the same send id (an idempotent channel drops them)
    assert all(n == (2 if sid in first_seven else 1) for sid, n in sender.attempts.items())
    assert len({s.send_id for c in customers for s in await store2.sends_for(c)}) == 20
    assert await q2.size() == {"due": 0, "in_flight": 0}


async def test_crash_after_commit_before_ack_does_not_resend(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    await engine.submit([ev(f"e{i}", "order_delivered", f"a{i}", clock.now()) for i in range(5)])
    clock.advance(5)
    real_ack = queue.ack_many

    async def dying_ack(ids):
        raise RuntimeError("worker died before the ack")

    queue.ack_many = dying_ack
    with pytest.raises(RuntimeError):
        await engine.run_due(limit=50)
    queue.ack_many = real_ack
    assert len(sender.delivered) == 5
    clock.advance(engine.settings.lease + 1)
    results = await make_engine(store, queue, sender, clock).drain()
    # the batch's store commit went through: the journeys (one step) are completed, nothing is resent
    assert [(r.outcome, r.reason) for r in results] == [("gone", "instance_closed")] * 5
    assert all(n == 1 for n in sender.attempts.values())
    assert await queue.size() == {"due": 0, "in_flight": 0}


async def test_dispatch_writes_once_per_batch(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    await engine.submit([ev(f"e{i}", "order_delivered", f"b{i}", clock.now()) for i in range(30)])
    clock.advance(5)
    calls: dict[str, int] = {}

    def spy(obj, name):
        real = getattr(obj, name)

        async def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return await real(*args, **kwargs)

        setattr(obj, name, wrapper)

    for name in ("dispatch_reads", "dispatch_snapshots", "stopped_variants", "reserve_sends", "commit_batch",
                 "mark_sent", "record_decision"):
        spy(store, name)
    spy(queue, "ack_many")
    results = await engine.run_due(limit=100)
    assert len(results) == 30 and {r.outcome for r in results} == {"sent"}
    # one read round trip for the batch (snapshots and variant stops together)
    assert calls == {"dispatch_reads": 1, "reserve_sends": 1, "commit_batch": 1, "ack_many": 1}
    assert len(await store.sends_for("b7")) == 1


async def test_frequency_cap_is_atomic_across_workers(backend, sender, clock):
    """Four workers with their own connections dispatch one customer's steps at once: the cap holds."""
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock, BACKDATING_TRIGGERS)
    t = clock.now()
    customers = [f"w{i}" for i in range(8)]
    for c in customers:  # three marketing journeys due at the same time for each customer
        await engine.submit([ev(f"{c}-a", "cart_item_added", c, t - 48 * 3600 + 2),
                             ev(f"{c}-b", "order_delivered", c, t), ev(f"{c}-c", "subscribed", c, t - 3600 + 2)])
    clock.advance(5)
    workers = [make_engine(*(await backend.open()), sender, clock, BACKDATING_TRIGGERS) for _ in range(4)]
    rounds = await asyncio.gather(*(w.drain(limit=2) for w in workers))
    assert sum(len(r) for r in rounds) == 3 * len(customers)
    for c in customers:
        assert len(sender.to(c)) == 1, c
        skips = [d["reason"] for d in await store.decisions_for(c) if d["kind"] == "skip"]
        assert skips == ["frequency_cap_day", "frequency_cap_day"]


async def test_two_workers_never_claim_the_same_job(backend, clock):
    from bot.triggers.queue import Job

    _, queue = await backend.open()
    await queue.enqueue_many([Job(f"j{i}", clock.now() - 1) for i in range(500)])
    batches = await asyncio.gather(*(queue.claim(clock.now(), 40, 60) for _ in range(20)))
    ids = [j.id for b in batches for j in b]
    assert len(ids) == 500 and len(set(ids)) == 500


async def test_duplicate_event_is_rejected_and_changes_nothing(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    await engine.submit([ev("dup", "cart_item_added", "c6", clock.now())])
    with pytest.raises(EventRejected) as info:
        await engine.submit([ev("new", "order_paid", "c6", clock.now()), ev("dup", "cart_item_added", "c6", clock.now())])
    assert info.value.status == 409 and "dup" in info.value.message
    assert [e.id for e in await store.events_for("c6")] == ["dup"]
    assert len(await store.instances_for("c6", status="active")) == 1


async def test_variant_assignment_is_deterministic_and_conversions_attributed(backend, sender, clock):
    store, queue = await backend.open()
    engine = make_engine(store, queue, sender, clock)
    t = clock.now()
    await engine.submit([ev(f"s{i}", "subscribed", f"v{i}", t) for i in range(40)])
    await run_until(engine, clock, t + 2 * 3600, step=600)
    variants = {o.customer_id: o.variant for o in sender.delivered}
    assert set(variants.values()) == {"A", "B"}
    again = make_engine(store, queue, sender, clock).config.journey("welcome").steps[0]
    from bot.triggers.journeys import assign_variant

    assert all(assign_variant(again, "welcome", c).name == v for c, v in variants.items())
    buyers = [c for c in variants if variants[c] == "B"][:3]
    await engine.submit([ev(f"p{c}", "order_paid", c, clock.now()) for c in buyers])
    from bot.triggers.report import build_report

    report = build_report(await store.report_counts(), engine.config)
    welcome = report["journeys"]["welcome"]["steps"]["hello"]
    assert welcome["B"]["conversions"] == 3 and welcome["A"]["conversions"] == 0
    assert welcome["B"]["vs_control"]["p_value"] is not None
