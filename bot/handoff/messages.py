"""What the bot tells the shopper around a handoff, in zh and en.

Override any text in config.yml: ``handoff: {messages: {queued: {zh: ..., en: ...}}}``.
"""
from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, dict[str, str]] = {
    "queued": {
        "zh": "正在为您转接人工客服，您前面还有 {ahead} 位顾客，预计等待约 {wait} 分钟。您可以继续留言，客服接入后会看到全部记录。",
        "en": "I'm connecting you to a human agent. There are {ahead} shoppers ahead of you; estimated wait about "
              "{wait} min. Keep writing: the agent will see everything.",
    },
    "assigned": {
        "zh": "客服 {agent} 已接入，正在查看您的对话记录，请稍候。",
        "en": "{agent} from our team has joined and is reading your conversation.",
    },
    "after_hours": {
        "zh": "现在是非工作时间（人工客服时间 {hours}）。请直接在这里留言，客服上班后会第一时间回复您。",
        "en": "Our agents are offline right now (service hours {hours}). Leave a message here and an agent "
              "will reply first thing.",
    },
    "resolved": {
        "zh": "本次人工服务已结束，请为我们的服务打分（1-5 星）。",
        "en": "Your chat with our agent has ended. How would you rate it (1-5 stars)?",
    },
    "csat_thanks": {"zh": "感谢您的评价！有其他问题随时问我。", "en": "Thanks for your rating! Ask me anything else any time."},
    "message_left": {
        "zh": "已收到您的留言，客服上班后（{hours}）会第一时间处理并回复您。",
        "en": "Got it: your message is saved and an agent will reply first thing when we open ({hours}).",
    },
    "undeliverable": {
        "zh": "无法送达：顾客最近 48 小时内没有发消息（或已达客服消息条数上限），微信只允许发送模板消息（当前可用方式：{path}）。",
        "en": "Cannot deliver: the shopper has not written in the last 48 hours (or the message limit is reached), "
              "so WeChat allows only a template message (allowed now: {path}). Fix: configure "
              "'handoff.wechat_template' in config.yml, or wait until the shopper writes again.",
    },
    "transferred": {"zh": "已为您转接给 {agent}。", "en": "You have been transferred to {agent}."},
}


def text(key: str, language: str, overrides: dict[str, dict[str, str]] | None = None, **values: Any) -> str:
    lang = "en" if str(language or "").startswith("en") else "zh"
    template = ((overrides or {}).get(key) or {}).get(lang) or DEFAULTS[key][lang]
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        return template
