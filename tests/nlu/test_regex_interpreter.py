from __future__ import annotations

from bot.nlu.regex_interpreter import parse_intent_message


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
