"""HeavyJobs: one job at a time, a bounded queue, and the slot held until the job ends."""
from __future__ import annotations

import asyncio
import threading

import pytest

from bot.shared.jobs import HeavyJobs, HeavyJobsBusy


@pytest.mark.asyncio
async def test_jobs_run_one_at_a_time_and_refuse_beyond_the_queue():
    jobs = HeavyJobs(max_waiting=1)
    gate = threading.Event()
    running: list[int] = []
    overlap: list[bool] = []

    def job(n: int) -> int:
        running.append(n)
        overlap.append(len(running) > 1)
        gate.wait(10)
        running.remove(n)
        return n

    first = asyncio.create_task(jobs.run("first", job, 1))
    second = asyncio.create_task(jobs.run("second", job, 2))
    await asyncio.sleep(0.05)
    assert jobs.running == "first" and jobs.pending == 2
    with pytest.raises(HeavyJobsBusy, match="'first' is running"):
        await jobs.run("third", job, 3)
    gate.set()
    assert await first == 1 and await second == 2
    assert overlap == [False, False]
    assert jobs.pending == 0
    jobs.shutdown()


@pytest.mark.asyncio
async def test_a_cancelled_caller_keeps_its_slot_until_the_job_ends():
    jobs = HeavyJobs(max_waiting=0)
    gate = threading.Event()
    task = asyncio.create_task(jobs.run("slow", gate.wait, 10))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.01)
    with pytest.raises(HeavyJobsBusy):
        await jobs.run("next", lambda: None)
    gate.set()
    for _ in range(100):
        if jobs.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert await jobs.run("next", lambda: 7) == 7
    jobs.shutdown()
