from __future__ import annotations

import asyncio
import threading

from bot.knowledge.base import KnowledgeBase
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.entries import Answer, Entry


def test_retrieval_paraphrases_not_in_file_find_their_entry(small_kb):
    cases = {
        "拍下以后啥时候能发出": "shipping_time",
        "买错了可以退掉吗": "return_policy",
        "能给我开张发票不": "invoice",
        "can i pay by visa card": "payment_methods",
        "how do i send stuff back": "return_policy",
    }
    for text, expected in cases.items():
        result = small_kb.search(text)
        assert result.top.entry_id == expected, (text, result.candidates)


def test_retrieval_one_result_per_entry_and_scores_in_range(small_kb):
    result = small_kb.search("多久发货", top_k=5)
    ids = [c.entry_id for c in result.candidates]
    assert len(ids) == len(set(ids))
    assert all(0.0 <= c.score <= 1.0 for c in result.candidates)
    assert result.candidates[0].score >= result.candidates[-1].score


def test_retrieval_unrelated_question_gets_no_answer(small_kb):
    for text in ("今天北京天气怎么样", "tell me a joke about cats"):
        assert small_kb.search(text).outcome == "no_answer", text


def test_retrieval_confident_paraphrase_is_answered(small_kb):
    assert small_kb.search("下单以后多久发货呀").outcome == "answer"


def test_retrieval_ambiguous_question_clarifies_with_options(kb_dir, encoder):
    from bot.knowledge.loader import load_entries

    cfg = KnowledgeConfig(answer_threshold=0.99, clarify_threshold=0.05, clarify_margin=1.0)
    kb = KnowledgeBase.build(load_entries(kb_dir).entries, cfg, encoder)
    result = kb.search("付款和发票")
    assert result.outcome == "clarify"
    assert 2 <= len(result.options) <= cfg.max_clarify_options
    assert {"invoice", "payment_methods"} & {o.entry_id for o in result.options}


def test_retrieval_empty_kb_and_empty_question_are_no_answer(encoder, small_kb):
    empty = KnowledgeBase.build([], KnowledgeConfig(), encoder)
    assert empty.search("多久发货").reason == "empty_kb"
    assert small_kb.search("  ？？ ").reason == "empty_question"


def test_retrieval_very_long_question_is_truncated_not_crashing(small_kb):
    result = small_kb.search("发货" * 5000)
    assert result.truncated and len(result.query) == small_kb.config.max_query_chars
    assert result.outcome in ("answer", "clarify", "no_answer")


def test_retrieval_expired_entry_is_not_offered(encoder):
    import datetime as dt

    entries = [
        Entry("old_sale", questions={"zh": ("双十一活动怎么参加",)}, answers={"zh": Answer("已结束")},
              valid_until=dt.date(2020, 11, 12)),
        Entry("shipping", questions={"zh": ("多久发货",)}, answers={"zh": Answer("24小时内")}),
    ]
    kb = KnowledgeBase.build(entries, KnowledgeConfig(), encoder)
    ids = [c.entry_id for c in kb.search("双十一活动怎么参加", today=dt.date(2026, 1, 1)).candidates]
    assert "old_sale" not in ids


def test_retrieval_language_fallback_answer(small_kb):
    answer, lang = small_kb.answer("size_guide", "en")
    assert lang == "zh" and answer.text == "商品页有尺码表。"


def test_retrieval_hnsw_index_above_exact_max(kb_dir, encoder):
    from bot.knowledge.loader import load_entries

    kb = KnowledgeBase.build(load_entries(kb_dir).entries, KnowledgeConfig(exact_max=5, lexical_full_max=5), encoder)
    assert kb.metadata["index_kind"] == "hnsw"
    assert kb.search("什么时候发货呢").top.entry_id == "shipping_time"


def test_retrieval_concurrent_searches_are_safe(small_kb):
    errors = []

    def worker():
        try:
            for _ in range(5):
                assert small_kb.search("怎么退货").top.entry_id == "return_policy"
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
