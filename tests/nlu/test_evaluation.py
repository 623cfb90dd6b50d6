"""NLU evaluation: reports in Rasa's shape, cross-validation, CLI entry point."""
from __future__ import annotations

import json
import warnings
from argparse import Namespace
from pathlib import Path

import pytest

from bot.nlu.evaluation import (
    EvaluationResult, IntentPrediction, entity_report, evaluate_nlu_yaml, intent_report,
    run_nlu_evaluation,
)
from bot.nlu.pipeline import NLUPipeline
from bot.shared.training_data.nlu import TrainingDataWarning, load_nlu_data

PROJECT = Path(__file__).resolve().parents[1] / "data" / "nlu" / "tinyshop"

TEST_YAML = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - 你好呀
    - hello there
- intent: order_status
  examples: |
    - 我的快递到哪了
    - where is my package
sentiment:
- label: positive
  examples: |
    - 谢谢，非常满意
- label: negative
  examples: |
    - 垃圾服务，气死了
"""


@pytest.fixture(scope="module")
def pipeline() -> NLUPipeline:
    from bot.shared.config import load_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)
        data = load_nlu_data(PROJECT / "data")
    return NLUPipeline.from_config(load_config(PROJECT / "config.yml"), PROJECT).train(data)


def test_intent_report_has_rasa_shape_and_confusions() -> None:
    result = EvaluationResult(intents=[
        IntentPrediction("a", "greet", "greet", 0.9),
        IntentPrediction("b", "greet", "bye", 0.6),
        IntentPrediction("c", "bye", "bye", 0.8),
    ])
    report = intent_report(result)
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["greet"]["recall"] == pytest.approx(0.5) and report["greet"]["support"] == 2
    assert report["greet"]["confused_with"] == {"bye": 1}
    assert {"macro avg", "weighted avg"} <= set(report)


def test_entity_report_counts_exact_spans_only() -> None:
    gold = [{"start": 0, "end": 2, "entity": "product"}, {"start": 5, "end": 9, "entity": "color"}]
    pred = [
        {"start": 0, "end": 2, "entity": "product", "extractor": "DIETClassifier"},
        {"start": 0, "end": 2, "entity": "product", "extractor": "RegexEntityExtractor"},  # counted once
        {"start": 5, "end": 8, "entity": "color"},  # off by one: wrong
    ]
    report = entity_report(EvaluationResult(entities=[(gold, pred, "x")]))
    assert report["product"]["precision"] == 1.0 and report["product"]["recall"] == 1.0
    assert report["color"]["f1-score"] == 0.0
    assert report["micro avg"]["precision"] == pytest.approx(0.5)
    assert report["micro avg"]["support"] == 2


def test_evaluate_nlu_yaml_for_http(pipeline) -> None:
    body = evaluate_nlu_yaml(pipeline, TEST_YAML)
    ie = body["intent_evaluation"]
    assert ie["accuracy"] >= 0.75
    assert len(ie["predictions"]) == 4 and {"text", "intent", "predicted", "confidence"} <= set(ie["predictions"][0])
    assert body["sentiment_evaluation"]["report"]["accuracy"] == 1.0
    assert "report" in body["entity_evaluation"]


def test_cli_evaluation_with_test_file_writes_reports(tmp_path: Path, tinyshop_model: Path) -> None:
    model = tinyshop_model
    test_file = tmp_path / "test_nlu.yml"
    test_file.write_text(TEST_YAML, encoding="utf-8")
    out = tmp_path / "results"
    args = Namespace(model=str(model), nlu=[str(test_file)], out=str(out), cross_validation=False,
                     folds=5, config=None, root=str(PROJECT))
    assert run_nlu_evaluation(args) == 0
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    assert report["accuracy"] >= 0.75 and report["greet"]["support"] == 2
    sentiment = json.loads((out / "sentiment_report.json").read_text(encoding="utf-8"))
    assert sentiment["positive"]["support"] == 1
    assert isinstance(json.loads((out / "intent_errors.json").read_text(encoding="utf-8")), list)
    json.loads((out / "entity_report.json").read_text(encoding="utf-8"))
    for png in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_cross_validation_pools_all_examples(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cv"
    args = Namespace(model=None, nlu=None, out=str(out), cross_validation=True, folds=2, config=None,
                     root=str(PROJECT))
    assert run_nlu_evaluation(args) == 0
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    assert report["weighted avg"]["support"] == 14  # every example tested exactly once
    assert "2-fold cross-validation" in capsys.readouterr().out


def test_evaluate_nlu_yaml_accepts_a_parse_callable() -> None:
    body = evaluate_nlu_yaml(lambda text: {"intent": {"name": "greet", "confidence": 1.0}, "entities": []}, TEST_YAML)
    assert body["intent_evaluation"]["accuracy"] == 0.5
    assert body["intent_evaluation"]["report"]["order_status"]["confused_with"] == {"greet": 2}


def _fallback_parse(text: str) -> dict:
    """A parse result as FallbackClassifier leaves it: nlu_fallback in front of the model's ranking."""
    top = "greet" if "hello" in text else "order_status"
    other = "order_status" if top == "greet" else "greet"
    fallback = {"name": "nlu_fallback", "confidence": 0.3}
    return {
        "intent": dict(fallback),
        "intent_ranking": [dict(fallback), {"name": top, "confidence": 0.28}, {"name": other, "confidence": 0.22}],
        "entities": [],
    }


def test_evaluation_undoes_fallback_predictions_as_rasa_does() -> None:
    # rasa/nlu/test.py get_eval_data: a FallbackClassifier answer is reverted to the
    # ranking's next intent (with its confidence) before intents are scored
    body = evaluate_nlu_yaml(_fallback_parse, TEST_YAML)
    predictions = {p["text"]: p for p in body["intent_evaluation"]["predictions"]}
    assert predictions["hello there"]["predicted"] == "greet"
    assert predictions["hello there"]["confidence"] == pytest.approx(0.28)
    assert predictions["where is my package"]["predicted"] == "order_status"
    assert predictions["你好呀"]["predicted"] == "order_status"  # the model's own (wrong) top intent


def test_undo_fallback_leaves_other_predictions_alone() -> None:
    from bot.nlu.classifiers import undo_fallback_prediction

    short = {"intent": {"name": "nlu_fallback", "confidence": 0.3},
             "intent_ranking": [{"name": "nlu_fallback", "confidence": 0.3}]}
    assert undo_fallback_prediction(short) == short  # nothing to revert to, as in Rasa
    body = evaluate_nlu_yaml(lambda text: {"intent": {"name": "greet", "confidence": 0.9},
                                           "intent_ranking": [{"name": "greet", "confidence": 0.9}],
                                           "entities": []}, TEST_YAML)
    assert body["intent_evaluation"]["accuracy"] == 0.5
