"""DIET's choice of torch threads for training (bot/nlu/diet.py: training_threads)."""
from __future__ import annotations

import pytest

from bot.nlu import diet


def test_training_threads_one_for_small_data_or_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_TORCH_THREADS", raising=False)
    monkeypatch.setattr(diet.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(diet.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert diet.training_threads(200) == 1  # tiny data: a 2nd thread only spin-waits
    assert diet.training_threads(10_000) == 2  # Banking77-size on an idle box: both cores
    monkeypatch.setattr(diet.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert diet.training_threads(10_000) == 1  # other jobs already use the cores


def test_training_threads_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_TORCH_THREADS", "3")
    assert diet.training_threads(10) == 3
