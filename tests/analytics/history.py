"""A known history of broker bodies (conversations, fallbacks, a handoff, a rating, orders) and its figures.

Every expected value below is worked out by hand from the events in the comments, so a
change in a definition shows up as a failing number.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc).timestamp()
DAY = 86400.0
START, END = "2026-11-02", "2026-11-04"


def user(sender: str, ts: float, intent: str, channel: str = "socketio", text: str = "hi") -> dict[str, Any]:
    return {"event": "user", "sender_id": sender, "timestamp": ts, "text": text, "input_channel": channel,
            "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []}}


def bot(sender: str, ts: float, **metadata: Any) -> dict[str, Any]:
    return {"event": "bot", "sender_id": sender, "timestamp": ts, "text": "ok", "data": {}, "metadata": metadata}


def action(sender: str, ts: float, name: str) -> dict[str, Any]:
    return {"event": "action", "sender_id": sender, "timestamp": ts, "name": name}


def history() -> list[dict[str, Any]]:
    c = "c"
    return [
        # A (socketio): greet, answered in 2 s, one more question; resolved by the bot
        {"event": "session_started", "sender_id": "a", "timestamp": T0 - 1},
        user("a", T0, "greet"), bot("a", T0 + 2), user("a", T0 + 10, "order_status"), bot("a", T0 + 11),
        # B (socketio): two fallback turns in a row -> not resolved by the bot
        user("b", T0 + 100, "ask_return"), bot("b", T0 + 104),
        user("b", T0 + 110, "nlu_fallback"), action("b", T0 + 111, "action_default_fallback"), bot("b", T0 + 111),
        user("b", T0 + 120, "nlu_fallback"), action("b", T0 + 121, "action_default_fallback"),
        # C (wechat): handoff, queue 60 s, first agent reply 90 s, handled 330 s, resolved at 400 s, CSAT 4
        user(c, T0 + 200, "ask_return", "wechat"), bot(c, T0 + 206),
        {"event": "handoff_requested", "sender_id": c, "handoff_id": "h1", "customer_id": c, "timestamp": T0 + 210,
         "reason": "asked_for_human"},
        {"event": "handoff_assigned", "sender_id": c, "handoff_id": "h1", "timestamp": T0 + 270, "agent_id": "ann"},
        bot(c, T0 + 300, agent_id="ann", handoff_id="h1"),
        {"event": "handoff_resolved", "sender_id": c, "handoff_id": "h1", "timestamp": T0 + 600, "agent_id": "ann"},
        {"event": "csat_submitted", "sender_id": c, "handoff_id": "h1", "timestamp": T0 + 610, "rating": 4,
         "agent_id": "ann"},
        # E (wechat): the knowledge base has no answer (one fallback, no loop: resolved by the bot)
        user("e", T0 + 300, "greet", "wechat", "Where is  my parcel?"),
        bot("e", T0 + 301, kb={"outcome": "no_answer", "query": "Where is  my parcel?"}),
        # recommendations in B's conversation
        {"event": "recommendation_shown", "sender_id": "b", "timestamp": T0 + 105, "data": {"product_id": "p1"}},
        {"event": "recommendation_shown", "sender_id": "b", "timestamp": T0 + 106, "data": {"product_id": "p2"}},
        {"event": "recommendation_shown", "sender_id": "b", "timestamp": T0 + 107, "data": {"product_id": "p1"}},
        {"event": "recommendation_clicked", "sender_id": "b", "timestamp": T0 + 108, "data": {"product_id": "p1"}},
        # orders the next day: C's customer (converts C) and a customer who never chatted
        {"event": "order_paid", "customer_id": c, "order_id": "o1", "timestamp": T0 + DAY, "data": {"total_cents": 12000}},
        {"event": "order_paid", "customer_id": "zzz", "order_id": "o2", "timestamp": T0 + DAY, "data": {"amount": 80}},
        {"event": "order_paid", "customer_id": "zzz", "order_id": "o2", "timestamp": T0 + DAY, "data": {"amount": 80}},
        # the customer who never chatted buys again a day later: a repurchase after 1 day
        {"event": "order_paid", "customer_id": "zzz", "order_id": "o3", "timestamp": T0 + 2 * DAY, "data": {"amount": 50}},
        # D: customer A again two days later with the same first intent -> A was a repeat inquiry
        user("a", T0 + 2 * DAY, "greet"), bot("a", T0 + 2 * DAY + 3),
    ]


# (figure, expected) over START..END, all channels
EXPECTED = {
    "conversations": 5,  # A, B, C, E, D
    "bot_resolution_rate": 0.6,  # A, E, D of 5 ended
    "escalation_rate": 0.2,  # C
    "fallback_rate": 0.375,  # B twice + E once, of 8 shopper turns
    "frt_bot": 3.2,  # (2 + 4 + 6 + 1 + 3) / 5
    "frt_human": 90.0,
    "queue_wait": 60.0,
    "handling": 330.0,
    "resolution_time": 103.75,  # (A 11 + E 1 + D 3 + C 400) / 4
    "fcr": 0.6,  # A, C, E, D resolved, A repeated: 3 of 5
    "repeat_rate": 0.2,  # A
    "csat": 4.0,
    "csat_share": 1.0,
    "surveys": 1,
    "orders": 3,
    "aov": 83.33,  # (120 + 80 + 50) / 3, o2 counted once
    "repurchase_rate": 0.3333,  # o3
    "repurchase_cycle_days": 1.0,
    "buyers": 2,  # c and zzz
    "ltv": 125.0,  # (c 120 + zzz 80 + 50) / 2
    "retention": None,  # nobody paid in the three days before the range
    "chat_to_order": 0.2,  # C
    "rec_shown": 3,
    "rec_clicked": 1,
    "rec_ctr": 0.3333,
    "rec_ordered": 0,  # B clicked, but B's customer never paid
    "rec_order_rate": 0.0,  # 0 of the 1 conversation with a click
    "rec_order_value": 0.0,
}
