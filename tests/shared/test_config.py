"""config.yml loading: Rasa defaults, explicit empty pipeline, errors with lines."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.shared.config import DEFAULT_PIPELINE, DEFAULT_POLICIES, config_from_yaml, load_config
from bot.shared.exceptions import ConfigError

DATA = Path(__file__).resolve().parent.parent / "data" / "configs"


def test_config_full_file() -> None:
    cfg = load_config(DATA / "full.yml")
    assert cfg.language == "zh"
    assert cfg.assistant_id == "shop_bot"
    assert cfg.recipe == "default.v1"
    assert cfg.pipeline == [{"name": "JiebaTokenizer"}, {"name": "DIETClassifier", "epochs": 5}]
    assert cfg.policies == [{"name": "RulePolicy"}]
    assert not cfg.pipeline_is_default and not cfg.policies_is_default
    assert cfg.pipeline_lines == [5, 6]
    assert cfg.line_of_component("policies", 0) == 9
    assert cfg.filename.endswith("full.yml")
    assert cfg.raw["assistant_id"] == "shop_bot"


def test_config_null_sections_get_rasa_defaults() -> None:
    cfg = load_config(DATA / "defaults.yml")
    assert cfg.pipeline == DEFAULT_PIPELINE and cfg.pipeline_is_default
    assert cfg.policies == DEFAULT_POLICIES and cfg.policies_is_default
    assert [c["name"] for c in cfg.policies] == [
        "MemoizationPolicy", "RulePolicy", "UnexpecTEDIntentPolicy", "TEDPolicy",
    ]
    cfg.pipeline.append({"name": "X"})  # defaults are copies
    assert DEFAULT_PIPELINE[-1]["name"] == "FallbackClassifier"


def test_config_missing_keys_and_language_default() -> None:
    cfg = config_from_yaml("recipe: default.v1\n")
    assert cfg.language == "en"
    assert cfg.pipeline_is_default and cfg.policies_is_default
    assert cfg.assistant_id is None


def test_config_empty_pipeline_means_no_nlu() -> None:
    cfg = load_config(DATA / "no_nlu.yml")
    assert cfg.pipeline == [] and not cfg.pipeline_is_default and cfg.is_nlu_empty
    assert cfg.policies == [{"name": "MemoizationPolicy"}]


def test_config_component_without_name_has_line() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(DATA / "nameless.yml")
    assert "nameless.yml:4" in str(e.value) and "name" in str(e.value)


def test_config_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping") as e:
        config_from_yaml("- a\n- b\n", "config.yml")
    assert "config.yml" in str(e.value)


def test_config_bare_string_component() -> None:
    with pytest.raises(ConfigError) as e:
        config_from_yaml("pipeline:\n  - WhitespaceTokenizer\n", "c.yml")
    assert "c.yml:2" in str(e.value) and "- name: WhitespaceTokenizer" in str(e.value)


def test_config_pipeline_not_a_list() -> None:
    with pytest.raises(ConfigError) as e:
        config_from_yaml("language: en\npipeline: supervised_embeddings\n", "c.yml")
    assert "c.yml:2" in str(e.value)


def test_config_unknown_recipe() -> None:
    with pytest.raises(ConfigError, match="recipe"):
        config_from_yaml("recipe: graph.v1\n", "c.yml")


def test_config_as_dict_has_effective_values() -> None:
    data = config_from_yaml("assistant_id: a\npolicies: []\n").as_dict()
    assert data["pipeline"] == DEFAULT_PIPELINE
    assert data["policies"] == []
    assert data["assistant_id"] == "a" and data["language"] == "en"


def test_config_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(DATA / "nope.yml")
