"""`python -m actions.shop seed|import` is the demo's command; `python -m bot shop` points at it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from actions.shop.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_shop_cli_seed_small_prints_the_counts(tmp_path: Path, capsys) -> None:
    assert main(["seed", "--small", "--seed", "3", "--url", f"sqlite:///{tmp_path / 'shop.db'}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Seeded ") and " customers, " in out and (tmp_path / "shop.db").is_file()


def test_shop_cli_import_of_a_bad_file_names_it_and_the_fix(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "export.txt"
    bad.write_text("nothing")
    assert main(["import", str(bad), "--url", f"sqlite:///{tmp_path / 'shop.db'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {bad}: ") and "Fix: see the import schema in docs/shop.md" in err


def test_shop_cli_runs_as_a_module_and_without_command_prints_usage(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "actions.shop"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "usage: python -m actions.shop {seed,import,nlu,compensate,points,order,stock}" in done.stdout


def test_bot_shop_names_the_new_command_without_importing_actions() -> None:
    code = ("import sys; from bot.cli import main; rc = main(['shop', 'seed', '--small']); "
            "print(rc, sorted(m for m in sys.modules if m == 'actions' or m.startswith('actions.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2 []", done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "`python -m bot shop` moved to the demo package: run `python -m actions.shop seed --small` "
        "from the project folder.")
