from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bot.shared.exceptions import TrainingDataError
from bot.shared.training_data.nlu import (
    TrainingDataWarning,
    load_nlu_data,
    load_nlu_yaml,
    parse_training_example,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "nlu"


def _load(text: str):
    return load_nlu_yaml(text, "t.yml")


def test_parse_training_example_plain_annotation_offsets_on_clean_text():
    m = parse_training_example("我的订单[E20261101001](order_id)到哪了", "order_status")
    assert m.text == "我的订单E20261101001到哪了"
    assert m.entities == [{"start": 4, "end": 16, "value": "E20261101001", "entity": "order_id"}]
    assert m.text[4:16] == "E20261101001"


def test_parse_training_example_legacy_value_and_json_with_role_group():
    m = parse_training_example(
        'fly from [Berlin]{"entity": "city", "role": "departure", "group": "1"} to [NYC](city:New York)'
    )
    assert m.text == "fly from Berlin to NYC"
    first, second = m.entities
    assert (first["start"], first["end"], first["role"], first["group"]) == (9, 15, "departure", "1")
    assert second == {"start": 19, "end": 22, "value": "New York", "entity": "city"}


def test_parse_training_example_list_of_dicts_gives_two_entities_same_span():
    m = parse_training_example('[red][{"entity": "color"}, {"entity": "tag", "value": "R"}] shoes')
    assert m.text == "red shoes"
    assert [(e["entity"], e["value"], e["start"], e["end"]) for e in m.entities] == [
        ("color", "red", 0, 3), ("tag", "R", 0, 3)]


def test_parse_training_example_malformed_json_names_file_and_line():
    with pytest.raises(TrainingDataError) as e:
        parse_training_example('[x]{"entity": city}', "i", "f.yml", 7)
    assert "f.yml:7" in str(e.value) and "Malformed" in str(e.value)


def test_parse_training_example_unclosed_annotation_is_error():
    with pytest.raises(TrainingDataError, match="does not match"):
        parse_training_example("go to [Berlin](city", "i", "f.yml", 3)


def test_load_nlu_data_reads_folder_and_skips_non_nlu_files(tmp_path):
    (tmp_path / "stories.yml").write_text("version: '3.1'\nstories: []\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not yaml", encoding="utf-8")
    (tmp_path / "nlu.yml").write_text((DATA / "nlu.yml").read_text(encoding="utf-8"), encoding="utf-8")
    data = load_nlu_data([tmp_path])
    assert {"greet", "order_status", "product_inquiry"} <= data.intents
    assert data.entities == {"order_id", "color", "product"}
    assert data.regex_features == [{"name": "order_id", "pattern": r"E\d{11}"}]
    assert data.lookup_tables[0]["name"] == "color" and "红色" in data.lookup_tables[0]["elements"]
    first = data.entity_examples[0]
    assert first.source.endswith("nlu.yml") and first.line == 23


def test_load_nlu_data_synonyms_from_items_and_annotations():
    data = load_nlu_data(DATA / "nlu.yml")
    assert data.entity_synonyms["跑鞋"] == "running shoes"
    assert data.entity_synonyms["running shoe"] == "running shoes"
    assert data.entity_synonyms["sneakers"] == "running shoes"  # from {"value": ...} annotation
    assert "蓝色" not in data.entity_synonyms  # value equal to text adds nothing


def test_load_nlu_yaml_examples_as_list_with_metadata_and_lookup_file(tmp_path):
    (tmp_path / "colors.txt").write_text("绿色\ngreen\n", encoding="utf-8")
    path = tmp_path / "nlu.yml"
    path.write_text(
        "nlu:\n"
        "- intent: greet\n"
        "  metadata: {sentiment: neutral}\n"
        "  examples:\n"
        "  - text: hi\n"
        "    metadata: {lang: en}\n"
        "  - text: 你好\n"
        "- lookup: color\n"
        "  examples: colors.txt\n",
        encoding="utf-8",
    )
    data = load_nlu_data(path)
    assert [m.text for m in data.training_examples] == ["hi", "你好"]
    assert data.training_examples[0].get("metadata") == {"intent": {"sentiment": "neutral"}, "example": {"lang": "en"}}
    assert data.lookup_tables == [{"name": "color", "elements": ["绿色", "green"]}]


def test_load_nlu_yaml_non_string_example_is_error_with_line():
    with pytest.raises(TrainingDataError) as e:
        _load("nlu:\n- intent: greet\n  examples:\n  - text: 12\n  - 13\n")
    assert "t.yml:4" in str(e.value) and "not a string" in str(e.value)


def test_load_nlu_yaml_warns_single_example_and_duplicate_across_intents():
    with pytest.warns(TrainingDataWarning) as record:
        _load("nlu:\n- intent: a\n  examples: |\n    - hello\n    - yo\n- intent: b\n  examples: |\n    - Hello\n")
    messages = [str(r.message) for r in record]
    assert any("'b' has only 1" in m and "t.yml:8" in m for m in messages)
    assert any("'a'" in m and "'b'" in m and "Hello" in m for m in messages)


def test_load_nlu_yaml_retrieval_intent_splits_response_key():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDataWarning)
        data = _load("nlu:\n- intent: faq/ask_price\n  examples: |\n    - how much\n    - price?\n")
    m = data.training_examples[0]
    assert m.intent == "faq" and m.intent_response_key == "faq/ask_price"
    assert data.retrieval_intents == {"faq"}


def test_training_data_persist_yaml_round_trip_keeps_content(tmp_path):
    data = load_nlu_data(DATA / "nlu.yml")
    out = tmp_path / "out.yml"
    data.persist_yaml(out)
    again = load_nlu_data(out)
    assert again.fingerprint() == data.fingerprint()
    assert again.training_examples == data.training_examples


def test_training_data_merge_and_fingerprint_change():
    a = _load("nlu:\n- intent: a\n  examples: |\n    - x one\n    - x two\n")
    b = _load("nlu:\n- intent: b\n  examples: |\n    - y one\n    - y two\n")
    merged = a.merge(b)
    assert merged.intents == {"a", "b"} and len(a.training_examples) == 2
    assert merged.fingerprint() != a.fingerprint()
    assert a.fingerprint() == _load("nlu:\n- intent: a\n  examples: |\n    - x one\n    - x two\n").fingerprint()
