"""Heavy maintenance work, one job at a time, on its own thread.

Knowledge-base rebuilds, training and model loading take seconds to minutes of
CPU. Run on the pool that parses shoppers' messages they would queue every
reply behind them (two reloads once held a reply for 13.5 s), and run side by
side they would fight each other for the same cores. ``HeavyJobs`` gives them a
single worker thread of their own: jobs run in arrival order, at most
``max_waiting`` wait behind the running one, and a job beyond that is refused
with ``HeavyJobsBusy`` (the routes answer 409 with the running job's name), so a
burst of reload requests cannot pile up unbounded work.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, ParamSpec, TypeVar

from bot.shared.exceptions import BotError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WAITING = 2


class HeavyJobsBusy(BotError):
    """Too many heavy jobs already queued; the caller should retry later (HTTP 409)."""

    status = 409


class HeavyJobs:
    """A one-thread queue for knowledge reloads, training and model loads."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING, name: str = "kefu-heavy") -> None:
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._queued: list[str] = []  # labels, the running job first

    @property
    def running(self) -> str | None:
        """The label of the job running now (None when idle)."""
        with self._lock:
            return self._queued[0] if self._queued else None

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return len(self._queued)

    async def run(self, label: str, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func`` after the jobs before it; ``HeavyJobsBusy`` when the queue is full.

        The slot is freed when the job itself ends (not when its caller stops
        waiting), so a cancelled request cannot make room for unbounded work.
        """
        with self._lock:
            if len(self._queued) > self.max_waiting:
                running = self._queued[0]
                raise HeavyJobsBusy(
                    f"Cannot start '{label}': '{running}' is running and {len(self._queued) - 1} more "
                    f"job(s) wait (at most {self.max_waiting}). Fix: retry when it has finished."
                )
            self._queued.append(label)
        try:
            future: Future[T] = self._executor.submit(functools.partial(func, *args, **kwargs))
        except BaseException:
            self._release(label)
            raise
        future.add_done_callback(lambda _: self._release(label))
        if len(self._queued) > 1:
            logger.info("Heavy job '%s' waits for '%s'.", label, self.running)
        # wrap_future (not run_in_executor): the slot's bookkeeping needs the real future.
        return await asyncio.wrap_future(future)

    def _release(self, label: str) -> None:
        with self._lock:
            if label in self._queued:
                self._queued.remove(label)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
