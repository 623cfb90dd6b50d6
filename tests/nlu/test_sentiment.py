"""SentimentClassifier: trained from YAML, shipped default, urgency."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.nlu.base import PipelineContext
from bot.nlu.pipeline import NLUPipeline
from bot.nlu.registry import resolve_component
from bot.nlu.sentiment import (
    HELDOUT_DATA_FILE, SentimentAnalyzer, SentimentClassifier, score_urgency,
)
from bot.shared.exceptions import TrainingDataError
from bot.shared.training_data.nlu import Message, TrainingData, load_nlu_data, load_nlu_yaml

SENTIMENT_YAML = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello
sentiment:
- label: negative
  examples: |
    - zorbly blarg
    - this is zorbly
- label: positive
  examples: |
    - flimflam yay
    - such flimflam
"""


@pytest.fixture(scope="module")
def default_model() -> SentimentClassifier:
    """The shipped default (n-grams + lexicon + bundled embedding), trained once."""
    c = SentimentClassifier({}, PipelineContext())
    c.train(TrainingData(), [])
    return c


def test_reader_parses_sentiment_section_with_lines() -> None:
    data = load_nlu_yaml(SENTIMENT_YAML, "s.yml")
    assert [(m.text, m.get("sentiment")) for m in data.sentiment_examples][:2] == [
        ("zorbly blarg", "negative"), ("this is zorbly", "negative"),
    ]
    assert data.sentiment_examples[0].line == 11 and data.sentiment_examples[0].source == "s.yml"
    assert len(data.intent_examples) == 2  # the nlu part is still read


def test_reader_sentiment_only_file_and_merge(tmp_path: Path) -> None:
    (tmp_path / "nlu.yml").write_text('version: "3.1"\nnlu:\n- intent: a\n  examples: |\n    - x\n    - y\n',
                                      encoding="utf-8")
    (tmp_path / "sentiment.yml").write_text(
        'version: "3.1"\nsentiment:\n- label: neutral\n  examples: |\n    - 在吗\n', encoding="utf-8")
    data = load_nlu_data(tmp_path)
    assert [m.text for m in data.sentiment_examples] == ["在吗"]
    assert "sentiment" in data.nlu_as_yaml()
    before = data.fingerprint()
    data.sentiment_examples.append(Message("好", {"sentiment": "positive"}))
    assert data.fingerprint() != before


def test_reader_rejects_unknown_sentiment_label() -> None:
    with pytest.raises(TrainingDataError, match="label"):
        load_nlu_yaml('sentiment:\n- label: angry\n  examples: |\n    - grr\n', "bad.yml")


def test_sentiment_classifier_learns_project_examples() -> None:
    data = load_nlu_yaml(SENTIMENT_YAML, "s.yml")
    c = SentimentClassifier({"use_default_data": False, "use_sentence_embedding": False}, PipelineContext())
    c.train(data, [])
    neg, pos = c.predict(["so zorbly", "flimflam!"])
    assert neg["label"] == "negative" and neg["score"] < 0
    assert pos["label"] == "positive" and pos["score"] > 0
    assert -1.0 <= neg["score"] <= 1.0


@pytest.mark.parametrize("text,label", [
    ("你们这什么垃圾服务，等了十天还没发货，气死了", "negative"),
    ("呵呵，这就是你们的正品", "negative"),
    ("请问这款鞋有43码吗", "neutral"),
    ("亲，我的快递到哪了", "neutral"),
    ("Could you tell me when my order ships?", "neutral"),
    ("Thank you so much, the shoes are great!", "positive"),
    ("This is the worst service, I want my money back now!", "negative"),
    ("收到了，很满意，谢谢", "positive"),
])
def test_default_sentiment_on_shop_messages(default_model, text, label) -> None:
    assert default_model.predict([text])[0]["label"] == label


def test_default_sentiment_heldout_accuracy(default_model) -> None:
    held = load_nlu_data(HELDOUT_DATA_FILE).sentiment_examples
    predictions = default_model.predict([m.text for m in held])
    accuracy = sum(p["label"] == m.get("sentiment") for p, m in zip(predictions, held)) / len(held)
    assert accuracy >= 0.9, accuracy


def test_sentiment_persist_and_load_round_trip(default_model, tmp_path: Path) -> None:
    default_model.persist(tmp_path)
    loaded = SentimentClassifier.load({}, PipelineContext(), tmp_path)
    texts = ["呵呵", "谢谢亲", "在吗"]
    assert [p["score"] for p in loaded.predict(texts)] == pytest.approx(
        [p["score"] for p in default_model.predict(texts)], abs=1e-4)


def test_old_component_name_is_an_alias() -> None:
    assert SentimentAnalyzer is SentimentClassifier
    assert resolve_component("SentimentAnalyzer") is SentimentClassifier


@pytest.mark.parametrize("text,flag,reason", [
    ("再不退款我就打12315投诉你们", True, "regulator"),
    ("孩子玩的时候电池起火了，手也烫伤了", True, "safety"),
    ("I had an allergic reaction to this cream", True, "safety"),
    ("马上给我处理！！！", True, "time"),
    ("请问什么时候发货", False, None),
    ("thanks, have a nice day", False, None),
])
def test_urgency_rules(text, flag, reason) -> None:
    result = score_urgency(text)
    assert result["flag"] is flag
    assert 0.0 <= result["score"] <= 1.0
    if reason:
        assert reason in result["reasons"]
    else:
        assert result["score"] == 0.0


def test_parse_result_carries_sentiment_and_urgency() -> None:
    config = {"language": "zh", "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"},
        {"name": "SentimentClassifier", "use_sentence_embedding": False},
    ]}
    pipeline = NLUPipeline.from_config(config).train(load_nlu_yaml(SENTIMENT_YAML, "s.yml"))
    result = pipeline.parse("东西漏电了，我要找工商局！！")
    assert result["urgency"]["flag"] is True and result["urgency"]["score"] >= 0.5
    assert result["sentiment"]["label"] in ("negative", "neutral", "positive")
    assert pipeline.parse("hello")["urgency"] == {"flag": False, "score": 0.0, "reasons": []}
    # learned project examples are part of the model
    assert pipeline.parse("zorbly zorbly")["sentiment"]["label"] == "negative"
