from __future__ import annotations

import re as _re
import signal as _signal

from hypothesis import given, settings, strategies as st

from bot.nlu.regex_interpreter import _split_intent_message, parse_intent_message


def test_parse_intent_message_plain_intent_confidence_one():
    result = parse_intent_message("/greet")
    assert result["intent"] == {"name": "greet", "confidence": 1.0}
    assert result["intent_ranking"] == [{"name": "greet", "confidence": 1.0}]
    assert result["entities"] == [] and result["text"] == "/greet"


def test_parse_intent_message_entities_from_json_with_offsets():
    text = '/inform{"order_id": "E20261101001", "color": ["红色", "blue"]}'
    result = parse_intent_message(text)
    assert result["intent"]["name"] == "inform"
    assert [(e["entity"], e["value"]) for e in result["entities"]] == [
        ("order_id", "E20261101001"), ("color", "红色"), ("color", "blue")]
    e = result["entities"][0]
    assert text[e["start"] : e["end"]].startswith("{") and text[e["start"] : e["end"]].endswith("}")


def test_parse_intent_message_confidence_suffix():
    assert parse_intent_message("/deny@0.42")["intent"] == {"name": "deny", "confidence": 0.42}
    both = parse_intent_message('/inform@0.9{"size": "42"}')
    assert both["intent"]["confidence"] == 0.9 and both["entities"][0]["value"] == "42"


def test_parse_intent_message_normal_text_is_none():
    assert parse_intent_message("hello /greet") is None
    assert parse_intent_message("我的订单") is None
    assert parse_intent_message("") is None
    assert parse_intent_message(None) is None
    assert parse_intent_message("/") is None


def test_parse_intent_message_unknown_domain_intent_is_none():
    assert parse_intent_message("/greet", domain_intents=["greet"]) is not None
    assert parse_intent_message("/hack", domain_intents=["greet"]) is None


def test_parse_intent_message_bad_json_keeps_intent_without_entities():
    result = parse_intent_message('/inform{"order_id": E1}')
    assert result["intent"]["name"] == "inform" and result["entities"] == []


# --- the parser is linear and reads exactly what Rasa's pattern reads --------------------

# Rasa's (and kefu's earlier) backtracking pattern, kept here as the reference reading.
_REFERENCE = _re.compile(
    r"^\s*/(?P<intent>[^{@\s][^{@]*)(?P<confidence>@[0-9.]+)?\s*(?P<entities>\{.*\})?(?P<rest>.*?)\s*$",
    _re.DOTALL,
)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='/{}@.0123 ab"\n:', max_size=30))
def test_split_intent_message_reads_like_rasas_pattern(text):
    expected = _REFERENCE.match(text)
    got = _split_intent_message(text)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (got.intent, got.confidence, got.entities, got.rest) == (
        expected.group("intent"), expected.group("confidence"), expected.group("entities"), expected.group("rest"))
    if got.entities is not None:
        assert (got.entities_start, got.entities_end) == (expected.start("entities"), expected.end("entities"))


def test_intent_message_parser_is_linear_on_adversarial_input():
    """``/a@`` + many spaces + ``x`` took quadratic time in the regex (1.8 s at 16 000 spaces)."""
    def too_slow(*_):
        raise AssertionError("parsing 2 MB of adversarial input did not finish in 20 s: not linear")

    previous = _signal.signal(_signal.SIGALRM, too_slow)
    _signal.alarm(20)
    try:
        for text in ("/a@" + " " * 2_000_000 + "x", "/a" + " " * 2_000_000 + "{" + " " * 1000 + "x",
                     "/a{" + "}" * 2_000_000):
            assert parse_intent_message(text) is not None
    finally:
        _signal.alarm(0)
        _signal.signal(_signal.SIGALRM, previous)
