"""Guards applied to every send, in a fixed order; each answer carries its reason.

Order: consent → expiry → open handoff → quiet hours → channel rules. Frequency caps are
checked last, atomically with the send reservation, in the store. A *hold* moves the send
to a later time (quiet hours end, handoff closes); a *skip* drops it. Both are recorded.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta
from typing import Any

from bot.triggers.journeys import TriggerSettings

SEND, HOLD, SKIP = "send", "hold", "skip"


@dataclass(frozen=True)
class Verdict:
    kind: str  # send, hold, skip
    reason: str = ""
    until: float | None = None

    @classmethod
    def send(cls) -> "Verdict":
        return cls(SEND)

    @classmethod
    def hold(cls, reason: str, until: float) -> "Verdict":
        return cls(HOLD, reason, until)

    @classmethod
    def skip(cls, reason: str) -> "Verdict":
        return cls(SKIP, reason)


OPT_OUT_PHRASES = (
    "别再发了", "不要再发", "别发了", "不要发了", "别再给我发", "退订", "取消订阅", "不要再推送", "别推送",
    "unsubscribe", "stop sending", "stop messaging", "opt out", "opt-out",
)


def is_opt_out_text(text: str | None) -> bool:
    """Does a chat message ask us to stop proactive messages?"""
    if not text:
        return False
    lowered = text.strip().lower()
    return lowered == "stop" or lowered == "td" or any(p in lowered for p in OPT_OUT_PHRASES)


OPT_IN_PHRASES = ("订阅", "恢复订阅", "重新订阅", "恢复推送", "subscribe", "resubscribe", "opt in", "opt-in")


def is_opt_in_text(text: str | None) -> bool:
    """Does a chat message ask to undo an opt-out? Whole-message match only (``取消订阅`` is an opt-out)."""
    if not text:
        return False
    lowered = text.strip().strip("。.!！ ").lower()
    return lowered in OPT_IN_PHRASES


def consent(profile: dict[str, Any]) -> Verdict | None:
    if profile.get("opted_out"):
        return Verdict.skip("opted_out")
    if profile.get("consent") is False or profile.get("marketing_consent") is False:
        return Verdict.skip("no_consent")
    return None


def expiry(now: float, first_due: float, expires: float | None, held_since: float | None,
           settings: TriggerSettings) -> Verdict | None:
    if expires is not None and now > first_due + expires:
        return Verdict.skip("expired")
    if held_since is not None and now - held_since > settings.max_hold:
        return Verdict.skip("held_too_long")
    return None


def handoff(open_now: bool, now: float, settings: TriggerSettings) -> Verdict | None:
    if open_now:
        return Verdict.hold("handoff_open", now + settings.handoff_retry)
    return None


def quiet_hours_end(now: float, tz: Any, settings: TriggerSettings) -> float | None:
    """When the quiet window containing ``now`` ends (epoch seconds), or None if not quiet."""
    start, end = dtime(*settings.quiet_start), dtime(*settings.quiet_end)
    if start == end:
        return None
    local = datetime.fromtimestamp(now, tz)
    t = local.time()
    if start < end:  # e.g. 00:00-07:00
        inside = start <= t < end
        end_day = local.date()
    else:  # wraps midnight, e.g. 21:00-09:00
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tz).timestamp()


def quiet_hours(now: float, tz: Any, settings: TriggerSettings) -> Verdict | None:
    until = quiet_hours_end(now, tz, settings)
    if until is None:
        return None
    return Verdict.hold("quiet_hours", until)


class QuietWindows:
    """:func:`quiet_hours` per time zone, remembered while its answer cannot change.

    A batch of thousands of jobs mostly shares a handful of time zones; converting each
    job's ``now`` to local time was most of the guards' cost. An answer is kept until the
    quiet window it is in ends, or until the next window starts (at most an hour, so a
    DST change or a settings mistake never sticks), and only for ``now`` at or after the
    time it was computed (a test clock may go back).
    """

    MAX_VALID_S = 3600.0

    def __init__(self, settings: TriggerSettings) -> None:
        self.settings = settings
        self.off = settings.quiet_start == settings.quiet_end
        self._cache: dict[Any, tuple[float, float, float | None]] = {}  # tz -> (from, until, quiet end)

    def __call__(self, now: float, tz: Any) -> Verdict | None:
        if self.off:
            return None
        cached = self._cache.get(tz)
        if cached is None or not cached[0] <= now < cached[1]:
            cached = self._compute(now, tz)
            self._cache[tz] = cached
        return None if cached[2] is None else Verdict.hold("quiet_hours", cached[2])

    def _compute(self, now: float, tz: Any) -> tuple[float, float, float | None]:
        until = quiet_hours_end(now, tz, self.settings)
        if until is not None:
            return now, min(until, now + self.MAX_VALID_S), until
        local = datetime.fromtimestamp(now, tz)
        start = dtime(*self.settings.quiet_start)
        begins = datetime.combine(local.date(), start, tz).timestamp()
        if begins <= now:
            begins = datetime.combine(local.date() + timedelta(days=1), start, tz).timestamp()
        return now, min(begins, now + self.MAX_VALID_S), None
