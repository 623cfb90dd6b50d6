"""Clocks: the scheduler never calls ``time.time()`` directly, so tests drive time."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class TestClock:
    """A clock that moves only when told to (tests, ``triggers simulate``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, timestamp: float) -> None:
        self._now = float(timestamp)

    def advance(self, seconds: float) -> float:
        self._now += float(seconds)
        return self._now
