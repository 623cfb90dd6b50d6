"""Each figure's exact value from a known history fed through the real ingester into a real SQLite file."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.analytics.api import dashboard_payload
from bot.analytics.config import AnalyticsConfig
from bot.analytics.ingest import Ingester, profile_segment_of
from bot.analytics.store import AnalyticsStore, Filters
from tests.analytics.history import DAY, END, EXPECTED, START, T0, history


async def _ingested(tmp_path: Path, segment_of=None) -> tuple[AnalyticsStore, Ingester]:
    store = AnalyticsStore(f"sqlite:///{tmp_path / 'analytics.db'}")
    await store.open()
    ingester = Ingester(store, AnalyticsConfig(), segment_of)
    for body in history():
        await ingester.handle(body)
    assert await ingester.close_idle(T0 + 10 * DAY) == 4  # B, C, E, D; A ended when its sender came back
    return store, ingester


@pytest.mark.asyncio
async def test_every_figure_of_the_known_history(tmp_path: Path) -> None:
    store, _ = await _ingested(tmp_path)
    try:
        payload = await dashboard_payload(store, Filters(START, END))
    finally:
        await store.close()
    figures = payload["figures"]
    for name, expected in EXPECTED.items():
        assert figures[name] == pytest.approx(expected), f"{name}: {figures[name]} != {expected}"
    assert figures["nps"] is None and figures["ces"] is None  # nobody answered those
    tables = payload["tables"]
    assert tables["escalation_reasons"] == [{"name": "asked_for_human", "count": 1}]
    assert tables["top_intents"] == [{"name": "greet", "count": 3}, {"name": "ask_return", "count": 2},
                                     {"name": "nlu_fallback", "count": 2}, {"name": "order_status", "count": 1}]
    assert tables["top_unanswered"] == [{"name": "where is my parcel?", "count": 1}]
    assert tables["csat_by_agent"] == [{"agent": "ann", "ratings": 1, "csat": 4.0, "nps": None, "ces": None}]
    assert tables["csat_by_intent"] == [{"intent": "ask_return", "ratings": 1, "csat": 4.0, "nps": None, "ces": None}]
    assert tables["distribution"] == [{"kind": "csat", "score": 4, "count": 1}]
    assert tables["conversations_by_day"] == [{"bucket": "2026-11-02", "conversations": 4},
                                              {"bucket": "2026-11-03", "conversations": 0},
                                              {"bucket": "2026-11-04", "conversations": 1}]
    by_channel = {row["channel"]: row for row in tables["csat_by_channel"]}
    assert by_channel["wechat"]["conversations"] == 2 and by_channel["wechat"]["csat"] == 4.0
    assert by_channel["socketio"]["conversations"] == 3 and by_channel["socketio"]["csat"] is None
    assert payload["choices"] == {"channels": ["socketio", "wechat"], "segments": []}
    for key in list(figures) + list(tables):
        assert payload["definitions"][key]["definition"], key


@pytest.mark.asyncio
async def test_filters_by_channel_day_and_segment(tmp_path: Path) -> None:
    class Profiles:  # a ProfilePort (bot/ports.py) whose profiles carry a segment
        async def profile(self, channel: str | None, sender_id: str) -> dict | None:
            return {"segment": "vip"} if sender_id in ("a", "c") else {"name": "x"} if sender_id == "b" else None

    store, _ = await _ingested(tmp_path, profile_segment_of(Profiles()))
    try:
        wechat = (await dashboard_payload(store, Filters(START, END, channel="wechat")))["figures"]
        first_day = (await dashboard_payload(store, Filters(START, START)))
        vip = (await dashboard_payload(store, Filters(START, END, segment="vip")))["figures"]
    finally:
        await store.close()
    assert wechat["conversations"] == 2 and wechat["escalation_rate"] == 0.5 and wechat["fallback_rate"] == 0.5
    assert wechat["bot_resolution_rate"] == 0.5  # E yes, C escalated
    assert first_day["figures"]["conversations"] == 4
    assert first_day["filters"]["grain"] == "hour"
    assert first_day["tables"]["conversations_by_day"] == [{"bucket": "2026-11-02T08", "conversations": 4}]
    assert first_day["figures"]["orders"] == 0  # paid the next day
    assert vip["conversations"] == 3  # A, C, D
    assert vip["repeat_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert vip["csat"] == 4.0
    assert vip["buyers"] == 1 and vip["ltv"] == 120.0  # c is vip, zzz has no profile
    assert wechat["buyers"] == 1 and wechat["orders"] == 1  # o1 converted C's wechat conversation


@pytest.mark.asyncio
async def test_rollups_equal_a_replay_from_scratch(tmp_path: Path) -> None:
    """Incremental: the same events delivered in two halves with a sweep between give the same sums."""
    store, _ = await _ingested(tmp_path)
    other = AnalyticsStore(f"sqlite:///{tmp_path / 'second.db'}")
    await other.open()
    ingester = Ingester(other, AnalyticsConfig())
    events = history()
    for body in events[:12]:
        await ingester.handle(body)
    await ingester.close_idle(T0 + 50)  # nothing idle 30 min yet: nothing ends early
    for body in events[12:]:
        await ingester.handle(body)
    await ingester.close_idle(T0 + 10 * DAY)
    try:
        for mine, theirs in zip(await store.sums(Filters(START, END)), await other.sums(Filters(START, END))):
            assert sorted(mine) == sorted(theirs) and mine
    finally:
        await store.close()
        await other.close()


@pytest.mark.asyncio
async def test_unanswered_questions_are_masked_and_a_customer_can_be_exported_and_erased(tmp_path: Path) -> None:
    store, ingester = await _ingested(tmp_path)
    try:
        ts = T0 + 3 * DAY
        await ingester.handle({"event": "user", "sender_id": "m1", "timestamp": ts, "input_channel": "wechat",
                               "parse_data": {"intent": {"name": "greet"}}})
        await ingester.handle({"event": "bot", "sender_id": "m1", "timestamp": ts + 1, "metadata": {
            "kb": {"outcome": "no_answer", "query": "Call me on 13812345678"}}})
        await ingester.flush()
        unanswered = (await dashboard_payload(store, Filters(START, "2026-11-05")))["tables"]["top_unanswered"]
        assert {"name": "call me on *******5678", "count": 1} in unanswered
        assert not any("13812345678" in row["name"] for row in unanswered)

        exported = await store.export_customer(["c"])
        assert [r["id"] for r in exported["conversations"]] == [f"c@{int(T0 + 200)}"]
        assert [r["order_id"] for r in exported["orders"]] == ["o1"]
        assert await store.erase_customer(["c"]) == {"surveys": 0, "conversations": 1, "orders": 1}
        assert await store.export_customer(["c"]) == {"surveys": [], "conversations": [], "orders": []}
        # the figures are aggregates and stay
        assert (await dashboard_payload(store, Filters(START, END)))["figures"]["conversations"] == 5
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_retention_and_lifetime_value_across_periods(tmp_path: Path) -> None:
    store, ingester = await _ingested(tmp_path)
    try:
        # the range after the history's: c buys again, zzz does not, a new customer n1 buys
        for order_id, customer, day, amount in (("o4", "c", 4, 30.0), ("o5", "n1", 5, 10.0)):
            await ingester.handle({"event": "order_paid", "customer_id": customer, "order_id": order_id,
                                   "timestamp": T0 + day * DAY, "data": {"amount": amount}})
        await ingester.flush()
        figures = (await dashboard_payload(store, Filters("2026-11-05", "2026-11-07")))["figures"]
    finally:
        await store.close()
    assert figures["buyers"] == 2  # c and n1
    assert figures["retention"] == 0.5  # of c and zzz (paid 2026-11-02..04), c paid again
    assert figures["ltv"] == 80.0  # (c 120 + 30 + n1 10) / 2
    assert figures["repurchase_rate"] == 0.5 and figures["repurchase_cycle_days"] == 3.0  # o4, 3 days after o1
