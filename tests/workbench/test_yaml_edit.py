"""Annotations are additions only: every original byte stays, the new lines are exactly what was asked.

Checked on the demo shop's own files (two indentation styles, comments, a mixed-style
stories file that a full ruamel dump would reformat) and on the test projects' files.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import read_yaml, to_plain
from bot.workbench import yaml_edit

REPO = Path(__file__).resolve().parents[2]


def only_insertions(old: str, new: str) -> list[str]:
    """The inserted lines; fails when anything was changed or removed."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    added = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        assert tag in ("equal", "insert"), f"{tag} {a[i1:i2]} -> {b[j1:j2]}"
        if tag == "insert":
            added += b[j1:j2]
    return added


def _has_intents(path: Path) -> bool:
    data = to_plain(read_yaml(path.read_text(encoding="utf-8"), str(path)))
    return any(isinstance(i, dict) and "intent" in i for i in (data.get("nlu") or []))


# Files with only lookups/regexes (e.g. the generated shop_generated.yml) have no intent block to add to.
NLU_FILES = [p for p in sorted((REPO / "nlu_data" / "nlu").glob("*.yml")) if _has_intents(p)]


@pytest.mark.parametrize("path", NLU_FILES, ids=[p.name for p in NLU_FILES])
def test_example_added_to_each_demo_intent_block_is_the_only_new_line(path: Path) -> None:
    original = path.read_text(encoding="utf-8")
    data = to_plain(read_yaml(original, str(path)))
    intents = [i["intent"] for i in data.get("nlu") or [] if isinstance(i, dict) and "intent" in i]
    for intent in (intents[0], intents[-1]):
        new, edit = yaml_edit.add_nlu_example(path, original, intent, "满200减[30](amount): 真的吗 #1")
        added = only_insertions(original, new)
        assert len(added) == 1 and added[0].strip() == "- 满200减[30](amount): 真的吗 #1"
        assert new.splitlines()[edit.line - 1] == added[0].rstrip("\n")
        examples = {i["intent"]: i["examples"] for i in to_plain(read_yaml(new, str(path)))["nlu"] if "intent" in i}
        assert examples[intent].rstrip("\n").endswith("- 满200减[30](amount): 真的吗 #1")


def test_new_intent_item_appended_in_the_files_style() -> None:
    path = REPO / "tests" / "workbench" / "data" / "shop" / "data" / "nlu.yml"
    original = path.read_text(encoding="utf-8")
    new, _ = yaml_edit.add_nlu_example(path, original, "gift_card", "do you sell gift cards")
    assert only_insertions(original, new) == ["- intent: gift_card\n", "  examples: |\n",
                                               "    - do you sell gift cards\n"]


def test_domain_intent_keeps_the_comment_and_indentation() -> None:
    for path in (REPO / "domain.yml", REPO / "tests" / "workbench" / "data" / "shop" / "domain.yml"):
        original = path.read_text(encoding="utf-8")
        new, edit = yaml_edit.add_domain_intent(path, original, "gift_card")
        (added,) = only_insertions(original, new)
        assert added.strip() == "- gift_card"
        assert "gift_card" in to_plain(read_yaml(new, str(path)))["intents"]
        again, none = yaml_edit.add_domain_intent(path, new, "gift_card")
        assert again == new and none is None


@pytest.mark.parametrize("path", sorted((REPO / "knowledge_base").glob("*.yml")), ids=lambda p: p.name)
def test_faq_phrasing_added_to_a_demo_entry(path: Path) -> None:
    original = path.read_text(encoding="utf-8")
    entry = to_plain(read_yaml(original, str(path)))["entries"][0]
    language = next(iter(entry["questions"]))
    question = "- 这也算? yes: it is"  # a leading dash and ': ' need quoting
    new, _ = yaml_edit.add_faq_question(path, original, entry["id"], language, question)
    (added,) = only_insertions(original, new)
    assert to_plain(read_yaml(new, str(path)))["entries"][0]["questions"][language][-1] == question
    assert added.lstrip().startswith('- "')


@pytest.mark.parametrize("path", [REPO / "nlu_data" / "stories.yml", REPO / "tests" / "test_stories.yml"],
                         ids=lambda p: p.name)
def test_story_appended_to_a_mixed_style_file(path: Path) -> None:
    original = path.read_text(encoding="utf-8")
    steps = [{"user": "我的[订单](order)到哪了", "intent": "order_status"}, {"action": "utter_order_status"}]
    new, _ = yaml_edit.add_test_story(path, original, "workbench: order", steps)
    added = only_insertions(original, new)
    assert added[0].lstrip().startswith("- story: ")
    assert to_plain(read_yaml(new, str(path)))["stories"][-1] == {"story": "workbench: order", "steps": steps}


def test_refuses_what_it_cannot_add_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    with pytest.raises(ConfigError, match="one non-empty line"):
        yaml_edit.add_nlu_example(path, "nlu:\n- intent: a\n  examples: |\n    - x\n", "a", "two\nlines")
    kb = 'entries:\n  - id: e1\n    questions: {zh: [a, b]}\n'
    with pytest.raises(ConfigError, match="inline"):
        yaml_edit.add_faq_question(path, kb, "e1", "zh", "c")
    with pytest.raises(ConfigError, match="No FAQ entry 'nope'"):
        yaml_edit.add_faq_question(path, kb, "nope", "zh", "c")


def test_scalar_round_trips_tricky_text() -> None:
    from ruamel.yaml import YAML

    for text in ["plain text", "yes", "123", "- dash", "a: b", "# hash", "x #y", "'quoted'", "[list]", "null", "中文"]:
        assert YAML(typ="safe").load(f"k: {yaml_edit.scalar(text)}")["k"] == text
