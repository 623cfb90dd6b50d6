"""Sentiment (negative/neutral/positive + score) and urgency on every parse.

``SentimentClassifier`` is a small trained model (logistic regression over char
n-grams, a zh/en shop lexicon and, by default, the bundled multilingual sentence
embedding). It learns from kefu's shipped shop data (``bot/nlu/data/
sentiment_default.yml``) plus any ``sentiment:`` section in the project's NLU
data, so trainers fix mistakes by adding examples, not code. Urgency is rule
based on purpose: escalation triggers (regulators, safety) must be predictable.
``SentimentAnalyzer`` is the old name and stays as an alias.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from bot.nlu.base import Component, PipelineContext, softmax
from bot.shared.training_data.nlu import KEY_SENTIMENT, SENTIMENT_LABELS, Message, TrainingData

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_DATA_FILE = DATA_DIR / "sentiment_default.yml"
HELDOUT_DATA_FILE = DATA_DIR / "sentiment_heldout.yml"
SENTIMENT = "sentiment"
URGENCY = "urgency"
LABELS = list(SENTIMENT_LABELS)  # negative, neutral, positive
MAX_CHARS = 512  # longer messages are scored on their start and end (speed, not accuracy)

# --------------------------------------------------------------------------- lexicon

POSITIVE_ZH = (
    "谢谢", "感谢", "多谢", "好评", "满意", "喜欢", "不错", "很好", "太好了", "棒", "赞", "完美", "开心",
    "高兴", "给力", "靠谱", "专业", "辛苦了", "好用", "舒服", "漂亮", "实惠", "划算", "推荐", "爱了", "点赞",
)
NEGATIVE_ZH = (
    "差评", "垃圾", "失望", "生气", "愤怒", "投诉", "骗子", "欺骗", "太慢", "好慢", "很慢", "破损", "坏了",
    "质量差", "质量太差", "不满意", "烂", "恶心", "无语", "气死", "坑", "糟糕", "难用", "退钱", "假货",
    "不行", "太差", "很差", "离谱", "过分", "差劲", "态度差", "没人管", "一直没", "还没到", "怎么还",
    "烦", "着急", "急死", "举报", "维权", "12315", "呵呵", "服了", "骗人", "凭什么", "搞什么",
)
POSITIVE_EN = (
    "thanks", "thank", "great", "good", "love", "awesome", "excellent", "perfect", "happy", "nice",
    "amazing", "helpful", "satisfied", "wonderful", "fantastic", "appreciate", "best", "glad", "cool",
)
NEGATIVE_EN = (
    "bad", "terrible", "awful", "angry", "hate", "worst", "disappointed", "disappointing", "broken",
    "damaged", "scam", "fraud", "complain", "complaint", "useless", "horrible", "slow", "late",
    "ridiculous", "unacceptable", "annoyed", "annoying", "furious", "poor", "wrong", "fake", "rude",
    "refund", "wtf", "joke", "lying",
)
NEGATIONS_ZH = ("不", "没", "别", "未", "无")
NEGATIONS_EN = {"not", "no", "never", "don't", "dont", "isn't", "wasn't", "didn't", "doesn't", "n't"}
INTENSIFIERS_ZH = ("非常", "特别", "太", "超级", "真的", "十分", "极其")
_WORD = re.compile(r"[a-z']+")


def _zh_hits(text: str, words: tuple[str, ...]) -> list[int]:
    hits = []
    for w in words:
        start = text.find(w)
        while start >= 0:
            hits.append(start)
            start = text.find(w, start + len(w))
    return hits


def _lexicon_counts(text: str) -> tuple[float, float]:
    """(positive, negative) evidence from the lexicon, with simple negation handling."""
    lowered = text.lower()
    pos = neg = 0.0
    for start in _zh_hits(text, POSITIVE_ZH):
        if any(n in text[max(0, start - 2) : start] for n in NEGATIONS_ZH):
            neg += 1
        else:
            pos += 1
    for start in _zh_hits(text, NEGATIVE_ZH):
        neg += 1.5 if any(i in text[max(0, start - 3) : start] for i in INTENSIFIERS_ZH) else 1
    words = _WORD.findall(lowered)
    for i, w in enumerate(words):
        negated = any(p in NEGATIONS_EN for p in words[max(0, i - 2) : i])
        if w in POSITIVE_EN:
            if negated:
                neg += 1
            else:
                pos += 1
        elif w in NEGATIVE_EN:
            if negated:
                pos += 0.5
            else:
                neg += 1
    return pos, neg


def score_sentiment(text: str) -> dict[str, Any]:
    """Lexicon-only ``{"label", "score"}`` (fallback when no trained model is at hand)."""
    text = text or ""
    pos, neg = _lexicon_counts(text)
    neg += 0.5 * min(text.count("!") + text.count("！"), 3) * (1 if neg > 0 else 0)
    total = pos + neg
    if total == 0:
        return {"label": "neutral", "score": 0.0}
    score = max(-1.0, min(1.0, (pos - neg) / (total + 1.0)))
    label = "positive" if score > 0.15 else "negative" if score < -0.15 else "neutral"
    return {"label": label, "score": round(score, 4)}


# --------------------------------------------------------------------------- urgency

_REPEATED_PUNCT = re.compile(r"[!！]{2,}|[?？]{3,}|[?？][!！]|[!！][?？]")
URGENCY_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    # regulators, legal and public threats
    ("regulator", 0.8, re.compile(
        r"12315|12345|工商|市场监管|消协|消费者协会|投诉|举报|曝光|媒体|律师|起诉|报警|法院|维权"
        r"|consumer protection|regulator|lawyer|attorney|sue\b|lawsuit|report (?:you|this)|police|bbb\b",
        re.IGNORECASE)),
    # physical safety
    ("safety", 0.9, re.compile(
        r"受伤|伤到|流血|起火|着火|失火|冒烟|爆炸|炸了|过敏|中毒|触电|漏电|烫伤|烧伤|划伤|割伤|骨折|送医|医院"
        r"|injur|bleed|fire\b|caught fire|smok(?:e|ing)|explod|allerg|poison|electric shock|burn(?:ed|t)?\b"
        r"|hospital",
        re.IGNORECASE)),
    # time pressure
    ("time", 0.45, re.compile(
        r"马上|立刻|立即|赶紧|赶快|尽快|急|今天必须|现在就|速度|right now|immediately|asap|urgent|emergency"
        r"|at once|today!",
        re.IGNORECASE)),
    ("punctuation", 0.35, _REPEATED_PUNCT),
)


def score_urgency(text: str, sentiment_score: float = 0.0, threshold: float = 0.5) -> dict[str, Any]:
    """``{"flag", "score", "reasons"}``: noisy-or over triggered rules, nudged by anger."""
    text = text or ""
    remaining = 1.0
    reasons = []
    for name, weight, pattern in URGENCY_RULES:
        if pattern.search(text):
            remaining *= 1.0 - weight
            reasons.append(name)
    if sentiment_score < 0:  # anger makes every trigger more pressing
        remaining *= 1.0 - 0.3 * min(1.0, -sentiment_score)
    score = round(1.0 - remaining, 4) if reasons else 0.0
    return {"flag": bool(score >= threshold), "score": score, "reasons": reasons}


# --------------------------------------------------------------------------- features


def _clip(text: str) -> str:
    text = text or ""
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + " " + text[-half:]
    return text


def _lexicon_features(text: str) -> np.ndarray:
    pos, neg = _lexicon_counts(text)
    stripped = text.strip()
    question = stripped.endswith(("?", "？", "吗", "呢", "么")) or "请问" in text or "怎么" in text
    return np.array([
        min(pos, 3.0) / 3.0,
        min(neg, 3.0) / 3.0,
        min(len(_REPEATED_PUNCT.findall(text)), 2) / 2.0,
        1.0 if question else 0.0,
        1.0 if "呵呵" in text or "hehe" in text.lower() else 0.0,
        1.0 if ("谢谢" in text or "thank" in text.lower()) and neg > 0 else 0.0,  # sarcastic thanks
    ], dtype=np.float32)


def char_ngrams(text: str, max_n: int = 3) -> list[str]:
    """Lower-cased char 1..max_n-grams inside space-padded words (sklearn's ``char_wb``)."""
    grams = []
    for word in text.lower().split():
        padded = f" {word} "
        for n in range(1, max_n + 1):
            if n > len(padded):
                break
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


#: the shipped default fitted once per process (weights are read-only afterwards)
_DEFAULT_FITS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


class SentimentClassifier(Component):
    """Trained negative/neutral/positive classifier plus urgency; adds both to every parse."""

    name = "SentimentClassifier"
    defaults: dict[str, Any] = {
        "use_default_data": True,
        "use_sentence_embedding": True,
        "C": 4.0,
        "urgency_threshold": 0.5,
        "max_iter": 2000,
    }

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self.vocab: dict[str, int] = {}  # char n-gram -> column
        self.idf: np.ndarray | None = None
        self.coef: np.ndarray | None = None  # (labels, n-grams + lexicon + embedding)
        self.intercept: np.ndarray | None = None
        self.labels: list[str] = list(LABELS)

    # ---- features
    def _embed(self, texts: list[str]) -> np.ndarray | None:
        if not self.config["use_sentence_embedding"]:
            return None
        from bot.nlu.featurizers import BUNDLED_MODEL, get_encoder

        try:
            return get_encoder(BUNDLED_MODEL).encode([t or " " for t in texts])
        except Exception as e:  # noqa: BLE001 - the classifier still works without it
            logger.warning("Sentence encoder unavailable for sentiment (%s); using n-grams only.", e)
            self.config["use_sentence_embedding"] = False
            return None

    def _ngram_row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, tf-idf values, L2-normalised) of the text's known n-grams."""
        counts: dict[int, int] = {}
        for g in char_ngrams(text):
            j = self.vocab.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        vals = np.log1p(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        assert self.idf is not None
        vals *= self.idf[cols]
        return cols, vals / max(float(np.linalg.norm(vals)), 1e-9)

    def _dense(self, texts: list[str]) -> np.ndarray:
        lex = np.vstack([_lexicon_features(t) for t in texts])
        emb = self._embed(texts)
        return lex if emb is None else np.hstack([lex, emb.astype(np.float32)])

    def _fit_vocab(self, texts: list[str]) -> None:
        df: dict[str, int] = {}
        for t in texts:
            for g in set(char_ngrams(t)):
                df[g] = df.get(g, 0) + 1
        self.vocab = {g: i for i, g in enumerate(sorted(df))}
        counts = np.array([df[g] for g in sorted(df)], dtype=np.float32)
        self.idf = (np.log((1 + len(texts)) / (1 + counts)) + 1.0).astype(np.float32)

    def _matrix(self, texts: list[str]) -> Any:
        import scipy.sparse as sp

        rows = [self._ngram_row(t) for t in texts]
        indptr = np.cumsum([0] + [len(c) for c, _ in rows])
        ngrams = sp.csr_matrix(
            (np.concatenate([v for _, v in rows]) if rows else np.zeros(0),
             np.concatenate([c for c, _ in rows]) if rows else np.zeros(0, dtype=np.int64), indptr),
            shape=(len(texts), len(self.vocab)),
        )
        return sp.hstack([ngrams, sp.csr_matrix(self._dense(texts))], format="csr")

    # ---- training
    @staticmethod
    def default_examples() -> list[Message]:
        from bot.shared.training_data.nlu import load_nlu_data

        return load_nlu_data(DEFAULT_DATA_FILE).sentiment_examples

    def fit_examples(self, examples: list[Message]) -> None:
        from sklearn.linear_model import LogisticRegression

        texts = [_clip(m.text) for m in examples]
        y = [m.get(KEY_SENTIMENT) for m in examples]
        self._fit_vocab(texts)
        x = self._matrix(texts)
        clf = LogisticRegression(
            C=float(self.config["C"]), max_iter=int(self.config["max_iter"]), class_weight="balanced",
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # BLAS threads thrash on small problems on shared cores
            clf.fit(x, y)
        self.labels = [str(c) for c in clf.classes_]
        self.coef = np.asarray(clf.coef_, dtype=np.float32)
        self.intercept = np.asarray(clf.intercept_, dtype=np.float32)

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        examples = list(training_data.sentiment_examples)
        key = (float(self.config["C"]), bool(self.config["use_sentence_embedding"]), int(self.config["max_iter"]))
        if not examples and self.config["use_default_data"] and key in _DEFAULT_FITS:
            self.labels, self.coef, self.intercept, self.idf, self.vocab = _DEFAULT_FITS[key]
            return
        if self.config["use_default_data"]:
            examples = self.default_examples() + examples
        labels = {m.get(KEY_SENTIMENT) for m in examples}
        if len(labels) < 2:
            logger.warning("Sentiment data has fewer than two labels; using the lexicon instead.")
            return
        self.fit_examples(examples)
        if not training_data.sentiment_examples and self.config["use_default_data"]:
            _DEFAULT_FITS[key] = (self.labels, self.coef, self.intercept, self.idf, self.vocab)

    # ---- inference
    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        if self.coef is None or self.intercept is None:
            return [score_sentiment(t) for t in texts]
        clipped = [_clip(t) for t in texts]
        n_vocab = len(self.vocab)
        dense = self._dense(clipped)
        scores = dense @ self.coef[:, n_vocab:].T + self.intercept
        for i, t in enumerate(clipped):  # sparse n-gram part, one short row at a time (fast path)
            cols, vals = self._ngram_row(t)
            if len(cols):
                scores[i] += self.coef[:, cols] @ vals
        out = []
        for row in scores:
            probs = softmax(row) if len(self.labels) > 2 else softmax(np.array([-row[0], row[0]]))
            by = dict(zip(self.labels, probs.tolist()))
            label = max(by, key=by.get)  # type: ignore[arg-type]
            score = float(by.get("positive", 0.0) - by.get("negative", 0.0))
            out.append({
                "label": label, "score": round(max(-1.0, min(1.0, score)), 4),
                "confidence": round(float(by[label]), 4),
            })
        return out

    def prepare_batch(self, texts: list[str]) -> None:
        """Embed a micro-batch in one encoder call; ``process`` then hits the encoder's cache."""
        texts = [_clip(t) for t in texts if t.strip()]
        if texts and self.coef is not None and self.config["use_sentence_embedding"]:
            self._embed(texts)

    def process(self, message: Message) -> None:
        text = message.text or ""
        sentiment = self.predict([text])[0] if text.strip() else {"label": "neutral", "score": 0.0, "confidence": 1.0}
        message.set(SENTIMENT, sentiment)
        message.set(URGENCY, score_urgency(text, sentiment["score"], float(self.config["urgency_threshold"])))

    # ---- persistence
    def persist(self, path: Path) -> None:
        if self.coef is None or self.intercept is None or self.idf is None:
            return
        vocab = sorted(self.vocab, key=self.vocab.get)  # type: ignore[arg-type]
        (path / "model.json").write_text(
            json.dumps({"labels": self.labels, "vocab": vocab}, ensure_ascii=False), encoding="utf-8"
        )
        np.savez_compressed(path / "weights.npz", coef=self.coef, intercept=self.intercept, idf=self.idf)

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "SentimentClassifier":
        c = cls(config, context)
        if (path / "weights.npz").exists() and (path / "model.json").exists():
            meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
            c.labels = meta["labels"]
            c.vocab = {g: i for i, g in enumerate(meta["vocab"])}
            with np.load(path / "weights.npz") as w:
                c.coef, c.intercept, c.idf = w["coef"], w["intercept"], w["idf"]
        else:  # a model from before the trained classifier: train the shipped default now
            logger.info("No trained sentiment weights in %s; training the shipped default.", path)
            c.fit_examples(cls.default_examples())
        c._embed(["warm up"])  # the encoder's first call is slow (~2 s): pay it at load, not on a request
        return c


#: the old name (baseline lexicon component); configs using it get the trained classifier
SentimentAnalyzer = SentimentClassifier
