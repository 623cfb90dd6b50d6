"""The console's compensation button in real headless Chromium (#20 point 2).

An angry shopper escalates in the widget; Alice (role agent, limit ¥20 in shop.yml) opens the
conversation, asks for ¥50 and is told her limit, sends ¥15: the coupon code shows in the
transcript and reaches the shopper's widget, once, however often she clicks.
Screenshots: test-artifacts/console-compensation.png, test-artifacts/widget-compensation.png.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.handoff.conftest import handoff_config_dict, handoff_model  # noqa: F401 - fixtures
from tests.handoff.helpers import make_config, password_for
from tests.handoff.test_browser import TIMEOUT, HandoffServer, chromium  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Any]:
    from actions.shop.seed import seed_shop
    from actions.shop.sql import SqlShopStore
    from tests.shop.conftest import NOW, TINY

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    seed_shop(url, seed=7, size=TINY, now=NOW)
    store = SqlShopStore(url)
    yield store
    asyncio.run(store.close())


@pytest.fixture
def server(handoff_model: Path, handoff_config_dict: dict, tmp_path: Path,  # noqa: F811
           shop: Any) -> Iterator[HandoffServer]:
    from bot.ports import load_port

    s = HandoffServer(handoff_model, make_config(handoff_config_dict, tmp_path / "handoff.db"))
    s._thread.start()
    s._ready.result(timeout=240)  # loading the model takes a while on a busy 2-core machine
    profiles = load_port("profile", {"type": "actions.shop.ports.ShopProfilePort", "store": shop}, REPO)

    async def profile(channel: Any, sender: str) -> Any:
        # the widget's anonymous session stands for the demo's WeChat customer
        return await profiles.profile("wechat", "demo-wechat-openid")

    s.service.profile_provider = profile
    s.service.compensation = load_port("compensation", {"type": "actions.shop.ports.ShopCompensationPort",
                                                        "store": shop}, REPO)
    yield s
    s.stop()


def test_console_compensation_button_limits_sends_once(server: HandoffServer, chromium: Any,  # noqa: F811
                                                       shop: Any) -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shopper_ctx = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    shopper = shopper_ctx.new_page()
    shopper.goto(server.url + "/")
    shopper.wait_for_function("window.KefuWidget && window.KefuWidget.isConnected()", timeout=TIMEOUT)
    if not shopper.locator(".kefu-panel").is_visible():
        shopper.locator(".kefu-launcher").click()
    shopper.locator(".kefu-input").fill("This is terrible, I am so angry!!")
    shopper.locator(".kefu-send").click()
    shopper.locator(".kefu-bot", has_text="connecting you to a human agent").wait_for(timeout=TIMEOUT)

    agent_ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    console = agent_ctx.new_page()
    console.goto(server.url + "/console")
    console.locator("#agent-id").fill("alice")
    console.locator("#password").fill(password_for("alice"))
    console.locator("#login-button").click()
    console.wait_for_function("window.KefuConsole.isLive()", timeout=TIMEOUT)
    console.locator("#mine .item").first.wait_for(timeout=TIMEOUT)
    console.locator("#mine .item").first.click()
    button = console.locator("#compensation-send")
    button.wait_for(state="visible", timeout=TIMEOUT)
    assert button.inner_text() == "Compensation coupon"

    console.locator("#compensation-amount").fill("50")
    button.click()
    result = console.locator("#compensation-result")
    result.filter(has_text="at most ¥20.00").wait_for(timeout=TIMEOUT)
    assert "ask a supervisor" in result.inner_text()

    console.locator("#compensation-amount").fill("15")
    button.click()
    result.filter(has_text="sent (15.00)").wait_for(timeout=TIMEOUT)
    code = result.inner_text().split("Coupon ")[1].split(" ")[0]
    console.locator("#transcript .line", has_text=code).first.wait_for(timeout=TIMEOUT)
    shopper.locator(".kefu-bot", has_text=code).wait_for(timeout=TIMEOUT)
    button.click()  # again: the same coupon, nothing new sent
    result.filter(has_text=f"already has coupon {code}").wait_for(timeout=TIMEOUT)
    console.screenshot(path=str(artifacts / "console-compensation.png"))
    shopper.screenshot(path=str(artifacts / "widget-compensation.png"))

    assert shopper.locator(".kefu-bot", has_text=code).count() == 1
    # (Playwright's sync API holds this thread's event loop: the shop is asked on the server's)
    customer = server.call(shop.customer_by_identity("wechat", "demo-wechat-openid"))
    assert [c.amount_cents for c in server.call(shop.coupons(customer.id)) if c.code == code] == [1500]
    shopper_ctx.close()
    agent_ctx.close()
