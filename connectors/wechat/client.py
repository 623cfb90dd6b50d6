"""WeChat Official Account API client: access token cache, 客服 and template sends.

The access token is valid for ``expires_in`` seconds (7200) and every new fetch
invalidates older ones, so all workers must share one token: with Redis the token lives
under ``kefu:wechat:token:<app_id>`` and a ``SET NX`` lock lets exactly one worker
refresh while the others wait for its result. Tokens are refreshed ``refresh_margin``
seconds before they expire. A call that fails with a token error (40001, 40014, 42001)
refreshes once (unless another worker already did) and is retried once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from connectors.wechat.messages import Article

logger = logging.getLogger(__name__)

__all__ = ["AccessToken", "WeChatAPIError", "WeChatClient", "TOKEN_ERRORS"]

DEFAULT_API_BASE = "https://api.weixin.qq.com"
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# -1: system busy; transport problems are reported as -2 by this client.
RETRYABLE_ERRORS = frozenset({-1, -2})
CREDENTIAL_ERRORS = {40013: "app_id", 40125: "app_secret", 40164: "app_id (caller IP not whitelisted)"}

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class WeChatAPIError(Exception):
    """An ``errcode`` from WeChat (or -2 for a transport failure)."""

    def __init__(self, errcode: int, errmsg: str, path: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        hint = ""
        if errcode in CREDENTIAL_ERRORS:
            hint = f" Fix: check '{CREDENTIAL_ERRORS[errcode]}' under 'wechat:' in credentials.yml."
        elif errcode == 45015:
            hint = " The shopper's 48-hour customer-service window is over; use a template message."
        super().__init__(f"WeChat API {path or ''} failed with errcode {errcode}: {errmsg}.{hint}")

    @property
    def retryable(self) -> bool:
        return self.errcode in RETRYABLE_ERRORS


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float

    def fresh(self, now: float, margin: float) -> bool:
        return self.expires_at - margin > now

    def dumps(self) -> str:
        return json.dumps({"access_token": self.value, "expires_at": self.expires_at})

    @classmethod
    def loads(cls, raw: str | None) -> "AccessToken | None":
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data["access_token"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None


class WeChatClient:
    """Async client for the few API calls the connector needs."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        api_base: str = DEFAULT_API_BASE,
        redis: Any = None,
        timeout: float = 5.0,
        refresh_margin: float = 300.0,
        lock_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.api_base = api_base.rstrip("/")
        self.redis = redis  # an asyncio Redis client (decode_responses=True) or None
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self.lock_timeout = lock_timeout
        self.clock = clock
        self.transport = transport
        self._token: AccessToken | None = None
        self._local_lock: asyncio.Lock | None = None
        self._http: httpx.AsyncClient | None = None
        self.token_fetches = 0  # observability and tests

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def token_key(self) -> str:
        return f"kefu:wechat:token:{self.app_id}"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _usable(self, token: AccessToken | None, rejected: str | None) -> bool:
        return token is not None and token.value != rejected and token.fresh(self.clock(), self.refresh_margin)

    # --- access token -----------------------------------------------------------------------
    async def access_token(self, rejected: str | None = None) -> str:
        """A fresh token; ``rejected`` is one WeChat just refused, never returned again."""
        if self._usable(self._token, rejected):
            return self._token.value  # type: ignore[union-attr]
        if self._local_lock is None:
            self._local_lock = asyncio.Lock()
        async with self._local_lock:  # one refresh per process
            if self._usable(self._token, rejected):
                return self._token.value  # type: ignore[union-attr]
            token = await (self._shared_token(rejected) if self.redis is not None else self._fetch_token())
            self._token = token
            return token.value

    async def _shared_token(self, rejected: str | None) -> AccessToken:
        cached = AccessToken.loads(await self.redis.get(self.token_key))
        if self._usable(cached, rejected):
            return cached  # type: ignore[return-value]
        lock_key = self.token_key + ":lock"
        owner = uuid.uuid4().hex
        deadline = self.clock() + self.lock_timeout
        while True:
            if await self.redis.set(lock_key, owner, nx=True, px=int(self.lock_timeout * 1000)):
                try:
                    cached = AccessToken.loads(await self.redis.get(self.token_key))
                    if self._usable(cached, rejected):  # another worker refreshed meanwhile
                        return cached  # type: ignore[return-value]
                    token = await self._fetch_token()
                    ttl = max(1, int(token.expires_at - self.clock()))
                    await self.redis.set(self.token_key, token.dumps(), ex=ttl)
                    return token
                finally:
                    await self.redis.eval(_RELEASE_LOCK, 1, lock_key, owner)
            await asyncio.sleep(0.05)
            cached = AccessToken.loads(await self.redis.get(self.token_key))
            if self._usable(cached, rejected):
                return cached  # type: ignore[return-value]
            if self.clock() > deadline:
                logger.warning("Timed out waiting for another worker's WeChat token refresh; fetching.")
                return await self._fetch_token()

    async def _fetch_token(self) -> AccessToken:
        self.token_fetches += 1
        params = {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret}
        data = await self._http_json("GET", "/cgi-bin/token", params=params)
        if "access_token" not in data:
            raise WeChatAPIError(int(data.get("errcode", -1)), str(data.get("errmsg", "no access_token")), "/cgi-bin/token")
        expires_in = float(data.get("expires_in", 7200))
        logger.info("Fetched a new WeChat access token for %s (expires in %ss).", self.app_id, int(expires_in))
        return AccessToken(str(data["access_token"]), self.clock() + expires_in)

    async def _http_json(self, method: str, path: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
        content = None
        headers = {}
        if body is not None:
            # WeChat shows \\uXXXX literally, so Chinese must be sent as raw UTF-8.
            content = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            resp = await self._client().request(method, self.api_base + path, params=params, content=content, headers=headers)
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as e:
            raise WeChatAPIError(-2, f"{type(e).__name__}: {e}", path) from e
        if not isinstance(data, dict):
            raise WeChatAPIError(-2, "response is not a JSON object", path)
        return data

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST an API call with the access token; one refresh-and-retry on token errors."""
        rejected: str | None = None
        for attempt in range(2):
            token = await self.access_token(rejected)
            data = await self._http_json("POST", path, {"access_token": token}, body)
            errcode = int(data.get("errcode", 0) or 0)
            if errcode in TOKEN_ERRORS and attempt == 0:
                logger.warning("WeChat rejected the access token (errcode %s); refreshing once.", errcode)
                rejected = token
                continue
            if errcode != 0:
                raise WeChatAPIError(errcode, str(data.get("errmsg", "")), path)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    # --- messages ---------------------------------------------------------------------------
    async def send_custom(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("/cgi-bin/message/custom/send", body)

    async def send_text(self, openid: str, content: str) -> dict[str, Any]:
        return await self.send_custom(text_body(openid, content))

    async def send_news(self, openid: str, articles: list[Article]) -> dict[str, Any]:
        return await self.send_custom(news_body(openid, articles))

    async def send_image(self, openid: str, media_id: str) -> dict[str, Any]:
        return await self.send_custom(image_body(openid, media_id))

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: dict[str, Any],
        url: str | None = None,
        miniprogram: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """模板消息; ``data`` values may be plain strings or ``{"value": ...}``."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: v if isinstance(v, dict) else {"value": str(v)} for k, v in data.items()},
        }
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = miniprogram
        return await self.call("/cgi-bin/message/template/send", body)


def text_body(openid: str, content: str) -> dict[str, Any]:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def news_body(openid: str, articles: list[Article]) -> dict[str, Any]:
    return {"touser": openid, "msgtype": "news", "news": {"articles": [a.as_api() for a in articles]}}


def image_body(openid: str, media_id: str) -> dict[str, Any]:
    return {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
