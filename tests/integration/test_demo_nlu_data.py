"""The demo shop's NLU data keeps the contract of ../shared/DESIGN.md and stays honest.

Every contract intent has enough natural Chinese and English examples, the
held-out file shares no text with the training data, and the regexes and lookup
tables reproduce the entity annotations (the demo pipeline extracts entities
with them, so an annotation they cannot find is a silent recall loss).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.nlu.featurizers import collect_patterns
from bot.nlu.language import detect_language
from bot.shared.training_data.nlu import load_nlu_data

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_INTENTS = (
    "greet goodbye thank affirm deny bot_challenge request_human complaint order_status cancel_order "
    "change_address return_request exchange_request refund_status product_inquiry size_advice "
    "ask_recommendation coupon_inquiry points_inquiry invoice_request payment_issue faq inform out_of_scope"
).split()
CONTRACT_ENTITIES = ("order_id", "phone", "product", "category", "color", "size")


@pytest.fixture(scope="module")
def demo():
    return load_nlu_data([ROOT / "nlu_data" / "nlu"])


def test_demo_data_every_contract_intent_has_25_zh_and_10_en(demo) -> None:
    counts: dict[str, dict[str, int]] = {}
    for m in demo.training_examples:
        intent = m.get("intent")
        lang = detect_language(m.text)
        counts.setdefault(intent, {"zh": 0, "en": 0})[lang] += 1
    short = {i: counts.get(i) for i in CONTRACT_INTENTS if (counts.get(i) or {}).get("zh", 0) < 25
             or (counts.get(i) or {}).get("en", 0) < 10}
    assert short == {}


def test_demo_data_annotates_every_contract_entity(demo) -> None:
    seen = {e["entity"] for m in demo.training_examples for e in (m.get("entities") or [])}
    assert set(CONTRACT_ENTITIES) <= seen


def test_demo_heldout_file_shares_no_text_with_training_data(demo) -> None:
    heldout = load_nlu_data([ROOT / "benchmarks" / "data" / "nlu_heldout.yml"])
    normalise = lambda t: re.sub(r"\W+", "", t.lower())  # noqa: E731
    train = {normalise(m.text) for m in demo.training_examples}
    assert len(heldout.training_examples) >= 4 * len(CONTRACT_INTENTS)
    assert [m.text for m in heldout.training_examples if normalise(m.text) in train] == []


def test_demo_regexes_and_lookups_reproduce_nearly_every_annotation(demo) -> None:
    patterns = [(p["name"], re.compile(p["pattern"], re.I)) for p in collect_patterns(demo, False)]
    found = missed = 0
    misses = []
    for m in demo.training_examples:
        gold = {(e["start"], e["end"], e["entity"]) for e in (m.get("entities") or [])}
        if not gold:
            continue
        predicted = {(x.start(), x.end(), n) for n, r in patterns for x in r.finditer(m.text) if x.end() > x.start()}
        found += len(gold & predicted)
        missed += len(gold - predicted)
        misses += [(m.text, m.text[s:e], n) for s, e, n in gold - predicted]
    assert found > 300
    assert missed <= 0.01 * (found + missed), misses[:20]
