"""LogisticRegressionClassifier: C chosen on held-out data, out-of-scope threshold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.nlu.base import FEATURES, Features, PipelineContext
from bot.nlu.classifiers import LogisticRegressionClassifier, choose_threshold, stratified_holdout
from bot.nlu.pipeline import NLUPipeline
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, TrainingData, load_nlu_yaml

CTX = PipelineContext(language="en")


def _dense_message(vector: list[float], intent: str | None = None) -> Message:
    """A message carrying one dense sentence feature, as a featurizer would leave it."""
    message = Message("x", {"intent": intent} if intent else {})
    message.data[FEATURES] = [Features("dense", "fake", None, np.asarray([vector], dtype=np.float32))]
    return message


def _clusters(seed: int = 0, per_class: int = 30, oos: int = 0) -> list[Message]:
    """Three well separated intents around the axes, plus optional scattered out-of-scope points."""
    rng = np.random.default_rng(seed)
    messages = []
    for k, intent in enumerate(["greet", "order", "refund"]):
        centre = np.eye(3)[k] * 3.0
        for _ in range(per_class):
            messages.append(_dense_message(list(centre + rng.normal(0, 0.4, 3)), intent))
    for _ in range(oos):
        messages.append(_dense_message(list(rng.normal(0, 0.3, 3)), "oos"))
    return messages


def test_stratified_holdout_holds_out_each_class_and_keeps_tiny_ones():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 2
    fit, val = stratified_holdout(labels, 0.2, seed=0)
    assert sorted(fit + val) == list(range(len(labels)))
    held = [labels[i] for i in val]
    assert held.count("a") == 4 and held.count("b") == 2
    assert "c" not in held  # a 2-example intent is never held out
    assert stratified_holdout(labels, 0.2, seed=0) == (fit, val)  # deterministic


def test_choose_threshold_trades_low_confidence_predictions_for_oos():
    confidences = np.array([0.9, 0.8, 0.3, 0.2, 0.85])
    predicted = ["a", "b", "a", "b", "a"]
    gold = ["a", "b", "oos", "oos", "a"]
    chosen = choose_threshold(confidences, predicted, gold, "oos")
    assert 0.3 < chosen["threshold"] <= 0.8
    assert chosen["accuracy"] == 1.0
    # no oos in the data: the lowest threshold (no change) is best
    assert choose_threshold(confidences, predicted, ["a", "b", "a", "b", "a"], "oos")["threshold"] == 0.0


def test_logistic_regression_selects_c_on_held_out_data_and_records_it():
    # three intents on a line: the middle one needs real weights, so a tiny C loses it
    rng = np.random.default_rng(0)
    messages = [
        _dense_message([centre + rng.normal(0, 0.1)], intent)
        for centre, intent in ((0.0, "greet"), (1.0, "order"), (2.0, "refund")) for _ in range(30)
    ]
    clf = LogisticRegressionClassifier({"C": [0.001, 100.0]}, CTX)
    clf.train(TrainingData(messages), messages)
    assert clf.selection["validation_size"] == 9
    scores = clf.selection["accuracy_by_C"]
    assert scores[100.0] == 1.0 and scores[0.001] < 0.9
    assert clf.selection["C"] == 100.0
    test = _dense_message([1.05])
    clf.process(test)
    assert test.get("intent")["name"] == "order"


def test_logistic_regression_out_of_scope_threshold_maps_unsure_predictions(tmp_path: Path):
    messages = _clusters(per_class=20)
    clf = LogisticRegressionClassifier({"C": 1.0, "out_of_scope_intent": "oos", "out_of_scope_threshold": 0.9}, CTX)
    clf.train(TrainingData(messages), messages)
    sure, unsure = _dense_message([3.0, 0.0, 0.0]), _dense_message([1.5, 1.5, 0.0])
    clf.process(sure)
    clf.process(unsure)
    assert sure.get("intent")["name"] == "greet"
    assert unsure.get("intent")["name"] == "oos"
    # the ranking still shows what the model thought
    assert unsure.get("intent_ranking")[0]["name"] in ("greet", "order")
    clf.persist(tmp_path)
    loaded = LogisticRegressionClassifier.load(clf.config, CTX, tmp_path)
    again = _dense_message([1.5, 1.5, 0.0])
    loaded.process(again)
    assert again.get("intent")["name"] == "oos" and loaded.threshold == pytest.approx(0.9)


def test_logistic_regression_auto_threshold_learns_oos_from_held_out_examples(tmp_path: Path):
    messages = _clusters(per_class=40, oos=40)
    clf = LogisticRegressionClassifier(
        {"C": 1.0, "out_of_scope_intent": "oos", "out_of_scope_threshold": "auto", "validation_fraction": 0.25}, CTX
    )
    clf.train(TrainingData(messages), messages)
    assert clf.threshold is not None and 0.0 <= clf.threshold < 0.96
    assert clf.selection["out_of_scope"]["accuracy"] >= 0.9
    clf.persist(tmp_path)
    loaded = LogisticRegressionClassifier.load(clf.config, CTX, tmp_path)
    assert loaded.threshold == clf.threshold
    far = _dense_message([0.05, -0.05, 0.0])
    loaded.process(far)
    assert far.get("intent")["name"] == "oos"


@pytest.mark.parametrize(
    "config",
    [{"C": [1.0, -1.0]}, {"C": "lots"}, {"out_of_scope_threshold": 0.5},
     {"out_of_scope_intent": "oos", "out_of_scope_threshold": "high"}],
)
def test_logistic_regression_bad_options_are_config_errors(config):
    with pytest.raises(ConfigError, match="Fix"):
        LogisticRegressionClassifier(config, CTX)


def test_logistic_regression_c_grid_in_pipeline_predicts_paraphrases():
    data = load_nlu_yaml(
        "nlu:\n- intent: track\n  examples: |\n    - where is my order\n    - track my order\n"
        "    - order status please\n    - has my order shipped\n"
        "- intent: refund\n  examples: |\n    - I want a refund\n    - give me my money back\n"
        "    - refund this item\n    - can I get a refund\n"
        "- intent: greet\n  examples: |\n    - hello\n    - hi there\n    - good morning\n    - hey\n"
    )
    config = {"language": "en", "pipeline": [
        {"name": "WhitespaceTokenizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
        {"name": "LogisticRegressionClassifier", "C": [1, 10, 100], "normalize_features": True,
         "validation_fraction": 0.25},
    ]}
    pipeline = NLUPipeline.from_config(config).train(data)
    clf = pipeline.components[2]
    assert clf.selection["C"] in (1.0, 10.0, 100.0)
    assert pipeline.parse("where is the order")["intent"]["name"] == "track"
    assert pipeline.parse("refund please")["intent"]["name"] == "refund"
