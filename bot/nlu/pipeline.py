"""NLUPipeline: builds components from config.yml, trains, persists, parses.

The parse result is Rasa's (``text``, ``intent``, ``intent_ranking``,
``entities``) plus ``sentiment`` and ``language``, for every input including
empty or garbage text.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from bot.nlu.base import ENTITIES, INTENT, INTENT_RANKING, Component, PipelineContext
from bot.nlu.featurizers import SentenceEmbeddingFeaturizer
from bot.nlu.language import detect_language
from bot.nlu.registry import check_options, resolve_component
from bot.nlu.response_selector import RESPONSE_SELECTOR
from bot.nlu.sentiment import SENTIMENT, URGENCY, SentimentClassifier, score_sentiment, score_urgency
from bot.shared.config import DEFAULT_PIPELINE  # Rasa 3.6's default, defined once
from bot.shared.exceptions import ConfigError, ModelNotFound, format_location
from bot.shared.training_data.nlu import Message, TrainingData
from bot.shared.yaml_io import line_of, to_plain

logger = logging.getLogger(__name__)

PIPELINE_FILE = "nlu_pipeline.json"
FORMAT_VERSION = 1
#: longer texts are parsed on their first MAX_PARSE_CHARS characters (bounded latency)
MAX_PARSE_CHARS = 2000
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: Any) -> str:
    """Text that can be sent back as JSON: lone surrogates (``"\\ud800"``) become U+FFFD.

    The length stays the same, so entity offsets hold for the original text.
    """
    text = "" if text is None else str(text)
    return _LONE_SURROGATE.sub("\ufffd", text)


def processable_text(text: str) -> str:
    """Control characters become spaces (same length) before tokenizers see them."""
    return _CONTROL.sub(" ", text)


def default_pipeline(language: str) -> list[dict[str, Any]]:
    """Rasa's default; for Chinese, jieba replaces whitespace tokenization (kefu choice)."""
    pipeline = [dict(c) for c in DEFAULT_PIPELINE]
    if language == "zh" and pipeline and pipeline[0].get("name") == "WhitespaceTokenizer":
        logger.info("Default pipeline for language zh: JiebaTokenizer instead of WhitespaceTokenizer.")
        pipeline[0] = {"name": "JiebaTokenizer"}
    return pipeline


def _empty_result(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "intent": {"name": None, "confidence": 0.0},
        "entities": [],
        "intent_ranking": [],
    }


def _check_featurizer_names(components: list[Component], selections: list[tuple[Component, Any]],
                            filename: Any) -> None:
    """A ``featurizers:`` list names featurizers by alias (or component name); a name that no
    featurizer of the pipeline carries selects nothing, so it is reported with file:line (as in
    Rasa, the component then trains on the features the names that exist select)."""
    origins = [c.feature_origin for c in components if "alias" in c.defaults]
    for component, line in selections:
        names = component.selected_featurizers
        missing = [n for n in names if n not in origins]
        if missing:
            logger.warning(
                "%s: %s lists featurizer(s) %s, which no featurizer of the pipeline is (they are: %s); "
                "give the featurizer an `alias:` of that name or list one of these.%s",
                format_location(filename or "config", line), component.name, ", ".join(repr(m) for m in missing),
                ", ".join(origins) or "none", " It has no features to learn from." if len(missing) == len(names) else "",
            )


