"""Dense vector index over question phrasings (FAISS, inner product on unit vectors).

Exact ``IndexFlatIP`` up to ``exact_max`` (50 000) vectors; above that HNSW (default) or IVF,
whose recall/latency trade-off is set in config. Measured on 2 cores with real USE vectors
(benchmarks/kb_scale.py, docs/knowledge.md): at 100 000 HNSW efSearch 64 keeps recall@10 at
0.998 of exact search; at 1 000 000 HNSW construction on 2 cores takes far longer than IVF's
k-means, so very large bases should set ``approximate: ivf`` (with ``ivf_nlist`` ~ sqrt(n)).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from bot.knowledge.config import KnowledgeConfig

logger = logging.getLogger(__name__)


def _faiss():
    import faiss

    return faiss


def index_kind(n: int, config: KnowledgeConfig) -> str:
    return "flat" if n <= config.exact_max else config.approximate


class DenseIndex:
    def __init__(self, index, kind: str) -> None:
        self.index = index
        self.kind = kind

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, config: KnowledgeConfig) -> "DenseIndex":
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        kind = index_kind(n, config)
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
        else:
            nlist = config.ivf_nlist or max(1, int(4 * math.sqrt(n)))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = vectors[np.random.default_rng(0).choice(n, size=min(n, nlist * 64), replace=False)]
            index.train(sample)
        if n:
            index.add(vectors)
        out = cls(index, kind)
        out.tune(config)
        return out

    def tune(self, config: KnowledgeConfig) -> None:
        """Search-time parameters (not stored in the file)."""
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = config.hnsw_ef_search
        elif self.kind == "ivf":
            self.index.nprobe = config.ivf_nprobe
            self.index.make_direct_map()

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ntotal == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        k = min(k, self.ntotal)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, k)
        scores, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, config: KnowledgeConfig) -> "DenseIndex":
        out = cls(_faiss().read_index(str(path)), kind)
        out.tune(config)
        return out
