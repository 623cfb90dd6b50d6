"""A fake WeChat API server on 127.0.0.1 and helpers that post pushes as WeChat does.

The fake serves ``/cgi-bin/token``, ``/cgi-bin/message/custom/send`` and
``/cgi-bin/message/template/send`` from a real ``ThreadingHTTPServer``; tests queue
error codes (40001, 42001, 45015, -1) or delays, and read what was sent.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.wechat.crypto import MessageCrypto, compute_signature, random_nonce

APP_ID = "wx1234567890abcdef"
APP_SECRET = "s3cret"
TOKEN = "kefutoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars
BOT_ID = "gh_kefu_shop"


@dataclass
class FakeWeChatAPI:
    """State of the fake API; handlers run on the server thread, so a lock guards it."""

    valid_tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    custom_sent: list[dict[str, Any]] = field(default_factory=list)
    template_sent: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, list[int]] = field(default_factory=lambda: {"custom": [], "template": [], "token": []})
    expires_in: int = 7200
    token_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def fail_next(self, endpoint: str, *codes: int) -> None:
        with self.lock:
            self.errors[endpoint].extend(codes)

    def revoke_tokens(self) -> None:
        """As when another system fetched a new token: all old ones stop working."""
        with self.lock:
            self.valid_tokens.clear()

    def _pop_error(self, endpoint: str) -> int | None:
        with self.lock:
            return self.errors[endpoint].pop(0) if self.errors[endpoint] else None

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/cgi-bin/token" and method == "GET":
            if self.token_delay:
                time.sleep(self.token_delay)
            code = self._pop_error("token")
            if code is not None:
                return 200, {"errcode": code, "errmsg": "fake error"}
            if query.get("appid") != APP_ID or query.get("secret") != APP_SECRET:
                return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
            with self.lock:
                self.token_requests += 1
                token = f"TOKEN-{self.token_requests}-{uuid.uuid4().hex[:6]}"
                self.valid_tokens.add(token)
            return 200, {"access_token": token, "expires_in": self.expires_in}
        endpoint = {"/cgi-bin/message/custom/send": "custom", "/cgi-bin/message/template/send": "template"}.get(path)
        if endpoint is None or method != "POST":
            return 404, {"errcode": 404, "errmsg": "not found"}
        if query.get("access_token") not in self.valid_tokens:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        code = self._pop_error(endpoint)
        if code is not None:
            if code == 500:
                return 500, {"errmsg": "server error"}
            return 200, {"errcode": code, "errmsg": "fake error"}
        payload = json.loads(body.decode("utf-8"))
        with self.lock:
            (self.custom_sent if endpoint == "custom" else self.template_sent).append(payload)
        result: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if endpoint == "template":
            result["msgid"] = 200228332
        return 200, result


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatAPI]:
    state = FakeWeChatAPI()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parsed = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = state.handle(method, parsed.path, query, body)
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


class WeChatSender:
    """Builds pushes exactly as WeChat's servers do, for each encryption mode."""

    def __init__(self, mode: str = "plaintext", token: str = TOKEN, aes_key: str = AES_KEY, app_id: str = APP_ID) -> None:
        self.mode = mode
        self.token = token
        self.crypto = MessageCrypto(token, aes_key, app_id)

    @staticmethod
    def xml(openid: str, msg_type: str, create_time: int | None = None, **fields: Any) -> str:
        parts = [
            f"<ToUserName><![CDATA[{BOT_ID}]]></ToUserName>",
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
            f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
            f"<MsgType><![CDATA[{msg_type}]]></MsgType>",
        ]
        for key, value in fields.items():
            if isinstance(value, (int, float)):
                parts.append(f"<{key}>{value}</{key}>")
            else:
                parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
        return "<xml>" + "".join(parts) + "</xml>"

    def request(
        self, xml: str, timestamp: int | None = None, nonce: str | None = None, openid: str = "oUser"
    ) -> tuple[str, bytes]:
        """(query string path, body) for POST /webhooks/wechat/webhook."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or random_nonce()
        signature = compute_signature(self.token, ts, nonce)
        query = f"signature={signature}&timestamp={ts}&nonce={nonce}&openid={openid}"
        if self.mode == "plaintext":
            return query, xml.encode("utf-8")
        encrypted = self.crypto.encrypt(xml)
        msg_signature = compute_signature(self.token, ts, nonce, encrypted)
        query += f"&encrypt_type=aes&msg_signature={msg_signature}"
        if self.mode == "safe":
            body = f"<xml><ToUserName><![CDATA[{BOT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        else:  # compatible: plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        return query, body.encode("utf-8")


@pytest.fixture
def sender_factory() -> Any:
    return WeChatSender


@pytest.fixture(scope="session")
def wechat_redis_server() -> Iterator[Any]:
    """A real redis-server for the shared-token and shared-state tests (see tests/redis_server.py)."""
    try:
        from tests.redis_server import INSTALL_HINT, RedisServer, find_redis_server, redis_skipped
    except ImportError:  # tests/ itself on sys.path
        from redis_server import INSTALL_HINT, RedisServer, find_redis_server, redis_skipped  # type: ignore[no-redef]
    if find_redis_server() is None:
        if redis_skipped():
            pytest.skip("redis-server not installed and KEFU_SKIP_REDIS=1")
        pytest.fail(f"redis-server not found; tests marked 'redis' need it. {INSTALL_HINT}")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(wechat_redis_server: Any) -> str:
    wechat_redis_server.flushall()
    return wechat_redis_server.url
