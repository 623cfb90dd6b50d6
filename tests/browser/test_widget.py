"""kefu's widget in real headless Chromium against a real server with the shopbot model.

Each test opens the demo shop page (``GET /``) on a 390x844 phone screen and
drives the widget as a shopper does; screenshots land in ``test-artifacts/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

TIMEOUT = 10_000  # ms


def open_chat(context: Any, server: Any, query: str = "") -> Any:
    page = context.new_page()
    page.goto(server.url + "/" + query)
    page.wait_for_function("window.KefuWidget && window.KefuWidget.isConnected()", timeout=TIMEOUT)
    if not page.locator(".kefu-panel").is_visible():
        page.locator(".kefu-launcher").click()
    return page


def send(page: Any, text: str) -> None:
    page.locator(".kefu-input").fill(text)
    page.locator(".kefu-send").click()


def bot_texts(page: Any) -> list[str]:
    return page.locator(".kefu-bot:not(.kefu-typing) .kefu-bubble").all_inner_texts()


def user_texts(page: Any) -> list[str]:
    return page.locator(".kefu-user .kefu-bubble").all_inner_texts()


def test_widget_send_message_shows_reply_buttons_and_timestamps(
    shop_server: Any, phone: Any, artifacts: Path
) -> None:
    page = open_chat(phone, shop_server)
    panel = page.locator(".kefu-panel").bounding_box()
    assert panel is not None and panel["width"] == 390  # full screen on a phone
    send(page, "hello")
    buttons = page.locator(".kefu-bot .kefu-button")
    buttons.first.wait_for(timeout=TIMEOUT)
    assert "Hi! How can I help you today?" in bot_texts(page)[0]
    assert buttons.all_inner_texts() == ["Running shoes", "Rate us"]
    assert user_texts(page) == ["hello"]
    times = page.locator(".kefu-time").all_inner_texts()
    assert len(times) == 2 and all(len(t) == 5 and t[2] == ":" for t in times)
    page.screenshot(path=str(artifacts / "widget-reply-buttons.png"))


def test_widget_button_click_shows_product_card_and_link(
    shop_server: Any, phone: Any, artifacts: Path
) -> None:
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.get_by_role("button", name="Running shoes").click()
    card = page.locator(".kefu-card")
    card.wait_for(timeout=TIMEOUT)
    assert card.locator(".kefu-card-title").inner_text() == "Trail runner X"
    assert card.locator(".kefu-card-price").inner_text() == "¥499"
    assert card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert card.get_by_role("button", name="Buy now").is_visible()
    link = page.locator(".kefu-bot .kefu-link", has_text="https://shop.example/trail-runner-x")
    assert link.get_attribute("href") == "https://shop.example/trail-runner-x"
    # the shopper sees the button's title, not its /payload
    assert user_texts(page) == ["hi", "Running shoes"]
    page.screenshot(path=str(artifacts / "widget-product-card.png"))
    card.get_by_role("button", name="Buy now").click()
    page.locator(".kefu-bot", has_text="Added to your cart.").wait_for(timeout=TIMEOUT)


def test_widget_reload_restores_history_without_duplicates(
    shop_server: Any, phone: Any, artifacts: Path
) -> None:
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
    send(page, "shoes")
    page.locator(".kefu-card").wait_for(timeout=TIMEOUT)
    session_id = page.evaluate("KefuWidget.sessionId()")
    before_bot, before_user = bot_texts(page), user_texts(page)

    page.reload()
    page.wait_for_function("KefuWidget.isConnected()", timeout=TIMEOUT)
    page.locator(".kefu-card").wait_for(timeout=TIMEOUT)  # panel stays open across reloads
    assert page.evaluate("KefuWidget.sessionId()") == session_id
    assert user_texts(page) == before_user == ["hi", "shoes"]
    assert bot_texts(page) == before_bot
    page.screenshot(path=str(artifacts / "widget-after-reload.png"))


def test_widget_receives_pushed_messages_open_and_closed(
    shop_server: Any, phone: Any, artifacts: Path
) -> None:
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
    session_id = page.evaluate("KefuWidget.sessionId()")

    shop_server.push(session_id, {"text": "This is Lin from the support team."})
    page.locator(".kefu-bot", has_text="Lin from the support team").wait_for(timeout=TIMEOUT)

    # panel closed: an unread badge appears
    page.locator(".kefu-close").click()
    shop_server.push(session_id, {"text": "Your parcel is out for delivery."})
    badge = page.locator(".kefu-badge")
    badge.wait_for(state="visible", timeout=TIMEOUT)
    assert badge.inner_text() == "1"
    page.screenshot(path=str(artifacts / "widget-unread-badge.png"))

    # page closed: the message waits in the outbox and shows when the shopper comes back
    page.close()
    shop_server.push(session_id, {"text": "Sent while you were away."})
    again = open_chat(phone, shop_server)
    again.locator(".kefu-bot", has_text="Sent while you were away.").wait_for(timeout=TIMEOUT)
    texts = bot_texts(again)
    assert sum("Lin from the support team" in t for t in texts) == 1
    assert texts[-1] == "Sent while you were away."
    again.screenshot(path=str(artifacts / "widget-pushed.png"))


def test_widget_reconnects_after_drop_without_loss_or_duplicates(
    shop_server: Any, phone: Any
) -> None:
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
    session_id = page.evaluate("KefuWidget.sessionId()")
    page.evaluate("KefuWidget.dropConnection()")
    shop_server.push(session_id, {"text": "Pushed during the drop."})
    page.wait_for_function("KefuWidget.isConnected()", timeout=TIMEOUT)
    page.locator(".kefu-bot", has_text="Pushed during the drop.").wait_for(timeout=TIMEOUT)
    send(page, "shoes")
    page.locator(".kefu-card").wait_for(timeout=TIMEOUT)
    page.wait_for_timeout(300)
    texts = bot_texts(page)
    assert sum(t == "Pushed during the drop." for t in texts) == 1
    assert sum("Hi! How can I help" in t for t in texts) == 1
    assert user_texts(page) == ["hi", "shoes"]
    seqs = page.locator(".kefu-row[data-seq]").evaluate_all(
        "rows => rows.map(r => parseInt(r.dataset.seq, 10))"
    )
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_widget_csat_stars_send_rating(shop_server: Any, phone: Any, artifacts: Path) -> None:
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.get_by_role("button", name="Rate us").click()
    stars = page.locator(".kefu-star")
    stars.first.wait_for(timeout=TIMEOUT)
    assert stars.count() == 5
    assert page.locator(".kefu-csat-text").inner_text() == "How did we do?"
    stars.nth(3).click()
    page.locator(".kefu-bot", has_text="Thanks for rating us!").wait_for(timeout=TIMEOUT)
    assert user_texts(page)[-1] == "★★★★"
    assert page.locator(".kefu-star-on").count() == 4
    page.screenshot(path=str(artifacts / "widget-csat.png"))


def test_widget_chinese_ui(shop_server: Any, browser: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    try:
        page = open_chat(context, shop_server)
        assert page.locator(".kefu-input").get_attribute("placeholder") == "输入消息…"
        assert page.locator(".kefu-send").inner_text() == "发送"
        send(page, "你好")
        page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
        page.screenshot(path=str(artifacts / "widget-zh.png"))
        # data-lang on the script tag wins over the browser language
        en = open_chat(context, shop_server, "?lang=en")
        assert en.locator(".kefu-send").inner_text() == "Send"
    finally:
        context.close()


def test_demo_page_serves_shop_with_one_widget_script(shop_server: Any, phone: Any) -> None:
    page = phone.new_page()
    page.goto(shop_server.url + "/")
    assert page.title().startswith("kefu Sports")
    assert page.locator("script[src$='/webhooks/socketio/widget.js']").count() == 1
    page.locator(".kefu-launcher").wait_for(timeout=TIMEOUT)
    assert page.locator(".notice").count() == 0


def test_widget_session_id_is_issued_by_the_server_and_a_planted_one_is_replaced(
    shop_server: Any, phone: Any
) -> None:
    page = phone.new_page()
    page.goto(shop_server.url + "/")
    key = page.evaluate("KefuWidget.config.storageKey")
    # a session id the server never issued (another shopper's old plain id, or a guess)
    page.evaluate("k => localStorage.setItem(k, JSON.stringify({sessionId: 'shopper-7', open: true}))", key)
    page.reload()
    page.wait_for_function("KefuWidget.isConnected() && KefuWidget.sessionId() !== 'shopper-7'", timeout=TIMEOUT)
    issued = page.evaluate("KefuWidget.sessionId()")
    assert shop_server.channel.sessions.verify(issued)
    assert "shopper-7" not in page.evaluate("k => localStorage.getItem(k)", key)


def test_widget_identity_token_binds_the_session_and_a_bad_one_is_shown_refused(
    shop_server: Any, browser: Any
) -> None:
    import time

    import jwt

    good = jwt.encode({"sub": "42", "exp": int(time.time()) + 600}, shop_server.identity_secret, algorithm="HS256")
    context = browser.new_context()
    context.add_init_script(f"window.KefuWidgetConfig = {{identityToken: {good!r}}};")
    page = open_chat(context, shop_server)
    page.wait_for_function("KefuWidget.sessionId()", timeout=TIMEOUT)
    assert shop_server.channel.sessions.verify(page.evaluate("KefuWidget.sessionId()"), "42")
    context.close()

    context = browser.new_context()
    context.add_init_script("window.KefuWidgetConfig = {identityToken: 'not-a-token'};")
    page = context.new_page()
    page.goto(shop_server.url + "/")
    page.locator(".kefu-launcher").click()
    page.locator('.kefu-status[data-state="refused"]').wait_for(timeout=TIMEOUT)
    assert page.evaluate("KefuWidget.sessionId()") is None
    context.close()
