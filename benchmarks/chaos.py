"""Faults under bounded load over scripts/cluster.py: what is lost, duplicated, and how long recovery takes.

One cluster (nginx -> N workers -> PostgreSQL + Redis + action server, the demo model) and a few
shoppers through nginx the whole time: REST shoppers (one message at a time, a retry of a
failed message after 1 s, as a shop backend would) and widget shoppers (socket.io; on a dropped
socket they reconnect, resume their session and re-send the unanswered message with the same
message id, as the widget does; on an error ack that says ``retryable`` they re-send it, backing
off 1, 2, 4, 8, 10, 10 s as the widget does). A widget reply counts for the message it names in
``reply_to``, never for whatever arrives next (replies of an earlier turn can arrive late).
Faults, one after another, each in its own window:

- ``kill9_worker``: kill -9 a worker mid-conversation, start it again after 5 s;
- ``redis_restart``: redis-server stopped (SIGTERM, append-only file) and started on its port;
- ``postgres_down_10s``: PostgreSQL stopped (fast shutdown) for 10 s;
- ``actions_slow``: the action server frozen (SIGSTOP) for 8 s, then ``actions_dead``: killed,
  started again after 10 s;
- ``agent_console_drop``: an agent holding a handoff loses the console (socket cut, no goodbye);
  measured: how long until the handoff is back in the queue, and the shopper's messages kept.

Per fault: messages sent, answered, failed with a retryable error (HTTP 502/503/504, a socket
error ack, a dropped socket), lost (an answered message missing from the stored conversation),
stored twice, proactive messages (one journey event per widget shopper per fault, due during
the fault) delivered more than once, and the recovery time (fault until every shopper is
answered again). JSON in benchmarks/results/chaos.json.

    nice -n 5 .venv/bin/python benchmarks/chaos.py --workers 3 --rest 4 --widgets 4
    .venv/bin/python benchmarks/chaos.py --faults redis_restart --repeat 5 --out /tmp/redis.json

An answered message missing from its conversation is listed under ``lost_turns`` with what
the shopper saw (attempts, acks, the reply's seq and ``reply_to``) and, for a widget, the
outbox's entries for it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from scripts.cluster import Cluster, http_get  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "chaos.json"
TEXTS = ["你好", "有什么跑鞋推荐", "谢谢", "hello", "运费多少", "好的"]
TRIGGER_DELAY_S = 6
TRIGGERS_YML = f"""\
version: "1"
settings:
  timezone: Asia/Shanghai
  # no quiet hours: the default window (21:00-09:00 Shanghai) would hold the step
  # whenever this runs after 13:00 UTC
  quiet_hours: {{start: "00:00", end: "00:00"}}
  lease: 10s
journeys:
  chaos_cart:
    entry: {{event: cart_item_added}}
    priority: transactional
    reentry: always
    steps:
      - name: reminder
        delay: {TRIGGER_DELAY_S}s
        expires: 1h
        response: utter_trigger_cart_reminder
        slots: {{product: properties.product_name}}
