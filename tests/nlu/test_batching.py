"""Micro-batching of concurrent parses (bot/nlu/batching.py) and the encoder cache it relies on."""
from __future__ import annotations

import asyncio
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bot.embeddings import VectorCache, get_encoder
from bot.nlu.batching import BatchingConfig, ParseBatcher, processor_batcher
from bot.nlu.pipeline import NLUPipeline
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import TrainingDataWarning, load_nlu_data

TINYSHOP = Path(__file__).resolve().parents[1] / "data" / "nlu" / "tinyshop"

TEXTS = [
    "我的订单到哪了", "where is my order", "我要退货", "这款跑鞋有42码吗", "hello", "呵呵，又是这套说辞",
    "质量太差了，我要投诉", "thanks a lot!", "", "   ", "😀😀", "/greet", "我的order到哪了",
]


# --------------------------------------------------------------------------- ParseBatcher


def _slow_upper(seen: list[list[str]] | None = None, delay: float = 0.01):
    lock = threading.Lock()

    def prepare(texts: list[str]) -> None:
        if seen is not None:
            with lock:
                seen.append(list(texts))

    def parse_one(text: str) -> dict:
        time.sleep(delay)
        if text == "boom":
            raise ValueError("cannot parse boom")
        return {"text": text, "upper": text.upper()}

    return parse_one, prepare


def test_parse_batcher_answers_all_concurrent_requests_in_batches() -> None:
    seen: list[list[str]] = []
    parse_one, prepare = _slow_upper(seen)
    with ThreadPoolExecutor(2) as pool:
        batcher = ParseBatcher(parse_one, prepare, pool, BatchingConfig(max_batch_size=8))

        async def main() -> list[dict]:
            return await asyncio.gather(*(batcher.parse(f"m{i}") for i in range(40)))

        results = asyncio.run(main())
    assert [r["upper"] for r in results] == [f"M{i}" for i in range(40)]
    assert sum(batcher.batch_sizes) == 40
    assert max(batcher.batch_sizes) == 8  # requests queued while a batch ran were batched
    assert batcher.batch_sizes[0] == 1  # the first request went out alone, at once
    assert all(len(batch) > 1 for batch in seen)  # prepare only for real batches


def test_parse_batcher_error_in_one_message_does_not_fail_the_others() -> None:
    parse_one, prepare = _slow_upper()
    with ThreadPoolExecutor(1) as pool:
        batcher = ParseBatcher(parse_one, prepare, pool, BatchingConfig(max_batch_size=16))

        async def main() -> list:
            texts = ["a", "b", "boom", "c", "d"]
            return await asyncio.gather(*(batcher.parse(t) for t in texts), return_exceptions=True)

        results = asyncio.run(main())
    assert isinstance(results[2], ValueError)
    assert [r["upper"] for i, r in enumerate(results) if i != 2] == ["A", "B", "C", "D"]


def test_parse_batcher_failing_prepare_still_parses_every_message() -> None:
    def prepare(texts: list[str]) -> None:
        raise RuntimeError("encoder down")

    with ThreadPoolExecutor(1) as pool:
        batcher = ParseBatcher(lambda t: t * 2, prepare, pool, BatchingConfig(max_batch_size=4))

        async def main() -> list:
            return await asyncio.gather(*(batcher.parse(t) for t in "abcdef"))

        assert asyncio.run(main()) == ["aa", "bb", "cc", "dd", "ee", "ff"]


def test_parse_batcher_single_request_is_dispatched_without_waiting() -> None:
    started: list[float] = []

    def parse_one(text: str) -> str:
        started.append(time.monotonic())
        return text

    with ThreadPoolExecutor(1) as pool:
        batcher = ParseBatcher(parse_one, None, pool, BatchingConfig(max_batch_size=32))

        async def main() -> tuple[float, str]:
            submitted = time.monotonic()
            result = await batcher.parse("hi")
            return submitted, result

        submitted, result = asyncio.run(main())
    assert result == "hi"
    assert list(batcher.batch_sizes) == [1]
    assert started[0] - submitted < 0.5  # no batching timer: an idle batcher sends at once


def test_parse_batcher_keeps_event_loop_free_while_parsing() -> None:
    release = threading.Event()

    def parse_one(text: str) -> str:
        release.wait(5)
        return text

    with ThreadPoolExecutor(1) as pool:
        batcher = ParseBatcher(parse_one, None, pool)

        async def main() -> str:
            task = asyncio.ensure_future(batcher.parse("slow"))
            ticks = 0
            for _ in range(5):  # the loop keeps running while the worker is busy
                await asyncio.sleep(0.01)
                ticks += 1
            assert not task.done()
            release.set()
            assert ticks == 5
            return await task

        assert asyncio.run(main()) == "slow"


def test_batching_config_from_env_reads_knobs_and_rejects_bad_values() -> None:
    assert BatchingConfig.from_env({}) == BatchingConfig(32, 1)
    config = BatchingConfig.from_env({"KEFU_PARSE_BATCH_SIZE": "8", "KEFU_PARSE_BATCHES_IN_FLIGHT": "2"})
    assert (config.max_batch_size, config.max_in_flight, config.enabled) == (8, 2, True)
    assert not BatchingConfig.from_env({"KEFU_PARSE_BATCH_SIZE": "0"}).enabled
    with pytest.raises(ConfigError, match="KEFU_PARSE_BATCH_SIZE"):
        BatchingConfig.from_env({"KEFU_PARSE_BATCH_SIZE": "many"})
    with pytest.raises(ConfigError, match="KEFU_PARSE_BATCHES_IN_FLIGHT"):
        BatchingConfig.from_env({"KEFU_PARSE_BATCHES_IN_FLIGHT": "0"})


