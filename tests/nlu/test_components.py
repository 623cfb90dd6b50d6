from __future__ import annotations

from pathlib import Path

import pytest

from bot.nlu.base import PipelineContext
from bot.nlu.classifiers import FallbackClassifier
from bot.nlu.diet.tagging import allowed_transitions, bilou_tags, tag_spans, token_tags
from bot.nlu.language import detect_language
from bot.nlu.pipeline import NLUPipeline
from bot.nlu.sentiment import score_sentiment
from bot.nlu.tokenizers import JiebaTokenizer, WhitespaceTokenizer
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, load_nlu_yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "nlu"
CTX = PipelineContext(language="en")


def test_whitespace_tokenizer_follows_rasa_cleaning_rules():
    tok = WhitespaceTokenizer({}, CTX)
    assert [t.text for t in tok.tokenize("Hi! name@example.com costs 10,000.1 wo!rd")] == [
        "Hi", "name@example.com", "costs", "10,000.1", "wo!rd"]
    tokens = tok.tokenize("  hello   world")
    assert [(t.start, t.end) for t in tokens] == [(2, 7), (10, 15)]
    assert [t.text for t in tok.tokenize("😀")] == ["😀"]
    assert tok.tokenize("") == []


def test_jieba_tokenizer_uses_dictionary_path_and_offsets():
    tok = JiebaTokenizer({"dictionary_path": "dict"}, PipelineContext(language="zh", root_dir=DATA))
    text = "我要买退货运费险 E20261101001"
    tokens = tok.tokenize(text)
    assert "退货运费险" in [t.text for t in tokens]
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_jieba_tokenizer_missing_dictionary_is_config_error():
    tok = JiebaTokenizer({"dictionary_path": "nope"}, PipelineContext(language="zh", root_dir=DATA))
    with pytest.raises(ConfigError, match="dictionary_path"):
        tok.tokenize("你好")


@pytest.mark.parametrize(
    ("text", "language"),
    [("我的order到哪了", "zh"), ("where is my order", "en"), ("你好", "zh"), ("ok 好的", "zh"),
     ("please check my order 谢谢", "en"), ("12345", "zh"), ("😀", "zh")],
)
def test_detect_language_zh_en_and_mixed(text, language):
    assert detect_language(text) == language


def test_detect_language_default_for_no_letters():
    assert detect_language("123 !!", default="en") == "en"


@pytest.mark.parametrize(
    ("text", "label"),
    [("谢谢，很满意", "positive"), ("太差了，我要投诉", "negative"), ("我的订单到哪了", "neutral"),
     ("thanks, great service", "positive"), ("this is terrible and broken", "negative"),
     ("not good", "negative"), ("不满意", "negative")],
)
def test_score_sentiment_lexicon_labels(text, label):
    result = score_sentiment(text)
    assert result["label"] == label and -1 <= result["score"] <= 1


def test_bilou_tags_and_spans_round_trip():
    from bot.nlu.base import Token

    tokens = [Token("fly", 0, 3), Token("to", 4, 6), Token("New", 7, 10), Token("York", 11, 15)]
    entities = [{"entity": "city", "start": 7, "end": 15, "role": "to"}]
    tags = token_tags(tokens, entities, "entity", True)
    assert tags == ["O", "O", "B-city", "L-city"]
    assert tag_spans(tags, True) == [(2, 3, "city")]
    assert token_tags(tokens, entities, "role", True) == ["O", "O", "B-to", "L-to"]


def test_allowed_transitions_forbid_invalid_bilou_paths():
    tags = bilou_tags(["city"], True)
    trans, start, end = allowed_transitions(tags, True)
    i = {t: k for k, t in enumerate(tags)}
    assert trans[i["B-city"], i["L-city"]] and not trans[i["B-city"], i["O"]]
    assert not start[i["I-city"]] and not end[i["B-city"]]


def _message(ranking):
    m = Message("x")
    m.set("intent", dict(ranking[0]))
    m.set("intent_ranking", ranking)
    return m


def test_fallback_classifier_threshold_and_ambiguity():
    fb = FallbackClassifier({"threshold": 0.5, "ambiguity_threshold": 0.1}, CTX)
    low = _message([{"name": "a", "confidence": 0.4}, {"name": "b", "confidence": 0.3}])
    fb.process(low)
    assert low.get("intent") == {"name": "nlu_fallback", "confidence": 0.5}
    close = _message([{"name": "a", "confidence": 0.52}, {"name": "b", "confidence": 0.48}])
    fb.process(close)
    assert close.get("intent")["name"] == "nlu_fallback"
    sure = _message([{"name": "a", "confidence": 0.9}, {"name": "b", "confidence": 0.1}])
    fb.process(sure)
    assert sure.get("intent")["name"] == "a"


def test_diet_learns_entity_roles_and_groups():
    data = load_nlu_yaml(
        "nlu:\n- intent: book\n  examples: |\n"
        '    - from [Berlin]{"entity": "city", "role": "departure"} to [Paris]{"entity": "city", "role": "destination"}\n'
        '    - from [London]{"entity": "city", "role": "departure"} to [Rome]{"entity": "city", "role": "destination"}\n'
        '    - from [Madrid]{"entity": "city", "role": "departure"} to [Oslo]{"entity": "city", "role": "destination"}\n'
        '    - from [Vienna]{"entity": "city", "role": "departure"} to [Prague]{"entity": "city", "role": "destination"}\n'
        "- intent: greet\n  examples: |\n    - hello\n    - hi there\n",
        "roles.yml",
    )
    pipeline = NLUPipeline.from_config({"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "LexicalSyntacticFeaturizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        {"name": "DIETClassifier", "epochs": 80, "transformer_size": 32, "number_of_transformer_layers": 1,
         "learning_rate": 0.005, "random_seed": 7},
    ]}).train(data)
    entities = pipeline.parse("from Berlin to Rome")["entities"]
    got = {(e["value"], e.get("role")) for e in entities}
    assert got == {("Berlin", "departure"), ("Rome", "destination")}


def test_diet_rejects_transformer_size_not_multiple_of_heads():
    with pytest.raises(ConfigError, match="multiple"):
        NLUPipeline.from_config({"pipeline": [{"name": "DIETClassifier", "transformer_size": 30}]})


def test_logistic_regression_fast_path_matches_stacked_features():
    """The per-block scoring at inference equals the stacked matrix used in training."""
    import numpy as np
    import scipy.sparse as sp

    from bot.nlu.base import softmax
    from bot.nlu.classifiers import sentence_vector

    data = load_nlu_yaml(
        "nlu:\n- intent: a\n  examples: |\n    - red shoes\n    - blue shoes\n"
        "- intent: b\n  examples: |\n    - where is my order\n    - track order\n"
        "- intent: c\n  examples: |\n    - hello\n    - hi there\n"
    )
    config = {"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        {"name": "LogisticRegressionClassifier", "C": 10, "normalize_features": True},
    ]}
    pipeline = NLUPipeline.from_config(config).train(data)
    clf = pipeline.components[3]
    message = Message("where are my red shoes")
    for c in pipeline.components[:3]:
        c.process(message)
    x, _ = sentence_vector(message, normalize=True)
    expected = softmax(np.asarray(sp.csr_matrix(x) @ clf.coef.T).reshape(-1) + clf.intercept)
    clf.process(message)
    got = {r["name"]: r["confidence"] for r in message.get("intent_ranking")}
    assert [got[name] for name in clf.classes] == pytest.approx(list(expected), abs=1e-6)
    assert pipeline.parse("track my order")["intent"]["name"] == "b"
