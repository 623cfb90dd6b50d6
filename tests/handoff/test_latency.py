"""Per-handoff work under load: one SQL write per auto-assigned escalation, the agent hears first,
message fan-out only to the owner, and a busy console keeps heart-beating."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.handoff.store import ASSIGNED, QUEUED
from tests.handoff.helpers import RecordingBroker


async def _escalate(service: Any, sender: str) -> dict[str, Any]:
    from bot.handoff import Escalation
    from bot.shared.events import UserUttered
    from bot.shared.tracker import DialogueStateTracker

    tracker = DialogueStateTracker(sender, [])
    tracker.update(UserUttered("a human please", {"name": "request_human", "confidence": 1.0}, [],
                               {"language": "en"}, input_channel="test"))
    h = await service.escalate(tracker, Escalation("request_human"), None, None)
    assert tracker.is_paused()
    return h


async def _service(config: Any) -> Any:
    from bot.handoff import HandoffService

    async def no_profile(channel: Any, sender: str) -> None:
        return None

    service = HandoffService(config, profile_provider=no_profile, event_broker=RecordingBroker())
    await service.start()
    return service


def test_escalate_assigns_in_one_write_and_notifies_the_agent_first(config_factory: Any) -> None:
    async def scenario() -> None:
        service = await _service(config_factory())
        seen: list[dict[str, Any]] = []

        async def console(event: dict[str, Any]) -> None:
            seen.append(event)

        service.subscribe(console)
        await service.set_status("alice", "online")
        seen.clear()
        writes: list[str] = []
        original = service.store._update

        async def counting_update(where: Any, **values: Any) -> bool:
            writes.append(",".join(sorted(values)))
            return await original(where, **values)

        service.store._update = counting_update  # type: ignore[method-assign]
        h = await _escalate(service, "s1")
        assert h["status"] == ASSIGNED and h["agent_id"] == "alice"
        assert writes == []  # created already assigned: no insert-then-update
        stored = await service.store.get(h["id"])
        assert stored is not None and stored["status"] == ASSIGNED and stored["assigned_at"] is not None
        assert [e["type"] for e in seen] == ["handoff_assigned"]  # no queued-then-assigned flicker
        assert seen[0]["agent_id"] == "alice" and seen[0]["handoff"]["id"] == h["id"]
        assert service.event_broker.names("s1") == ["handoff_requested", "handoff_assigned"]
        assert await service.queue.ordered() == []
        assert h["id"] in service.agents["alice"].active
        await service.close()

    asyncio.run(scenario())


def test_escalate_without_online_agent_queues_and_assigns_later(config_factory: Any) -> None:
    async def scenario() -> None:
        service = await _service(config_factory())
        h = await _escalate(service, "s2")
        assert h["status"] == QUEUED and h["agent_id"] is None
        assert await service.queue.ordered() == [h["id"]]
        await service.set_status("alice", "online")
        stored = await service.store.get(h["id"])
        assert stored is not None and stored["status"] == ASSIGNED and stored["agent_id"] == "alice"
        assert service.event_broker.names("s2") == ["handoff_requested", "handoff_assigned"]
        await service.close()

    asyncio.run(scenario())


def test_wants_sends_messages_of_an_owned_conversation_to_owner_and_supervisors_only(config_factory: Any) -> None:
    config = config_factory()
    from bot.handoff import HandoffService

    service = HandoffService(config)
    alice, sue, root = config.agent("alice"), config.agent("sue"), config.agent("root")
    owned = {"type": "message", "handoff_id": "h1", "queue": "general:en", "agent_id": "alice", "message": {}}
    queued = {"type": "message", "handoff_id": "h2", "queue": "general:en", "agent_id": None, "message": {}}
    listed = {"type": "handoff_assigned", "handoff": {"id": "h1", "queue": "general:en", "agent_id": "alice"},
              "agent_id": "alice"}
    other = {"type": "message", "handoff_id": "h3", "queue": "general:en", "agent_id": "bob", "message": {}}
    assert service.wants(alice, owned) and service.wants(sue, owned)
    assert not service.wants(alice, other)  # same queue, someone else's conversation
    assert service.wants(alice, queued)  # waiting conversations stay visible to the queue
    assert root.is_supervisor and service.wants(root, owned)  # admins supervise
    assert service.wants(sue, listed) and service.wants(alice, listed)
    assert service.wants(alice, {"type": "agent_status", "agent": {"id": "bob"}})


def test_console_websocket_heartbeats_while_events_keep_coming(config_factory: Any, tmp_path: Any) -> None:
    """A console receiving events faster than the heartbeat interval still heart-beats."""
    from sanic import Sanic

    from bot.handoff.api import create_handoff_blueprint

    async def scenario() -> None:
        import websockets

        service = await _service(config_factory(presence_ttl_s=0.6))
        beats: list[str] = []
        original = service.heartbeat

        async def counting(agent_id: str) -> bool:
            beats.append(agent_id)
            return await original(agent_id)

        service.heartbeat = counting  # type: ignore[method-assign]
        app = Sanic(f"hb_{id(service)}")
        app.config.TOUCHUP = False
        app.blueprint(create_handoff_blueprint(service))
        server = await app.create_server(host="127.0.0.1", port=0, return_asyncio_server=True, access_log=False)
        await server.startup()
        port = server.server.sockets[0].getsockname()[1]
        serving = asyncio.create_task(server.serve_forever())
        from bot.handoff.auth import issue_token

        token, _ = issue_token(service.config, service.config.agent("alice"))
        await service.set_status("alice", "online")
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/handoff/ws") as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                await ws.recv()  # hello
                beats.clear()
                loop = asyncio.get_running_loop()
                end = loop.time() + 1.0
                while loop.time() < end:  # an event every 20 ms: the outbox never times out
                    await service.notifier.notify({"type": "agent_status", "agent": {"id": "bob", "status": "away"}})
                    await ws.recv()
                    await asyncio.sleep(0.02)
                assert beats.count("alice") >= 2
                assert await service.expire_agents() == []
                assert (await service.agent_view("alice"))["status"] == "online"
        finally:
            server.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await service.close()

    asyncio.run(scenario())
