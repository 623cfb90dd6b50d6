"""The opt-out chat hook, `triggers simulate` and the CLI functions."""
from __future__ import annotations

import argparse
import json

import pytest

from bot.shared.message import CollectingOutputChannel
from bot.triggers.cli import add_triggers_parser, run_triggers, simulate
from bot.triggers.hooks import OptOutHook
from bot.triggers.journeys import load_triggers_text
from tests.triggers.conftest import TEST_TRIGGERS, local_ts, make_engine


class FakeMessage:
    def __init__(self, text):
        self.text = text


class FakeTracker:
    def __init__(self, sender_id, text):
        self.sender_id = sender_id
        self.latest_message = FakeMessage(text)


@pytest.mark.asyncio
async def test_opt_out_hook_opts_out_and_answers(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    hook = OptOutHook(engine)
    channel = CollectingOutputChannel()
    assert await hook.after_user_message(object(), FakeTracker("c9", "别再发了"), channel) is True
    assert (await store.get_profile("c9"))["opted_out"] is True
    assert "不会再" in channel.messages[0]["text"]
    assert await hook.after_user_message(object(), FakeTracker("c8", "我的快递到哪了"), CollectingOutputChannel()) is False
    assert (await store.get_profile("c8"))["opted_out"] is False


@pytest.mark.asyncio
async def test_simulate_prints_sends_holds_and_skips():
    from bot.triggers.events import BehaviourEvent

    config = load_triggers_text(TEST_TRIGGERS)
    t = local_ts(2026, 11, 20, 23, 0)
    events = [
        BehaviourEvent("a", "order_delivered", "c1", t, {"order_id": "O1"}),
        BehaviourEvent("b", "cart_item_added", "c1", t + 60, {"product_name": "跑鞋"}),
    ]
    lines = await simulate(config, events, "c1", days=5)
    text = "\n".join(lines)
    assert "HOLD   delivered_survey/ask [default]: quiet_hours until 2026-11-21 09:00" in text
    assert "SEND   delivered_survey/ask" in text
    assert "SEND   abandoned_cart/reminder" in text  # 48 h later lands on 23:01 -> held to 09:00
    assert 'slots {"product": "跑鞋"}' in text
    sends = [line for line in lines if "SEND" in line]
    assert sends[0].startswith("2026-11-21 09:00") and sends[1].startswith("2026-11-23 09:00")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_triggers_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_list_and_simulate(tmp_path, capsys):
    path = tmp_path / "triggers.yml"
    path.write_text(TEST_TRIGGERS, encoding="utf-8")
    assert run_triggers(_parse(["triggers", "list", "--file", str(path), "--domain", ""])) == 0
    assert "abandoned_cart (marketing, re-entry after_exit): on cart_item_added" in capsys.readouterr().out
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"id": "1", "type": "cart_item_added", "customer_id": "c1", "timestamp": local_ts(2026, 11, 20, 12)},
        {"id": "2", "type": "order_paid", "customer_id": "c1", "timestamp": local_ts(2026, 11, 21, 12)},
        {"id": "3", "type": "order_paid", "customer_id": "other", "timestamp": local_ts(2026, 11, 21, 12)},
    ]), encoding="utf-8")
    assert run_triggers(_parse(["triggers", "simulate", "c1", "--file", str(path), "--events", str(events)])) == 0
    out = capsys.readouterr().out
    assert "EXIT   abandoned_cart: exit:order_paid" in out and "SEND" not in out


def test_cli_list_reports_bad_file(tmp_path, capsys):
    path = tmp_path / "triggers.yml"
    path.write_text("journeys:\n  j:\n    entry: {event: nope}\n    steps: []\n", encoding="utf-8")
    assert run_triggers(_parse(["triggers", "list", "--file", str(path)])) == 1
    assert f"{path}:3" in capsys.readouterr().out
