"""Bot messages (Rasa REST dicts) to what a WeChat chat can show.

WeChat has no buttons in a chat: payload buttons become a numbered list (the shopper
answers with the number, which the channel maps back to the payload), URL buttons
become ``<a href>`` links. Product cards (``elements`` or a ``custom`` product card)
become 图文 (news) messages. Consecutive texts merge, because a passive reply carries
one message only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from connectors.wechat.client import image_body, news_body, text_body
from connectors.wechat.messages import Article, render_image_reply, render_news_reply, render_text_reply

__all__ = ["Outgoing", "Rendered", "render_bot_messages", "TEXTS"]

TEXTS = {
    "zh": {
        "choose": "请回复数字选择：",
        "image": "查看图片",
        "unsupported": "抱歉，我暂时只能看懂文字消息，请用文字描述您的问题。",
        "voice_unrecognised": "抱歉，没有听清您的语音，请再说一次或发送文字。",
        "location": "已收到您的位置，谢谢！如需帮助，请用文字告诉我。",
        "link": "已收到您分享的链接，谢谢！请用文字告诉我需要什么帮助。",
        "welcome": "您好，欢迎关注！有什么可以帮您？",
        "busy": "抱歉，系统繁忙，请稍后再试。",
    },
    "en": {
        "choose": "Reply with a number to choose:",
        "image": "View image",
        "unsupported": "Sorry, I can only read text messages for now. Please describe your question in words.",
        "voice_unrecognised": "Sorry, I couldn't catch your voice message. Please try again or type it.",
        "location": "Thanks, I got your location. Tell me in words how I can help.",
        "link": "Thanks for the link! Tell me in words what you need help with.",
        "welcome": "Hello and welcome! How can I help you?",
        "busy": "Sorry, the system is busy. Please try again later.",
    },
}


@dataclass(frozen=True)
class Outgoing:
    """One WeChat message: kind is ``text``, ``news``, ``image`` or ``raw`` (a 客服 body)."""

    kind: str
    text: str = ""
    articles: tuple[Article, ...] = ()
    media_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def passive(self) -> bool:
        return self.kind in ("text", "news", "image")

    def xml(self, to_user: str, from_user: str) -> str:
        if self.kind == "news":
            return render_news_reply(to_user, from_user, list(self.articles))
        if self.kind == "image":
            return render_image_reply(to_user, from_user, self.media_id)
        return render_text_reply(to_user, from_user, self.text)

    def api_body(self, openid: str) -> dict[str, Any]:
        if self.kind == "news":
            return news_body(openid, list(self.articles))
        if self.kind == "image":
            return image_body(openid, self.media_id)
        if self.kind == "raw":
            return {**self.raw, "touser": openid}
        return text_body(openid, self.text)


@dataclass(frozen=True)
class Rendered:
    messages: tuple[Outgoing, ...]
    button_payloads: tuple[str, ...]  # index i answers number i+1; empty: no pending choice


def _link(url: str, title: str) -> str:
    return f'<a href="{url}">{title}</a>'


def _button_url(button: dict[str, Any]) -> str | None:
    url = button.get("url")
    if not url and button.get("type") in ("web_url", "url"):
        url = button.get("payload")
    return str(url) if url else None


def _article_from(card: dict[str, Any]) -> Article | None:
    title = card.get("title") or card.get("name")
    if not title:
        return None
    url = card.get("url") or (card.get("default_action") or {}).get("url") or ""
    if not url:
        for button in card.get("buttons") or []:
            url = _button_url(button) or ""
            if url:
                break
    return Article(
        title=str(title),
        description=str(card.get("subtitle") or card.get("description") or card.get("price") or ""),
        pic_url=str(card.get("image_url") or card.get("image") or card.get("pic_url") or ""),
        url=str(url),
    )


def render_bot_messages(messages: Iterable[dict[str, Any]], language: str = "zh") -> Rendered:
    texts = TEXTS.get(language, TEXTS["zh"])
    out: list[Outgoing] = []
    payloads: list[str] = []

    def add_text(text: str) -> None:
        if out and out[-1].kind == "text":
            out[-1] = Outgoing("text", out[-1].text + "\n\n" + text)
        else:
            out.append(Outgoing("text", text))

    for message in messages:
        body: list[str] = []
        if message.get("text"):
            body.append(str(message["text"]))
        buttons = message.get("buttons") or message.get("quick_replies") or []
        if buttons:
            numbered: list[str] = []
            links: list[str] = []
            payloads = []  # the latest list of choices wins
            for button in buttons:
                title = str(button.get("title", ""))
                url = _button_url(button)
                if url:
                    links.append(_link(url, title))
                else:
                    payloads.append(str(button.get("payload", title)))
                    numbered.append(f"{len(payloads)}. {title}")
            if numbered:
                body.append(texts["choose"] + "\n" + "\n".join(numbered))
            body.extend(links)
        if body:
            add_text("\n".join(body))
        image = message.get("image")
        if image:
            image = str(image)
            if image.startswith("media_id:"):
                out.append(Outgoing("image", media_id=image.split(":", 1)[1]))
            else:
                add_text(_link(image, texts["image"]))
        for element in message.get("elements") or []:
            article = _article_from(element) if isinstance(element, dict) else None
            if article:
                out.append(Outgoing("news", articles=(article,)))
        custom = message.get("custom")
        if isinstance(custom, dict):
            if isinstance(custom.get("wechat"), dict) and custom["wechat"].get("msgtype"):
                out.append(Outgoing("raw", raw=dict(custom["wechat"])))
            else:
                cards = custom.get("products") or custom.get("elements") or ([custom] if custom.get("title") else [])
                articles = [a for a in (_article_from(c) for c in cards if isinstance(c, dict)) if a]
                out.extend(Outgoing("news", articles=(a,)) for a in articles)
                if not articles and custom.get("text"):
                    add_text(str(custom["text"]))
        attachment = message.get("attachment")
        if attachment:
            add_text(attachment if isinstance(attachment, str) else json.dumps(attachment, ensure_ascii=False))
    return Rendered(tuple(out), tuple(payloads))
