"""The widget's re-send of a message the server could not take, in real Chromium.

The socket.io outbox lives in a real ``redis-server`` (append-only, as scripts/cluster.py
and deploy/compose.yml run it). It is stopped while the shopper sends a message: the server
answers with a retryable error and records nothing; the widget keeps the message pending
and re-sends it with the same id, backing off, until Redis is back. Then the bot answers
it exactly once. (The server side alone: tests/connectors/test_socketio_redis.py.)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.browser.conftest import ShopServer
from tests.browser.test_widget import TIMEOUT, bot_texts, open_chat, send, user_texts
from tests.redis_server import RedisServer, find_redis_server, redis_skipped

pytestmark = [pytest.mark.browser, pytest.mark.redis]

PENDING = "window.KefuWidget.pending()"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if find_redis_server() is None or redis_skipped():
        pytest.skip("redis-server is not installed (or KEFU_SKIP_REDIS)")
    server = RedisServer(directory=tmp_path_factory.mktemp("widget-redis"),
                         extra_args=("--appendonly", "yes", "--appendfsync", "always")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_shop(shop_server: ShopServer, redis: RedisServer) -> Iterator[ShopServer]:
    server = ShopServer(shop_server.model_path, {"outbox": {"type": "redis", "url": redis.url}}).start()
    yield server
    server.stop()


def test_widget_resends_a_message_sent_while_redis_is_down_and_it_is_answered_once(
        redis_shop: ShopServer, redis: RedisServer, phone: Any, artifacts: Path) -> None:
    page = open_chat(phone, redis_shop)
    send(page, "hello")
    page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
    # the server acknowledges a message after its handler has emitted the answer, so the
    # answer can be drawn a moment before the acknowledgement takes the message off the list
    page.wait_for_function(f"({PENDING}).length === 0", timeout=TIMEOUT)
    answered = len(bot_texts(page))

    redis.stop()
    send(page, "I want running shoes")
    # the server could not record it: the widget keeps it, marked for a re-send
    page.wait_for_function(f"({PENDING}).some(m => m.tries >= 1)", timeout=TIMEOUT)
    pending = page.evaluate(PENDING)
    assert [m["message"] for m in pending] == ["I want running shoes"]
    row = page.locator(f'.kefu-user[data-message-id="{pending[0]["message_id"]}"]')
    assert row.locator(".kefu-send-state").inner_text() == "Could not send. Retrying…"
    page.wait_for_timeout(1500)
    assert len(bot_texts(page)) == answered  # nothing answered while it is down
    page.screenshot(path=str(artifacts / "widget-retry-redis-down.png"))

    restarted = time.monotonic()
    redis.start()
    # the next back-off re-sends the same message id: it is recorded and answered once
    page.wait_for_function(f"({PENDING}).length === 0", timeout=30_000)
    page.wait_for_function(f"document.querySelectorAll('.kefu-bot:not(.kefu-typing) .kefu-bubble').length > {answered}",
                           timeout=TIMEOUT)
    waited = time.monotonic() - restarted
    page.wait_for_timeout(1500)  # a second answer would arrive by now
    replies = bot_texts(page)[answered:]
    assert len(replies) >= 1 and "shoe" in " ".join(replies).lower(), replies
    assert user_texts(page) == ["hello", "I want running shoes"]
    history = redis_shop.history(page.evaluate("window.KefuWidget.sessionId()"))
    assert [m["text"] for m in history if m["sender"] == "user"] == ["hello", "I want running shoes"]
    answers = [m for m in history if m["sender"] == "bot" and m.get("reply_to") == pending[0]["message_id"]]
    assert len(answers) == len(replies)  # each reply recorded once, tied to the re-sent message id
    assert waited < 25, waited
    assert row.locator(".kefu-send-state").count() == 0  # the retry note is gone once it is taken
    page.screenshot(path=str(artifacts / "widget-retry-answered.png"))


def test_widget_marks_a_refused_message_not_sent_and_sends_it_again_on_a_tap(
        shop_server: ShopServer, phone: Any, artifacts: Path) -> None:
    """A message the server refuses for good (here: longer than the channel's 5 000
    characters) is not dropped silently: its bubble says it was not sent, and tapping the
    note sends it again (same message id)."""
    page = open_chat(phone, shop_server)
    send(page, "hello")
    page.locator(".kefu-bot .kefu-button").first.wait_for(timeout=TIMEOUT)
    page.evaluate("window.KefuWidget.send('x'.repeat(6000))")
    failed = page.locator(".kefu-user.kefu-failed")
    failed.wait_for(timeout=TIMEOUT)
    note = failed.locator(".kefu-send-state")
    assert note.inner_text() == "Not sent. Tap to try again."
    assert page.evaluate(PENDING) == []  # given up: not re-sent behind the shopper's back
    assert page.locator(".kefu-typing").count() == 0 or page.locator(".kefu-typing").is_hidden()
    page.screenshot(path=str(artifacts / "widget-not-sent.png"))
    message_id = failed.get_attribute("data-message-id")
    note.click()  # sent again: refused again, marked again, nothing answered
    page.wait_for_function(f"document.querySelector('.kefu-user[data-message-id=\"{message_id}\"] .kefu-send-state')"
                           ".textContent === 'Not sent. Tap to try again.' && window.KefuWidget.pending().length === 0",
                           timeout=TIMEOUT)
    assert page.locator(".kefu-user.kefu-failed").count() == 1
    assert page.locator(".kefu-user").count() == 2  # the same bubble, not a new one
