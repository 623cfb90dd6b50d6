from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import pytest

from bot.nlu.pipeline import DEFAULT_PIPELINE, NLUPipeline
from bot.shared.exceptions import UnknownComponentError
from bot.shared.training_data.nlu import TrainingDataWarning, load_nlu_data
from bot.shared.yaml_io import read_yaml_file

DATA = Path(__file__).resolve().parents[1] / "data" / "nlu"

SMALL_DIET = {
    "name": "DIETClassifier",
    "epochs": 60,
    "transformer_size": 64,
    "number_of_transformer_layers": 1,
    "embedding_dimension": 20,
    "learning_rate": 0.003,
    "random_seed": 42,
    "constrain_similarities": True,
}

BILINGUAL_CONFIG = {
    "language": "zh",
    "pipeline": [
        {"name": "JiebaTokenizer", "dictionary_path": "dict"},
        {"name": "RegexFeaturizer", "use_word_boundaries": False},
        {"name": "LexicalSyntacticFeaturizer"},
        {"name": "CountVectorsFeaturizer", "OOV_token": "oov"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
        SMALL_DIET,
        {"name": "EntitySynonymMapper"},
        {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
    ],
}

BAD_INPUTS = ["", "   ", "x" * 20000, "😀😀😀", "\x00\x01\x7f\n\t", "[]{}()/\\"]


@pytest.fixture(scope="module")
def training_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)
        return load_nlu_data(DATA / "nlu.yml")


@pytest.fixture(scope="module")
def bilingual(training_data):
    return NLUPipeline.from_config(BILINGUAL_CONFIG, root_dir=DATA).train(training_data)


def assert_well_formed(result: dict, text: str) -> None:
    assert result["text"] == text
    assert set(result) >= {"text", "intent", "intent_ranking", "entities", "sentiment", "language"}
    name, conf = result["intent"]["name"], result["intent"]["confidence"]
    assert name is None or isinstance(name, str)
    assert isinstance(conf, float) and 0.0 <= conf <= 1.0 and not math.isnan(conf)
    assert len(result["intent_ranking"]) <= 10
    for entity in result["entities"]:
        assert 0 <= entity["start"] <= entity["end"] <= len(text)
        assert entity["extractor"]
    assert result["language"] in ("zh", "en")
    assert result["sentiment"]["label"] in ("negative", "neutral", "positive")
    assert -1.0 <= result["sentiment"]["score"] <= 1.0


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("你好啊", "greet"),
        ("hello!", "greet"),
        ("我想取消这个订单", "cancel_order"),
        ("please cancel my order", "cancel_order"),
        ("我的包裹到哪里了", "order_status"),
        ("where is my package", "order_status"),
        ("thank you very much", "thank"),
        ("bye bye", "goodbye"),
    ],
)
def test_pipeline_predicts_learned_intents_on_unseen_paraphrases(bilingual, text, intent):
    result = bilingual.parse(text)
    assert result["intent"]["name"] == intent, result["intent_ranking"][:3]
    assert result["intent_ranking"][0]["name"] == intent


def test_pipeline_extracts_entities_with_character_offsets_zh(bilingual):
    text = "帮我查下订单E20261231999到哪了"
    entities = bilingual.parse(text)["entities"]
    order = [e for e in entities if e["entity"] == "order_id"]
    assert order, entities
    e = order[0]
    assert (e["start"], e["end"], e["value"]) == (6, 18, "E20261231999")
    assert text[e["start"] : e["end"]] == e["value"]
    assert e["extractor"] == "DIETClassifier" and 0 < e["confidence_entity"] <= 1


def test_pipeline_extracts_entities_with_character_offsets_en(bilingual):
    text = "where is my order E20261230888"
    e = [e for e in bilingual.parse(text)["entities"] if e["entity"] == "order_id"][0]
    assert (e["start"], e["end"]) == (18, 30) and e["value"] == "E20261230888"


def test_pipeline_maps_synonyms_and_records_processor(bilingual):
    result = bilingual.parse("有黑色的跑鞋吗")
    product = [e for e in result["entities"] if e["entity"] == "product"]
    assert product, result["entities"]
    assert product[0]["value"] == "running shoes"
    assert product[0]["processors"] == ["EntitySynonymMapper"]
    assert (product[0]["start"], product[0]["end"]) == (4, 6)


def test_pipeline_adds_language_and_sentiment(bilingual):
    mixed = bilingual.parse("我的order到哪了")
    assert mixed["language"] == "zh"
    assert bilingual.parse("where is my order")["language"] == "en"
    assert bilingual.parse("太感谢了，非常满意")["sentiment"]["label"] == "positive"
    assert bilingual.parse("质量太差了，我要投诉")["sentiment"]["label"] == "negative"
    assert bilingual.components[-1].name == "SentimentClassifier"


@pytest.mark.parametrize("text", BAD_INPUTS)
def test_pipeline_bad_input_gives_well_formed_result(bilingual, text):
    assert_well_formed(bilingual.parse(text), text)


def test_pipeline_empty_text_falls_back(bilingual):
    assert bilingual.parse("")["intent"]["name"] == "nlu_fallback"


def test_pipeline_persist_load_round_trip_identical_predictions(bilingual, tmp_path):
    bilingual.persist(tmp_path / "nlu")
    loaded = NLUPipeline.load(tmp_path / "nlu")
    for text in ["你好啊", "where is my order E20261230888", "有黑色的跑鞋吗", "", "随便说点什么"]:
        assert loaded.parse(text) == bilingual.parse(text)


