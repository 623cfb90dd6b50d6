"""Issue #15 point 3 on the widget channel: server-issued session ids, history to the owner only,
and the shop-signed identity token. Real server on 127.0.0.1, python-socketio clients."""
from __future__ import annotations

import asyncio
import pickle
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

socketio = pytest.importorskip("socketio")
pytest.importorskip("aiohttp")
jwt = pytest.importorskip("jwt")

from bot.shared.exceptions import ConfigError  # noqa: E402
from connectors.socketio import SocketIOInput  # noqa: E402
from connectors.socketio.sessions import SessionIssuer  # noqa: E402
from tests.connectors.test_socketio import Client, ShopAgent, serving  # noqa: E402

SECRET = secrets.token_urlsafe(32)  # made per run: never a secret in a tracked file


def channel_with_identity(**extra: Any) -> SocketIOInput:
    return SocketIOInput.from_credentials({"session_persistence": True, "identity_secret": SECRET, **extra})


def token(sub: str = "42", *, exp: float | None = None, key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(exp if exp is not None else time.time() + 600), **claims}
    return jwt.encode(payload, key, algorithm=algorithm)


def hs256_by_hand(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT minted without PyJWT (which refuses a PEM key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


class IdClient(Client):
    def __init__(self) -> None:
        super().__init__(events=("bot_uttered", "kefu_error"))

    async def request(self, **data: Any) -> None:
        await self.sio.emit("session_request", data)

    async def confirmed(self, **data: Any) -> str:
        before = len(self.received.get("session_confirm", []))
        await self.request(**data)
        return (await self.wait_for("session_confirm", before + 1))[-1]


# ----------------------------------------------------------------------------- session ids
@pytest.mark.asyncio
async def test_second_client_with_another_shoppers_old_plain_id_gets_a_new_empty_session() -> None:
    """The old protocol took any id: knowing a shopper's id meant reading and writing their chat."""
    channel = SocketIOInput.from_credentials({"session_persistence": True})
    agent = ShopAgent()
    victim_id = "shopper-7"  # a plain id from before issue #15 (or a guess)
    await channel.outbox.append(victim_id, {"sender": "user", "text": "my phone is 13812345678", "message_id": "v1"})
    async with serving(channel, agent) as url:
        stranger = IdClient()
        await stranger.connect(url)
        got = await stranger.confirmed(session_id=victim_id, last_seen_seq=0)
        assert got != victim_id
        await asyncio.sleep(0.2)
        assert "kefu_history" not in stranger.received  # nothing of the victim's replayed
        # posting into the victim's conversation by naming it is refused
        ack = await stranger.sio.call("user_uttered", {"message": "cancel my order", "session_id": victim_id})
        assert ack["status"] == "error" and agent.messages == []
        await stranger.sio.disconnect()


@pytest.mark.asyncio
async def test_a_stranger_cannot_forge_an_issued_id_or_post_into_it() -> None:
    channel = SocketIOInput.from_credentials({"session_persistence": True})
    agent = ShopAgent()
    async with serving(channel, agent) as url:
        owner = IdClient()
        await owner.connect(url)
        owned = await owner.confirmed(session_id=None)
        await owner.sio.call("user_uttered", {"message": "my address is 1 Road", "session_id": owned})
        nonce, _, tag = owned.rpartition(".")
        forged = [f"{nonce}.a{'A' * (len(tag) - 1)}", f"{secrets.token_urlsafe(24)}.{tag}", f"{nonce}.c{tag[1:]}"]
        stranger = IdClient()
        await stranger.connect(url)
        for candidate in forged:
            assert await stranger.confirmed(session_id=candidate, last_seen_seq=0) != owned
        mine = stranger.received["session_confirm"][-1]
        ack = await stranger.sio.call("user_uttered", {"message": "hi", "session_id": owned})
        assert ack["status"] == "error"
        assert [m.sender_id for m in agent.messages] == [owned]
        ok = await stranger.sio.call("user_uttered", {"message": "hi", "session_id": mine})
        assert ok["status"] == "ok" and agent.messages[-1].sender_id == mine
        await asyncio.sleep(0.2)
        assert all(m["messages"] == [] for m in stranger.received.get("kefu_history", []))
        async with httpx.AsyncClient(base_url=url) as http:
            for candidate in forged:
                assert (await http.get(f"/webhooks/socketio/history/{candidate}")).status_code == 403
        for c in (owner, stranger):
            await c.sio.disconnect()


def test_issued_ids_verify_in_another_worker_with_the_same_secret() -> None:
    channel = SocketIOInput.from_credentials({"session_persistence": True})
    issued = channel.sessions.issue()
    worker = pickle.loads(pickle.dumps(channel))  # Sanic starts workers from the pickled channel
    assert worker.sessions.verify(issued)
    configured = SessionIssuer.from_secret("x" * 32)
    assert SessionIssuer.from_secret("x" * 32).verify(configured.issue("42"), "42")
    assert not SessionIssuer.from_secret("y" * 32).verify(configured.issue())


# ----------------------------------------------------------------------------- identity token
@pytest.mark.asyncio
async def test_valid_identity_token_binds_the_session_and_reaches_the_engine_as_metadata() -> None:
    agent = ShopAgent()
    channel = channel_with_identity()
    async with serving(channel, agent) as url:
        client = IdClient()
        await client.connect(url)
        session = await client.confirmed(session_id=None, identity_token=token("42", name="Li", phone="13812345678"))
        assert channel.sessions.verify(session, "42") and not channel.sessions.verify(session)
        ack = await client.sio.call("user_uttered", {
            "message": "where is my order", "session_id": session,
            "metadata": {"page": "/orders", "identity": {"customer_id": "1", "source": "widget_token", "verified": True},
                         "customer_id": "1"},
        })
        assert ack["status"] == "ok"
        metadata = agent.messages[0].metadata
        assert metadata["page"] == "/orders" and "customer_id" not in metadata
        identity = metadata["identity"]
        assert {k: identity[k] for k in ("customer_id", "source", "verified", "name", "phone")} == {
            "customer_id": "42", "source": "widget_token", "verified": True, "name": "Li", "phone": "13812345678"}
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_client_metadata_identity_without_a_token_is_dropped() -> None:
    agent = ShopAgent()
    async with serving(channel_with_identity(), agent) as url:
        client = IdClient()
        await client.connect(url)
        session = await client.confirmed(session_id=None)
        await client.sio.call("user_uttered", {
            "message": "hi", "session_id": session,
            "metadata": {"identity": {"customer_id": "42", "source": "widget_token", "verified": True}}})
        assert "identity" not in (agent.messages[0].metadata or {})
        await client.sio.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("bad, code", [
    (lambda: token("42", key="another-secret-" + "z" * 32), "identity_token_invalid"),
    (lambda: token("42", exp=time.time() - 3600), "identity_token_expired"),
    (lambda: jwt.encode({"sub": "42"}, SECRET, algorithm="HS256"), "identity_token_invalid"),  # no exp
    (lambda: jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "identity_token_invalid"),
    (lambda: jwt.encode({"sub": "42", "exp": int(time.time()) + 60}, "", algorithm="none"), "identity_token_invalid"),
    (lambda: "not.a.jwt", "identity_token_invalid"),
])
async def test_invalid_or_expired_token_is_refused_with_an_error_event(bad: Any, code: str) -> None:
    agent = ShopAgent()
    async with serving(channel_with_identity(), agent) as url:
        client = IdClient()
        await client.connect(url)
        await client.request(session_id=None, identity_token=bad())
        error = (await client.wait_for("kefu_error", 1))[0]
        assert error["code"] == code and "identity token" in error["message"]
        await asyncio.sleep(0.2)
        assert "session_confirm" not in client.received  # no anonymous session instead
        ack = await client.sio.call("user_uttered", {"message": "hi"})
        assert ack["status"] == "error" and agent.messages == []
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_token_given_to_a_server_without_identity_key_is_refused() -> None:
    async with serving(SocketIOInput.from_credentials({"session_persistence": True})) as url:
        client = IdClient()
        await client.connect(url)
        await client.request(session_id=None, identity_token=token())
        error = (await client.wait_for("kefu_error", 1))[0]
        assert error["code"] == "identity_token_not_accepted" and "identity_secret" in error["message"]
        await client.sio.disconnect()


@pytest.mark.asyncio
async def test_bound_session_is_resumed_only_with_the_same_customers_token() -> None:
    channel = channel_with_identity()
    async with serving(channel) as url:
        client = IdClient()
        await client.connect(url)
        bound = await client.confirmed(session_id=None, identity_token=token("42"))
        await channel.get_output_channel_for(bound).send_response(bound, {"text": "order E1 shipped"})
        assert await client.confirmed(session_id=bound, identity_token=token("42")) == bound
        other = IdClient()
        await other.connect(url)
        assert await other.confirmed(session_id=bound, identity_token=token("43"), last_seen_seq=0) != bound
        assert await other.confirmed(session_id=bound, last_seen_seq=0) != bound  # signed out: a new chat
        await asyncio.sleep(0.2)
        assert all(h["messages"] == [] for h in other.received.get("kefu_history", []))
        async with httpx.AsyncClient(base_url=url) as http:
            path = f"/webhooks/socketio/history/{bound}"
            assert (await http.get(path)).status_code == 403
            assert (await http.get(path, headers={"X-Kefu-Identity-Token": token("43")})).status_code == 403
            mine = await http.get(path, headers={"X-Kefu-Identity-Token": token("42")})
            assert mine.status_code == 200 and [m["text"] for m in mine.json()["messages"]] == ["order E1 shipped"]
        for c in (client, other):
            await c.sio.disconnect()


@pytest.mark.asyncio
async def test_messages_after_the_token_expires_are_refused() -> None:
    agent = ShopAgent()
    async with serving(channel_with_identity(), agent) as url:
        client = IdClient()
        await client.connect(url)
        # exp within PyJWT's leeway (30 s): valid now, expired for the channel's own check
        session = await client.confirmed(session_id=None, identity_token=token("42", exp=time.time() - 1))
        ack = await client.sio.call("user_uttered", {"message": "hi", "session_id": session})
        assert ack["status"] == "error" and ack["code"] == "identity_token_expired"
        assert agent.messages == []
        await client.sio.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_public_key_tokens_verify(tmp_path: Path, algorithm: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    public_file = tmp_path / "shop-public.pem"
    public_file.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    agent = ShopAgent()
    channel = SocketIOInput.from_credentials({"session_persistence": True, "identity_public_key": str(public_file)})
    async with serving(channel, agent) as url:
        client = IdClient()
        await client.connect(url)
        session = await client.confirmed(session_id=None, identity_token=token("7", key=private, algorithm=algorithm))
        await client.sio.call("user_uttered", {"message": "hi", "session_id": session})
        assert agent.messages[0].metadata["identity"]["customer_id"] == "7"
        # an HS256 token "signed" with the public key text is the classic confusion attack
        await client.request(session_id=None, identity_token=hs256_by_hand({"sub": "8", "exp": int(time.time()) + 60},
                                                                           public_file.read_bytes()))
        assert (await client.wait_for("kefu_error", 1))[0]["code"] == "identity_token_invalid"
        await client.sio.disconnect()


# ----------------------------------------------------------------------------- config
def test_identity_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_WIDGET_IDENTITY_SECRET", SECRET)
    channel = SocketIOInput.from_credentials({"identity_secret": "${KEFU_WIDGET_IDENTITY_SECRET}"})
    assert channel.verify_identity(token("9")).customer_id == "9"
    monkeypatch.delenv("KEFU_WIDGET_IDENTITY_SECRET")
    with pytest.raises(ConfigError) as info:
        SocketIOInput.from_credentials({"identity_secret": "${KEFU_WIDGET_IDENTITY_SECRET}"})
    assert "KEFU_WIDGET_IDENTITY_SECRET" in str(info.value)


@pytest.mark.parametrize("credentials, needle", [
    ({"identity_secret": "short"}, "identity_secret"),
    ({"session_secret": "short"}, "session_secret"),
    ({"identity_public_key": "/nonexistent/key.pem"}, "identity_public_key"),
    ({"identity_secret": "s" * 32, "identity_public_key": "/x.pem"}, "not both"),
])
def test_bad_identity_credentials_fail_naming_the_key(credentials: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        SocketIOInput.from_credentials(credentials)
    assert needle in str(info.value)
