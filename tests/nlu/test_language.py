"""Language detection and the processor's `language` slot."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.agent import Agent
from bot.nlu.language import detect_language

TINYSHOP = Path(__file__).resolve().parents[1] / "data" / "nlu" / "tinyshop"


@pytest.mark.parametrize("text,lang", [
    ("我的order到哪了", "zh"),
    ("我的iPhone case还没发货", "zh"),
    ("order 12345 到了吗", "zh"),
    ("where is my order", "en"),
    ("Where is my 订单", "en"),
    ("SF快递", "zh"),
    ("ok", "en"),
])
def test_detect_language_mixed_messages(text, lang) -> None:
    assert detect_language(text) == lang


def test_detect_language_without_letters_uses_default() -> None:
    assert detect_language("12345 😀", default="en") == "en"
    assert detect_language("", default="zh") == "zh"
    assert detect_language("!!!", default="fr") == "zh"  # unsupported default falls back


@pytest.mark.asyncio
async def test_processor_sets_language_slot_from_parse(tinyshop_model: Path) -> None:
    agent = Agent(project_root=TINYSHOP)
    await agent.load_model(tinyshop_model)
    try:
        replies = await agent.handle_text("你好", "lang1")
        tracker = await agent.get_tracker("lang1")
        assert tracker.get_slot("language") == "zh"
        assert [r.get("text") for r in replies or []] == ["您好！"]
        replies = await agent.handle_text("hello", "lang1")
        tracker = await agent.get_tracker("lang1")
        assert tracker.get_slot("language") == "en"
        assert [r.get("text") for r in replies or []] == ["Hello!"]
        await agent.handle_text("我的order到哪了", "lang1")
        tracker = await agent.get_tracker("lang1")
        assert tracker.get_slot("language") == "zh"
        assert tracker.latest_message.parse_data["language"] == "zh"
        # A button press arrives as `/greet`: ASCII, but still the shopper who writes Chinese.
        replies = await agent.handle_text("/greet", "lang1")
        tracker = await agent.get_tracker("lang1")
        assert tracker.get_slot("language") == "zh"
        assert [r.get("text") for r in replies or []] == ["您好！"]
        # A conversation that starts with a payload has no language yet: detection decides.
        await agent.handle_text("/greet", "lang2")
        assert (await agent.get_tracker("lang2")).get_slot("language") == "en"
    finally:
        await agent.close()
