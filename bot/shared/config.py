"""config.yml: language, NLU pipeline and dialogue policies (Rasa 3 format).

Missing (or null) ``pipeline`` / ``policies`` get Rasa 3.6's defaults, as Rasa's
autoconfiguration does, and the config remembers that it did. An explicit
``pipeline: []`` means "no NLU" (e.g. a bot driven by ``/intent`` payloads).
Each component keeps its line so errors can point at it.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.shared.exceptions import ConfigError
from bot.shared.slots import plain_data
from bot.shared.yaml_io import line_of, read_yaml, read_yaml_file

logger = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en"
DEFAULT_RECIPE = "default.v1"
PLACEHOLDER_ASSISTANT_ID = "placeholder_default"
KNOWN_KEYS = {
    "recipe", "language", "pipeline", "policies", "assistant_id", "data", "spaces", "core_target", "nlu_target",
    "importers", "imports",  # read by bot/shared/importer.py
    # kefu's own sections (read by their features)
    "handoff", "knowledge", "triggers", "kefu", "workbench",
}

# rasa/shared/importers/default_config.yml (Rasa 3.6).
DEFAULT_PIPELINE: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
    {"name": "EntitySynonymMapper"},
    {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]
DEFAULT_POLICIES: list[dict[str, Any]] = [
    {"name": "MemoizationPolicy"},
    {"name": "RulePolicy"},
    {"name": "UnexpecTEDIntentPolicy", "max_history": 5, "epochs": 100},
    {"name": "TEDPolicy", "max_history": 5, "epochs": 100, "constrain_similarities": True},
]


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed config.yml (plain data) plus where each component was written."""

    language: str = DEFAULT_LANGUAGE
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    assistant_id: str | None = None
    recipe: str = DEFAULT_RECIPE
    raw: dict[str, Any] = field(default_factory=dict)
    filename: str | None = None
    pipeline_is_default: bool = False
    policies_is_default: bool = False
    pipeline_lines: list[int | None] = field(default_factory=list)
    policy_lines: list[int | None] = field(default_factory=list)

    @property
    def is_nlu_empty(self) -> bool:
        """True for ``pipeline: []`` (no NLU model is trained)."""
        return not self.pipeline

    def line_of_component(self, kind: str, index: int) -> int | None:
        """Line of ``pipeline[index]`` / ``policies[index]`` (``kind``: 'pipeline'|'policies')."""
        lines = self.pipeline_lines if kind == "pipeline" else self.policy_lines
        return lines[index] if 0 <= index < len(lines) else None

    def as_dict(self) -> dict[str, Any]:
        """The effective config (defaults filled in), e.g. to store beside a model."""
        data: dict[str, Any] = {"recipe": self.recipe, "language": self.language}
        if self.assistant_id is not None:
            data["assistant_id"] = self.assistant_id
        data["pipeline"] = copy.deepcopy(self.pipeline)
        data["policies"] = copy.deepcopy(self.policies)
        return data


def load_config(path: str | Path) -> ProjectConfig:
    """Read config.yml; errors name the file and line."""
    path = Path(path)
    return config_from_raw(read_yaml_file(path), str(path))


def config_from_yaml(text: str, filename: str = "<string>") -> ProjectConfig:
    return config_from_raw(read_yaml(text, filename), filename)


def config_from_raw(raw: Any, filename: str | None = None) -> ProjectConfig:
    """Validate a parsed config document and fill Rasa's defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"The config must be a mapping (language, pipeline, policies), got {type(raw).__name__}.",
            filename,
            line_of(raw),
            fix="Start config.yml with `language: en`, then `pipeline:` and `policies:` lists.",
        )
    for key in raw:
        if str(key) not in KNOWN_KEYS:
            logger.warning(
                "%s:%s: unknown key '%s' in the config is ignored.",
                filename, line_of(raw, key=key), key,
            )

    language = raw.get("language")
    if language is None:
        language = DEFAULT_LANGUAGE
    elif not isinstance(language, str) or not language.strip():
        raise ConfigError(
            f"`language` must be a language code, got `{language}`.",
            filename,
            line_of(raw, key="language"),
            fix="Use e.g. `language: en` or `language: zh`.",
        )

    recipe = raw.get("recipe") or DEFAULT_RECIPE
    if recipe != DEFAULT_RECIPE:
        raise ConfigError(
            f"Unsupported recipe '{recipe}'.",
            filename,
            line_of(raw, key="recipe"),
            fix=f"Use `recipe: {DEFAULT_RECIPE}` (graph recipes are not supported).",
        )

    assistant_id = raw.get("assistant_id")
    if assistant_id is None or assistant_id == PLACEHOLDER_ASSISTANT_ID:
        logger.warning(
            "%s: no unique `assistant_id` is set; set one to tell your bots apart in events.",
            filename or "config",
        )
    assistant_id = None if assistant_id is None else str(assistant_id)

    pipeline, pipeline_lines, pipeline_default = _components(raw, "pipeline", DEFAULT_PIPELINE, filename)
    policies, policy_lines, policies_default = _components(raw, "policies", DEFAULT_POLICIES, filename)
    if pipeline_default:
        logger.info("No NLU pipeline configured in %s; using Rasa's default pipeline.", filename or "config")
    if policies_default:
        logger.info("No policies configured in %s; using Rasa's default policies.", filename or "config")

    return ProjectConfig(
        language=language.strip(),
        pipeline=pipeline,
        policies=policies,
        assistant_id=assistant_id,
        recipe=recipe,
        raw=plain_data(raw),
        filename=filename,
        pipeline_is_default=pipeline_default,
        policies_is_default=policies_default,
        pipeline_lines=pipeline_lines,
        policy_lines=policy_lines,
    )


def _components(
    raw: dict[str, Any], key: str, default: list[dict[str, Any]], filename: str | None
) -> tuple[list[dict[str, Any]], list[int | None], bool]:
    value = raw.get(key)
    if value is None:  # missing, or `key:` with only comments below it
        return copy.deepcopy(default), [None] * len(default), True
    if not isinstance(value, list):
        raise ConfigError(
            f"`{key}` must be a list of components, got {type(value).__name__}.",
            filename,
            line_of(raw, key=key),
            fix=f"Write `{key}:` followed by `- name: ComponentName` items.",
        )
    components: list[dict[str, Any]] = []
    lines: list[int | None] = []
    for i, item in enumerate(value):
        line = line_of(value, index=i)
        if isinstance(item, str):
            raise ConfigError(
                f"Entry #{i + 1} of `{key}` is a bare string '{item}'.",
                filename,
                line,
                fix=f"Write it as `- name: {item}`.",
            )
        if not isinstance(item, dict):
            raise ConfigError(
                f"Entry #{i + 1} of `{key}` must be a mapping with a `name`.",
                filename,
                line,
                fix="Write `- name: ComponentName` plus its options.",
            )
        name = item.get("name")
        if not name or not isinstance(name, str):
            raise ConfigError(
                f"Entry #{i + 1} of `{key}` has no `name`.",
                filename,
                line,
                fix="Add `name: ComponentName` (a Rasa component name or a dotted path).",
            )
        components.append(plain_data(item))
        lines.append(line)
    return components, lines, False
