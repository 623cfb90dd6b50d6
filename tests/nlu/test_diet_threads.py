"""DIET's choice of torch threads for training (bot/nlu/torch_runtime.py: training_threads, EpochThreads)."""
from __future__ import annotations

import pytest

from bot.nlu import torch_runtime


def test_training_threads_tunes_up_to_two_cores_for_real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_TORCH_THREADS", raising=False)
    monkeypatch.setattr(torch_runtime.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert torch_runtime.training_threads(200) == (1, False)  # demo-size data: one thread
    assert torch_runtime.training_threads(450) == (2, True)
    monkeypatch.setattr(torch_runtime.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert torch_runtime.training_threads(10_000) == (1, False)  # one core to run on


def test_training_threads_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_TORCH_THREADS", "3")
    assert torch_runtime.training_threads(10) == (3, False)
    fixed = torch_runtime.EpochThreads(3, False)
    assert {fixed.for_epoch(e) for e in range(30)} == {3}


def _run(chooser: torch_runtime.EpochThreads, seconds_per_example: dict[int, float], epochs: int = 100) -> list[int]:
    used = []
    for epoch in range(epochs):
        threads = chooser.for_epoch(epoch)
        used.append(threads)
        chooser.record(epoch, threads, seconds_per_example[threads] * 500, 500)
    return used


@pytest.fixture
def idle_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_runtime.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # this training's own thread


def test_epoch_threads_keeps_two_threads_when_they_are_faster(idle_machine: None) -> None:
    used = _run(torch_runtime.EpochThreads(2, True), {1: 0.010, 2: 0.006})
    assert used[:3] == [1, 1, 2]
    assert used.count(1) <= 12  # warm-up, first try and one probe each 10 epochs
    assert used[-1] == 2


def test_epoch_threads_backs_off_when_two_threads_are_slower(idle_machine: None) -> None:
    used = _run(torch_runtime.EpochThreads(2, True), {1: 0.010, 2: 0.040})
    assert used[-1] == 1
    probes = used.count(2)
    assert 2 <= probes <= 5  # the first try, then probes ever further apart


def test_epoch_threads_follows_a_load_that_ends(idle_machine: None) -> None:
    chooser = torch_runtime.EpochThreads(2, True)
    used = []
    for epoch in range(100):
        threads = chooser.for_epoch(epoch)
        used.append(threads)
        busy = epoch < 20
        per_example = {1: 0.010, 2: 0.040 if busy else 0.006}[threads]
        chooser.record(epoch, threads, per_example * 500, 500)
    assert used[10] == 1 and used[-1] == 2


def test_epoch_threads_never_tries_two_threads_without_a_free_core(monkeypatch: pytest.MonkeyPatch) -> None:
    load = [6.0]
    monkeypatch.setattr(torch_runtime.os, "getloadavg", lambda: (load[0], load[0], load[0]))
    chooser = torch_runtime.EpochThreads(2, True)
    used = _run(chooser, {1: 0.010, 2: 0.006}, epochs=40)
    assert set(used) == {1}  # two threads would be faster here, but no core is free to try
    load[0] = 0.9  # the other jobs end
    more = []
    for epoch in range(40, 200):
        threads = chooser.for_epoch(epoch)
        more.append(threads)
        chooser.record(epoch, threads, {1: 0.010, 2: 0.006}[threads] * 500, 500)
    assert more[-1] == 2


@pytest.mark.parametrize(("raw", "expected"), [("", 1), ("  ", 1), ("3", 3), ("0", 0)])
def test_env_torch_threads_reads_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("KEFU_TORCH_THREADS", raw)
    assert torch_runtime.env_torch_threads() == expected


@pytest.mark.parametrize("raw", ["two", "-1", "1.5"])
def test_env_torch_threads_refuses_a_bad_value_naming_it(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    from bot.shared.exceptions import ConfigError

    monkeypatch.setenv("KEFU_TORCH_THREADS", raw)
    with pytest.raises(ConfigError, match=f"KEFU_TORCH_THREADS.*{raw!r}"):
        torch_runtime.env_torch_threads()


def test_parsing_sets_the_thread_count_once_not_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing runs on one intra-op thread; where the calling thread had torch's default
    (one per core) it is set once, not switched for each message and back. Runs in a
    thread of its own: torch's count is per calling thread."""
    import threading

    import torch

    from bot.nlu import NLUPipeline
    from bot.shared.training_data.nlu import load_nlu_yaml
    from tests.nlu.test_diet import SMALL_BOT

    monkeypatch.delenv("KEFU_TORCH_THREADS", raising=False)
    nlu = NLUPipeline.from_config({"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"},
        {"name": "DIETClassifier", "epochs": 2}]})
    nlu.train(load_nlu_yaml(SMALL_BOT))
    calls: list[int] = []
    real = torch.set_num_threads
    seen: dict[str, int] = {}

    def parse_in_a_thread() -> None:
        real(2)
        monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n))[1])
        for text in ("hi", "hello there", "bye", "I am sad"):
            nlu.parse(text)
        seen["after"] = torch.get_num_threads()

    worker = threading.Thread(target=parse_in_a_thread)
    worker.start()
    worker.join()
    assert calls == [1]
    assert seen["after"] == 1
