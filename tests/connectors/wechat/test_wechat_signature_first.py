"""Issue #15 point 8: a push is authenticated before any XML parser sees it; parsing is defusedxml.

Strangers (no token, so no valid ``signature``/``msg_signature``) are refused with 403
whatever they put in the body: an XML bomb, an external entity, a 5 000-deep document.
A push that WeChat did sign but that carries a DTD is refused by defusedxml (400), never
expanded. The old code parsed the safe-mode envelope before checking ``msg_signature``
and did not check ``signature`` there at all.
"""
from __future__ import annotations

import time

import pytest

from bot.server.app import create_app
from connectors.wechat.crypto import compute_signature, random_nonce
from connectors.wechat.messages import MAX_ENCRYPT_CANDIDATES, MalformedMessageError, encrypt_candidates
from tests.connectors.wechat.test_wechat_channel import URL, FakeAgent, make_channel, push, reply_fields

TOKEN = "kefutoken"  # as in conftest.py

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
    )
    + b"]><xml><Encrypt>&lol9;</Encrypt><ToUserName>&lol9;</ToUserName></xml>"
)


def _xxe(path: str, tag: str = "Content") -> str:
    return (
        f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file://{path}">]>'
        f"<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[oU]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<{tag}>&xxe;</{tag}><MsgId>77</MsgId></xml>"
    )


def _query(token: str = TOKEN, *, encrypted: str | None = None, msg_token: str | None = None) -> str:
    ts, nonce = str(int(time.time())), random_nonce()
    query = f"signature={compute_signature(token, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=oU"
    if encrypted is not None:
        msg_signature = compute_signature(msg_token or token, ts, nonce, encrypted)
        query += f"&encrypt_type=aes&msg_signature={msg_signature}"
    return query


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-MARKER")
    return path


# --- strangers: refused before parsing -------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["plaintext", "compatible", "safe"])
async def test_unsigned_xml_bomb_is_refused_quickly_without_parsing(fake_api, agent, mode):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode=mode)])
    query = _query("not-the-token", encrypted=None if mode == "plaintext" else "AAAA")
    started = time.perf_counter()
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=BILLION_LAUGHS)
    assert resp.status == 403 and "signature" in resp.text
    assert time.perf_counter() - started < 1.0 and agent.messages == []


@pytest.mark.asyncio
async def test_safe_mode_bomb_with_bad_msg_signature_is_403_not_parsed(fake_api, agent):
    """Valid ``signature`` but the ``msg_signature`` does not cover the body: the old code
    parsed the envelope first (400 'DOCTYPE refused'); now the signature decides (403)."""
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    query = _query(encrypted="AAAA", msg_token="not-the-token")
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=BILLION_LAUGHS)
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
async def test_safe_mode_deep_envelope_with_bad_msg_signature_is_403(fake_api, agent):
    """A 5 000-deep envelope (within the webhook's 64 KiB body limit): parsing it first ended in
    RecursionError (a 500)."""
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    body = b"<xml>" + b"<a>" * 5_000 + b"</a>" * 5_000 + b"<Encrypt>AAAA</Encrypt></xml>"
    _, resp = await app.asgi_client.post(f"{URL}?{_query(encrypted='AAAA', msg_token='forged')}", content=body)
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["compatible", "safe"])
async def test_encrypted_push_needs_the_plain_signature_too(fake_api, agent, sender_factory, mode):
    """WeChat sends ``signature`` in every mode; the old code ignored it in AES mode."""
    app = create_app(agent, input_channels=[make_channel(fake_api, mode=mode)])
    sender = sender_factory(mode)
    query, body = sender.request(sender.xml("oU", "text", Content="hi", MsgId=1))
    forged = "&".join(p if not p.startswith("signature=") else "signature=" + "0" * 40 for p in query.split("&"))
    _, resp = await app.asgi_client.post(f"{URL}?{forged}", content=body)
    assert resp.status == 403 and agent.messages == []
    missing = "&".join(p for p in query.split("&") if not p.startswith("signature="))
    _, resp = await app.asgi_client.post(f"{URL}?{missing}", content=body)
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
async def test_non_ascii_signature_is_403_not_500(fake_api, agent):
    """Found by the OpenAPI fuzz run: compare_digest raised TypeError on a non-ASCII str."""
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    ts = int(time.time())
    _, resp = await app.asgi_client.get(f"{URL}?signature=%C3%A9&timestamp={ts}&nonce=n&echostr=x")
    assert resp.status == 403
    _, resp = await app.asgi_client.post(f"{URL}?signature=%C3%A9&timestamp={ts}&nonce=n", content=b"<xml/>")
    assert resp.status == 403 and agent.messages == []


