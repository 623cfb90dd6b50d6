from __future__ import annotations

import numpy as np
import pytest

from bot.knowledge.adapter import AdapterError, AdapterSettings, EmbeddingAdapter
from bot.knowledge.base import KnowledgeBase, KnowledgeIndexError
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.lexical import CharNgramIndex
from bot.shared.exceptions import ConfigError


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _two_topics(rng: np.random.Generator, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two topics whose phrasings differ along a topic axis but share a large nuisance axis."""
    topic = np.zeros((2, dim), dtype=np.float32)
    topic[0, 0], topic[1, 1] = 1.0, 1.0
    vectors, labels = [], []
    for label in (0, 1):
        for _ in range(12):
            nuisance = np.zeros(dim, dtype=np.float32)
            nuisance[2 + rng.integers(0, 4)] = 3.0  # wording noise shared across topics
            vectors.append(topic[label] + nuisance + rng.normal(0, 0.1, dim))
            labels.append(label)
    return _unit(np.asarray(vectors, dtype=np.float32)), np.asarray(labels)


def _separation(v: np.ndarray, y: np.ndarray) -> float:
    sims = v @ v.T
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    return float(sims[same].mean() - sims[y[:, None] != y[None, :]].mean())


def test_adapter_pulls_phrasings_of_one_entry_together():
    v, y = _two_topics(np.random.default_rng(0))
    adapter = EmbeddingAdapter.train(v, y, AdapterSettings(epochs=80, learning_rate=5e-3))
    assert adapter is not None
    adapted = adapter.apply(v)
    assert np.allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    assert _separation(adapted, y) > _separation(v, y) + 0.1


def test_adapter_not_trained_without_two_phrasings_of_an_entry():
    v = _unit(np.random.default_rng(1).normal(size=(6, 16)).astype(np.float32))
    assert EmbeddingAdapter.train(v, np.arange(6)) is None
    assert EmbeddingAdapter.train(v[:2], np.array([0, 0])) is None


def test_adapter_apply_single_vector_matches_batch():
    v, y = _two_topics(np.random.default_rng(2))
    adapter = EmbeddingAdapter.train(v, y, AdapterSettings(epochs=5))
    assert np.allclose(adapter.apply(v[3]), adapter.apply(v)[3], atol=1e-6)


def test_adapter_load_rejects_wrong_shape_and_garbage(tmp_path):
    path = tmp_path / "adapter.npy"
    EmbeddingAdapter(np.zeros((8, 8), dtype=np.float32)).save(path)
    assert EmbeddingAdapter.load(path, 8).dimension == 8
    with pytest.raises(AdapterError, match="expected"):
        EmbeddingAdapter.load(path, 16)
    path.write_bytes(b"not numpy")
    with pytest.raises(AdapterError, match="unreadable"):
        EmbeddingAdapter.load(path, 8)


def test_kb_with_adapter_round_trips_and_detects_a_corrupt_adapter(kb_dir, encoder, tmp_path):
    from bot.knowledge.loader import load_entries

    entries = load_entries(kb_dir).entries
    cfg = KnowledgeConfig(adapter_min_phrasings=0)
    kb = KnowledgeBase.build(entries, cfg, encoder)
    assert kb.adapter is not None and kb.metadata["adapter"] == kb.adapter.digest
    before = kb.search("拍下以后啥时候能发出")
    assert before.top.entry_id == "shipping_time"
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", entries, cfg, encoder)
    after = loaded.search("拍下以后啥时候能发出")
    assert [c.entry_id for c in after.candidates] == [c.entry_id for c in before.candidates]
    assert after.top.hybrid == pytest.approx(before.top.hybrid, abs=1e-4)
    EmbeddingAdapter(np.ones((kb.adapter.dimension, kb.adapter.dimension), dtype=np.float32)).save(
        tmp_path / "kb" / "adapter.npy")
    with pytest.raises(KnowledgeIndexError, match="does not match"):
        KnowledgeBase.load(tmp_path / "kb", entries, cfg, encoder)


def test_kb_small_base_keeps_plain_encoder_and_adapter_setting_forces_rebuild(small_kb, kb_dir, encoder, tmp_path):
    from bot.knowledge.loader import load_entries

    assert small_kb.adapter is None and small_kb.metadata["adapter"] is None
    small_kb.save(tmp_path / "kb")
    with pytest.raises(KnowledgeIndexError, match="index_params"):
        KnowledgeBase.load(tmp_path / "kb", load_entries(kb_dir).entries, KnowledgeConfig(adapter=False), encoder)


def test_rank_entry_score_mixes_best_and_top_k_phrasings(kb_dir, encoder):
    from bot.knowledge.loader import load_entries

    entries = load_entries(kb_dir).entries
    best_only = KnowledgeBase.build(entries, KnowledgeConfig(entry_max_weight=1.0), encoder)
    mixed = KnowledgeBase.build(entries, KnowledgeConfig(entry_max_weight=0.5, entry_top_k=3), encoder)
    cfg = best_only.config
    for c in best_only.search("退货运费谁出", top_k=5).candidates:
        assert c.hybrid == pytest.approx(cfg.dense_weight * c.dense + cfg.lexical_weight * c.lexical, abs=2e-4)
    best = {c.entry_id: c.hybrid for c in best_only.search("退货运费谁出", top_k=5).candidates}
    for c in mixed.search("退货运费谁出", top_k=5).candidates:
        assert c.hybrid <= best[c.entry_id] + 1e-4  # the mean of the top 3 never exceeds the best one
    assert any(c.hybrid < best[c.entry_id] - 1e-3 for c in mixed.search("退货运费谁出", top_k=5).candidates)


def test_config_rejects_entry_weight_out_of_range():
    with pytest.raises(ConfigError, match="entry_max_weight"):
        KnowledgeConfig.from_dict({"entry_max_weight": 1.5})


def test_charngram_single_query_transform_matches_vectorizer():
    index = CharNgramIndex(2, 3).fit(["下单后多久发货？", "How long does shipping take?", "ＡＢＣ全角 shoes!!", "退货退货"])
    for text in ("多久发货呀", "shipping take long?", "zzz", "", "退货 退货", "Ｓhoes"):
        fast = index.transform(text).toarray()
        slow = index.vectorizer.transform([text]).toarray()
        assert np.allclose(fast, slow, atol=1e-6), text
