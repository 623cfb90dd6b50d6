"""Access token caching/sharing and message sends against the fake WeChat API."""
from __future__ import annotations

import asyncio

import pytest

from connectors.wechat.client import WeChatAPIError, WeChatClient
from connectors.wechat.messages import Article

APP_ID, APP_SECRET = "wx1234567890abcdef", "s3cret"  # as in conftest.py


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_client(fake_api, **kwargs) -> WeChatClient:
    return WeChatClient(APP_ID, APP_SECRET, fake_api.base_url, **kwargs)


@pytest.mark.asyncio
async def test_client_caches_token_and_refreshes_before_expiry(fake_api):
    clock = Clock()
    client = make_client(fake_api, clock=clock, refresh_margin=300)
    await client.send_text("oU", "你好")
    await client.send_text("oU", "again")
    assert fake_api.token_requests == 1
    clock.now += 7200 - 299  # inside the refresh margin: refresh before WeChat expires it
    await client.send_text("oU", "later")
    assert fake_api.token_requests == 2
    assert [m["text"]["content"] for m in fake_api.custom_sent] == ["你好", "again", "later"]
    await client.close()


@pytest.mark.asyncio
async def test_client_concurrent_calls_fetch_one_token(fake_api):
    fake_api.token_delay = 0.1
    client = make_client(fake_api)
    await asyncio.gather(*(client.send_text("oU", str(i)) for i in range(10)))
    assert fake_api.token_requests == 1 and len(fake_api.custom_sent) == 10
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [40001, 42001])
async def test_client_token_error_refreshes_once_and_retries(fake_api, code):
    client = make_client(fake_api)
    await client.send_text("oU", "first")
    fake_api.fail_next("custom", code)
    await client.send_text("oU", "second")
    assert fake_api.token_requests == 2
    assert [m["text"]["content"] for m in fake_api.custom_sent] == ["first", "second"]
    # a second token error in a row is not retried forever
    fake_api.fail_next("custom", code, code)
    with pytest.raises(WeChatAPIError) as info:
        await client.send_text("oU", "third")
    assert info.value.errcode == code and fake_api.token_requests == 3
    await client.close()


@pytest.mark.asyncio
async def test_client_revoked_token_is_replaced(fake_api):
    client = make_client(fake_api)
    await client.send_text("oU", "a")
    fake_api.revoke_tokens()  # WeChat answers 40001 for the cached token
    await client.send_text("oU", "b")
    assert fake_api.token_requests == 2 and len(fake_api.custom_sent) == 2
    await client.close()


@pytest.mark.asyncio
async def test_client_45015_raises_with_hint_and_no_retry(fake_api):
    client = make_client(fake_api)
    fake_api.fail_next("custom", 45015)
    with pytest.raises(WeChatAPIError, match="48-hour") as info:
        await client.send_news("oU", [Article("Shoe", url="http://shop/1")])
    assert not info.value.retryable and fake_api.custom_sent == []
    await client.close()


@pytest.mark.asyncio
async def test_client_bad_secret_names_the_key(fake_api):
    client = WeChatClient(APP_ID, "wrong", fake_api.base_url)
    with pytest.raises(WeChatAPIError, match="app_secret"):
        await client.send_text("oU", "x")
    await client.close()


@pytest.mark.asyncio
async def test_client_template_send_wraps_values(fake_api):
    client = make_client(fake_api)
    result = await client.send_template("oU", "TPL1", {"order": "A1001", "status": {"value": "已发货", "color": "#173177"}},
                                        url="https://shop/orders/A1001")
    assert result["msgid"] == 200228332
    sent = fake_api.template_sent[0]
    assert sent["data"] == {"order": {"value": "A1001"}, "status": {"value": "已发货", "color": "#173177"}}
    assert sent["url"] == "https://shop/orders/A1001" and sent["touser"] == "oU"
    await client.close()


@pytest.mark.asyncio
async def test_client_unreachable_api_is_retryable_error():
    client = WeChatClient(APP_ID, APP_SECRET, "http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(WeChatAPIError) as info:
        await client.send_text("oU", "x")
    assert info.value.retryable
    await client.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_client_workers_share_one_token_through_redis(fake_api, redis_url):
    from bot.stores._common import redis_client

    fake_api.token_delay = 0.2
    workers = [make_client(fake_api, redis=redis_client(redis_url)) for _ in range(4)]
    await asyncio.gather(*(w.send_text("oU", f"w{i}") for i, w in enumerate(workers)))
    assert fake_api.token_requests == 1
    assert len({w._token.value for w in workers}) == 1
    # a token error on one worker refreshes the shared token once; others pick it up
    fake_api.revoke_tokens()
    await asyncio.gather(*(w.send_text("oU", "again") for w in workers))
    assert fake_api.token_requests == 2
    for w in workers:
        await w.close()
        await w.redis.aclose()
