"""A residual linear adapter on frozen sentence embeddings, trained on the shop's own phrasings.

A general-purpose encoder does not know that "到付" and "货到付款" mean the same thing in this
shop, or that "要运费不" is about the shipping fee rather than returns. Every FAQ entry lists
several phrasings of one question, which is free supervision: ``v' = normalize(v + v W)`` is
trained with a supervised in-batch contrastive loss (phrasings of one entry attract, all other
phrasings in the batch repel), ``W`` starting at zero and pulled back towards it by weight decay,
so the adapter starts as the identity and only moves where the shop's data says so. Training is
seconds on CPU (full batch, a few hundred steps at most); applying it is one 512x512 product.
Measured in benchmarks/kb_quality.py (leave-phrasings-out on the KB, then the held-out files).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.shared.exceptions import BotError

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.npy"


class AdapterError(BotError, RuntimeError):
    """A stored adapter is unreadable or does not fit the index dimension."""


@dataclass(frozen=True)
class AdapterSettings:
    epochs: int = 60
    learning_rate: float = 2e-3
    temperature: float = 0.1
    weight_decay: float = 1e-2
    max_phrasings: int = 4000  # a random sample of this many phrasings trains it on large bases
    seed: int = 0


class EmbeddingAdapter:
    """``apply(v) = normalize(v + v @ W)``; immutable once trained."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.weight.setflags(write=False)

    @property
    def dimension(self) -> int:
        return int(self.weight.shape[0])

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.weight.tobytes()).hexdigest()[:16]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        single = v.ndim == 1
        v = v.reshape(1, -1) if single else v
        z = v + v @ self.weight
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z[0] if single else z

    @classmethod
    def train(cls, vectors: np.ndarray, labels: np.ndarray, settings: AdapterSettings | None = None) -> "EmbeddingAdapter | None":
        """Fit on (phrasing vector, entry label); ``None`` when no entry has two phrasings."""
        settings = settings or AdapterSettings()
        vectors = np.asarray(vectors, dtype=np.float32)
        labels = np.asarray(labels)
        counts = np.bincount(np.unique(labels, return_inverse=True)[1]) if len(labels) else np.zeros(0)
        if len(vectors) < 4 or not (counts >= 2).any() or len(counts) < 2:
            return None
        rng = np.random.default_rng(settings.seed)
        if len(vectors) > settings.max_phrasings:
            keep = rng.choice(len(vectors), settings.max_phrasings, replace=False)
            vectors, labels = vectors[keep], labels[keep]
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # seconds of work; do not fight the serving threads
        try:
            torch.manual_seed(settings.seed)
            x = torch.from_numpy(np.ascontiguousarray(vectors))
            y = torch.from_numpy(np.unique(labels, return_inverse=True)[1])
            d = x.shape[1]
            weight = torch.zeros(d, d, requires_grad=True)
            opt = torch.optim.Adam([weight], lr=settings.learning_rate)
            eye = torch.eye(len(y))
            positives = (y[:, None] == y[None, :]).float() - eye
            has = positives.sum(1) > 0
            for _ in range(settings.epochs):
                z = torch.nn.functional.normalize(x + x @ weight, dim=1)
                logits = z @ z.T / settings.temperature - eye * 1e9
                logp = torch.log_softmax(logits, dim=1)
                loss = -((logp * positives).sum(1)[has] / positives.sum(1)[has]).mean()
                loss = loss + settings.weight_decay * (weight**2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            logger.info("Embedding adapter trained on %d phrasings (final loss %.3f).", len(y), float(loss.detach()))
            return cls(weight.detach().numpy())
        finally:
            torch.set_num_threads(threads)

    def save(self, path: Path) -> None:
        np.save(path, self.weight)

    @classmethod
    def load(cls, path: Path, dimension: int) -> "EmbeddingAdapter":
        try:
            weight = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AdapterError(f"{path}: unreadable adapter ({e}).") from e
        if weight.shape != (dimension, dimension):
            raise AdapterError(f"{path}: adapter is {weight.shape}, expected ({dimension}, {dimension}).")
        return cls(weight)
