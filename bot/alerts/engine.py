"""Evaluate the rules of ``alerts.yml`` against what happened; fire once, clear once.

Each evaluation reads, per rule, the figure it watches (counts from the signal store,
handoffs and ratings from their stores) and compares it to the rule's threshold. A rule
that starts to hold *fires* (stored, put in the history, sent to the supervisors'
consoles); while it keeps holding, only its figure is updated (no second notice); when
it stops holding it *clears* (stored, history, console). A rule whose data cannot be read
keeps its state (a database hiccup neither fires nor clears anything).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bot.alerts.config import AlertRule, AlertsConfig
from bot.alerts.ratings import RatingsSource, ratings_between
from bot.alerts.signals import MINUTE

logger = logging.getLogger(__name__)

Notify = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Finding:
    """A rule's figure now: ``holds`` whether the alert condition is met."""

    holds: bool
    value: float | None
    threshold: float | None
    detail: dict[str, Any] = field(default_factory=dict)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


MESSAGES = {
    "complaint_spike": ("Complaints up: {value:g} in the last {window:g} min (usual: {expected:g}).",
                        "投诉激增：最近 {window:g} 分钟 {value:g} 条（平常约 {expected:g} 条）。"),
    "csat_drop": ("CSAT low: {value:.2f} average over {count} ratings (alert below {threshold:g}).",
                  "满意度下降：{count} 个评分平均 {value:.2f}（低于 {threshold:g} 告警）。"),
    "queue_wait": ("Queue wait: a shopper has waited {value:.0f} min for an agent (limit {threshold:g} min).",
                   "排队过久：有顾客已等待人工 {value:.0f} 分钟（上限 {threshold:g} 分钟）。"),
    "escalation_rate": ("Escalations: {percent:.0f}% of {count} conversations went to an agent "
                        "(limit {limit:.0f}%).",
                        "转人工率过高：{count} 个会话中 {percent:.0f}% 转人工（上限 {limit:.0f}%）。"),
}


def describe(rule: AlertRule, finding: Finding) -> dict[str, str]:
    en, zh = MESSAGES[rule.kind]
    values = {"value": finding.value or 0.0, "threshold": finding.threshold or 0.0,
              "window": rule.params.get("window_minutes", 0), **finding.detail}
    values.setdefault("expected", 0.0)
    values.setdefault("count", 0)
    if rule.kind == "escalation_rate":
        values["percent"] = 100 * (finding.value or 0.0)
        values["limit"] = 100 * (finding.threshold or 0.0)
    return {"en": en.format(**values), "zh": zh.format(**values)}


class AlertEngine:
    def __init__(self, config: AlertsConfig, signals: Any, state: Any, *, handoff_store: Any = None,
                 ratings: list[RatingsSource] | None = None, notify: Notify | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.signals = signals
        self.state = state
        self.handoff_store = handoff_store
        self.ratings = list(ratings or [])
        self.notify = notify
        self.clock = clock
        self.errors: list[str] = []  # rules the last evaluation could not read (rule: error class)
        self.evaluations = 0

    # ------------------------------------------------------------------ figures
    async def complaint_spike(self, rule: AlertRule, now: float) -> Finding:
        window, baseline = rule["window_minutes"] * MINUTE, rule["baseline_minutes"] * MINUTE
        counter = f"spike:{rule.name}"
        count = await self.signals.count(counter, now - window, now)
        before = await self.signals.count(counter, now - window - baseline, now - window)
        expected = before * window / baseline
        holds = count >= rule["min_count"] and count >= rule["factor"] * expected
        return Finding(holds, count, _round(max(rule["factor"] * expected, rule["min_count"])),
                       {"expected": round(expected, 1), "baseline_count": before})

    async def csat_drop(self, rule: AlertRule, now: float) -> Finding:
        found = await ratings_between(self.ratings, now - rule["window_minutes"] * MINUTE, now)
        if not found:
            return Finding(False, None, rule["threshold"], {"count": 0})
        average = sum(r.value for r in found) / len(found)
        holds = len(found) >= rule["min_ratings"] and average < rule["threshold"]
        return Finding(holds, _round(average), rule["threshold"], {"count": len(found)})

    async def queue_wait(self, rule: AlertRule, now: float) -> Finding:
        if self.handoff_store is None:
            return Finding(False, None, rule["max_wait_minutes"], {"count": 0})
        rows = await self.handoff_store.list(("queued",), limit=10_000)
        if rule["queue"] is not None:
            rows = [r for r in rows if r.get("queue") == rule["queue"]]
        waits = [(now - float(r["created_at"])) / MINUTE for r in rows]
        longest = max(waits, default=0.0)
        over = sum(1 for w in waits if w > rule["max_wait_minutes"])
        return Finding(over > 0, _round(longest), rule["max_wait_minutes"], {"count": over, "waiting": len(rows)})

    async def escalation_rate(self, rule: AlertRule, now: float) -> Finding:
        since = now - rule["window_minutes"] * MINUTE
        conversations = await self.signals.conversations(since, now)
        escalations = await self._escalations(since, now)
        rate = escalations / conversations if conversations else 0.0
        holds = conversations >= rule["min_conversations"] and rate >= rule["threshold"]
        return Finding(holds, _round(rate), rule["threshold"], {"count": conversations, "escalations": escalations})

    async def _escalations(self, since: float, until: float) -> int:
        if self.handoff_store is None:
            return 0
        import sqlalchemy as sa

        from bot.handoff.store import handoffs

        await self.handoff_store.init()
        query = sa.select(sa.func.count()).select_from(handoffs).where(
            handoffs.c.created_at >= since, handoffs.c.created_at < until)
        async with self.handoff_store.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    # ------------------------------------------------------------------ evaluation
    async def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """One round over every rule; returns the transitions (fired and cleared alerts)."""
        now = self.clock() if now is None else now
        active = await self.state.active()
        transitions: list[dict[str, Any]] = []
        self.errors = []
        for rule in self.config.rules:
            try:
                finding = await getattr(self, rule.kind)(rule, now)
            except Exception as e:  # this rule keeps its state until its data can be read again
                self.errors.append(f"{rule.name}: {type(e).__name__}")
                logger.warning("Alert rule %s not evaluated: %s", rule.name, type(e).__name__, exc_info=True)
                continue
            current = active.get(rule.name)
            body = {"rule": rule.name, "kind": rule.kind, "severity": rule.severity, "value": finding.value,
                    "threshold": finding.threshold, "detail": finding.detail, "message": describe(rule, finding)}
            if finding.holds and current is None:
                alert = {**body, "state": "firing", "since": now, "at": now}
                await self.state.fire(alert)
                transitions.append(alert)
            elif finding.holds:
                await self.state.update({**current, **body, "state": "firing", "at": now})
            elif current is not None:
                cleared = {**current, "state": "cleared", "at": now, "cleared_value": finding.value,
                           "message": current["message"]}
                await self.state.clear(rule.name, cleared)
                transitions.append(cleared)
        self.evaluations += 1
        for alert in transitions:
            logger.warning("Alert %s %s: %s", alert["rule"], alert["state"], alert["message"]["en"])
            if self.notify is not None:
                try:
                    await self.notify({"type": "alert", "alert": alert})
                except Exception:
                    logger.exception("Could not notify the consoles of alert %s", alert["rule"])
        return transitions
