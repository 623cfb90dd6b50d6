"""Lexical signal: character n-gram TF-IDF cosine.

Character n-grams need no word segmentation (Chinese) and survive typos
(English), which is where a sentence encoder is weakest. Scores are computed
either over all phrasings (small bases, through an inverted index) or only for
the dense hits being reranked (large bases).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_HAN = re.compile(r"([\u3400-\u9fff])")


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation to spaces (full-width Chinese punctuation too)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return " ".join(_PUNCT.sub(" ", text).split())


class CharNgramIndex:
    def __init__(self, ngram_min: int = 1, ngram_max: int = 3) -> None:
        self.vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(ngram_min, ngram_max), sublinear_tf=True,
            preprocessor=normalize, lowercase=False, dtype=np.float32,
        )
        self.matrix: sp.csr_matrix | None = None  # phrasings x n-grams, rows L2-normalised
        self._postings: sp.csr_matrix | None = None  # n-grams x phrasings
        self._analyzer = None  # set lazily from the fitted vectorizer (fast single-query path)
        self._vocabulary: dict[str, int] = {}
        self._idf: np.ndarray | None = None

    def fit(self, texts: Sequence[str]) -> "CharNgramIndex":
        if not texts:
            self.matrix = None
            return self
        self.matrix = self.vectorizer.fit_transform(texts).tocsr()
        self._postings = self.matrix.T.tocsr()
        self._analyzer = None
        return self

    def transform(self, text: str) -> sp.csr_matrix | None:
        """One query as a 1 x n-grams row, equal to ``vectorizer.transform([text])``.

        sklearn's batch path costs milliseconds of validation and sparse bookkeeping for a
        single short string; this does the same arithmetic (sublinear tf, idf, L2) directly.
        """
        if self.matrix is None:
            return None
        if self._analyzer is None:
            self._analyzer = self.vectorizer.build_analyzer()
            self._vocabulary = self.vectorizer.vocabulary_
            self._idf = np.asarray(self.vectorizer.idf_, dtype=np.float32)
        counts: dict[int, int] = {}
        vocabulary = self._vocabulary
        for gram in self._analyzer(text):
            j = vocabulary.get(gram)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        n_features = self.matrix.shape[1]
        if not counts:
            return sp.csr_matrix((1, n_features), dtype=np.float32)
        cols = np.fromiter(sorted(counts), dtype=np.int32, count=len(counts))
        tf = np.fromiter((counts[j] for j in cols), dtype=np.float32, count=len(cols))
        values = (np.log(tf) + 1.0) * self._idf[cols]
        values /= np.float32(np.linalg.norm(values)) or np.float32(1.0)
        return sp.csr_matrix((values, cols, np.array([0, len(cols)], dtype=np.int32)), shape=(1, n_features))

    def score_all(self, query: sp.csr_matrix | None) -> np.ndarray:
        """Cosine against every phrasing (walks only the query's n-gram postings)."""
        if query is None or self._postings is None:
            return np.zeros(0, dtype=np.float32)
        return np.asarray((query @ self._postings).todense(), dtype=np.float32).ravel()

    def score_rows(self, query: sp.csr_matrix | None, rows: np.ndarray) -> np.ndarray:
        if query is None or self.matrix is None or len(rows) == 0:
            return np.zeros(len(rows), dtype=np.float32)
        return np.asarray((self.matrix[rows] @ query.T).todense(), dtype=np.float32).ravel()
