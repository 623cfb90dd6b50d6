"""Blocking work off the event loop, typed: one helper instead of hand-written ``run_in_executor``."""
from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import Executor
from typing import Callable, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def run_blocking(func: Callable[P, T], /, *args: P.args, executor: Executor | None = None,
                       **kwargs: P.kwargs) -> T:
    """Run ``func(*args, **kwargs)`` in ``executor`` (the loop's default pool when None).

    Use it for CPU-bound or blocking calls (torch inference, FAISS, file and SQLite I/O,
    YAML parsing) so the event loop keeps serving other conversations meanwhile.
    ``executor`` is keyword-only so it can never be mistaken for one of ``func``'s arguments.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(func, *args, **kwargs) if kwargs else (lambda: func(*args))  # type: ignore[call-arg]
    return await loop.run_in_executor(executor, call)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or taskset's limit),
    or the machine's count where the platform cannot tell."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
