from __future__ import annotations

import time

import numpy as np
import pytest

from bot.knowledge.base import KnowledgeBase
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.entries import Answer, Entry
from bot.knowledge.lexical import CharNgramIndex, LexicalSignal, to_pinyin
from bot.shared.exceptions import ConfigError

# 推 (tui) typed for 退 (tui): the typo shares more characters with the wrong entry.
RETURNS = "怎么退货"
RECOMMEND = "怎么推荐"
TYPO = "怎么推货"


class _ConstantEncoder:
    """Every text gets the same vector, so rankings come from the lexical signal alone."""

    name = "constant"

    def encode(self, texts):
        return np.ones((len(texts), 8), dtype=np.float32)


def _kb(pinyin_weight: float) -> KnowledgeBase:
    entries = [
        Entry("return_policy", "after_sales", {"zh": (RETURNS, "退货政策是什么")}, {"zh": Answer("7 天无理由退货。")}),
        Entry("recommendation", "shopping", {"zh": (RECOMMEND, "给我推荐一双跑鞋")}, {"zh": Answer("看看新品榜。")}),
        Entry("shipping_time", "shipping", {"zh": ("多久发货",), "en": ("when do you ship",)},
              {"zh": Answer("48 小时内发货。")}),
    ]
    cfg = KnowledgeConfig(adapter=False, pinyin_weight=pinyin_weight, calibration=(4.6, 6.6, -3.4))
    return KnowledgeBase.build(entries, cfg, _ConstantEncoder())


def test_to_pinyin_toneless_syllables_and_empty_without_chinese():
    assert to_pinyin("在吗？") == "zaima"
    assert to_pinyin("再吗") == to_pinyin("在吗")
    assert to_pinyin("42码 有货吗") == "42ma youhuoma"
    assert to_pinyin("Do you ship?") == ""


def test_lexical_signal_homophone_typo_matches_only_with_pinyin():
    texts = [RETURNS, RECOMMEND]
    plain = LexicalSignal(2, 3, pinyin_weight=0.0).fit(texts)
    mixed = LexicalSignal(2, 3, pinyin_weight=0.8, pinyin_ngram_min=3, pinyin_ngram_max=5).fit(texts)
    plain_scores = plain.score_all(plain.transform(TYPO))
    mixed_scores = mixed.score_all(mixed.transform(TYPO))
    assert plain_scores[1] > plain_scores[0]  # characters alone favour the wrong phrasing
    assert mixed_scores[0] > mixed_scores[1]
    assert np.allclose(mixed.score_rows(mixed.transform(TYPO), np.array([1, 0])), mixed_scores[[1, 0]], atol=1e-6)


def test_lexical_signal_english_query_scores_like_char_ngrams():
    texts = ["when do you ship", "怎么退货", "return policy"]
    mixed = LexicalSignal(2, 3, pinyin_weight=0.8).fit(texts)
    chars = CharNgramIndex(2, 3).fit(texts)
    q = "when will you ship"
    assert mixed.transform(q).pinyin is None
    assert np.allclose(mixed.score_all(mixed.transform(q)), chars.score_all(chars.transform(q)), atol=1e-6)


def test_lexical_signal_row_equals_transform_of_phrasing():
    texts = ["怎么退货", "when do you ship", "退货运费谁出"]
    sig = LexicalSignal(2, 3, pinyin_weight=0.5).fit(texts)
    for p, text in enumerate(texts):
        assert np.allclose(sig.score_all(sig.row(p)), sig.score_all(sig.transform(text)), atol=1e-5)


def test_lexical_signal_without_chinese_phrasings_turns_pinyin_off():
    sig = LexicalSignal(2, 3, pinyin_weight=0.8).fit(["when do you ship", "return policy"])
    assert sig.pinyin is None
    assert sig.score_all(sig.transform("退货")).shape == (2,)


def test_retrieval_homophone_typo_right_entry_only_with_pinyin_signal():
    assert _kb(0.0).search(TYPO, "zh").top.entry_id == "recommendation"
    assert _kb(0.8).search(TYPO, "zh").top.entry_id == "return_policy"
    assert _kb(0.8).search("when do u ship", "en").top.entry_id == "shipping_time"


def test_pinyin_of_short_query_is_cached_and_fast():
    to_pinyin("收货地址能改吗")
    started = time.perf_counter()
    for _ in range(1000):
        to_pinyin("收货地址能改吗")
    assert (time.perf_counter() - started) / 1000 < 1e-4


@pytest.mark.parametrize("bad", [{"pinyin_weight": 1.5}, {"pinyin_weight": -0.1},
                                 {"pinyin_ngram_min": 4, "pinyin_ngram_max": 3}])
def test_config_rejects_bad_pinyin_settings(bad):
    with pytest.raises(ConfigError) as err:
        KnowledgeConfig.from_dict(bad, "config.yml", 3)
    assert "pinyin" in str(err.value)


def test_config_default_pinyin_on():
    cfg = KnowledgeConfig()
    assert cfg.pinyin_weight > 0 and cfg.pinyin_ngram_min <= cfg.pinyin_ngram_max
