from __future__ import annotations

import datetime as dt

import pytest

from bot.knowledge.loader import entries_to_csv, entries_to_yaml, load_entries, read_csv_entries, write_entries_file
from bot.shared.exceptions import TrainingDataError

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "knowledge"


def test_loader_reads_yaml_entries_with_languages_and_buttons():
    entries = {e.id: e for e in load_entries(DATA / "small").entries}
    assert set(entries) == {"shipping_time", "return_policy", "invoice", "size_guide", "payment_methods"}
    assert entries["shipping_time"].questions["zh"][0] == "下单后多久发货？"
    assert entries["size_guide"].answers["zh"].buttons[0].payload == "/size_advice"
    assert entries["size_guide"].source.endswith("faq.yml") and entries["size_guide"].line is not None


def test_loader_reads_csv_rows_merged_per_entry():
    entries = {e.id: e for e in load_entries(DATA / "faq.csv").entries}
    gift = entries["gift_wrapping"]
    assert gift.questions["zh"] == ("可以礼品包装吗？", "能写贺卡吗")
    assert gift.answers["en"].links[0]["url"] == "https://shop.example/help"
    assert entries["presale"].valid_until == dt.date(2026, 12, 31)
    assert not entries["presale"].is_valid_on(dt.date(2027, 1, 1))


def test_loader_duplicate_id_names_both_places():
    with pytest.raises(TrainingDataError) as e:
        load_entries(DATA / "duplicate.yml")
    message = str(e.value)
    assert "Duplicate entry id 'a'" in message and "duplicate.yml:5" in message and "duplicate.yml:2" in message


def test_loader_lenient_mode_skips_bad_entry_and_keeps_the_rest():
    result = load_entries(DATA / "bad_answer.yml", strict=False)
    assert [e.id for e in result.entries] == ["ok_entry"]
    assert "bad_answer.yml:" in result.problems[0] and "broken" in result.problems[0]


def test_loader_strict_mode_error_names_file_and_line():
    with pytest.raises(TrainingDataError, match=r"bad_answer\.yml:\d+: Entry 'broken'"):
        load_entries(DATA / "bad_answer.yml")


def test_loader_csv_missing_column_is_reported(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question\nx,y\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="bad.csv:1: CSV header lacks"):
        read_csv_entries(bad)


def test_export_roundtrip_yaml_and_csv(tmp_path):
    entries = load_entries(DATA / "small").entries + load_entries(DATA / "faq.csv").entries
    write_entries_file(tmp_path / "out.yml", entries)
    write_entries_file(tmp_path / "out.csv", entries)
    again_yaml = load_entries(tmp_path / "out.yml").entries
    again_csv = load_entries(tmp_path / "out.csv").entries
    assert [e.as_dict() for e in again_yaml] == [e.as_dict() for e in entries]
    assert [e.as_dict() for e in again_csv] == [e.as_dict() for e in entries]
    assert "id,category,language" in entries_to_csv(entries) and "entries:" in entries_to_yaml(entries)
