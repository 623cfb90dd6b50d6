from __future__ import annotations

import argparse
import json


def test_cli_kb_test_writes_report_with_recall_and_misses(kb_dir, tmp_path, capsys):
    from bot.knowledge.cli import add_kb_test_arguments, run_kb_test

    queries = tmp_path / "q.yml"
    queries.write_text("queries:\n  - {topic: shipping_time, text: 啥时候发货}\n"
                       "  - {topic: invoice, text: 今天天气好吗}\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_kb_test_arguments(parser)
    args = parser.parse_args(["--root", str(kb_dir.parent), "--queries", str(queries), "--out", str(tmp_path / "out")])
    assert run_kb_test(args) == 0
    report = json.loads((tmp_path / "out" / "kb_report.json").read_text(encoding="utf-8"))
    assert report["queries"] == 2 and 0.0 <= report["recall@1"] <= 1.0
    assert set(report["per_topic"]) == {"shipping_time", "invoice"}
    assert report["by_language"]["zh"]["queries"] == 2
    assert any(m["text"] == "今天天气好吗" for m in report["misses"])


def test_cli_kb_build_writes_index(kb_dir, tmp_path):
    from bot.knowledge.cli import add_kb_build_arguments, run_kb_build

    parser = argparse.ArgumentParser()
    add_kb_build_arguments(parser)
    args = parser.parse_args(["--root", str(kb_dir.parent), "--out", str(tmp_path / "idx")])
    assert run_kb_build(args) == 0
    assert (tmp_path / "idx" / "index.faiss").exists() and (tmp_path / "idx" / "kb_metadata.json").exists()