def test_pipeline_inference_is_fast(bilingual):
    bilingual.parse("warm up")
    started = time.perf_counter()
    for _ in range(20):
        bilingual.parse("我的订单E20261101001到哪了")
    assert (time.perf_counter() - started) / 20 < 0.05


def test_pipeline_regex_and_lookup_extraction_without_model(training_data):
    pipeline = NLUPipeline.from_config({"language": "zh", "pipeline": [
        {"name": "JiebaTokenizer"},
        {"name": "RegexEntityExtractor", "use_word_boundaries": False},
        {"name": "KeywordIntentClassifier"},
    ]}).train(training_data)
    text = "订单E20261101001有红色的吗"
    found = {(e["entity"], e["value"], e["start"], e["end"]) for e in pipeline.parse(text)["entities"]}
    assert ("order_id", "E20261101001", 2, 14) in found
    assert ("color", "红色", 15, 17) in found
    assert pipeline.parse("请问 取消订单 怎么弄")["intent"]["name"] == "cancel_order"


def test_pipeline_lookup_word_boundaries_for_english(training_data):
    pipeline = NLUPipeline.from_config({"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "RegexEntityExtractor"},
    ]}).train(training_data)
    values = [e["value"] for e in pipeline.parse("Red shoes, not reddish")["entities"]]
    assert values == ["Red"]


def test_pipeline_fallback_below_threshold(training_data):
    pipeline = NLUPipeline.from_config({"language": "zh", "pipeline": [
        {"name": "JiebaTokenizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 2},
        {"name": "LogisticRegressionClassifier"},
        {"name": "FallbackClassifier", "threshold": 0.95},
    ]}).train(training_data)
    result = pipeline.parse("今天天气怎么样")
    assert result["intent"] == {"name": "nlu_fallback", "confidence": 0.95}
    assert result["intent_ranking"][0]["name"] == "nlu_fallback"
    assert result["intent_ranking"][1]["name"] != "nlu_fallback"


def test_pipeline_unknown_component_lists_valid_names():
    with pytest.raises(UnknownComponentError) as e:
        NLUPipeline.from_config({"pipeline": [{"name": "WhitespaceTokenizer"}, {"name": "MagicClassifier"}]})
    message = str(e.value)
    assert "MagicClassifier" in message and "DIETClassifier" in message and "JiebaTokenizer" in message


def test_pipeline_unknown_option_names_config_file_and_line():
    class Config:
        raw = read_yaml_file(DATA / "config_zh.yml")
        language = "zh"
        pipeline = raw["pipeline"]
        filename = str(DATA / "config_zh.yml")

    with pytest.raises(UnknownComponentError) as e:
        NLUPipeline.from_config(Config())
    message = str(e.value)
    assert "config_zh.yml:10" in message and "bogus_option" in message and "epochs" in message


def test_pipeline_empty_pipeline_is_empty_and_still_parses():
    pipeline = NLUPipeline.from_config({"language": "en", "pipeline": []})
    assert pipeline.is_empty
    result = pipeline.parse("hello")
    assert result["intent"] == {"name": None, "confidence": 0.0} and result["language"] == "en"


def test_pipeline_rasa_default_pipeline_trains_as_written(training_data):
    specs = [dict(s) for s in DEFAULT_PIPELINE]
    for spec in specs:
        if "epochs" in spec:
            spec["epochs"] = 15  # as written otherwise; fewer epochs keep the suite fast
    pipeline = NLUPipeline.from_config({"language": "en", "pipeline": specs}).train(training_data)
    names = [c.name for c in pipeline.components]
    assert names[:2] == ["WhitespaceTokenizer", "RegexFeaturizer"] and "ResponseSelector" in names
    assert_well_formed(pipeline.parse("hello there"), "hello there")
    assert NLUPipeline.from_config({"language": "en"}).specs[: len(DEFAULT_PIPELINE)] == DEFAULT_PIPELINE


def test_pipeline_rasa_documented_chinese_pipeline_trains(training_data):
    pipeline = NLUPipeline.from_config({"language": "zh", "pipeline": [
        {"name": "JiebaTokenizer"}, {"name": "CountVectorsFeaturizer"}, {**SMALL_DIET, "epochs": 30},
    ]}).train(training_data)
    assert pipeline.parse("再见啦")["intent"]["name"] == "goodbye"


def test_pipeline_sentence_embedding_featurizer_bundled_model(training_data):
    pipeline = NLUPipeline.from_config({"language": "zh", "pipeline": [
        {"name": "JiebaTokenizer"},
        {"name": "SentenceEmbeddingFeaturizer"},
        {"name": "LogisticRegressionClassifier", "C": 10},
    ]}).train(training_data)
    assert pipeline.parse("非常谢谢你的帮助")["intent"]["name"] == "thank"
    assert pipeline.parse("see you tomorrow, bye")["intent"]["name"] == "goodbye"


def test_pipeline_from_project_config_unknown_option_names_component_line():
    from bot.shared.config import load_config

    with pytest.raises(UnknownComponentError) as e:
        NLUPipeline.from_config(load_config(DATA / "config_zh.yml"), root_dir=DATA)
    assert "config_zh.yml:8" in str(e.value) and "bogus_option" in str(e.value)


def test_pipeline_from_project_config_default_pipeline(rasa_examples):
    from bot.shared.config import load_config

    config = load_config(rasa_examples / "initial_project_rasa_3.6.21" / "config.yml")
    pipeline = NLUPipeline.from_config(config)
    names = [c.name for c in pipeline.components]
    assert names[0] == "WhitespaceTokenizer" and "DIETClassifier" in names and names[-1] == "SentimentClassifier"
    assert pipeline.components[names.index("DIETClassifier")].config["constrain_similarities"] is True
