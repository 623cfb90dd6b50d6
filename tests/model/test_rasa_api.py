"""Classes written against Rasa's Python API, and Rasa components that need a download,
stop before training with a message naming what is missing (issue #16 point 2)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.model.rasa_api import check_custom_classes, check_unavailable_components, rasa_imports_of
from bot.model.training import train
from bot.shared.exceptions import ConfigError

POLICY_SOURCE = (
    "from __future__ import annotations\n"
    "import logging\n"
    "from rasa.core.policies.policy import PolicyPrediction, Policy\n"
    "import rasa.shared.utils.io\n"
    "class MemoizationPolicy(Policy):\n    pass\n"
)


def _project(root: Path, policy: str, component: str = "WhitespaceTokenizer") -> Path:
    (root / "policy").mkdir()
    (root / "policy" / "__init__.py").write_text("")
    (root / "policy" / "memo.py").write_text(POLICY_SOURCE)
    (root / "config.yml").write_text(
        f"language: en\nassistant_id: t\npipeline:\n  - name: {component}\n"
        f"policies:\n  - name: RulePolicy\n  - name: {policy}\n"
    )
    (root / "domain.yml").write_text('version: "3.1"\nintents:\n  - greet\n')
    return root


def test_rasa_imports_are_listed_with_lines() -> None:
    found = rasa_imports_of(POLICY_SOURCE, "policy/memo.py")
    assert [str(i) for i in found] == [
        "policy/memo.py:3: rasa.core.policies.policy (PolicyPrediction, Policy)",
        "policy/memo.py:4: rasa.shared.utils.io",
    ]


def test_custom_policy_on_rasa_classes_stops_naming_the_api(tmp_path: Path) -> None:
    _project(tmp_path, "policy.memo.MemoizationPolicy")
    with pytest.raises(ConfigError) as e:
        train(root=tmp_path, out=tmp_path / "models")
    msg = str(e.value)
    assert "config.yml:7" in msg
    assert "policy/memo.py:3: rasa.core.policies.policy (PolicyPrediction, Policy)" in msg
    assert "`- name: MemoizationPolicy`" in msg  # kefu's built-in of the same name
    assert not (tmp_path / "models").exists()


def test_project_class_without_rasa_imports_is_left_to_the_registry(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("class Thing:\n    pass\n")
    check_custom_classes([("policy", {"name": "mine.Thing"}, 3)], tmp_path, {"RulePolicy"}, "config.yml")


@pytest.mark.parametrize("name", ["DucklingEntityExtractor", "SpacyEntityExtractor",
                                  "rasa.nlu.extractors.duckling_entity_extractor.DucklingEntityExtractor"])
def test_component_needing_a_download_or_server_names_the_alternative(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_unavailable_components([({"name": "WhitespaceTokenizer"}, 4), ({"name": name}, 5)], "config.yml")
    msg = str(e.value)
    assert "config.yml:5" in msg and name.rpartition(".")[2] in msg
    assert "RegexEntityExtractor" in msg