class NLUPipeline:
    """An ordered list of components plus the language they were configured for."""

    def __init__(self, components: list[Component], specs: list[dict[str, Any]], context: PipelineContext) -> None:
        self.components = components
        self.specs = specs
        self.context = context
        self.trained = False

    # ---- construction
    @classmethod
    def from_config(cls, project_config: Any, root_dir: str | Path | None = None) -> "NLUPipeline":
        """Build from a ``ProjectConfig`` (or a plain ``{"language", "pipeline"}`` dict)."""
        component_lines: list[int | None] = []
        if isinstance(project_config, dict):
            raw = project_config
            language = project_config.get("language") or "en"
            pipeline = project_config.get("pipeline", None)
            filename = project_config.get("filename")
        else:
            raw = getattr(project_config, "raw", None) or {}
            language = getattr(project_config, "language", None) or "en"
            pipeline = getattr(project_config, "pipeline", None)
            filename = getattr(project_config, "filename", None)
            component_lines = list(getattr(project_config, "pipeline_lines", None) or [])
            if getattr(project_config, "pipeline_is_default", False):
                pipeline = None
        raw_pipeline = raw.get("pipeline") if isinstance(raw, dict) else None
        if pipeline is None:
            pipeline = default_pipeline(str(language))
            raw_pipeline = None
            component_lines = []
        if not isinstance(pipeline, list):
            raise ConfigError(
                "'pipeline' must be a list of components.",
                filename,
                line_of(raw, "pipeline") if raw_pipeline is not None else None,
                fix="Write '- name: WhitespaceTokenizer' items under 'pipeline:'.",
            )
        context = PipelineContext(
            language=str(language), root_dir=Path(root_dir) if root_dir else None,
            config_file=str(filename) if filename else None,
        )
        components: list[Component] = []
        specs: list[dict[str, Any]] = []
        selections: list[tuple[Component, Any]] = []  # components with a `featurizers:` list, where
        for index, item in enumerate(pipeline):
            raw_item = raw_pipeline[index] if isinstance(raw_pipeline, list) and index < len(raw_pipeline) else None
            line = line_of(raw_pipeline, index=index) if raw_item is not None else None
            if line is None and index < len(component_lines):
                line = component_lines[index]
            if not isinstance(item, dict) or "name" not in item:
                raise ConfigError(
                    f"Pipeline entry {index + 1} has no 'name'.",
                    filename,
                    line,
                    fix="Each pipeline entry is a mapping with 'name: <Component>'.",
                )
            spec = to_plain(dict(item))
            component_cls = resolve_component(spec["name"], filename, line)
            def line_of_key(key: str, node: Any = raw_item, fallback: int | None = line) -> int | None:
                return line_of(node, key) or fallback

            check_options(component_cls, spec, filename, line_of_key)
            if component_cls.name == "SpacyNLP":
                context.extras["spacy_model"] = spec.get("model")
            components.append(component_cls(spec, context))
            specs.append({**spec, "name": component_cls.name})
            if component_cls.selects_featurizers and components[-1].selected_featurizers:
                selections.append((components[-1], line_of_key("featurizers")))
        _check_featurizer_names(components, selections, filename)
        if components and not any(isinstance(c, SentimentClassifier) for c in components):
            components.append(SentimentClassifier({}, context))
            specs.append({"name": SentimentClassifier.name})
        return cls(components, specs, context)

    @property
    def is_empty(self) -> bool:
        """True for ``pipeline: []`` (a Core-only project)."""
        return not self.components

    @property
    def language(self) -> str:
        return self.context.language

    # ---- training
    def train(self, training_data: TrainingData, base: "NLUPipeline | None" = None,
              epoch_fraction: float = 1.0) -> "NLUPipeline":
        """Train every component in order. ``base``: the same pipeline as a previous model
        has it, to fine-tune from (``train --finetune``): each component continues from its
        counterpart (``Component.finetune_from``) and DIET trains ``epoch_fraction`` of its
        epochs."""
        started = time.perf_counter()
        messages = [Message(m.text, dict(m.data), m.source, m.line) for m in training_data.training_examples]
        if base is not None:
            old_names = [c.name for c in base.components]
            if old_names != [c.name for c in self.components]:
                raise ConfigError(
                    f"Cannot fine-tune: the previous model's pipeline is {', '.join(old_names)}.",
                    self.context.config_file, fix="Train without --finetune, or restore that pipeline.")
            for component, old in zip(self.components, base.components):
                component.finetune_from(old, epoch_fraction)
        for component in self.components:
            t0 = time.perf_counter()
            component.train(training_data, messages)
            logger.debug("Trained %s in %.2fs", component.name, time.perf_counter() - t0)
        self.trained = True
        logger.info(
            "Trained NLU pipeline (%d components, %d examples) in %.1fs",
            len(self.components), len(messages), time.perf_counter() - started,
        )
        return self

    # ---- inference
    def process(self, message: Message) -> Message:
        for component in self.components:
            component.process(message)
        return message

    def parse(self, text: str | None, tracker_slots: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rasa parse result for ``text`` plus ``sentiment``, ``urgency`` and ``language``.

        Never raises on odd input: empty, whitespace-only, emoji-only, control
        characters, lone surrogates and very long texts all give a well-formed result.
        """
        text = clean_text(text)
        result = _empty_result(text)
        work = processable_text(text)
        if self.components:
            message = self.process(Message(work[:MAX_PARSE_CHARS]))
            intent = message.get(INTENT)
            if isinstance(intent, dict):
                result["intent"] = {"name": intent.get("name"), "confidence": float(intent.get("confidence") or 0.0)}
            result["intent_ranking"] = [
                {"name": r["name"], "confidence": float(r["confidence"])} for r in message.get(INTENT_RANKING) or []
            ]
            result["entities"] = [dict(e) for e in message.get(ENTITIES) or []]
            if message.get(RESPONSE_SELECTOR):
                result[RESPONSE_SELECTOR] = message.get(RESPONSE_SELECTOR)
            if message.get(SENTIMENT):
                result[SENTIMENT] = message.get(SENTIMENT)
            if message.get(URGENCY):
                result[URGENCY] = message.get(URGENCY)
        return self.enrich(result)

    def prepare_batch(self, texts: list[str]) -> None:
        """Embed many texts in one encoder call before they are parsed one by one.

        Sentence encoders are several times faster per text in batches (USE: ~5x
        at 16 texts); each component's own ``encode([text])`` then hits the
        encoder's cache (bot/embeddings.py), so results equal unbatched parses.
        """
        work = [processable_text(clean_text(t))[:MAX_PARSE_CHARS] for t in texts]
        if not work:
            return
        for component in self.components:
            prepare = getattr(component, "prepare_batch", None)
            if prepare is not None:
                prepare(work)
            elif isinstance(component, SentenceEmbeddingFeaturizer):
                component._encoder().encode([t or " " for t in work])

    def parse_batch(self, texts: list[str | None], return_exceptions: bool = False) -> list[Any]:
        """``parse`` of every text, sharing one encoder call (see ``prepare_batch``).

        With ``return_exceptions`` a failing text yields its exception in its slot
        and the others still get their results.
        """
        try:
            self.prepare_batch([clean_text(t) for t in texts])
        except Exception as e:  # noqa: BLE001 - each parse below embeds on its own
            logger.warning("Batch embedding failed (%s); parsing %d texts one by one.", e, len(texts))
        results: list[Any] = []
        for text in texts:
            try:
                results.append(self.parse(text))
            except Exception as e:  # noqa: BLE001 - isolate one bad message from the batch
                if not return_exceptions:
                    raise
                logger.exception("Parsing one message of a batch failed.")
                results.append(e)
        return results

    def enrich(self, parsed: dict[str, Any]) -> dict[str, Any]:
        """Add ``sentiment``, ``urgency`` and ``language`` where missing (also for ``/intent`` messages)."""
        text = processable_text(clean_text(parsed.get("text")))
        if SENTIMENT not in parsed:
            parsed[SENTIMENT] = score_sentiment(text) if text.strip() else {"label": "neutral", "score": 0.0}
        if URGENCY not in parsed:
            parsed[URGENCY] = score_urgency(text, float(parsed[SENTIMENT].get("score") or 0.0))
        if "language" not in parsed:
            default = self.language if self.language in ("zh", "en") else "zh"
            parsed["language"] = detect_language(text, default=default)
        return parsed

    # ---- persistence
    def persist(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, (component, spec) in enumerate(zip(self.components, self.specs)):
            folder = f"{i:02d}_{component.name}"
            path = directory / folder
            if path.exists():
                shutil.rmtree(path)
            path.mkdir()
            component.persist(path)
            entries.append({"folder": folder, "config": spec})
        meta = {
            "format_version": FORMAT_VERSION,
            "language": self.context.language,
            "root_dir": str(self.context.root_dir) if self.context.root_dir else None,
            "trained": self.trained,
            "components": entries,
        }
        (directory / PIPELINE_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "NLUPipeline":
        directory = Path(directory)
        meta_file = directory / PIPELINE_FILE
        if not meta_file.is_file():
            raise ModelNotFound(f"No NLU pipeline at {directory} (missing {PIPELINE_FILE}).")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        context = PipelineContext(
            language=meta.get("language") or "en",
            root_dir=Path(meta["root_dir"]) if meta.get("root_dir") else None,
        )
        components: list[Component] = []
        specs: list[dict[str, Any]] = []
        for entry in meta["components"]:
            spec = entry["config"]
            component_cls = resolve_component(spec["name"], meta_file)
            if component_cls.name == "SpacyNLP":
                context.extras["spacy_model"] = spec.get("model")
            components.append(component_cls.load(spec, context, directory / entry["folder"]))
            specs.append(spec)
        pipeline = cls(components, specs, context)
        pipeline.trained = bool(meta.get("trained"))
        return pipeline
