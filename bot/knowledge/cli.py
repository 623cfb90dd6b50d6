"""``python -m bot kb build`` and ``python -m bot test kb`` handlers (wired by bot/cli.py)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_kb_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=".", help="project folder (default: .)")
    p.add_argument("--config", "-c", default=None, help="config.yml (default: <root>/config.yml)")
    p.add_argument("--out", default=None, help="folder for the built index (default: <root>/.kefu/knowledge)")


def add_kb_test_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=".", help="project folder (default: .)")
    p.add_argument("--config", "-c", default=None, help="config.yml (default: <root>/config.yml)")
    p.add_argument("--queries", required=True, help="YAML file: queries: [{topic: <entry id>, text: ...}]")
    p.add_argument("--out", default="results", help="folder for kb_report.json (default: results)")


def _project_config(root: Path, config: str | None):
    from bot.shared.config import load_config

    path = Path(config) if config else root / "config.yml"
    return load_config(path) if path.exists() else None


def run_kb_build(args: argparse.Namespace) -> int:
    from bot.knowledge.build import build_kb_into

    root = Path(args.root)
    out = Path(args.out) if args.out else root / ".kefu" / "knowledge"
    meta = build_kb_into(out, root, _project_config(root, args.config))
    if meta is None:
        print("No knowledge files found; nothing built.")
        return 1
    print(f"Knowledge index built in {out}: {meta['entries']} entries, {meta['phrasings']} phrasings, "
          f"{meta['index_kind']} index, embedder {meta['embedder']} ({meta['dimension']}-d).")
    return 0


def run_kb_test(args: argparse.Namespace) -> int:
    from bot.knowledge.build import load_kb
    from bot.knowledge.evaluate import evaluate, load_queries

    root = Path(args.root)
    holder = load_kb(None, root, _project_config(root, args.config))
    if holder is None:
        print("No knowledge files found under the project.")
        return 1
    report = evaluate(holder.current, load_queries(args.queries))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kb_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"recall@1 {report['recall@1']}  recall@3 {report['recall@3']}  MRR {report['mrr']}  "
          f"answer {report['answer_rate']} clarify {report['clarify_rate']} no_answer {report['no_answer_rate']}"
          f"  -> {out / 'kb_report.json'}")
    return 0