# --------------------------------------------------------------------------- VectorCache


def test_vector_cache_encodes_only_misses_in_one_call() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    cache = VectorCache(size=3)
    first = cache.encode(["ab", "c", "ab"], encode)
    assert calls == [["ab", "c"]]
    assert first.tolist() == [[2, 97], [1, 99], [2, 97]]
    again = cache.encode(["c", "dd"], encode)
    assert calls[-1] == ["dd"]
    assert again.tolist() == [[1, 99], [2, 100]]
    again[0, 0] = 42  # callers get copies: the cache cannot be corrupted
    assert cache.encode(["c"], encode).tolist() == [[1, 99]]
    cache.encode(["e", "f"], encode)  # size 3: the least recently used ("ab") is evicted
    cache.encode(["ab"], encode)
    assert calls[-1] == ["ab"]


def test_vector_cache_leaves_big_calls_alone() -> None:
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.zeros((len(texts), 2), dtype=np.float32)

    cache = VectorCache(size=100, max_batch=4)
    cache.encode([str(i) for i in range(10)], encode)
    cache.encode(["1"], encode)
    assert calls == [10, 1]  # the training-size call was not cached


# --------------------------------------------------------------------------- real pipeline


@pytest.fixture(scope="module")
def embedding_pipeline() -> NLUPipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)
        data = load_nlu_data(TINYSHOP / "data" / "nlu.yml")
    config = {
        "language": "zh",
        "pipeline": [
            {"name": "JiebaTokenizer"},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
            {"name": "SentenceEmbeddingFeaturizer"},
            {"name": "LogisticRegressionClassifier", "C": 10, "normalize_features": True},
            {"name": "FallbackClassifier", "threshold": 0.2, "ambiguity_threshold": 0.0},
            {"name": "SentimentClassifier"},
        ],
    }
    return NLUPipeline.from_config(config).train(data)


def _assert_same_parse(batched: dict, single: dict) -> None:
    assert batched["text"] == single["text"]
    assert batched["intent"]["name"] == single["intent"]["name"]
    assert batched["intent"]["confidence"] == pytest.approx(single["intent"]["confidence"], abs=1e-5)
    assert [r["name"] for r in batched["intent_ranking"]] == [r["name"] for r in single["intent_ranking"]]
    assert batched["entities"] == single["entities"]
    assert batched["sentiment"]["label"] == single["sentiment"]["label"]
    assert batched["sentiment"]["score"] == pytest.approx(single["sentiment"]["score"], abs=1e-3)
    assert batched["urgency"] == single["urgency"]
    assert batched["language"] == single["language"]


def test_pipeline_parse_batch_equals_unbatched_parses(embedding_pipeline: NLUPipeline) -> None:
    encoder = get_encoder()
    encoder._cache.clear()
    before_misses = encoder._cache.misses
    batched = embedding_pipeline.parse_batch(TEXTS)
    # one encoder call embedded the batch: every featurizer/sentiment lookup afterwards hit the cache
    assert encoder._cache.misses - before_misses == len({t or " " for t in TEXTS})
    encoder._cache.clear()  # parse again from scratch, one text at a time
    single = [embedding_pipeline.parse(t) for t in TEXTS]
    for b, s in zip(batched, single):
        _assert_same_parse(b, s)
    assert batched[0]["intent"]["name"] == "order_status"


def test_pipeline_parse_batch_isolates_a_failing_message(embedding_pipeline: NLUPipeline,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    original = embedding_pipeline.parse

    def parse(text):  # one message breaks inside the pipeline
        if text == "boom":
            raise RuntimeError("component failed")
        return original(text)

    monkeypatch.setattr(embedding_pipeline, "parse", parse)
    results = embedding_pipeline.parse_batch(["快递到哪里了", "boom", "hello"], return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert results[0]["intent"]["name"] == "order_status" and results[2]["text"] == "hello"
    with pytest.raises(RuntimeError):
        embedding_pipeline.parse_batch(["boom"])


# --------------------------------------------------------------------------- agent


@pytest.mark.asyncio
async def test_agent_parse_message_batches_concurrent_requests(tinyshop_model: Path) -> None:
    from bot.agent import Agent

    agent = Agent(project_root=TINYSHOP, action_package=None)
    await agent.load_model(tinyshop_model)
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 4)]
    sequential = [await agent.parse_message(t) for t in texts]
    concurrent = await asyncio.gather(*(agent.parse_message(t) for t in texts))
    for b, s in zip(concurrent, sequential):
        _assert_same_parse(b, s)
    batcher = processor_batcher(agent.processor)
    assert max(batcher.batch_sizes) > 1
    intent = await agent.parse_message("/greet")
    assert intent["intent"]["name"] == "greet" and "sentiment" in intent


@pytest.mark.asyncio
async def test_agent_parse_message_without_batching_when_disabled(
    tinyshop_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.agent import Agent

    monkeypatch.setenv("KEFU_PARSE_BATCH_SIZE", "0")
    agent = Agent(project_root=TINYSHOP, action_package=None)
    await agent.load_model(tinyshop_model)
    results = await asyncio.gather(*(agent.parse_message(t) for t in ["我要退货", "hello"]))
    assert results[0]["text"] == "我要退货" and results[1]["text"] == "hello"
    assert not processor_batcher(agent.processor).batch_sizes  # the batcher was bypassed
