"""Issue #15 point 5 with a real agent: the message cap before NLU and heavy work kept
off the shoppers' pool (a knowledge reload in progress does not hold a reply)."""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from bot.agent import Agent, message_cap_from_config
from bot.dialogue.processor import DEFAULT_MAX_MESSAGE_CHARS, MESSAGE_TOO_LONG_METADATA
from bot.model.training import train
from bot.server.app import create_app
from bot.shared.events import BotUttered, UserUttered
from bot.shared.exceptions import ConfigError
from connectors.rest import RestInput

PROJECT = Path(__file__).resolve().parent / "data" / "projects" / "turnbot"
KB_SMALL = Path(__file__).resolve().parent / "data" / "knowledge" / "small"


@pytest.fixture(scope="module")
def kb_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """turnbot with a small FAQ knowledge base, trained once."""
    root = tmp_path_factory.mktemp("kbturn") / "turnbot"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", "models"))
    shutil.copytree(KB_SMALL, root / "knowledge_base")
    config = root / "config.yml"  # no embedding adapter: reloads embed, nothing more
    config.write_text(config.read_text(encoding="utf-8") + "knowledge:\n  adapter: false\n", encoding="utf-8")
    result = train(root=root, out=root / "models")
    assert result.model_path is not None
    return root


@pytest.mark.asyncio
async def test_over_long_message_is_answered_without_nlu_or_storing_its_text(kb_project):
    agent = Agent(project_root=kb_project, max_message_chars=50)
    await agent.load_model(kb_project / "models")
    try:
        text = "I want to return these shoes because " + "x" * 5000
        replies = await agent.handle_text(text, "long1")
        assert len(replies) == 1 and "too long" in replies[0]["text"] and "50" in replies[0]["text"]
        tracker = await agent.get_tracker("long1")
        assert not [e for e in tracker.events if isinstance(e, UserUttered)]
        assert "x" * 100 not in str([e.as_dict() for e in tracker.events])
        fact = [e for e in tracker.events if isinstance(e, BotUttered)][-1].metadata[MESSAGE_TOO_LONG_METADATA]
        assert fact == {"length": len(text), "limit": 50}
        # Chinese conversations are answered in Chinese; a message at the cap goes through.
        zh = await agent.handle_text("我要退货" * 20, "long2")
        assert "太长" in zh[0]["text"]
        ok = await agent.handle_text("/greet", "long1")
        assert ok and "too long" not in ok[0]["text"]
    finally:
        await agent.close()


@pytest.mark.asyncio
async def test_cap_applies_to_every_channel_through_the_server(kb_project):
    agent = Agent(project_root=kb_project, max_message_chars=50)
    await agent.load_model(kb_project / "models")
    try:
        app = create_app(agent, input_channels=[RestInput()], enable_api=False)
        _, resp = await app.asgi_client.post("/webhooks/rest/webhook",
                                             json={"sender": "s1", "message": "a" * 51})
        assert resp.status == 200 and "too long" in resp.json[0]["text"]
    finally:
        await agent.close()


def test_cap_is_read_from_config_yml(tmp_path):
    assert message_cap_from_config(tmp_path) == DEFAULT_MAX_MESSAGE_CHARS
    (tmp_path / "config.yml").write_text("language: en\nkefu:\n  max_message_chars: 300\n")
    assert message_cap_from_config(tmp_path) == 300
    (tmp_path / "config.yml").write_text("language: en\nkefu:\n  max_message_chars: lots\n")
    with pytest.raises(ConfigError, match=r"config.yml:3: kefu.max_message_chars"):
        message_cap_from_config(tmp_path)


def _big_faq(n: int) -> str:
    lines = []
    for i in range(n):
        lines += [f"- id: bulk_{i}", "  questions:", "    en:",
                  f"      - How do I look after product model K{i} in winter {i * 7}?",
                  f"      - Care instructions for item K{i} batch {i * 13}",
                  "  answers:", f"    en: Wash item K{i} by hand ({i})."]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_shopper_reply_does_not_wait_for_knowledge_reloads(kb_project, tmp_path):
    """The finding: two knowledge reloads held a shopper's reply from 0.16 s to 13.5 s.

    A slow but real reload: a FAQ file of fresh phrasings that must all be embedded.
    Two reloads are requested; a shopper's message must be answered while the
    first is still building.
    """
    root = tmp_path / "turnbot"
    shutil.copytree(kb_project, root)
    agent = Agent(project_root=root)
    await agent.load_model(root / "models")
    try:
        holder = agent.knowledge
        assert holder is not None
        (root / "knowledge_base" / "bulk.yml").write_text(_big_faq(400), encoding="utf-8")
        started = time.perf_counter()
        reloads = [asyncio.create_task(holder.reload()) for _ in range(2)]
        await asyncio.sleep(0.1)  # both reloads queued, the first one embedding 800 new phrasings
        assert not reloads[0].done(), "the reload was too quick to test isolation; grow the FAQ"
        replies = await asyncio.wait_for(agent.handle_text("/greet", "shopper"), timeout=30)
        answered = time.perf_counter() - started
        assert replies and not reloads[0].done(), "the reply waited for the reload"
        infos = await asyncio.gather(*reloads)
        finished = time.perf_counter() - started
        assert [i["entries"] for i in infos] == [405, 405]
        assert answered < finished
    finally:
        await agent.close()
