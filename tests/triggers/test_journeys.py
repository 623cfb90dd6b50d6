"""triggers.yml loading: delays, filters, variants, and errors with file and line."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.shared.exceptions import ConfigError
from bot.triggers.journeys import (
    assign_variant,
    load_triggers,
    load_triggers_text,
    matches,
    parse_delay,
    parse_duration,
)

TZ = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("text", "seconds"), [("48h", 172800), ("7d", 604800), ("2s", 2), ("1d12h", 129600), ("30m", 1800)])
def test_parse_duration_units(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_nonsense():
    assert parse_duration("soon") is None and parse_duration("") is None and parse_duration(-1) is None


def test_delay_next_day_at_local_time():
    delay = parse_delay("next day at 10:00 local time")
    start = datetime(2026, 11, 20, 23, 30, tzinfo=TZ).timestamp()
    assert datetime.fromtimestamp(delay.due(start, TZ), TZ) == datetime(2026, 11, 21, 10, 0, tzinfo=TZ)


def test_delay_at_time_today_or_tomorrow():
    delay = parse_delay("at 10:00")
    early = datetime(2026, 11, 20, 8, 0, tzinfo=TZ).timestamp()
    late = datetime(2026, 11, 20, 11, 0, tzinfo=TZ).timestamp()
    assert datetime.fromtimestamp(delay.due(early, TZ), TZ).day == 20
    assert datetime.fromtimestamp(delay.due(late, TZ), TZ).day == 21


def test_filters_operators():
    assert matches({"total": {"gte": 100}, "sku": {"in": ["a", "b"]}}, {"total": 120, "sku": "a"})
    assert not matches({"total": {"gte": 100}}, {"total": 50})
    assert not matches({"vip": True}, {})
    assert matches({"coupon": {"exists": False}}, {})
    assert matches({"address.city": "上海"}, {"address": {"city": "上海"}})


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("journeys:\n  j:\n    entry: {event: cart_abandoned}\n    steps: [{delay: 1h, response: utter_x}]\n", 3, "unknown event"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    steps:\n      - delay: soonish\n        response: utter_x\n", 5, "not understood"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    steps:\n      - delay: 1h\n", 5, "exactly one of"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    colour: red\n    steps: [{delay: 1h, response: u}]\n", 4, "Unknown key 'colour'"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    reentry: sometimes\n    steps: [{delay: 1h, response: u}]\n", 4, "reentry"),
        ("settings:\n  timezone: Mars/Olympus\njourneys: {}\n", 2, "time zone"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    quiet_hours: nights\n    steps: [{delay: 1h, response: u}]\n",
         4, "quiet_hours must be true or false"),
        ("journeys:\n  j:\n    entry: {event: order_paid}\n    steps:\n      - delay: 1h\n        variants:\n"
         "          - {name: A, weight: 0, response: u}\n          - {name: B, stopped: true, response: v}\n", 6, "stopped"),
    ],
)
def test_load_triggers_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "triggers.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_triggers(path)
    assert info.value.filename == str(path)
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)


def test_variant_assignment_deterministic_and_weighted():
    config = load_triggers_text(
        "journeys:\n  j:\n    entry: {event: order_paid}\n    steps:\n      - name: s\n        delay: 1h\n        variants:\n"
        "          - {name: A, weight: 9, response: a}\n          - {name: B, weight: 1, response: b}\n")
    step = config.journeys[0].steps[0]
    picks = [assign_variant(step, "j", f"c{i}").name for i in range(2000)]
    assert picks == [assign_variant(step, "j", f"c{i}").name for i in range(2000)]
    assert 0.85 < picks.count("A") / len(picks) < 0.95


def test_stopped_variant_gets_no_new_assignments():
    config = load_triggers_text(
        "journeys:\n  j:\n    entry: {event: order_paid}\n    steps:\n      - name: s\n        delay: 1h\n        variants:\n"
        "          - {name: A, response: a}\n          - {name: B, response: b, stopped: true}\n")
    step = config.journeys[0].steps[0]
    assert {assign_variant(step, "j", f"c{i}").name for i in range(200)} == {"A"}


def test_demo_triggers_file_is_valid(repo_root):
    config = load_triggers(repo_root / "triggers.yml")
    names = {j.name for j in config.journeys}
    assert {"delivery_feedback", "abandoned_cart", "complementary_products", "repurchase_consumables",
            "loyalty_points", "birthday", "win_back"} <= names
