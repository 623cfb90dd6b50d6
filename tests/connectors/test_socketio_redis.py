"""The socketio channel with the Redis outbox: two servers ("workers") share one real Redis.

A push made on one worker must reach a socket held by the other, history must
survive a restart, and seqs must stay increasing whichever worker records.
"""
from __future__ import annotations

import asyncio
import secrets

import pytest

pytest.importorskip("socketio")
pytest.importorskip("aiohttp")

from bot.shared.exceptions import ConfigError  # noqa: E402
from connectors.socketio import RedisOutbox, SocketIOInput, create_outbox  # noqa: E402
from tests.connectors.test_socketio import Client, ShopAgent, serving  # noqa: E402

pytestmark = pytest.mark.redis


# Several machines and restarts share the session secret (credentials `session_secret`), so a
# session id issued before a restart or by another machine is resumed. Made per run.
SESSION_SECRET = secrets.token_urlsafe(32)


def redis_channel(url: str, **outbox: object) -> SocketIOInput:
    return SocketIOInput.from_credentials(
        {"session_persistence": True, "session_secret": SESSION_SECRET,
         "outbox": {"type": "redis", "url": url, **outbox}}
    )


@pytest.mark.asyncio
async def test_redis_outbox_seq_trim_find_and_ttl(redis_url: str) -> None:
    box = create_outbox({"type": "redis", "url": redis_url, "max_messages": 2, "ttl_seconds": 60})
    assert isinstance(box, RedisOutbox)
    for text in ("a", "b", "c\tß 你好"):
        stored = await box.append("s1", {"text": text, "message_id": f"m-{text[0]}"})
    assert stored["seq"] == 3
    assert [(e["seq"], e["text"]) for e in await box.after("s1", 0)] == [(2, "b"), (3, "c\tß 你好")]
    assert [e["seq"] for e in await box.after("s1", 2)] == [3]
    assert await box.find("s1", "m-a") is None
    assert (await box.find("s1", "m-c"))["seq"] == 3
    assert await box.after("other", 0) == []
    ttl = await box._redis().ttl("kefu:outbox:{s1}:log")
    assert 0 < ttl <= 60


@pytest.mark.asyncio
async def test_redis_outbox_concurrent_appends_get_distinct_seqs(redis_url: str) -> None:
    first, second = RedisOutbox(redis_url), RedisOutbox(redis_url)  # two workers' clients
    stored = await asyncio.gather(
        *[(first if i % 2 else second).append("s", {"text": str(i)}) for i in range(40)]
    )
    assert sorted(e["seq"] for e in stored) == list(range(1, 41))
    assert len(await first.after("s", 0)) == 40


def test_redis_outbox_bad_url_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        SocketIOInput.from_credentials({"outbox": {"type": "redis", "url": "localhost:6379"}})
    assert "outbox.url" in str(info.value)


@pytest.mark.asyncio
async def test_push_on_one_worker_reaches_socket_on_another(redis_url: str) -> None:
    worker_a, worker_b = redis_channel(redis_url), redis_channel(redis_url)
    async with serving(worker_a) as url_a, serving(worker_b, ShopAgent()):
        shopper = Client()
        await shopper.connect(url_a)
        sid = await shopper.session("s-cross")
        await shopper.sio.call("user_uttered", {"message": "hi", "session_id": sid})
        assert (await shopper.wait_for("bot_uttered", 1))[0]["text"] == "echo: hi"

        # an agent reply handled by worker B (e.g. the agent's console is connected there)
        await worker_b.get_output_channel_for(sid).send_response(sid, {"text": "Agent Li here."})
        received = await shopper.wait_for("bot_uttered", 2)
        assert received[1]["text"] == "Agent Li here."
        assert received[1]["seq"] == received[0]["seq"] + 1  # one counter for both workers
        await shopper.sio.disconnect()


