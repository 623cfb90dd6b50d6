"""How torch runs on this machine: intra-op thread counts, training precision, Adam's kernel.

Shared by the torch models (DIET, TED) and the Agent: ``KEFU_TORCH_THREADS``
is read here only; parsing sets its thread count once per calling thread
(``inference_threads``); training chooses one or two threads epoch by epoch from measured
time (``EpochThreads``); ``training_precision`` turns on bfloat16 matmuls where the CPU has
them.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch

from bot.shared.concurrency import usable_cores
from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: training sets at least this big try a second intra-op thread (see ``EpochThreads``)
THREAD_TUNING_MIN_EXAMPLES = 300


def env_torch_threads(default: int | None = 1) -> int | None:
    """``KEFU_TORCH_THREADS`` as a number of torch intra-op threads (unset or empty:
    ``default``; 0 leaves torch's own choice). Anything else is a ConfigError naming it."""
    raw = os.environ.get("KEFU_TORCH_THREADS", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"KEFU_TORCH_THREADS must be a whole number of threads (0 or more), not {raw!r}")
    return value


def inference_threads() -> None:
    """Parsing runs on ``KEFU_TORCH_THREADS`` (default one) intra-op threads, set once for
    the calling thread (torch's count is per thread; the Agent sets it when it starts), not
    switched for each message and back: two calls less per parse (a second pass over 400
    Banking77 messages, Rasa's default pipeline: 4.00 against 4.26 ms mean, one run)."""
    wanted = env_torch_threads()
    if wanted and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def training_threads(n_examples: int) -> tuple[int, bool]:
    """The most intra-op threads DIET may train ``n_examples`` on, and whether to tune.

    ``KEFU_TORCH_THREADS`` fixes the count. Otherwise data of at least
    ``THREAD_TUNING_MIN_EXAMPLES`` may use up to two cores, chosen epoch by epoch from
    measured time (``EpochThreads``): a second thread helps on an idle machine but made
    a step 4.7x more expensive while another job held the other core (2026-12-07), and
    the load changes during a training, so no reading taken when it starts can decide.
    Demo-size data keeps one thread (its epochs are too short to measure).
    """
    fixed = env_torch_threads(None)
    if fixed is not None:
        return fixed, False
    cores = usable_cores()
    if n_examples < THREAD_TUNING_MIN_EXAMPLES or cores < 2:
        return 1, False
    return min(2, cores), True


class EpochThreads:
    """Picks the thread count of each epoch from the measured wall time per example.

    Epoch 0 warms up on one thread; epochs 1 and 2 try one and ``most`` threads; from then
    on the faster one is used, and the other is tried again for a single epoch every
    ``probe_every`` epochs (adjacent epochs have near-equal batch sizes, so their times
    compare). More threads are only tried while a core looks free (``_room``), and a probe
    that loses or is skipped doubles the wait before the next one.
    """

    def __init__(self, most: int, tune: bool, probe_every: int = 10) -> None:
        self.most = max(int(most), 1)
        self.tune = tune and self.most > 1
        self.current = 1 if self.tune else self.most
        self.per_example: dict[int, float] = {}
        self.wait = probe_every
        self.next_probe = 3 + probe_every

    def for_epoch(self, epoch: int) -> int:
        if not self.tune:
            return self.current
        if epoch in (1, 2):
            return self.most if epoch == 2 and self._room() else 1
        if epoch == self.next_probe:
            if self.current == 1 and not self._room():
                self.wait *= 2  # no core free: trying would only cost (see _room)
                self.next_probe = epoch + self.wait
                return 1
            return self.most if self.current == 1 else 1
        return self.current

    def _room(self) -> bool:
        """Whether a core looks free for a second thread: the 1-minute load average (this
        training's own thread included) below ``most - 0.5``. Measured on the shared 2-core
        box at load 6: an epoch on two threads took 9x the CPU of one and more wall time
        (spin-waiting for a descheduled peer), so trying two threads there is all cost."""
        try:
            return os.getloadavg()[0] < self.most - 0.5
        except OSError:
            return False

    def record(self, epoch: int, threads: int, seconds: float, examples: int) -> None:
        if not self.tune or epoch == 0:
            return
        self.per_example[threads] = seconds / max(examples, 1)
        if len(self.per_example) < 2 or epoch < 2:
            return
        best = min(self.per_example, key=self.per_example.__getitem__)
        if epoch == self.next_probe:
            self.wait = self.wait if best != self.current else 2 * self.wait
            self.next_probe = epoch + self.wait
        if best != self.current:
            logger.debug("DIET epoch %d: %d thread(s) now (%.2f ms per example against %.2f)", epoch, best,
                         1000 * self.per_example[best], 1000 * self.per_example[self.current])
        self.current = best


TRAINING_PRECISIONS = ("auto", "float32", "bfloat16")


def fused_adam() -> dict[str, Any]:
    """Adam's fused CPU kernel where this torch has it: the same update (equal to float
    rounding) in one pass over each parameter instead of a dozen, measured 6x faster per
    step on the sparse input layers of a 4 655-word char-n-gram vocabulary (12.5 -> 2.0 ms)."""
    try:
        probe = torch.zeros(1, requires_grad=True)
        torch.optim.Adam([probe], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


def cpu_has_bfloat16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere
    torch emulates it and bfloat16 would be slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def training_precision(setting: str) -> Any:
    """A context factory for the training forward pass.

    bfloat16 autocast: the dense matmuls run in bfloat16 (the sparse-to-dense ones stay float32), measured 3.2x faster
    than float32 for a 1500x256 @ 256x1024 step on an AVX512-BF16 core; parameters, Adam and
    the loss stay float32 (autocast's mixed precision), and parsing runs in float32.
    """
    if setting == "bfloat16" or (setting == "auto" and cpu_has_bfloat16()):
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def torch_threads(wanted: int | None = None) -> Any:
    """Run torch on ``wanted`` threads (default: ``KEFU_TORCH_THREADS`` or 1).

    The matrices here are tiny: on a shared 2-core machine extra intra-op
    threads mostly spin-wait (measured 5x slower with 2 threads under load).
    """
    if wanted is None:
        wanted = env_torch_threads() or 0
    before = torch.get_num_threads()
    if wanted > 0 and wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted > 0 and wanted != before:
            torch.set_num_threads(before)
