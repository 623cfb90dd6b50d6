"""The knowledge base: entries + dense index + lexical index + calibrated outcomes.

A ``KnowledgeBase`` is immutable once built, so a reload builds a new one and
swaps a reference (see ``holder.py``); queries in flight keep the one they took.
Searching is synchronous CPU work (embedding + FAISS): call it off the event loop.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bot.knowledge.adapter import ADAPTER_FILE, AdapterError, AdapterSettings, EmbeddingAdapter
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.entries import Answer, Entry, content_hash
from bot.knowledge.index import DenseIndex, index_kind
from bot.knowledge.lexical import LexicalSignal, normalize
from bot.shared.exceptions import BotError, ConfigError

logger = logging.getLogger(__name__)

ANSWER, CLARIFY, NO_ANSWER = "answer", "clarify", "no_answer"
FORMAT_VERSION = 1
METADATA_FILE = "kb_metadata.json"
ENTRIES_FILE = "entries.json"
INDEX_FILE = "index.faiss"
# (w_score, w_margin, bias): fitted on the demo shop's leave-one-out phrasings; used when a
# base is too small to fit its own (fewer than MIN_CALIBRATION_POSITIVES right answers).
DEFAULT_CALIBRATION = (4.6, 6.6, -3.4)
MIN_CALIBRATION_POSITIVES = 30
# Off-topic questions: negatives for calibration, so "unrelated" maps to a low score.
OFF_TOPIC = (
    "今天天气怎么样", "给我讲个笑话", "你喜欢什么电影", "一加一等于几", "北京到上海的高铁几点",
    "帮我写一首诗", "你是男的还是女的", "股票明天会涨吗", "附近有什么好吃的餐厅", "怎么学习Python编程",
    "what's the weather like today", "tell me a joke", "who won the football match yesterday",
    "what is the capital of France", "can you write my homework", "how do I cook pasta",
    "recommend a good movie", "what time is it in Tokyo", "explain quantum physics", "do you like music",
)


class KnowledgeIndexError(BotError, RuntimeError):
    """A stored index is corrupt or does not match the entries/encoder (rebuild it)."""


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    score: float  # calibrated probability that this entry answers the question
    hybrid: float
    dense: float
    lexical: float
    matched_question: str
    matched_language: str


@dataclass(frozen=True)
class KBResult:
    outcome: str  # answer | clarify | no_answer
    query: str
    language: str
    candidates: tuple[Candidate, ...] = ()
    options: tuple[Candidate, ...] = ()  # what a clarification offers
    truncated: bool = False
    reason: str | None = None  # why no_answer when not "low score" (empty KB, empty question)
    elapsed_ms: float = 0.0

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "query": self.query,
            "language": self.language,
            "truncated": self.truncated,
            "reason": self.reason,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "candidates": [c.__dict__ for c in self.candidates],
            "options": [c.entry_id for c in self.options],
        }


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _embed(encoder: Any, texts: Sequence[str], cache: dict[str, np.ndarray] | None, batch: int = 64) -> np.ndarray:
    """Embeddings of ``texts``, reusing ``cache`` (text -> vector) from the previous build."""
    cache = cache if cache is not None else {}
    todo = list(dict.fromkeys(t for t in texts if t not in cache))
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        for t, v in zip(chunk, encoder.encode(chunk)):
            cache[t] = np.asarray(v, dtype=np.float32)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    out = np.stack([cache[t] for t in texts]).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


class KnowledgeBase:
    def __init__(
        self,
        entries: Sequence[Entry],
        config: KnowledgeConfig,
        encoder: Any,
        index: DenseIndex | None,
        lexical: LexicalSignal,
        phrase_entry: np.ndarray,
        phrase_text: list[str],
        phrase_lang: list[str],
        calibration: tuple[float, float, float],
        metadata: dict[str, Any],
        adapter: EmbeddingAdapter | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self.by_id = {e.id: e for e in self.entries}
        self.config = config
        self.encoder = encoder
        self.index = index
        self.lexical = lexical
        self.phrase_entry = phrase_entry
        self.phrase_text = phrase_text
        self.phrase_lang = phrase_lang
        self.calibration = calibration
        self.metadata = metadata
        self.adapter = adapter
        self.vector_cache: dict[str, np.ndarray] = {}  # raw encoder vectors (before the adapter)
        # phrasing rows of each entry, so an entry is scored over all its phrasings, not only the hits
        # (CSR-style: rows of entry e are _entry_order[_entry_bounds[e]:_entry_bounds[e + 1]])
        self._entry_order = np.argsort(self.phrase_entry, kind="stable")
        self._entry_bounds = np.searchsorted(self.phrase_entry[self._entry_order], np.arange(len(self.entries) + 1))
        self._multi_phrasing = len(np.unique(self.phrase_entry)) < len(self.phrase_entry)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        entries: Sequence[Entry],
        config: KnowledgeConfig,
        encoder: Any,
        vector_cache: dict[str, np.ndarray] | None = None,
        vectors: np.ndarray | None = None,
    ) -> "KnowledgeBase":
        """Embed every phrasing, index it, fit the lexical signal and the calibration."""
        started = time.perf_counter()
        phrase_entry, phrase_text, phrase_lang = [], [], []
        for i, e in enumerate(entries):
            for lang, q in e.phrasings():
                phrase_entry.append(i)
                phrase_text.append(q)
                phrase_lang.append(lang)
        cache: dict[str, np.ndarray] = dict(vector_cache or {})
        if vectors is None:
            vectors = _embed(encoder, phrase_text, cache)
        raw_vectors = vectors
        adapter = None
        if config.adapter and len(phrase_text) >= max(4, config.adapter_min_phrasings):
            adapter = EmbeddingAdapter.train(vectors, np.asarray(phrase_entry), _adapter_settings(config))
            if adapter is not None:
                vectors = adapter.apply(vectors)
        index = DenseIndex.build(vectors, config) if len(phrase_text) else None
        lexical = LexicalSignal.from_config(config).fit(phrase_text)
        dim = int(vectors.shape[1]) if len(phrase_text) else 0
        metadata = {
            "format": FORMAT_VERSION,
            "embedder": getattr(encoder, "name", type(encoder).__name__),
            "dimension": dim,
            "content_hash": content_hash(list(entries)),
            "index_kind": index.kind if index else "none",
            "index_params": config.index_params(),
            "entries": len(entries),
            "phrasings": len(phrase_text),
            "adapter": adapter.digest if adapter else None,
        }
        kb = cls(entries, config, encoder, index, lexical, np.asarray(phrase_entry, dtype=np.int64), phrase_text,
                 phrase_lang, config.calibration or DEFAULT_CALIBRATION, metadata, adapter)
        kb.vector_cache = cache
        if config.calibration is None:
            kb.calibration = kb._fit_calibration(vectors, raw_vectors)
        kb.metadata["calibration"] = list(kb.calibration)
        kb.metadata["build_seconds"] = round(time.perf_counter() - started, 3)
        logger.info("Knowledge base built: %d entries, %d phrasings, %s index, %.1f s.", len(entries),
                    len(phrase_text), metadata["index_kind"], kb.metadata["build_seconds"])
        return kb

    def _fit_calibration(self, vectors: np.ndarray, raw_vectors: np.ndarray | None = None) -> tuple[float, float, float]:
        """Logistic fit of P(right entry) on held-out phrasings plus off-topic questions.

        Without an adapter a phrasing is held out by excluding it from its own ranking. With one,
        the adapter has seen every phrasing, which would make those scores optimistic; so the
        phrasings are split in folds and each fold is ranked by an adapter and index built without it.
        """
        n = len(self.phrase_text)
        if n < 2:
            return DEFAULT_CALIBRATION
        X, y = [], []
        positives = 0
        if (self.adapter is not None and raw_vectors is not None
                and MIN_CALIBRATION_POSITIVES <= n <= self.config.calibration_sample):
            pairs = self._crossfit_rankings(raw_vectors)
        else:
            rng = np.random.default_rng(0)
            sample = np.arange(n) if n <= self.config.calibration_sample else rng.choice(
                n, self.config.calibration_sample, replace=False)
            pairs = ((int(self.phrase_entry[p]), self._rank(vectors[p], self.lexical.row(int(p)), exclude=int(p)))
                     for p in sample)
        for truth, ranked in pairs:
            for eidx, hybrid, margin, *_ in ranked[:5]:
                X.append((hybrid, margin))
                y.append(int(eidx == truth))
                positives += int(eidx == truth)
        off = _embed(self.encoder, list(OFF_TOPIC), self.vector_cache)
        if self.adapter is not None:
            off = self.adapter.apply(off)
        for text, vec in zip(OFF_TOPIC, off):
            for _, hybrid, margin, *_ in self._rank(vec, self.lexical.transform(text))[:5]:
                X.append((hybrid, margin))
                y.append(0)
        if positives < MIN_CALIBRATION_POSITIVES or positives == len(y):
            logger.info("Knowledge base too small to fit its calibration (%d positives); using defaults.", positives)
            return DEFAULT_CALIBRATION
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, max_iter=1000).fit(np.asarray(X), np.asarray(y))
        w = model.coef_[0]
        return (float(w[0]), float(w[1]), float(model.intercept_[0]))

    def _crossfit_rankings(self, raw_vectors: np.ndarray, folds: int = 3) -> list[tuple[int, list]]:
        """(true entry, ranking) for every phrasing, ranked by a KB built without its fold."""
        n = len(self.phrase_text)
        fold = np.random.default_rng(0).integers(0, folds, n)
        out = []
        for f in range(folds):
            train = np.where(fold != f)[0]
            test = np.where(fold == f)[0]
            if len(train) < 2 or not len(test):
                continue
            adapter = EmbeddingAdapter.train(raw_vectors[train], self.phrase_entry[train], _adapter_settings(self.config))
            vecs = adapter.apply(raw_vectors) if adapter is not None else raw_vectors
            texts = [self.phrase_text[i] for i in train]
            sub = KnowledgeBase(self.entries, self.config.with_updates(exact_max=max(self.config.exact_max, n)),
                                self.encoder, DenseIndex.build(vecs[train], self.config.with_updates(exact_max=n)),
                                LexicalSignal.from_config(self.config).fit(texts),
                                self.phrase_entry[train], texts, [self.phrase_lang[i] for i in train],
                                self.calibration, {}, adapter)
            for p in test:
                out.append((int(self.phrase_entry[p]), sub._rank(vecs[p], sub.lexical.transform(self.phrase_text[p]))))
        return out

    # ------------------------------------------------------------------ search
    def _rank(self, qvec: np.ndarray, qlex: Any, exclude: int = -1) -> list[tuple[int, float, float, float, float, int]]:
        """Entries by hybrid score: (entry index, hybrid, margin, dense, lexical, phrasing)."""
        n = len(self.phrase_text)
        if n == 0 or self.index is None:
            return []
        cfg = self.config
        depth = min(n, max(cfg.rerank_depth, 16))
        d_scores, d_ids = self.index.search(qvec, depth + (1 if exclude >= 0 else 0))
        cand = set(int(i) for i in d_ids)
        full_lex = n <= cfg.lexical_full_max
        if full_lex:
            lex_all = self.lexical.score_all(qlex)
            if exclude >= 0:
                lex_all[exclude] = 0.0
            if len(lex_all):
                top_lex = np.argpartition(-lex_all, min(depth, n) - 1)[:depth]
                cand.update(int(i) for i in top_lex if lex_all[i] > 0)
        cand.discard(exclude)
        if not cand:
            return []
        mix_entries = self._multi_phrasing and cfg.entry_max_weight < 1.0
        if mix_entries:
            # every phrasing of each candidate entry, so the entry's top-k mean is over all of them
            ents = np.unique(self.phrase_entry[np.fromiter(cand, dtype=np.int64)])
            order, bounds = self._entry_order, self._entry_bounds
            rows = np.unique(np.concatenate([order[bounds[e] : bounds[e + 1]] for e in ents]))
            if exclude >= 0:
                rows = rows[rows != exclude]
        else:
            rows = np.fromiter(cand, dtype=np.int64)
        if (not full_lex and not mix_entries and exclude < 0 and len(rows) == len(d_ids)
                and self.index.kind != "flat"):
            # large base: the candidates are exactly the dense hits, whose scores FAISS returned
            dense = d_scores.astype(np.float32)
            rows = d_ids.astype(np.int64)
        else:
            dense = self.index.vectors(rows) @ qvec.astype(np.float32)
        lex = lex_all[rows] if full_lex else self.lexical.score_rows(qlex, rows)
        hybrid = cfg.dense_weight * dense + cfg.lexical_weight * lex
        best: dict[int, tuple[float, float, float, int]] = {}
        if mix_entries:
            ents = self.phrase_entry[rows]
            order = np.lexsort((-hybrid, ents))  # by entry, best phrasing first
            ents_sorted = ents[order]
            starts = np.flatnonzero(np.r_[True, ents_sorted[1:] != ents_sorted[:-1]])
            ends = np.r_[starts[1:], len(order)]
            k = cfg.entry_top_k
            for a, b in zip(starts, ends):
                idx = order[a:b]
                top = float(hybrid[idx[0]])
                score = cfg.entry_max_weight * top + (1 - cfg.entry_max_weight) * float(hybrid[idx[:k]].mean())
                best[int(ents_sorted[a])] = (score, float(dense[idx[0]]), float(lex[idx[0]]), int(rows[idx[0]]))
        else:
            for r, h, dv, lv in zip(rows, hybrid, dense, lex):
                e = int(self.phrase_entry[r])
                if e not in best or h > best[e][0]:
                    best[e] = (float(h), float(dv), float(lv), int(r))
        ordered = sorted(best.items(), key=lambda kv: -kv[1][0])
        out = []
        for i, (e, (h, dv, lv, r)) in enumerate(ordered):
            other = ordered[1][1][0] if i == 0 and len(ordered) > 1 else ordered[0][1][0] if i > 0 else 0.0
            out.append((e, h, h - other, dv, lv, r))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Unit query vector in the index's space (through the adapter when there is one)."""
        qvec = _embed(self.encoder, [text], {})[0]
        return self.adapter.apply(qvec) if self.adapter is not None else qvec

    def calibrate(self, hybrid: float, margin: float) -> float:
        a, b, c = self.calibration
        return _sigmoid(a * hybrid + b * margin + c)

    def search(self, text: str, language: str | None = None, top_k: int = 5, today: dt.date | None = None) -> KBResult:
        """Rank entries for a shopper question and decide answer / clarify / no_answer."""
        from bot.nlu.language import detect_language

        started = time.perf_counter()
        raw = text if isinstance(text, str) else ""
        truncated = len(raw) > self.config.max_query_chars
        query = raw[: self.config.max_query_chars]
        lang = language or detect_language(query)
        if not self.entries:
            return KBResult(NO_ANSWER, query, lang, truncated=truncated, reason="empty_kb")
        if not normalize(query):
            return KBResult(NO_ANSWER, query, lang, truncated=truncated, reason="empty_question")
        qvec = self.embed_query(query)
        ranked = self._rank(qvec, self.lexical.transform(query))
        day = today or dt.date.today()
        ranked = [r for r in ranked if self.entries[r[0]].is_valid_on(day)]
        # margins are recomputed after filtering so an expired entry does not shadow a valid one
        cands = []
        for i, (e, h, _, dv, lv, r) in enumerate(ranked[: max(top_k, self.config.max_clarify_options)]):
            other = ranked[1][1] if i == 0 and len(ranked) > 1 else ranked[0][1] if i > 0 else 0.0
            cands.append(Candidate(self.entries[e].id, round(self.calibrate(h, h - other), 4), round(h, 4),
                                   round(dv, 4), round(lv, 4), self.phrase_text[r], self.phrase_lang[r]))
        outcome, options = self._decide(cands)
        return KBResult(outcome, query, lang, tuple(cands[:top_k]), tuple(options), truncated,
                        None if cands else "no_valid_entry", (time.perf_counter() - started) * 1000)

    def _decide(self, cands: list[Candidate]) -> tuple[str, list[Candidate]]:
        """Answer when the calibrated top score is high; offer the close runners-up when unsure."""
        cfg = self.config
        if not cands or cands[0].score < cfg.clarify_threshold:
            return NO_ANSWER, []
        if cands[0].score >= cfg.answer_threshold:
            return ANSWER, [cands[0]]
        options = [cands[0]] + [c for c in cands[1 : cfg.max_clarify_options]
                                if c.hybrid >= cands[0].hybrid - cfg.clarify_margin]
        return CLARIFY, options

    # ------------------------------------------------------------------ answers
    def get(self, entry_id: str) -> Entry | None:
        return self.by_id.get(entry_id)

    def answer(self, entry_id: str, language: str) -> tuple[Answer | None, str | None]:
        entry = self.by_id.get(entry_id)
        return entry.answer_for(language) if entry else (None, None)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> dict[str, Any]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ENTRIES_FILE).write_text(
            json.dumps([e.as_dict() for e in self.entries], ensure_ascii=False), encoding="utf-8")
        if self.index is not None:
            self.index.save(directory / INDEX_FILE)
        if self.adapter is not None:
            self.adapter.save(directory / ADAPTER_FILE)
        (directory / METADATA_FILE).write_text(json.dumps(self.metadata, indent=2, ensure_ascii=False),
                                               encoding="utf-8")
        return dict(self.metadata)

    @classmethod
    def load(cls, directory: str | Path, entries: Sequence[Entry], config: KnowledgeConfig, encoder: Any) -> "KnowledgeBase":
        """Reuse a stored index; ``KnowledgeIndexError`` when it is corrupt or stale."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise KnowledgeIndexError(f"{directory / METADATA_FILE}: unreadable ({e}).") from e
        expected = {
            "format": FORMAT_VERSION,
            "embedder": getattr(encoder, "name", type(encoder).__name__),
            "content_hash": content_hash(list(entries)),
            "index_params": config.index_params(),
        }
        for key, value in expected.items():
            if meta.get(key) != value:
                raise KnowledgeIndexError(f"Stored knowledge index is stale: {key} changed.")
        phrase_entry, phrase_text, phrase_lang = [], [], []
        for i, e in enumerate(entries):
            for lang, q in e.phrasings():
                phrase_entry.append(i)
                phrase_text.append(q)
                phrase_lang.append(lang)
        index = None
        if phrase_text:
            try:
                index = DenseIndex.load(directory / INDEX_FILE, meta.get("index_kind", index_kind(len(phrase_text), config)), config)
            except Exception as e:  # noqa: BLE001 - faiss raises RuntimeError subclasses for any bad file
                raise KnowledgeIndexError(f"{directory / INDEX_FILE}: corrupt ({e}).") from e
            if index.ntotal != len(phrase_text) or index.dimension != meta.get("dimension"):
                raise KnowledgeIndexError(
                    f"{directory / INDEX_FILE}: holds {index.ntotal}x{index.dimension} vectors, "
                    f"expected {len(phrase_text)}x{meta.get('dimension')}.")
            probe = _embed(encoder, [phrase_text[0]], {})
            if probe.shape[1] != index.dimension:
                raise KnowledgeIndexError(f"Encoder dimension {probe.shape[1]} != index dimension {index.dimension}.")
        adapter = None
        if meta.get("adapter"):
            try:
                adapter = EmbeddingAdapter.load(directory / ADAPTER_FILE, int(meta.get("dimension") or 0))
            except AdapterError as e:
                raise KnowledgeIndexError(str(e)) from e
            if adapter.digest != meta["adapter"]:
                raise KnowledgeIndexError(f"{directory / ADAPTER_FILE}: does not match the index (digest changed).")
        lexical = LexicalSignal.from_config(config).fit(phrase_text)
        calibration = tuple(config.calibration or meta.get("calibration") or DEFAULT_CALIBRATION)
        return cls(entries, config, encoder, index, lexical, np.asarray(phrase_entry, dtype=np.int64), phrase_text,
                   phrase_lang, calibration, meta, adapter)


def _adapter_settings(config: KnowledgeConfig) -> AdapterSettings:
    return AdapterSettings(epochs=config.adapter_epochs, temperature=config.adapter_temperature,
                           weight_decay=config.adapter_weight_decay)


def check_encoder(encoder: Any) -> None:
    if not hasattr(encoder, "encode"):
        raise ConfigError("The knowledge base needs a sentence encoder with .encode(texts).",
                          fix="Pass bot.embeddings.get_encoder(model).")