@pytest.mark.asyncio
async def test_history_survives_restart_and_retry_is_deduplicated_across_workers(
    redis_url: str,
) -> None:
    agent = ShopAgent()
    async with serving(redis_channel(redis_url), agent) as url:
        client = Client()
        await client.connect(url)
        sid = await client.session("s-restart")
        ack = await client.sio.call(
            "user_uttered", {"message": "hello", "session_id": sid, "message_id": "m-1"}
        )
        assert ack["status"] == "ok"
        await client.wait_for("bot_uttered", 1)
        await client.sio.disconnect()

    # a new server process (fresh channel object, same Redis): history is still there
    async with serving(redis_channel(redis_url), agent) as url:
        again = Client()
        await again.connect(url)
        assert await again.session(sid, last_seen=0) == sid
        history = (await again.wait_for("kefu_history", 1))[-1]["messages"]
        assert [(m["sender"], m["text"]) for m in history] == [("user", "hello"), ("bot", "echo: hello")]
        retry = await again.sio.call(
            "user_uttered", {"message": "hello", "session_id": sid, "message_id": "m-1"}
        )
        assert retry["status"] == "duplicate" and retry["seq"] == history[0]["seq"]
        assert [m.text for m in agent.messages] == ["hello"]  # handled once
        await again.sio.disconnect()


@pytest.mark.asyncio
async def test_redis_outbox_append_keys_share_one_cluster_slot(redis_url: str) -> None:
    """Redis Cluster runs the append script only if all its keys hash to one slot."""
    import redis.asyncio as aioredis
    from redis.crc import key_slot

    box = RedisOutbox(redis_url)
    for session in ("s1", "widget-7f3a", "a:b@c.d"):
        keys = box.keys(session).script_keys()
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
        assert all(f"{{{session}}}" in k for k in keys)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await client.flushdb()
        await box.append("s-slot", {"text": "hi"})
        touched = sorted(await client.keys("*"))  # everything the script wrote
        assert touched == sorted(box.keys("s-slot").script_keys())
        assert len({key_slot(k.encode()) for k in touched}) == 1
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_message_sent_while_redis_restarts_is_retried_then_handled_once(tmp_path) -> None:
    """Redis (append-only file, as scripts/cluster.py and deploy/compose.yml run it) restarts
    under a widget: a message sent while it is down gets a retryable error ack with nothing
    recorded; re-sent with the same id after the restart it is answered once, and the
    conversation before the restart is still there."""
    from tests.redis_server import RedisServer

    redis = RedisServer(directory=tmp_path / "redis",
                        extra_args=("--appendonly", "yes", "--appendfsync", "always")).start()
    agent = ShopAgent()
    channel = redis_channel(redis.url)
    try:
        async with serving(channel, agent) as url:
            client = Client()
            await client.connect(url)
            sid = await client.session("s-redis-restart")
            first = await client.sio.call("user_uttered", {"message": "before", "session_id": sid,
                                                           "message_id": "m-before"})
            assert first["status"] == "ok"
            redis.stop()
            during = {"message": "during", "session_id": sid, "message_id": "m-during"}
            failed = await client.sio.call("user_uttered", during, timeout=30)
            assert failed["status"] == "error" and failed["retryable"] is True
            assert [m.text for m in agent.messages] == ["before"]
            redis.start()
            for _ in range(20):  # the client reconnects on its next command
                resent = await client.sio.call("user_uttered", during, timeout=30)
                if resent["status"] != "error":
                    break
                await asyncio.sleep(0.2)
            assert resent["status"] == "ok"
            again = await client.sio.call("user_uttered", during, timeout=30)
            assert again["status"] == "duplicate"
            assert [m.text for m in agent.messages] == ["before", "during"]
            history = [(m["sender"], m["text"], m.get("reply_to")) for m in await channel.history(sid)]
            assert history == [("user", "before", None), ("bot", "echo: before", "m-before"),
                               ("user", "during", None), ("bot", "echo: during", "m-during")]
            await client.sio.disconnect()
    finally:
        redis.stop()


@pytest.mark.asyncio
async def test_bot_message_waits_out_a_redis_restart_instead_of_being_dropped(tmp_path) -> None:
    """A reply or push recorded while the outbox's Redis restarts is recorded once it is back."""
    from tests.redis_server import RedisServer

    redis = RedisServer(directory=tmp_path / "redis", extra_args=("--appendonly", "yes")).start()
    channel = redis_channel(redis.url)
    try:
        await channel.record_and_emit("s-wait", {"sender": "bot", "text": "one"})
        redis.stop()
        push = asyncio.ensure_future(channel.record_and_emit("s-wait", {"sender": "bot", "text": "two"}))
        await asyncio.sleep(1.0)
        assert not push.done()  # waiting, not dropped
        redis.start()
        entry = await asyncio.wait_for(push, 15)
        assert entry["seq"] == 2
        assert [m["text"] for m in await channel.history("s-wait")] == ["one", "two"]
    finally:
        redis.stop()
