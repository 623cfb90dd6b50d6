"""WeChat Official Account (公众号) connector: ``wechat`` in credentials.yml."""
from __future__ import annotations

from connectors.wechat.channel import WeChatConfig, WeChatInput, WeChatOutput
from connectors.wechat.policy import SendPath, SendPolicy

__all__ = ["SendPath", "SendPolicy", "WeChatConfig", "WeChatInput", "WeChatOutput"]
