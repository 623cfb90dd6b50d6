"""Templated NLG: Rasa's variation choice and placeholder filling."""
from __future__ import annotations

import random
from typing import Any

import pytest

from bot.shared.nlg import TemplatedNaturalLanguageGenerator, interpolate, interpolate_text


class FakeSlot:
    def __init__(self, value: Any) -> None:
        self.value = value


class FakeTracker:
    """Just what the NLG reads: ``.slots`` name -> Slot."""

    def __init__(self, **slots: Any) -> None:
        self.slots = {k: FakeSlot(v) for k, v in slots.items()}


RESPONSES = {
    "utter_greet": [{"text": "Hello {name}!"}],
    "utter_withdraw": [
        {"text": "plain"},
        {"text": "vip", "condition": [{"type": "slot", "name": "vip", "value": True}]},
        {
            "text": "vip primary",
            "condition": [
                {"type": "slot", "name": "vip", "value": True},
                {"type": "slot", "name": "account", "value": "Primary"},
            ],
        },
    ],
    "utter_channel": [
        {"text": "generic"},
        {"text": "web only", "channel": "socketio"},
        {"text": "wechat vip", "channel": "wechat", "condition": [{"type": "slot", "name": "vip", "value": True}]},
    ],
    "utter_rich": [
        {
            "text": "Order {order_id}",
            "buttons": [{"title": "Track {order_id}", "payload": '/track{{"order_id": "{order_id}"}}'}],
            "custom": {"card": {"id": "{order_id}", "items": ["{order_id}", 3]}},
            "image": "https://x/{order_id}.png",
            "metadata": {"keep": "{order_id}"},
        }
    ],
    "utter_only_conditional": [
        {"text": "x", "condition": [{"type": "slot", "name": "vip", "value": True}]},
    ],
}


@pytest.fixture
def nlg() -> TemplatedNaturalLanguageGenerator:
    return TemplatedNaturalLanguageGenerator(RESPONSES, seed=1)


def test_nlg_fills_slot_placeholder(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_greet", FakeTracker(name="Ann"), "rest") == {"text": "Hello Ann!"}


def test_nlg_unset_slot_renders_none(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_greet", FakeTracker(name=None), None)["text"] == "Hello None!"


def test_nlg_unknown_placeholder_left_alone(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_greet", FakeTracker(), None)["text"] == "Hello {name}!"


def test_nlg_kwargs_fill_placeholders(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_greet", FakeTracker(name="Ann"), None, name="Bob")["text"] == "Hello Bob!"


def test_nlg_unknown_response_is_none(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_nope", FakeTracker(), None) is None


def test_nlg_conditional_variations_win(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_withdraw", FakeTracker(vip=False), None)["text"] == "plain"
    texts = {nlg.generate("utter_withdraw", FakeTracker(vip=True, account="other"), None)["text"] for _ in range(20)}
    assert texts == {"vip"}
    texts = {nlg.generate("utter_withdraw", FakeTracker(vip=True, account="primary"), None)["text"] for _ in range(40)}
    assert texts == {"vip", "vip primary"}  # both match; case-insensitive string compare


def test_nlg_channel_variations(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_channel", FakeTracker(), "socketio")["text"] == "web only"
    assert nlg.generate("utter_channel", FakeTracker(), "rest")["text"] == "generic"
    assert nlg.generate("utter_channel", FakeTracker(vip=True), "wechat")["text"] == "wechat vip"
    # a channel-specific plain variation beats a generic conditional one (Rasa's order)
    assert nlg.generate("utter_channel", FakeTracker(vip=False), "wechat")["text"] == "generic"


def test_nlg_channel_from_output_channel_object(nlg: TemplatedNaturalLanguageGenerator) -> None:
    class Channel:
        @classmethod
        def name(cls) -> str:
            return "socketio"

    assert nlg.generate("utter_channel", FakeTracker(), Channel())["text"] == "web only"


def test_nlg_no_matching_variation_is_none(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate("utter_only_conditional", FakeTracker(vip=False), None) is None


def test_nlg_interpolates_buttons_custom_image(nlg: TemplatedNaturalLanguageGenerator) -> None:
    out = nlg.generate("utter_rich", FakeTracker(order_id="E1"), None)
    assert out["text"] == "Order E1"
    assert out["buttons"] == [{"title": "Track E1", "payload": '/track{"order_id": "E1"}'}]
    assert out["custom"] == {"card": {"id": "E1", "items": ["E1", 3]}}
    assert out["image"] == "https://x/E1.png"
    assert out["metadata"] == {"keep": "{order_id}"}  # not an interpolated key
    assert RESPONSES["utter_rich"][0]["text"] == "Order {order_id}"  # domain not mutated


def test_nlg_seeded_choice_is_reproducible() -> None:
    responses = {"utter_x": [{"text": str(i)} for i in range(10)]}
    a = TemplatedNaturalLanguageGenerator(responses, seed=7)
    b = TemplatedNaturalLanguageGenerator(responses, rng=random.Random(7))
    seq_a = [a.generate("utter_x", None, None)["text"] for _ in range(10)]
    seq_b = [b.generate("utter_x", None, None)["text"] for _ in range(10)]
    assert seq_a == seq_b and len(set(seq_a)) > 1


def test_nlg_generate_from_slots(nlg: TemplatedNaturalLanguageGenerator) -> None:
    assert nlg.generate_from_slots("utter_greet", {"name": "Z"})["text"] == "Hello Z!"


@pytest.mark.parametrize(
    "template, expected",
    [
        ("{a} and {b}", "1 and None"),
        ("{{a}}", "{a}"),
        ('json {"k": 1}', 'json {"k": 1}'),
        ("lone } brace {a}", "lone } brace 1"),
        ("lone { brace {a}", "lone { brace 1"),
        ("{a:>5}", "{a:>5}"),
        ("no braces", "no braces"),
        ("{a.b}", "{a.b}"),
    ],
)
def test_interpolate_text_never_crashes(template: str, expected: str) -> None:
    assert interpolate_text(template, {"a": 1, "b": None}) == expected


def test_interpolate_recurses_and_keeps_non_strings() -> None:
    out = interpolate({"x": ["{a}", {"y": "{a}!"}], "n": 5, "t": True}, {"a": "v"})
    assert out == {"x": ["v", {"y": "v!"}], "n": 5, "t": True}
