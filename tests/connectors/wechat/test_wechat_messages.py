"""XML parsing safety and passive-reply rendering; bot messages to WeChat messages."""
from __future__ import annotations

import pytest

from connectors.wechat.messages import (
    Article,
    MalformedMessageError,
    parse_message,
    parse_xml,
    render_news_reply,
    render_text_reply,
)
from connectors.wechat.render import render_bot_messages


def test_parse_text_message_fields():
    fields = parse_xml(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[我的订单 <b>]]></Content><MsgId>1234567890123456</MsgId></xml>"
    )
    message = parse_message(fields)
    assert (message.from_user, message.msg_type, message.content) == ("oU1", "text", "我的订单 <b>")
    assert message.dedupe_key == "msg:1234567890123456"


def test_event_dedupe_key_uses_sender_and_time():
    message = parse_message({"ToUserName": "gh", "FromUserName": "oU", "CreateTime": "17", "MsgType": "event",
                             "Event": "subscribe"})
    assert message.dedupe_key == "evt:oU:17:subscribe"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<xml><ToUserName>unclosed</xml>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><xml><A>&lol;</A></xml>',
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><A>&e;</A></xml>',
        b"<html></html>",
    ],
)
def test_parse_xml_rejects_malformed_and_dtd(body):
    with pytest.raises(MalformedMessageError):
        parse_xml(body)


def test_parse_xml_rejects_oversized_body():
    with pytest.raises(MalformedMessageError, match="limit"):
        parse_xml(b"<xml><A>" + b"a" * 2000 + b"</A></xml>", max_bytes=1000)


def test_parse_message_requires_sender():
    with pytest.raises(MalformedMessageError, match="FromUserName"):
        parse_message({"ToUserName": "gh", "MsgType": "text"})


def test_text_reply_escapes_cdata_terminator():
    xml = render_text_reply("oU", "gh", "a]]>b", create_time=5)
    assert parse_xml(xml)["Content"] == "a]]>b"
    assert parse_xml(xml)["CreateTime"] == "5"


def test_news_reply_lists_articles():
    xml = render_news_reply("oU", "gh", [Article("鞋", "¥199", "http://p/1.png", "http://shop/1")])
    fields = parse_xml(xml)
    assert fields["ArticleCount"] == "1"
    assert fields["Articles"]["item"]["Title"] == "鞋" and fields["Articles"]["item"]["Url"] == "http://shop/1"


def test_buttons_become_numbered_text_and_links():
    rendered = render_bot_messages([
        {"text": "Pick a size", "buttons": [
            {"title": "42", "payload": '/inform{"size": "42"}'},
            {"title": "Size chart", "url": "https://shop/sizes"},
            {"title": "43", "payload": '/inform{"size": "43"}'},
        ]},
    ])
    assert len(rendered.messages) == 1
    text = rendered.messages[0].text
    assert "1. 42" in text and "2. 43" in text and '<a href="https://shop/sizes">Size chart</a>' in text
    assert rendered.button_payloads == ('/inform{"size": "42"}', '/inform{"size": "43"}')


def test_texts_merge_and_product_cards_become_news():
    rendered = render_bot_messages([
        {"text": "Hi"}, {"text": "Here is a shoe"},
        {"elements": [{"title": "Runner", "subtitle": "¥299", "image_url": "http://p/r.png",
                       "buttons": [{"title": "Buy", "type": "web_url", "url": "http://shop/r"}]}]},
        {"custom": {"products": [{"title": "Sock", "url": "http://shop/s", "image": "http://p/s.png"}]}},
    ], language="en")
    kinds = [m.kind for m in rendered.messages]
    assert kinds == ["text", "news", "news"]
    assert rendered.messages[0].text == "Hi\n\nHere is a shoe"
    assert rendered.messages[1].articles[0] == Article("Runner", "¥299", "http://p/r.png", "http://shop/r")
    assert rendered.messages[2].api_body("oU")["news"]["articles"][0]["picurl"] == "http://p/s.png"