@pytest.mark.asyncio
async def test_oversized_body_is_413_before_anything_else(fake_api, agent):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe", max_body_size=4096)])
    body = BILLION_LAUGHS + b" " * 5000
    _, resp = await app.asgi_client.post(f"{URL}?{_query('not-the-token', encrypted='AAAA')}", content=body)
    assert resp.status == 413 and agent.messages == []


# --- WeChat-signed but hostile: defusedxml refuses --------------------------------------------

@pytest.mark.asyncio
async def test_signed_plaintext_xxe_is_refused_by_defusedxml(fake_api, agent, secret_file):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    _, resp = await app.asgi_client.post(f"{URL}?{_query()}", content=_xxe(str(secret_file)).encode())
    assert resp.status == 400 and "defusedxml" in resp.text
    assert "TOP-SECRET-MARKER" not in resp.text and agent.messages == []


@pytest.mark.asyncio
async def test_signed_encrypted_xxe_is_refused_by_defusedxml(fake_api, agent, sender_factory, secret_file):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    sender = sender_factory("safe")
    resp = await push(app, sender, _xxe(str(secret_file)))
    assert resp.status == 400 and "defusedxml" in resp.text
    assert "TOP-SECRET-MARKER" not in resp.text and agent.messages == []


@pytest.mark.asyncio
async def test_signed_deep_document_is_400_not_500(fake_api, agent):
    app = create_app(agent, input_channels=[make_channel(fake_api)])
    body = b"<xml>" + b"<a>" * 5_000 + b"</a>" * 5_000 + b"</xml>"
    _, resp = await app.asgi_client.post(f"{URL}?{_query()}", content=body)
    assert resp.status == 400 and "deeper" in resp.text


# --- the envelope is scanned, not parsed ------------------------------------------------------

@pytest.mark.asyncio
async def test_safe_mode_reads_ciphertext_from_an_envelope_it_never_parses(fake_api, agent, sender_factory):
    """The outer envelope is not authenticated, so it is not parsed: even a body that is not
    well-formed XML works when the ciphertext inside is the one ``msg_signature`` signs."""
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="safe")])
    sender = sender_factory("safe")
    query, body = sender.request(sender.xml("oU", "text", Content="hi", MsgId=5))
    _, resp = await app.asgi_client.post(f"{URL}?{query}", content=body.replace(b"</xml>", b"<unclosed>"))
    assert resp.status == 200 and reply_fields(resp, sender)["Content"] == "echo: hi"


@pytest.mark.asyncio
async def test_compatible_mode_decoy_encrypt_in_shopper_text_is_ignored(fake_api, agent, sender_factory):
    app = create_app(agent, input_channels=[make_channel(fake_api, mode="compatible")])
    sender = sender_factory("compatible")
    text = "<Encrypt>QUFBQQ==</Encrypt> 订单到哪了"
    resp = await push(app, sender, sender.xml("oU", "text", Content=text, MsgId=6))
    assert resp.status == 200 and [m.text for m in agent.messages] == [text]


def test_encrypt_candidates_is_bounded_and_expands_nothing():
    assert encrypt_candidates(b"<xml><Encrypt><![CDATA[ QUJD+/= ]]></Encrypt></xml>") == ["QUJD+/="]
    assert encrypt_candidates(b"<xml><Encrypt>QUJD</Encrypt><Encrypt>&lol;</Encrypt></xml>") == ["QUJD"]
    many = b"<xml>" + b"<Encrypt>QUJD</Encrypt>" * 50 + b"</xml>"
    assert len(encrypt_candidates(many)) == MAX_ENCRYPT_CANDIDATES
    for body in (BILLION_LAUGHS, b"<xml></xml>", b"<xml><Encrypt>unclosed"):
        with pytest.raises(MalformedMessageError):
            encrypt_candidates(body)
    with pytest.raises(MalformedMessageError, match="limit"):
        encrypt_candidates(b"<xml><Encrypt>" + b"A" * 2000 + b"</Encrypt></xml>", max_bytes=1000)
