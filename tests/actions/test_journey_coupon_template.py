"""A coupon journey step on WeChat carries the coupon on both paths (#20): 客服 inside the 48-hour window,
the step's template outside it.

The step's action runs as the action server runs it (rasa_sdk's executor, the demo domain) over a
private copy of a seeded shop; the engine's ChannelSender delivers through the real WeChat channel
to the fake WeChat API on 127.0.0.1. The coupon is issued while the step renders, before the channel
picks its path, and the action names the template fields (code, value, expiry, terms).
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from rasa_sdk.executor import ActionExecutor
from ruamel.yaml import YAML
from sqlalchemy import create_engine, text

from actions import shop_data
from actions.shop import configure_shop, coupon_template_views
from actions.shop.config import shop_config
from actions.shop.sql import SqlShopStore
from bot.shared.outputs import OutputRegistry
from bot.triggers import default_sender
from bot.triggers.journeys import Message
from bot.triggers.senders import Outgoing
from connectors.wechat.channel import WeChatInput
from tests.actions.test_product_and_loyalty_actions import payload
from tests.connectors.wechat.conftest import APP_ID, APP_SECRET, TOKEN, fake_api  # noqa: F401 - fixture
from tests.shop.conftest import NOW, seeded_db  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parents[2]
OPENID = "demo-wechat-openid"  # a demo customer's WeChat identity


@pytest.fixture()
def store(seeded_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlShopStore]:  # noqa: F811
    copy = tmp_path / "shop.db"
    shutil.copy(seeded_db, copy)
    s = SqlShopStore(f"sqlite:///{copy}")
    s.sync_coupon_templates(coupon_template_views())
    configure_shop(s)
    monkeypatch.setattr(shop_data, "now", lambda: NOW)
    yield s
    configure_shop(None)
    asyncio.run(s.close())


class ActionServerAgent:
    """Runs a step's custom action through rasa_sdk's executor; its messages go to the output channel."""

    def __init__(self) -> None:
        self.executor = ActionExecutor()
        self.executor.register_package("actions")
        self.domain = YAML(typ="safe").load((ROOT / "domain.yml").read_text(encoding="utf-8"))
        self.runs = 0

    def is_ready(self) -> bool:
        return True

    async def append_events(self, sender_id: str, events: list[Any]) -> None:
        pass

    async def execute_action(self, sender_id: str, name: str, output_channel: Any) -> None:
        tracker = payload("", intent="", sender=sender_id, channel="wechat")
        result = await self.executor.run({"next_action": name, "sender_id": sender_id, "tracker": tracker,
                                          "domain": self.domain, "version": "3.6.0"})
        self.runs += 1
        for message in result.responses:
            await output_channel.send_response(sender_id, message)


def birthday_step(send_id: str) -> Outgoing:
    return Outgoing(send_id=send_id, customer_id="c1", sender_id=OPENID, journey="birthday", step="greeting",
                    variant="", message=Message(action="action_coupon_birthday", template="birthday_coupon_template"),
                    profile={"channel": "wechat"})


def issued_codes(store: SqlShopStore) -> list[str]:
    engine = create_engine(store.url)
    with engine.connect() as c:
        rows = c.execute(text("select coupon_code from coupon_issues where issue_key = 'journey:birthday:greeting'")).all()
    engine.dispose()
    return [r[0] for r in rows]


@pytest.mark.asyncio
async def test_wechat_template_and_customer_service_both_carry_the_coupon_code_and_terms(
        store: SqlShopStore, fake_api: Any) -> None:  # noqa: F811
    wechat = WeChatInput.from_credentials({"app_id": APP_ID, "app_secret": APP_SECRET, "token": TOKEN,
                                           "api_base": fake_api.base_url, "retry_backoff": 0.01})
    agent = ActionServerAgent()
    sender = default_sender(agent, OutputRegistry.from_channels([wechat]))
    try:
        # outside the 48-hour window: the step's template, filled with the coupon the action just issued
        due = birthday_step("birthday:greeting:1")
        assert await sender.check(due) is None
        assert await sender.send(due) == "wechat_template"
        [code] = issued_codes(store)
        assert fake_api.custom_sent == []
        [sent] = fake_api.template_sent
        assert (sent["touser"], sent["template_id"]) == (OPENID, "birthday_coupon_template")
        terms = shop_config().coupon_templates["BDAY30"].terms.zh
        assert {k: v["value"] for k, v in sent["data"].items()} == {
            "coupon_code": code, "coupon_title": shop_config().coupon_templates["BDAY30"].title.zh,
            "coupon_value": "¥30.00", "coupon_expiry": sent["data"]["coupon_expiry"]["value"], "coupon_terms": terms}
        assert sent["data"]["coupon_expiry"]["value"]  # a date

        # inside the window (the shopper wrote): 客服 messages with the same coupon, not a second one
        await wechat.policy.record_inbound(OPENID, time.time())
        assert await sender.send(birthday_step("birthday:greeting:2")) == "wechat_customer_service"
        assert issued_codes(store) == [code]
        texts = [m["text"]["content"] for m in fake_api.custom_sent if m.get("msgtype") == "text"]
        assert any(code in t and terms in t for t in texts), texts
        assert agent.runs == 2
    finally:
        await wechat.close()
