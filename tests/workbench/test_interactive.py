"""`python -m bot interactive` driven through stdin: confirm, correct an intent, correct an action, save."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.shared.yaml_io import read_yaml_file, to_plain

REPO = Path(__file__).resolve().parents[2]


def test_interactive_session_through_stdin_saves_corrections(shop: Path, shop_model: Path) -> None:
    lines = [
        "where is my order", "", "", "",  # confirm the intent and both actions (reply, then listen)
        "do you sell gift cards", "return_request", "", "",  # intent corrected by name
        "hello there friend", "greet", "utter_goodbye", "action_listen",  # action corrected
        "/stop", "y",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "bot", "interactive", "--model", str(shop_model), "--root", str(shop),
                             "--endpoints", str(shop / "none.yml"), "--quiet"],
                            input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, cwd=shop,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "NLU: order_status" in out and "Next action: utter_order_status" in out
    assert "客服/Bot: Your order is on its way." in out
    assert "客服/Bot: Bye!" in out  # the corrected action is the one that ran
    nlu = {i["intent"]: i["examples"] for i in to_plain(read_yaml_file(shop / "data" / "nlu.yml"))["nlu"]}
    assert "- do you sell gift cards\n" in nlu["return_request"]
    assert "- hello there friend\n" in nlu["greet"] and "- where is my order\n" in nlu["order_status"]
    stories = to_plain(read_yaml_file(shop / "data" / "stories.yml"))["stories"]
    assert stories[-1]["steps"] == [
        {"intent": "order_status"}, {"action": "utter_order_status"},
        {"intent": "return_request"}, {"action": "utter_return"},
        {"intent": "greet"}, {"action": "utter_goodbye"},
    ]
    diff = subprocess.run(["git", "diff", "--numstat"], cwd=shop, capture_output=True, text=True).stdout
    assert diff.split() == ["2", "0", "data/nlu.yml"], diff  # "where is my order" was an example already
    assert "NLU: data/nlu.yml" in out and "Story: data/stories.yml" in out


@pytest.mark.slow  # four CLI processes (~30 s on 2 shared cores)
def test_models_cli_trains_behind_the_gate_activates_and_lists(shop: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "models", *args, "--root", str(shop)],
                              capture_output=True, text=True, env=env, cwd=shop, timeout=300)

    trained = cli("train", "--activate")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "gate passed" in trained.stdout and "Activated" in trained.stdout  # the first model: nothing to compare
    listed = cli("list")
    (line,) = listed.stdout.splitlines()
    assert line.startswith("* ") and "gate passed" in line
    assert cli("rollback").returncode == 1  # nothing before it
