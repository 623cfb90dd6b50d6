"""Baseline lexicon sentiment (zh + en) so every parse carries ``sentiment``.

Deliberately simple and replaceable: a later component can learn a real
classifier; the pipeline only relies on the ``SentimentAnalyzer`` name and the
``{"label", "score"}`` shape.
"""
from __future__ import annotations

import re
from typing import Any

from bot.nlu.base import Component
from bot.shared.training_data.nlu import Message

POSITIVE_ZH = (
    "谢谢", "感谢", "多谢", "好评", "满意", "喜欢", "不错", "很好", "太好了", "棒", "赞", "完美", "开心",
    "高兴", "给力", "靠谱", "专业", "辛苦了", "好用", "舒服", "漂亮", "实惠", "划算", "推荐", "爱了", "点赞",
)
NEGATIVE_ZH = (
    "差评", "垃圾", "失望", "生气", "愤怒", "投诉", "骗子", "欺骗", "太慢", "好慢", "很慢", "破损", "坏了",
    "质量差", "质量太差", "不满意", "烂", "恶心", "无语", "气死", "坑", "糟糕", "难用", "退钱", "假货",
    "不行", "太差", "很差", "离谱", "过分", "差劲", "态度差", "没人管", "一直没", "还没到", "怎么还",
    "烦", "着急", "急死", "举报", "维权", "12315",
)
POSITIVE_EN = (
    "thanks", "thank", "great", "good", "love", "awesome", "excellent", "perfect", "happy", "nice",
    "amazing", "helpful", "satisfied", "wonderful", "fantastic", "appreciate", "best", "glad", "cool",
)
NEGATIVE_EN = (
    "bad", "terrible", "awful", "angry", "hate", "worst", "disappointed", "disappointing", "broken",
    "damaged", "scam", "fraud", "complain", "complaint", "useless", "horrible", "slow", "late",
    "ridiculous", "unacceptable", "annoyed", "annoying", "furious", "poor", "wrong", "fake", "rude",
    "never", "still", "refund",
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


def score_sentiment(text: str) -> dict[str, Any]:
    """``{"label": negative|neutral|positive, "score": -1..1}``."""
    text = text or ""
    lowered = text.lower()
    pos = 0.0
    neg = 0.0
    for start in _zh_hits(text, POSITIVE_ZH):
        before = text[max(0, start - 2) : start]
        negated = any(n in before for n in NEGATIONS_ZH)
        if negated:
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
        elif w in NEGATIVE_EN and w not in ("never",):
            if negated:
                pos += 0.5
            else:
                neg += 1
    neg += 0.5 * min(lowered.count("!") + lowered.count("！"), 3) * (1 if neg > 0 else 0)
    total = pos + neg
    if total == 0:
        return {"label": "neutral", "score": 0.0}
    score = (pos - neg) / (total + 1.0)
    score = max(-1.0, min(1.0, score))
    label = "positive" if score > 0.15 else "negative" if score < -0.15 else "neutral"
    return {"label": label, "score": round(score, 4)}


class SentimentAnalyzer(Component):
    """Adds ``sentiment`` to the parse result; added to every pipeline if missing."""

    name = "SentimentAnalyzer"
    defaults: dict[str, Any] = {}

    def process(self, message: Message) -> None:
        message.set("sentiment", score_sentiment(message.text))