"""
RETRYABLE_STATUS = {429, 502, 503, 504}
WIDGET_RETRIES = 6  # as connectors/static/kefu-widget.js: re-sends after 1, 2, 4, 8, 10, 10 s
FAULTS = ("kill9_worker", "redis_restart", "postgres_down_10s", "actions_slow", "actions_dead", "agent_console_drop")


@dataclass
class Turn:
    shopper: str
    text: str
    sent_at: float
    done_at: float = 0.0
    ok: bool = False
    error: Optional[str] = None
    attempts: int = 1
    errors: list[str] = field(default_factory=list)  # every failed attempt, answered or not in the end
    kind: str = "rest"
    message_id: str = ""  # a widget message's id (the same on every re-send)
    acks: list[Any] = field(default_factory=list)  # a widget message's socket.io acks, per attempt
    reply: dict[str, Any] = field(default_factory=dict)  # the reply counted as its answer


@dataclass
class Window:
    name: str
    turns: list[Turn] = field(default_factory=list)
    fault_at: float = 0.0
    fault_end: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    late_replies: int = 0  # widget replies that arrived while a later message of theirs waited


class Load:
    """Shoppers that keep talking until stopped; every turn is recorded in the current window."""

    def __init__(self, cluster: Cluster, addresses: list[str], rest: int, widgets: int, think: float) -> None:
        self.cluster, self.addresses, self.think = cluster, addresses, think
        self.rest_senders = [f"chaos-rest-{i}-{uuid.uuid4().hex[:6]}" for i in range(rest)]
        self.widget_count = widgets
        self.widget_sessions: dict[int, str] = {}
        self.proactive: dict[str, list[str]] = {}  # session -> proactive texts received
        self.window = Window("warmup")
        self.stop = asyncio.Event()
        self.seq = 0

    def _text(self) -> str:
        self.seq += 1
        return f"{TEXTS[self.seq % len(TEXTS)]} {self.seq}"

    async def rest_shopper(self, index: int) -> None:
        import aiohttp

        sender = self.rest_senders[index]
        address = self.addresses[index % len(self.addresses)]
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            while not self.stop.is_set():
                turn = Turn(sender, self._text(), time.monotonic(), kind="rest")
                self.window.turns.append(turn)
                for attempt in range(1, 6):  # a shop backend retries a retryable failure (Retry-After)
                    turn.attempts = attempt
                    wait = 1.0
                    try:
                        async with http.post(self.cluster.url + "/webhooks/rest/webhook",
                                             json={"sender": sender, "message": turn.text}) as r:
                            body = await r.json(content_type=None) if r.status == 200 else await r.text()
                            if r.status == 200 and body:
                                turn.ok = True
                                turn.reply = {"status": 200, "messages": len(body)}
                                break
                            turn.error = f"http {r.status}" + (" (retryable)" if r.status in RETRYABLE_STATUS else "")
                            turn.errors.append(turn.error)
                            if r.status not in RETRYABLE_STATUS:
                                break
                            wait = float(r.headers.get("Retry-After") or 1.0)
                    except Exception as e:  # noqa: BLE001 - recorded
                        turn.error = f"{type(e).__name__} (retryable)"
                        turn.errors.append(turn.error)
                    await asyncio.sleep(wait)
                turn.done_at = time.monotonic()
                await asyncio.sleep(self.think)

    async def widget_shopper(self, index: int) -> None:
        """A widget: one message at a time, each with its own message id; a reply counts for the
        message it names in ``reply_to`` (kefu's widget protocol), never for whatever arrives next."""
        import aiohttp
        import socketio

        address = self.addresses[(index + 1) % len(self.addresses)]
        session_id: Optional[str] = None
        pending: Optional[Turn] = None  # survives a dropped socket: the widget re-sends it
        last_seq = 0
        seen: set[Any] = set()
        answered: dict[str, dict[str, Any]] = {}  # message id -> the first reply naming it
        arrived = asyncio.Event()

        def record(data: Any) -> None:
            """A bot message from the server (live or replayed): a proactive one counted once per
            seq, a reply filed under the message id it answers."""
            nonlocal last_seq
            data = data if isinstance(data, dict) else {}
            seq = data.get("seq")
            if isinstance(seq, int):
                last_seq = max(last_seq, seq)
            if data.get("sender", "bot") != "bot":
                return
            text = str(data.get("text") or "")
            if "chaos-" in text:  # a proactive message carries the journey's product name
                key = seq if seq is not None else data.get("message_id")
                if key not in seen:
                    seen.add(key)
                    self.proactive.setdefault(session_id or "", []).append(text)
                return
            reply_to = data.get("reply_to")
            if reply_to is not None and pending is not None and reply_to != pending.message_id:
                self.window.late_replies += 1  # an earlier turn's reply: a client taking the next
                # reply as the answer would count this turn answered, whatever became of it
            if reply_to is None:  # a server without reply_to: the next reply is taken as the answer
                reply_to = pending.message_id if pending is not None else ""
                data = {**data, "unpaired": True}
            answered.setdefault(str(reply_to), data)
            arrived.set()

        while not self.stop.is_set():
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
            sio = socketio.AsyncClient(reconnection=False, http_session=http)
            confirmed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            dropped = asyncio.Event()

            @sio.on("bot_uttered")
            async def on_reply(data: Any) -> None:
                record(data)

            @sio.on("kefu_history")
            async def on_history(data: Any) -> None:  # what the outbox kept while the socket was down
                for item in (data or {}).get("messages", data if isinstance(data, list) else []):
                    record(item)

            @sio.on("session_confirm")
            async def on_confirm(data: Any) -> None:
                if not confirmed.done():
                    confirmed.set_result(data)

            @sio.event
            async def disconnect(*args: Any) -> None:
                dropped.set()

            try:
                await sio.connect(self.cluster.url, transports=["websocket"], wait_timeout=10)
                request: dict[str, Any] = {"session_id": session_id}
                if session_id:
                    request["last_seen_seq"] = last_seq  # the widget asks for what it missed
                await sio.emit("session_request", request)
                data = await asyncio.wait_for(confirmed, 10)
                session_id = data["session_id"] if isinstance(data, dict) else data
                self.widget_sessions[index] = session_id
                while not self.stop.is_set() and not dropped.is_set():
                    if pending is None:
                        pending = Turn(f"widget-{index}", self._text(), time.monotonic(), kind="widget",
                                       message_id=uuid.uuid4().hex)
                        self.window.turns.append(pending)
                    turn = pending
                    acked = asyncio.Event()
                    this_ack: dict[str, Any] = {}  # this attempt's ack (an earlier one may arrive late)

                    def on_ack(ack: Any = None, turn: Turn = turn, acked: asyncio.Event = acked,
                               this_ack: dict[str, Any] = this_ack) -> None:
                        status = ack.get("status") if isinstance(ack, dict) else repr(ack)
                        turn.acks.append(status)
                        this_ack["status"] = status
                        acked.set()

                    await sio.emit("user_uttered", {"message": turn.text, "session_id": session_id,
                                                    "message_id": turn.message_id}, callback=on_ack)
                    deadline = time.monotonic() + 20
                    while (turn.message_id not in answered and not dropped.is_set()
                           and time.monotonic() < deadline and this_ack.get("status") != "error"):
                        arrived.clear()
                        waiters = {asyncio.ensure_future(arrived.wait()), asyncio.ensure_future(dropped.wait()),
                                   asyncio.ensure_future(acked.wait())}
                        await asyncio.wait(waiters, timeout=max(0.0, deadline - time.monotonic()),
                                           return_when=asyncio.FIRST_COMPLETED)
                        for waiter in waiters:
                            waiter.cancel()
                    if turn.message_id in answered:
                        reply = answered[turn.message_id]
                        turn.ok, turn.done_at = True, time.monotonic()
                        turn.reply = {k: reply.get(k) for k in ("seq", "message_id", "reply_to", "unpaired")
                                      if reply.get(k) is not None}
                        pending = None
                        await asyncio.sleep(self.think)
                        continue
                    turn.error = ("error ack (retryable)" if this_ack.get("status") == "error"
                                  else "socket dropped (retryable)" if dropped.is_set() else "no reply in 20 s")
                    turn.errors.append(turn.error)
                    turn.attempts += 1  # the widget re-sends with the same message id, backing off
                    if turn.attempts > 1 + WIDGET_RETRIES:
                        turn.done_at = time.monotonic()
                        pending = None
                    await asyncio.sleep(min(10.0, 2.0 ** (turn.attempts - 2)))  # 1, 2, 4, 8, 10, 10 s
            except Exception:  # noqa: BLE001 - reconnect, as the widget does
                pass
            finally:
                try:
                    await sio.disconnect()
                except Exception:  # noqa: BLE001
                    pass
                await http.close()
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        await asyncio.gather(*(self.rest_shopper(i) for i in range(len(self.rest_senders))),
                             *(self.widget_shopper(i) for i in range(self.widget_count)))


def product_name(tag: str) -> str:
    """The product of a fault's journey events: its proactive message names it (ends with '~',
    so round 1's name is not found in round 10's)."""
    return f"chaos-{tag}~"


async def post_journey_events(cluster: Cluster, producer: str, sessions: list[str], tag: str) -> int:
    import aiohttp

    accepted = 0
    async with aiohttp.ClientSession() as http:
        for session in sessions:
            event = {"id": f"evt-{tag}-{session[:12]}", "type": "cart_item_added", "customer_id": session,
                     "timestamp": time.time(), "properties": {"sku": "CHAOS", "product_name": product_name(tag)}}
            for _ in range(5):
                try:
                    async with http.post(cluster.url + "/events", json=event,
                                         headers={"Authorization": f"Bearer {producer}"}) as r:
                        if r.status in (200, 202):
                            accepted += 1
                            break
                except Exception:  # noqa: BLE001
                    pass
                await asyncio.sleep(1)
    return accepted


async def stored_bot_texts(cluster: Cluster, sender: str, needle: str) -> int:
    """How many bot messages containing ``needle`` the conversation holds (proactive sends recorded)."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for worker in cluster.workers:
            if worker.alive():
                async with http.get(f"{worker.url}/conversations/{sender}/tracker",
                                    headers={"Authorization": f"Bearer {cluster.secrets.auth_token}"}) as r:
                    if r.status == 200:
                        return sum(1 for e in (await r.json())["events"]
                                   if e["event"] == "bot" and needle in (e.get("text") or ""))
    return 0


async def stored_user_texts(cluster: Cluster, sender: str) -> list[str]:
    """The texts of the conversation's user messages (all sessions), as the tracker store holds them."""
    return [text for text, _ in await stored_user_messages(cluster, sender)]


async def stored_user_messages(cluster: Cluster, sender: str) -> list[tuple[str, str]]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for worker in cluster.workers:
            if not worker.alive():
                continue
            async with http.get(f"{worker.url}/conversations/{sender}/tracker",
                                headers={"Authorization": f"Bearer {cluster.secrets.auth_token}"}) as r:
                if r.status == 200:
                    events = (await r.json())["events"]
                    return [(e.get("text") or "", e.get("message_id") or "") for e in events if e["event"] == "user"]
    return []


async def outbox_entries(cluster: Cluster, session_id: str, message_id: str) -> list[dict[str, Any]]:
    """The widget outbox's entries of ``session_id`` that are ``message_id`` or reply to it."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.url}/webhooks/socketio/history/{session_id}?after=0") as r:
            if r.status != 200:
                return [{"history_status": r.status}]
            messages = (await r.json())["messages"]
    return [{k: m.get(k) for k in ("seq", "sender", "message_id", "reply_to", "text")}
            for m in messages if message_id in (m.get("message_id"), m.get("reply_to"))]


def summarise(window: Window, stored: dict[str, list[str]], proactive: dict[str, int], posted: int) -> dict[str, Any]:
    turns = window.turns
    answered = [t for t in turns if t.ok]
    failed = [t for t in turns if not t.ok and t.done_at]
    lost, twice = 0, 0
    lost_turns = []
    for t in answered:
        if t.shopper in stored:
            count = stored[t.shopper].count(t.text)
            lost += count == 0
            twice += count > 1
            if count == 0:
                lost_turns.append({"shopper": t.shopper, "kind": t.kind, "text": t.text, "message_id": t.message_id,
                                   "sent_after_fault_s": round(t.sent_at - window.fault_at, 2),
                                   "answered_after_s": round(t.done_at - t.sent_at, 2), "attempts": t.attempts,
                                   "errors": t.errors, "acks": t.acks, "reply": t.reply})
    after = [t for t in turns if t.sent_at >= window.fault_at]
    errors_after = [t for t in after if t.errors]
    recovery = 0.0
    if errors_after:
        last_bad = max(t.sent_at for t in errors_after)
        firsts = [t.done_at for t in after if t.ok and t.sent_at > last_bad]
        recovery = (min(firsts) if firsts else max(t.done_at for t in after)) - window.fault_at
    latencies = sorted(t.done_at - t.sent_at for t in answered)
    kinds: dict[str, int] = {}
    for t in turns:
        for error in t.errors:
            kinds[error] = kinds.get(error, 0) + 1
    return {
        "messages_sent": len([t for t in turns if t.done_at]),
        "in_flight_at_count": len([t for t in turns if not t.done_at]),
        "answered": len(answered),
        "answered_after_retry": len([t for t in answered if t.errors]),
        "failed_clear_retryable": len([t for t in failed if t.error and "retryable" in t.error]),
        "failed_other": len([t for t in failed if not (t.error and "retryable" in t.error)]),
        "answered_but_not_stored": lost,
        "stored_twice": twice,
        "failed_attempts_by_kind": kinds,
        "proactive_events_posted": posted,
        "proactive_delivered": sum(1 for n in proactive.values() if n >= 1),
        "proactive_duplicates": sum(n - 1 for n in proactive.values() if n > 1),
        "recovery_s": round(recovery, 1),
        "fault_duration_s": round(window.fault_end - window.fault_at, 1),
        "turn_p50_ms": round(latencies[len(latencies) // 2] * 1000) if latencies else None,
        "turn_max_ms": round(latencies[-1] * 1000) if latencies else None,
        "unpaired_replies": len([t for t in answered if t.reply.get("unpaired")]),
        "late_replies_of_earlier_turns": window.late_replies,
        "lost_turns": lost_turns,
        **window.notes,
    }


async def console_drop(cluster: Cluster, load: Load, address: str) -> dict[str, Any]:
    """An agent's console holds a widget shopper's handoff; its socket is cut (no close frame).

    Measured: how long until the handoff is queued again (presence expiry, ``presence_ttl_s``)
    and whether the shopper's messages meanwhile are kept in the handoff's transcript."""
    import aiohttp

    notes: dict[str, Any] = {}
    session = f"chaos-console-{uuid.uuid4().hex[:8]}"  # a fresh conversation (REST) asks for a human
    auth_api = {"Authorization": f"Bearer {cluster.secrets.auth_token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as http:
        async with http.post(cluster.url + "/handoff/api/login",
                             json={"agent_id": "alice", "password": cluster.secrets.agent_passwords["alice"]}) as r:
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = await http.ws_connect(cluster.url.replace("http", "ws") + "/handoff/ws")
        await ws.send_json({"type": "auth", "token": token})
        await asyncio.wait_for(ws.receive_json(), 20)
        async with http.post(cluster.url + "/webhooks/rest/webhook", json={"sender": session, "message": "人工服务"}):
            pass
        handoff: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while handoff is None and time.monotonic() < deadline:
            try:
                event = await asyncio.wait_for(ws.receive_json(), max(0.1, deadline - time.monotonic()))
            except (asyncio.TimeoutError, TypeError):
                break
            if event.get("type") in ("handoff_queued", "handoff_assigned") and \
                    (event.get("handoff") or {}).get("conversation_id") == session:
                handoff = event["handoff"]
        if handoff is None:
            return {"error": "the console heard of no handoff within 30 s"}
        if handoff.get("status") != "assigned":
            async with http.post(f"{cluster.url}/handoff/api/handoffs/{handoff['id']}/claim", headers=auth) as r:
                notes["claim_status"] = r.status
        transport = ws._response.connection.transport if ws._response and ws._response.connection else None  # noqa: SLF001
        cut_at = time.monotonic()
        if transport is not None:
            transport.abort()  # the laptop lid closes: no close frame, no more heartbeats
        for text in ("还在吗", "我的订单呢"):  # the shopper keeps writing while nobody is there
            async with http.post(cluster.url + "/webhooks/rest/webhook", json={"sender": session, "message": text}):
                pass
        requeued = None
        async with aiohttp.ClientSession() as other:  # read on another worker, with the supervisor sam
            async with other.post(f"{cluster.workers[-1].url}/handoff/api/login",
                                  json={"agent_id": "sam", "password": cluster.secrets.agent_passwords["sam"]}) as r:
                sam = {"Authorization": f"Bearer {(await r.json())['token']}"}
            while time.monotonic() - cut_at < 120:
                await asyncio.sleep(1)
                async with other.get(f"{cluster.workers[-1].url}/handoff/api/handoffs/{handoff['id']}",
                                     headers=sam) as r:
                    record = await r.json() if r.status == 200 else {}
                if record.get("status") in ("queued",) or (record.get("status") == "assigned"
                                                          and record.get("agent_id") != "alice"):
                    requeued = time.monotonic() - cut_at
                    break
            transcript = json.dumps(record, ensure_ascii=False)
        notes.update(handoff_id=handoff["id"], status_after=record.get("status"), agent_after=record.get("agent_id"),
                     requeued_after_s=round(requeued, 1) if requeued is not None else None,
                     shopper_messages_kept=all(t in transcript for t in ("还在吗", "我的订单呢")))
        del auth_api
    return notes


async def chaos(cluster: Cluster, rest: int, widgets: int, think: float, window_s: float,
                faults: list[str], repeat: int = 1) -> list[dict[str, Any]]:
    addresses = list(cluster.source_addresses().values())
    producer = subprocess.run(
        [sys.executable, "-m", "bot", "token", "create", "--role", "event_producer", "--subject", "chaos",
         f"--jwt-secret={cluster.secrets.jwt_secret}", "--ttl-days", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True).stdout.strip().splitlines()[-1]
    load = Load(cluster, addresses, rest, widgets, think)
    runner = asyncio.ensure_future(load.run())
    await asyncio.sleep(window_s / 2)  # warm up, all shoppers connected
    results = []
    victim = cluster.workers[1]

    async def kill9() -> None:
        victim.kill()
        await asyncio.sleep(5)
        await asyncio.to_thread(cluster.restart_worker, victim)

    async def redis_restart() -> None:
        await asyncio.to_thread(cluster.restart_redis, 1.0)

    async def pg_down() -> None:
        await asyncio.to_thread(cluster.halt_postgres)
        await asyncio.sleep(10)
        await asyncio.to_thread(cluster.resume_postgres)

    async def actions_slow() -> None:
        assert cluster.actions is not None
        cluster.actions.signal(signal.SIGSTOP)
        await asyncio.sleep(8)
        cluster.actions.signal(signal.SIGCONT)

    async def actions_dead() -> None:
        assert cluster.actions is not None
        cluster.actions.kill()
        await asyncio.sleep(10)
        cluster.actions.start()

    plan = {"kill9_worker": kill9, "redis_restart": redis_restart, "postgres_down_10s": pg_down,
            "actions_slow": actions_slow, "actions_dead": actions_dead}
    for round_, (name, fault) in enumerate([(n, plan[n]) for n in faults if n in plan for _ in range(repeat)]):
        tag = name if repeat == 1 else f"{name}-{round_}"  # a proactive message's product name
        window = Window(name)
        load.window = window
        load.proactive.clear()
        posted = await post_journey_events(cluster, producer, list(load.widget_sessions.values()), tag)
        window.fault_at = time.monotonic()
        await fault()
        window.fault_end = time.monotonic()
        await asyncio.sleep(window_s)
        load.window = Window("between")
        await asyncio.sleep(3)  # answers in flight land
        stored = {s: await stored_user_texts(cluster, s) for s in load.rest_senders}
        stored.update({f"widget-{i}": await stored_user_texts(cluster, sid) for i, sid in load.widget_sessions.items()})
        proactive = {sid: sum(1 for t in load.proactive.get(sid, []) if product_name(tag) in t)
                     for sid in load.widget_sessions.values()}
        summary = {"fault": name, **summarise(window, stored, proactive, posted)}
        for lost in summary["lost_turns"]:  # where the lost message went: the widget outbox's view of it
            if lost["kind"] == "widget":
                session = load.widget_sessions.get(int(lost["shopper"].split("-")[1]), "")
                lost["outbox"] = await outbox_entries(cluster, session, lost["message_id"])
        in_tracker = [await stored_bot_texts(cluster, sid, product_name(tag)) for sid in load.widget_sessions.values()]
        summary["proactive_in_conversations"] = sum(1 for n in in_tracker if n >= 1)
        summary["proactive_in_conversations_twice"] = sum(1 for n in in_tracker if n > 1)
        summary["tag"] = tag
        print(json.dumps(summary, ensure_ascii=False), flush=True)
        results.append(summary)
    load.stop.set()
    await asyncio.wait_for(runner, 60)
    # A proactive message missing at a window's count may only be late (e.g. its journey event was
    # read by a worker killed before acknowledging it: the broker hands it to another after
    # claim_idle_ms, 60 s): counted again at the end of the run.
    ended = time.monotonic()
    for summary in results:
        in_tracker = [await stored_bot_texts(cluster, sid, product_name(summary["tag"]))
                      for sid in load.widget_sessions.values()]
        summary["proactive_in_conversations_at_end"] = sum(1 for n in in_tracker if n >= 1)
        summary["proactive_in_conversations_twice_at_end"] = sum(1 for n in in_tracker if n > 1)
    if results:
        print(json.dumps({"proactive_at_end": {r["tag"]: r["proactive_in_conversations_at_end"] for r in results},
                          "s_after_last_window": round(ended - window.fault_end, 1)}), flush=True)
    if "agent_console_drop" in faults:
        started = time.monotonic()
        notes = await console_drop(cluster, load, addresses[0])
        results.append({"fault": "agent_console_drop", **notes, "elapsed_s": round(time.monotonic() - started, 1)})
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rest", type=int, default=4, help="REST shoppers")
    parser.add_argument("--widgets", type=int, default=4, help="widget (socket.io) shoppers")
    parser.add_argument("--think", type=float, default=0.5, help="seconds between a reply and the next message")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of load after each fault")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, in this order (default all): {','.join(FAULTS)}")
    parser.add_argument("--repeat", type=int, default=1, help="run each fault (but the console drop) N times")
    parser.add_argument("--state-dir", help="keep the cluster's logs and files here (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"--faults: unknown {unknown}; known: {', '.join(FAULTS)}")
    load_before = os.getloadavg()
    with (contextlib.nullcontext(args.state_dir) if args.state_dir
          else tempfile.TemporaryDirectory(prefix="kefu-chaos-")) as state:
        with Cluster(state, workers=args.workers, triggers_yml=TRIGGERS_YML,
                     endpoints_extra={"handoff": {"service_hours": None, "presence_ttl_s": 15,
                                                  "max_consecutive_fallbacks": 0, "max_unanswered": 0,
                                                  "max_action_failures": 0}}) as cluster:
            started = time.monotonic()
            results = asyncio.run(chaos(cluster, args.rest, args.widgets, args.think, args.window,
                                        faults, args.repeat))
            elapsed = time.monotonic() - started
    out = {
        "command": "python benchmarks/chaos.py " + " ".join(sys.argv[1:]),
        "workers": args.workers, "rest_shoppers": args.rest, "widget_shoppers": args.widgets,
        "think_s": args.think, "window_s": args.window, "repeat": args.repeat, "elapsed_s": round(elapsed, 1),
        "faults": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "2 cores shared with other engineers' jobs"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
