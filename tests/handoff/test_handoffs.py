"""The typed handoff record: store rows round-trip through Handoff unchanged (the API's JSON keeps its shape)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.handoff.handoffs import Handoff, HandoffRecords, summary_view


def test_handoff_record_round_trips_created_and_read_rows(config_factory: Any) -> None:
    from bot.handoff.store import SQLHandoffStore

    async def scenario() -> None:
        store = SQLHandoffStore(config_factory().store_url)
        created = await store.create({
            "id": "h1", "conversation_id": "s1", "channel": "socketio", "reason": "complaint", "priority": 3,
            "queue": "after_sales:en", "language": "en", "skills": ["after_sales", "en"], "tags": [],
            "customer_id": "7", "after_hours": False, "notes": [],
            "record": {"summary": "Shopper wants: refund", "profile": {"vip": True},
                       "left_messages": [{"text": "hello", "timestamp": 1.0, "message_id": "m1"}]},
            "created_at": 100.0})
        read = await store.get("h1")
        assert read is not None
        for row in (created, read):
            h = Handoff.from_row(row)
            assert h.as_dict() == row
            assert list(h.as_dict()) == list(row)  # same key order: the same JSON bytes
            assert json.dumps(h.as_dict()) == json.dumps(row)
            assert summary_view(row) == h.summary()
        h = await HandoffRecords(store).get("h1")
        assert h is not None and h.skills == ("after_sales", "en") and h.is_active
        assert h.left_messages == [{"text": "hello", "timestamp": 1.0, "message_id": "m1"}]
        summary = h.summary()
        assert summary["summary"] == "Shopper wants: refund" and summary["profile"] == {"vip": True}
        assert "record" not in summary and "transcript" not in summary
        moved = h.replace(status="queued", agent_id=None)
        assert moved.as_dict() == {**read, "status": "queued", "agent_id": None}
        await store.close()

    asyncio.run(scenario())


def test_handoff_record_from_partial_row_uses_defaults() -> None:
    h = Handoff.from_row({"id": "h2", "conversation_id": "s2", "skills": None, "record": None})
    assert h.skills == () and h.record == {} and h.left_messages == [] and h.agent_id is None
