"""What Rasa 3.6 trains, kefu loads: stricter checks warn with file:line; Rasa's importers.

Each case is a tiny project written into tmp_path (issue #16 point 2).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from bot.shared.domain import Domain
from bot.shared.exceptions import ConfigError
from bot.shared.importer import ProjectImporter
from bot.shared.nlg import ResponseVariationFilter
from bot.shared.training_data.nlu import load_nlu_data
from bot.validation import run_validation

CONFIG = 'language: en\nassistant_id: t\npipeline: []\npolicies:\n  - name: RulePolicy\n'


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_slot_mapping_naming_a_form_as_intent_loads_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "intents:\n  - affirm\nforms:\n  pay_form:\n    required_slots: [go_on]\n"
        "slots:\n  go_on:\n    type: bool\n    mappings:\n"
        "    - type: from_intent\n      intent: pay_form\n      value: true\n"
    )
    with caplog.at_level(logging.WARNING):
        domain = Domain.from_yaml(text, "domain.yml")
    assert "go_on" in [s.name for s in domain.slots]
    assert any("domain.yml:10" in r.getMessage() and "'pay_form'" in r.getMessage() for r in caplog.records)


def test_response_condition_on_unknown_slot_loads_and_reads_it_as_unset(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "responses:\n  utter_hi:\n"
        "  - text: conditional\n    condition:\n    - type: slot\n      name: nowhere\n      value: true\n"
        "  - text: plain\n"
    )
    with caplog.at_level(logging.WARNING):
        domain = Domain.from_yaml(text, "domain.yml")
    assert any("domain.yml:3" in r.getMessage() and "'nowhere'" in r.getMessage() for r in caplog.records)
    chosen = ResponseVariationFilter(domain.responses).responses_for_utter_action("utter_hi", None, {})
    assert [r["text"] for r in chosen] == ["plain"]


def test_space_only_first_line_of_examples_block_is_read_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, {"nlu.yml": (
        'version: "3.1"\nnlu:\n- intent: buy\n  examples: |\n  \n'
        "    - I want [pens](product)\n    - buy some ink\n"
    )})
    with caplog.at_level(logging.WARNING):
        data = load_nlu_data(tmp_path / "nlu.yml")
    assert sorted(m.text for m in data.training_examples) == ["I want pens", "buy some ink"]
    assert any("nlu.yml:5" in r.getMessage() and "only spaces" in r.getMessage() for r in caplog.records)


def test_other_yaml_errors_still_fail_with_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path, {"nlu.yml": 'nlu:\n- intent: buy\n  examples: [unclosed\n'})
    with pytest.raises(ConfigError) as e:
        load_nlu_data(tmp_path / "nlu.yml")
    assert "nlu.yml:" in str(e.value)


RETRIEVAL = {
    "config.yml": CONFIG,
    "domain.yml": (
        'version: "3.1"\nintents:\n  - faq\nresponses:\n'
        "  utter_faq/price:\n  - text: cheap\n  utter_faq/hours:\n  - text: nine to five\n"
    ),
    "data/nlu.yml": (
        'version: "3.1"\nnlu:\n- intent: faq/price\n  examples: |\n    - how much\n    - price?\n'
        "- intent: faq/hours\n  examples: |\n    - when open\n    - opening hours\n"
    ),
    "data/rules.yml": 'version: "3.1"\nrules:\n- rule: faq\n  steps:\n  - intent: faq\n  - action: utter_faq\n',
}


def test_retrieval_intents_of_the_nlu_data_join_the_domain(tmp_path: Path) -> None:
    importer = ProjectImporter.from_paths(_write(tmp_path, RETRIEVAL))
    domain = importer.get_domain()
    assert domain.retrieval_intents == ["faq"]
    assert "utter_faq" in domain.action_names_or_texts
    steps = importer.get_story_steps(domain)  # the rule uses utter_faq: no error
    assert steps


def test_validate_accepts_retrieval_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, RETRIEVAL)
    code = run_validation(argparse.Namespace(root=str(tmp_path), config=None, domain=None, data=None,
                                             fail_on_warnings=False))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "utter_faq" not in out


def _multi_project(root: Path) -> Path:
    return _write(root, {
        "config.yml": CONFIG + "importers:\n- name: MultiProjectImporter\nimports:\n- ./Greet\n- ./Shop\n",
        "domain.yml": 'version: "3.1"\nresponses:\n  utter_greet:\n  - text: root hello\n',
        "data/rules.yml": 'version: "3.1"\nrules:\n- rule: hi\n  steps:\n  - intent: greet\n  - action: utter_greet\n',
        "Greet/domain.yml": 'version: "3.1"\nintents:\n  - greet\nresponses:\n  utter_greet:\n  - text: sub hello\n',
        "Greet/data/nlu.yml": 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello\n',
        "Shop/domain.yml": 'version: "3.1"\nintents:\n  - buy\nactions:\n  - action_buy\n',
        "Shop/data/nlu.yml": 'version: "3.1"\nnlu:\n- intent: buy\n  examples: |\n    - buy\n    - order\n',
        "Shop/tests/test_stories.yml": 'version: "3.1"\nstories:\n- story: t\n  steps:\n  - intent: buy\n',
    })


def test_multi_project_importer_merges_sub_projects(tmp_path: Path) -> None:
    importer = ProjectImporter.from_paths(_multi_project(tmp_path))
    domain = importer.get_domain()
    assert {"greet", "buy"} <= set(domain.intents)
    assert "action_buy" in domain.action_names_or_texts
    assert domain.responses["utter_greet"][0]["text"] == "root hello"  # the root's definition wins
    texts = sorted(m.text for m in importer.get_nlu_data().training_examples)
    assert texts == ["buy", "hello", "hi", "order"]
    assert not any("test_stories" in str(f) for f in importer.story_files)


def test_unknown_importer_is_named(tmp_path: Path) -> None:
    _write(tmp_path, {"config.yml": CONFIG + "importers:\n- name: my.CustomImporter\n",
                      "domain.yml": "intents:\n  - greet\n"})
    with pytest.raises(ConfigError) as e:
        ProjectImporter.from_paths(tmp_path)
    assert "my.CustomImporter" in str(e.value) and "MultiProjectImporter" in str(e.value)


STRICT = {
    "config.yml": CONFIG,
    "domain.yml": (
        'version: "3.1"\nintents:\n  - greet\nresponses:\n  utter_greet:\n  - text: hello\n'
        "slots:\n  seen:\n    type: bool\n    mappings:\n    - type: from_intent\n      intent: XX\n      value: true\n"
    ),
    "data/nlu.yml": 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello\n',
    "data/rules.yml": 'version: "3.1"\nrules:\n- rule: hi\n  steps:\n  - intent: greet\n  - action: utter_greet\n',
}


@pytest.mark.parametrize("strict", [False, True])
def test_validate_fail_on_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str], strict: bool) -> None:
    _write(tmp_path, STRICT)
    args = argparse.Namespace(root=str(tmp_path), config=None, domain=None, data=None, fail_on_warnings=strict)
    code = run_validation(args)
    out = capsys.readouterr().out
    assert "domain.yml:11" in out and "'XX'" in out  # the loader's warning, with file:line
    assert code == (1 if strict else 0)


def test_validate_fail_on_warnings_passes_a_clean_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = dict(STRICT, **{"domain.yml": 'version: "3.1"\nintents:\n  - greet\nresponses:\n  utter_greet:\n  - text: hello\n'})
    _write(tmp_path, clean)
    args = argparse.Namespace(root=str(tmp_path), config=None, domain=None, data=None, fail_on_warnings=True)
    assert run_validation(args) == 0, capsys.readouterr().out


def test_data_version_3_0_reads_without_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from bot.shared.training_data.stories import load_story_steps

    _write(tmp_path, {"stories.yml": 'version: "3.0"\nstories:\n- story: s\n  steps:\n  - intent: greet\n'
                                     "  - action: utter_greet\n",
                      "old.yml": 'version: "2.0"\nstories:\n- story: t\n  steps:\n  - intent: greet\n'})
    with caplog.at_level(logging.WARNING):
        assert load_story_steps([tmp_path / "stories.yml"])
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        load_story_steps([tmp_path / "old.yml"])
    assert any('"2.0"' in r.getMessage() for r in caplog.records)
