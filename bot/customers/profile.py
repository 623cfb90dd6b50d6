"""The profile, computed from events: accumulators folded one event at a time, then derived.

``apply(state, event)`` is the incremental step (O(1) per event, bounded lists); ``derive(state,
now)`` turns the accumulators into the profile fields rules and health components read
(``rules.PROFILE_FIELDS``). A full recompute is the same fold over the stored events, so the
incremental and the batch answers are equal by construction.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DAY = 86400.0
RECENT_KEEP = 200  # timestamps kept per bounded list (orders, contacts, views)
SENTIMENT_ALPHA = 0.3  # weight of the newest message in the sentiment moving average

ORDER = "order_paid"
AFTER_SALES = ("return_requested", "exchange_requested")
ACTIVITY = ("product_viewed", "cart_item_added", "checkout_started")
# Event types that change the profile; others (timeline-only) are stored but fold to nothing.
PROFILE_TYPES = frozenset({
    ORDER, "order_cancelled", *AFTER_SALES, "refund_completed", *ACTIVITY, "recommendation_shown",
    "recommendation_clicked", "conversation_started", "message", "handoff_requested", "handoff_resolved",
    "csat_submitted", "complaint",
})


@dataclass(frozen=True)
class CustomerEvent:
    """One event as Customer 360 stores it; ``identity`` is the proven key it arrived under."""

    id: str
    type: str
    ts: float
    data: dict[str, Any] = field(default_factory=dict)
    identity: tuple[str, str] = ("", "")


def _push(state: dict[str, Any], key: str, ts: float) -> None:
    items = state.setdefault(key, [])
    items.append(ts)
    if len(items) > RECENT_KEEP:
        del items[: len(items) - RECENT_KEEP]


def _cents(data: dict[str, Any], *keys: str) -> int:
    for key in keys:
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return 0


def apply(state: dict[str, Any], event: CustomerEvent) -> bool:
    """Fold ``event`` into ``state`` in place; True when the profile may have changed."""
    kind, data, ts = event.type, event.data, event.ts
    if kind not in PROFILE_TYPES:
        return False
    state["first_seen_at"] = min(state.get("first_seen_at", ts), ts)
    state["last_activity_at"] = max(state.get("last_activity_at", ts), ts)
    if kind == ORDER:
        state["orders"] = state.get("orders", 0) + 1
        state["spent"] = state.get("spent", 0) + _cents(data, "total_cents", "amount_cents")
        if _cents(data, "discount_cents") > 0 or data.get("coupon_code"):
            state["discounted"] = state.get("discounted", 0) + 1
        bands = [b for b in data.get("price_bands") or [] if isinstance(b, str)]
        if bands:
            state["band_lines"] = state.get("band_lines", 0) + len(bands)
            state["low_band_lines"] = state.get("low_band_lines", 0) + sum(1 for b in bands if b == "low")
        cats = state.setdefault("categories", {})
        for cat in data.get("categories") or ([data["category"]] if data.get("category") else []):
            cats[str(cat)] = cats.get(str(cat), 0) + 1
        state["first_order_at"] = min(state.get("first_order_at", ts), ts)
        state["last_order_at"] = max(state.get("last_order_at", ts), ts)
        _push(state, "order_ts", ts)
    elif kind == "order_cancelled":
        state["cancelled"] = state.get("cancelled", 0) + 1
    elif kind in AFTER_SALES:
        state["returns"] = state.get("returns", 0) + 1
        state["after_sales_open"] = state.get("after_sales_open", 0) + 1
    elif kind == "refund_completed":
        state["after_sales_open"] = max(0, state.get("after_sales_open", 0) - 1)
    elif kind in ACTIVITY:
        _push(state, "view_ts", ts)
    elif kind == "recommendation_shown":
        state["rec_shown"] = state.get("rec_shown", 0) + 1
    elif kind == "recommendation_clicked":
        state["rec_clicked"] = state.get("rec_clicked", 0) + 1
    elif kind == "conversation_started":
        state["contacts"] = state.get("contacts", 0) + 1
        channels = state.setdefault("channels", {})
        channel = str(data.get("channel") or "unknown")
        channels[channel] = channels.get(channel, 0) + 1
        _push(state, "contact_ts", ts)
    elif kind == "message":
        score = data.get("sentiment")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            previous = state.get("sentiment")
            state["sentiment"] = round(float(score) if previous is None
                                       else (1 - SENTIMENT_ALPHA) * previous + SENTIMENT_ALPHA * float(score), 6)
            if score <= -0.3:
                state["neg_messages"] = state.get("neg_messages", 0) + 1
            elif score >= 0.3:
                state["pos_messages"] = state.get("pos_messages", 0) + 1
        if data.get("intent") == "complaint":
            state["complaints"] = state.get("complaints", 0) + 1
    elif kind == "complaint":
        state["complaints"] = state.get("complaints", 0) + 1
    elif kind == "handoff_requested":
        state["handoffs"] = state.get("handoffs", 0) + 1
        state["open_handoffs"] = state.get("open_handoffs", 0) + 1
        if data.get("reason") in ("complaint", "negative_sentiment"):
            state["open_complaints"] = state.get("open_complaints", 0) + 1
            if data.get("reason") == "complaint":
                state["complaints"] = state.get("complaints", 0) + 1
    elif kind == "handoff_resolved":
        state["open_handoffs"] = max(0, state.get("open_handoffs", 0) - 1)
        state["open_complaints"] = max(0, state.get("open_complaints", 0) - 1)
        duration = data.get("duration_s")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration >= 0:
            state["resolved"] = state.get("resolved", 0) + 1
            state["resolution_s"] = state.get("resolution_s", 0.0) + float(duration)
    elif kind == "csat_submitted":
        rating = data.get("rating")
        if isinstance(rating, (int, float)) and not isinstance(rating, bool):
            state["csat_n"] = state.get("csat_n", 0) + 1
            state["csat_sum"] = state.get("csat_sum", 0) + float(rating)
    return True


def _within(items: list[float], now: float, days: float) -> int:
    return sum(1 for t in items if now - days * DAY <= t <= now)


def derive(state: dict[str, Any], now: float) -> dict[str, Any]:
    """The profile fields at ``now`` (money in cents, rates 0–1, durations as named)."""
    orders = int(state.get("orders", 0))
    spent = int(state.get("spent", 0))
    order_ts = sorted(state.get("order_ts", []))
    first, last = state.get("first_order_at"), state.get("last_order_at")
    cats = Counter(state.get("categories", {}))
    channels = dict(state.get("channels", {}))
    csat_n = int(state.get("csat_n", 0))
    resolved = int(state.get("resolved", 0))
    shown, clicked = int(state.get("rec_shown", 0)), int(state.get("rec_clicked", 0))
    discount_rate = round(state.get("discounted", 0) / orders, 4) if orders else None
    band_lines = int(state.get("band_lines", 0))
    low_rate = round(state.get("low_band_lines", 0) / band_lines, 4) if band_lines else None
    parts = [v for v in (discount_rate, low_rate) if v is not None]
    profile: dict[str, Any] = {
        "order_count": orders,
        "lifetime_value": spent,
        "aov": round(spent / orders, 2) if orders else None,
        "first_order_at": first,
        "last_order_at": last,
        "days_since_last_order": round((now - last) / DAY, 2) if last is not None else None,
        "purchase_interval_days": round((last - first) / DAY / (orders - 1), 2) if orders > 1 and first is not None else None,
        "orders_90d": _within(order_ts, now, 90),
        "discount_rate": discount_rate,
        "low_price_band_rate": low_rate,
        "price_sensitivity": round(sum(parts) / len(parts), 4) if parts else None,
        "preferred_categories": [c for c, _ in sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))[:3]],
        "return_count": int(state.get("returns", 0)),
        "return_rate": round(state.get("returns", 0) / orders, 4) if orders else None,
        "cancel_count": int(state.get("cancelled", 0)),
        "after_sales_open": int(state.get("after_sales_open", 0)),
        "contacts": int(state.get("contacts", 0)),
        "contacts_90d": _within(state.get("contact_ts", []), now, 90),
        "preferred_channel": max(sorted(channels), key=lambda c: channels[c]) if channels else None,
        "channels": channels,
        "recent_sentiment": state.get("sentiment"),
        "negative_messages": int(state.get("neg_messages", 0)),
        "positive_messages": int(state.get("pos_messages", 0)),
        "handoffs": int(state.get("handoffs", 0)),
        "open_handoffs": int(state.get("open_handoffs", 0)),
        "complaints": int(state.get("complaints", 0)),
        "open_complaints": int(state.get("open_complaints", 0)),
        "csat_avg": round(state["csat_sum"] / csat_n, 4) if csat_n else None,
        "csat_count": csat_n,
        "avg_resolution_hours": round(state["resolution_s"] / resolved / 3600.0, 4) if resolved else None,
        "recommendations_shown": shown,
        "recommendation_clicks": clicked,
        "recommendation_click_rate": round(clicked / shown, 4) if shown else None,
        "product_views_30d": _within(state.get("view_ts", []), now, 30),
        "days_since_last_activity": round((now - state["last_activity_at"]) / DAY, 2)
        if state.get("last_activity_at") is not None else None,
        "first_seen_at": state.get("first_seen_at"),
    }
    return profile
