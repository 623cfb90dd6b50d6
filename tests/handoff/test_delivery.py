"""Agent replies, notices and the CSAT prompt go through the output registry; what a channel allows is read
from its declared capabilities (send window, templates), never from its name."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.shared.message import CollectingOutputChannel
from tests.handoff.helpers import ChannelProvider, outputs

TEMPLATE = {"template_id": "TPL-1", "data": {"first": "{agent} replied", "keyword1": "{text}"}}


class WindowedOutput(CollectingOutputChannel):
    """An output whose channel restricts sends per recipient and can send template messages."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.templates: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def allowed_send_path(self, recipient_id: str) -> str:
        return self.path

    async def send_template(self, recipient_id: str, template_id: str, data: dict[str, Any],
                            url: str | None = None) -> dict[str, Any]:
        self.templates.append((recipient_id, template_id, data, url))
        return {"errcode": 0}


async def _claimed(config: Any, registry: Any, channel: str = "shop") -> tuple[Any, dict[str, Any], Any]:
    """A service with one handoff from ``channel`` claimed by alice."""
    from bot.handoff import Escalation, HandoffService
    from bot.shared.events import UserUttered
    from bot.shared.tracker import DialogueStateTracker

    service = HandoffService(config, outputs=registry)
    await service.start()
    tracker = DialogueStateTracker("s1", [])
    tracker.update(UserUttered("a human please", {"name": "request_human", "confidence": 1.0}, [],
                               {"language": "en"}, input_channel=channel))
    h = await service.escalate(tracker, Escalation("request_human"), None, None)
    await service.claim(h["id"], "alice")
    return service, h, service.config.agent("alice")


def test_delivery_reply_outside_window_goes_as_template_when_channel_declares_templates(config_factory: Any) -> None:
    async def scenario() -> None:
        output = WindowedOutput("template")
        registry = outputs(ChannelProvider("shop", output, send_window=True, templates=True))
        service, h, alice = await _claimed(config_factory(auto_assign=False, wechat_template=TEMPLATE), registry)
        row = await service.agent_reply(h["id"], alice, text="Your refund is done.", client_id="r-1")
        assert row["delivery"] == "template"
        assert output.templates == [("s1", "TPL-1", {"first": "Alice replied", "keyword1": "Your refund is done."},
                                     None)]
        assert "Your refund is done." not in [m.get("text") for m in output.messages]
        await service.close()

    asyncio.run(scenario())


def test_delivery_reply_with_no_send_path_is_refused_and_nothing_sent(config_factory: Any) -> None:
    from bot.handoff import HandoffError

    async def scenario() -> None:
        output = WindowedOutput("none")
        registry = outputs(ChannelProvider("shop", output, send_window=True, templates=True))
        service, h, alice = await _claimed(config_factory(auto_assign=False, wechat_template=TEMPLATE), registry)
        pushed = len(output.messages)  # the claim notice went out through the registry
        assert pushed == 1 and "has joined" in output.messages[0]["text"]
        with pytest.raises(HandoffError) as refused:
            await service.agent_reply(h["id"], alice, text="Are you there?", client_id="n-1")
        assert refused.value.status == 409 and "allowed now: none" in refused.value.message
        assert len(output.messages) == pushed and output.templates == []
        assert [m for m in await service.store.messages(h["id"]) if m["sender"] == "agent"] == []
        await service.close()

    asyncio.run(scenario())


def test_delivery_template_path_without_template_capability_is_refused(config_factory: Any) -> None:
    from bot.handoff import HandoffError

    async def scenario() -> None:
        output = WindowedOutput("template")
        registry = outputs(ChannelProvider("shop", output, send_window=True, templates=False))
        service, h, alice = await _claimed(config_factory(auto_assign=False, wechat_template=TEMPLATE), registry)
        with pytest.raises(HandoffError) as refused:
            await service.agent_reply(h["id"], alice, text="Hello", client_id="t-1")
        assert refused.value.status == 409 and output.templates == []
        await service.close()

    asyncio.run(scenario())


def test_delivery_channel_without_send_window_is_not_asked_for_a_path(config_factory: Any) -> None:
    async def scenario() -> None:
        output = WindowedOutput("none")  # would refuse, but the channel declares no send window
        registry = outputs(ChannelProvider("shop", output))
        service, h, alice = await _claimed(config_factory(auto_assign=False), registry)
        row = await service.agent_reply(h["id"], alice, text="On its way.", client_id="d-1")
        assert row["delivery"] == "delivered" and output.messages[-1]["text"] == "On its way."
        await service.close()

    asyncio.run(scenario())


def test_delivery_csat_prompt_after_resolve_goes_through_the_registry(config_factory: Any) -> None:
    async def scenario() -> None:
        output = WindowedOutput("customer_service")
        registry = outputs(ChannelProvider("shop", output, send_window=True, templates=True))
        service, h, alice = await _claimed(config_factory(auto_assign=False), registry)
        resolved = await service.resolve(h["id"], alice)
        assert resolved["status"] == "resolved" and resolved["csat_pending"]
        custom = output.messages[-1]["custom"]
        assert custom["type"] == "csat" and custom["scale"] == 5 and custom["handoff_id"] == h["id"]
        await service.close()

    asyncio.run(scenario())


def test_delivery_unregistered_channel_is_recorded_only(config_factory: Any) -> None:
    async def scenario() -> None:
        output = WindowedOutput("customer_service")
        registry = outputs(ChannelProvider("other", output))
        service, h, alice = await _claimed(config_factory(auto_assign=False), registry)
        row = await service.agent_reply(h["id"], alice, text="Hi", client_id="u-1")
        assert row["delivery"] == "recorded" and output.messages == []
        await service.close()

    asyncio.run(scenario())


def test_handoff_hook_satisfies_processor_hook(config_factory: Any) -> None:
    from bot.dialogue.hooks import ProcessorHook
    from bot.handoff import HandoffHook, HandoffService

    assert isinstance(HandoffHook(HandoffService(config_factory())), ProcessorHook)
