"""Agent API (``/handoff/api``), live websocket (``/handoff/ws``) and the console page (``/console``).

Every route but login needs ``Authorization: Bearer <token>``; the websocket's
first message must be ``{"type": "auth", "token": ...}``. A token in the URL
(``?token=``) is refused everywhere: URLs end up in access logs, proxies and
browser history. Logins are verified off the event loop (argon2id), throttled
with lockouts (``throttle.py``, 429 with ``Retry-After``) and audited.
Agents see the handoffs of their queues and their own;
supervisors and admins see all. Transcript reads and exports are audited.
Failures answer with the server's one error body (``bot/web/errors.py``):
``HandoffError(status, message)`` is registered there by type, so a refusal is
``{"status": "failure", "code": status, "reason": "Conflict", "message": ...}``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from http import HTTPStatus
from pathlib import Path
from typing import Any

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.handoff.auth import has_role, issue_token, verify_token
from bot.handoff.config import AgentSpec
from bot.handoff.passwords import averify
from bot.handoff.throttle import create_login_throttle
from bot.handoff.service import HandoffError, HandoffService, summary_view
from bot.handoff.store import ACTIVE, ASSIGNED, QUEUED, RESOLVED, handoffs, messages
from bot.stores.limits import check_length, column_limit
from bot.web.auth import bearer_token
from bot.web.errors import ErrorResponse, bad_request, register_error

logger = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "connectors" / "static" / "console"


_ENCODED: "OrderedDict[int, tuple[dict[str, Any], str]]" = OrderedDict()


def _encode(event: dict[str, Any]) -> str:
    """JSON of a notification, built once however many consoles receive the same event object."""
    key = id(event)
    cached = _ENCODED.get(key)
    if cached is not None and cached[0] is event:
        return cached[1]
    text = json.dumps(event, ensure_ascii=False, default=str)
    _ENCODED[key] = (event, text)  # holding the event keeps its id from being reused meanwhile
    if len(_ENCODED) > 256:
        _ENCODED.popitem(last=False)
    return text


def _not_logged_in(message: str) -> ErrorResponse:
    return ErrorResponse(HTTPStatus.UNAUTHORIZED, "NotAuthenticated", message)


WS_AUTH_TIMEOUT_S = 10.0  # a console sends its auth message right after connecting
TOKEN_IN_URL = ("Tokens are not accepted in URLs (they end up in logs and browser history). Fix: send "
                "'Authorization: Bearer <token>'; on /handoff/ws send {\"type\": \"auth\", \"token\": ...} "
                "as the first message.")


def _token(request: Request) -> str | None:
    if "token" in request.args:
        raise bad_request(TOKEN_IN_URL, "token", where="query")
    return bearer_token(request)


def _address(request: Request) -> str:
    """The client's address (a proxy's forwarded one only when Sanic is configured to trust it)."""
    return str(request.remote_addr or request.ip or "unknown")


def _too_many(wait_s: float) -> HTTPResponse:
    seconds = max(1, math.ceil(wait_s))
    error = ErrorResponse(HTTPStatus.TOO_MANY_REQUESTS, "TooManyLogins",
                          f"Too many failed logins; try again in {seconds} s. Fix: wait, or ask an admin to "
                          "reset the password with `python -m bot agents set-password ID`.",
                          {"retry_after": seconds})
    return response.json(error.error_info, status=error.status, headers={"Retry-After": str(seconds)})


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json
    except Exception:
        data = None
    return data if isinstance(data, dict) else {}


def create_handoff_blueprint(service: HandoffService, url_prefix: str = "/handoff") -> Blueprint:
    register_error(HandoffError)  # its own .status; the reason names it (NotFound, Conflict, ...)
    bp = Blueprint(f"kefu_handoff_{id(service)}")
    api = url_prefix + "/api"
    throttle = create_login_throttle(service.config, service.queue)

    def authed(role: str = "agent"):
        def wrap(handler: Any) -> Any:
            async def inner(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
                agent = verify_token(service.config, _token(request))
                if agent is None:
                    raise _not_logged_in("Not logged in or the token expired. Fix: POST /handoff/api/login again.")
                if not has_role(agent, role):
                    raise ErrorResponse(HTTPStatus.FORBIDDEN, "NotAuthorized", f"Needs the '{role}' role.")
                await service.start()
                await service.heartbeat(agent.id)  # an agent using the API is still there
                return await handler(request, agent, *args, **kwargs)
            inner.__name__ = handler.__name__
            return inner
        return wrap

    @bp.post(api + "/login")
    async def login(request: Request) -> HTTPResponse:
        data = _body(request)
        agent_id, password = str(data.get("agent_id", ""))[:128], data.get("password")
        spec = service.config.agent(agent_id)
        actor, address = (spec.id if spec else "unknown"), _address(request)
        detail = f"address={address}" + ("" if spec else f" agent_id={agent_id!r}")
        keys = throttle.policy.keys(agent_id, address) if throttle.policy.enabled else ()
        wait = await throttle.locked_for(keys) if keys else 0.0
        if wait > 0:
            await service.store.audit(actor, "login_refused_locked", detail=detail)
            return _too_many(wait)
        ok = await averify(password if isinstance(password, str) else "", spec.password_hash if spec else None)
        if not ok or spec is None:
            lock = await throttle.failure(keys) if keys else 0.0
            await service.store.audit(actor, "login_failed", detail=detail)
            if lock > 0:
                logger.warning("Console login locked for %.0f s after repeated failures (%s).", lock, actor)
                await service.store.audit(actor, "login_lockout", detail=f"{detail} seconds={lock:.0f}")
                return _too_many(lock)
            raise _not_logged_in("Wrong agent id or password.")
        if keys:
            await throttle.success(keys)
        await service.start()
        token, expires = issue_token(service.config, spec)
        await service.store.audit(spec.id, "login", detail=f"address={address}")
        status = await service.set_status(spec.id, data.get("status", "online"))
        return response.json({"token": token, "expires_at": expires, "agent": status})

    @bp.get(api + "/me")
    @authed()
    async def me(request: Request, agent: AgentSpec) -> HTTPResponse:
        return response.json(await service.agent_view(agent.id))

    @bp.post(api + "/status")
    @authed()
    async def status(request: Request, agent: AgentSpec) -> HTTPResponse:
        return response.json(await service.set_status(agent.id, str(_body(request).get("status"))))

    @bp.get(api + "/agents")
    @authed("supervisor")
    async def agents(request: Request, agent: AgentSpec) -> HTTPResponse:
        return response.json(await service.agent_views())

    @bp.post(api + "/agents/<agent_id>/status")
    @authed("supervisor")
    async def agent_status(request: Request, agent: AgentSpec, agent_id: str) -> HTTPResponse:
        return response.json(await service.set_status(agent_id, str(_body(request).get("status"))))

    @bp.get(api + "/handoffs")
    @authed()
    async def list_handoffs(request: Request, agent: AgentSpec) -> HTTPResponse:
        which = request.args.get("status", "open")
        statuses = {"open": ACTIVE, "queued": (QUEUED,), "assigned": (ASSIGNED,), "resolved": (RESOLVED,),
                    "mine": (ASSIGNED,), "all": None}.get(which, ACTIVE)
        rows = await service.store.list(statuses, agent_id=agent.id if which == "mine" else None)
        visible = [summary_view(h) for h in rows if service.can_see(agent, h)]
        for item in visible:
            if item["status"] == QUEUED:
                item["position"] = await service.queue.position(item["id"])
        return response.json(visible)

    @bp.get(api + "/handoffs/<handoff_id>")
    @authed()
    async def get_handoff(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        return response.json(await service.transcript(handoff_id, agent))

    @bp.get(api + "/handoffs/<handoff_id>/export")
    @authed()
    async def export(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        data = await service.export(handoff_id, agent)
        return response.json(data, headers={"Content-Disposition": f'attachment; filename="handoff-{handoff_id}.json"'},
                             dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))

    @bp.post(api + "/handoffs/<handoff_id>/claim")
    @authed()
    async def claim(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        return response.json(summary_view(await service.claim(handoff_id, agent.id)))

    @bp.post(api + "/handoffs/<handoff_id>/transfer")
    @authed()
    async def transfer(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        data = _body(request)
        check_length(data.get("agent_id"), "agent_id", column_limit(handoffs, "agent_id"), "body")
        check_length(data.get("language"), "language", column_limit(handoffs, "language"), "body")
        # the queue is "<skill>:<language>": the skill gets what the language leaves of the column
        check_length(data.get("skill"), "skill",
                     column_limit(handoffs, "queue") - 1 - column_limit(handoffs, "language"), "body")
        h = await service.transfer(handoff_id, agent, to_agent=data.get("agent_id"), to_skill=data.get("skill"),
                                   to_language=data.get("language"))
        return response.json(summary_view(h))

    @bp.post(api + "/handoffs/<handoff_id>/resolve")
    @authed()
    async def resolve(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        return response.json(summary_view(await service.resolve(handoff_id, agent)))

    @bp.post(api + "/handoffs/<handoff_id>/messages")
    @authed()
    async def send(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        data = _body(request)
        product = data.get("product")
        check_length(data.get("client_id"), "client_id", column_limit(messages, "message_id"), "body")
        payload = {"custom": {"type": "product_card", **product}} if isinstance(product, dict) else None
        row = await service.agent_reply(handoff_id, agent, text=data.get("text"), data=payload,
                                        client_id=data.get("client_id"), canned=data.get("canned"))
        return response.json(row)

    @bp.post(api + "/handoffs/<handoff_id>/notes")
    @authed()
    async def note(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        text = _body(request).get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad_request("Send {'text': '<note>'}.", "text")
        return response.json(await service.add_note(handoff_id, agent, text))

    @bp.post(api + "/handoffs/<handoff_id>/tags")
    @authed()
    async def tags(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        values = _body(request).get("tags")
        if not isinstance(values, list):
            raise bad_request("Send {'tags': ['refund', ...]}.", "tags")
        return response.json(summary_view(await service.set_tags(handoff_id, agent, values)))

    @bp.get(api + "/handoffs/<handoff_id>/suggestions")
    @authed()
    async def suggestions(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        return response.json(await service.suggestions(handoff_id, agent))

    @bp.post(api + "/handoffs/<handoff_id>/compensation")
    @authed()
    async def compensation(request: Request, agent: AgentSpec, handoff_id: str) -> HTTPResponse:
        """A compensation coupon for this conversation's complaint, within the limit of the agent's role.

        The role is the verified login's (never the request's); the project's `ports: compensation`
        owns the limits and issues one coupon per handoff, so a second click sends nothing new.
        The code reaches the shopper as an agent reply (idempotent per handoff); both outcomes are audited.
        """
        port = getattr(service, "compensation", None)
        if port is None:
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotConfigured",
                                "No compensation coupons here. Fix: name a class under endpoints.yml "
                                "`ports: compensation: {type: actions.shop.ports.ShopCompensationPort}`.")
        amount = _body(request).get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
            raise bad_request("Send {'amount': <coupon value in currency units, e.g. 20>} (a positive number).",
                              "amount")
        h = await service._owned_or_supervised(handoff_id, agent)
        if not h.customer_id:
            raise HandoffError(409, "The shop does not know who this shopper is (no customer id on the handoff), "
                                    "so no coupon can be issued.")
        cents = round(amount * 100)
        result = await port.compensate(str(h.customer_id), amount_cents=cents, role=agent.role, agent=agent.id,
                                       case_id=h.id)
        ok = bool(result.get("ok"))
        detail = {"handoff_id": h.id, "amount_cents": cents, "role": agent.role, "outcome": result.get("code"),
                  "coupon": result.get("coupon_code"), "new": bool(result.get("new"))}
        await service.store.audit(agent.id, "compensation_issued" if ok else "compensation_refused", h.id,
                                  h.conversation_id, detail=" ".join(f"{k}={v}" for k, v in detail.items()))
        if service.server_audit is not None:
            from bot.handoff.service import console_actor

            await service.server_audit.record(console_actor(agent), "handoff.compensation", h.conversation_id,
                                              detail=detail)
        if not ok:
            code = result.get("code")
            if code == "over_limit":
                limit = result.get("limit") or f"{(result.get('limit_cents') or 0) / 100:.2f}"
                raise ErrorResponse(HTTPStatus.FORBIDDEN, "OverLimit",
                                    f"The '{agent.role}' role may issue compensation coupons of at most {limit} per case. "
                                    "Fix: lower the amount, or ask a supervisor to issue it.",
                                    {"limit_cents": result.get("limit_cents")})
            if code == "role_not_allowed":
                raise ErrorResponse(HTTPStatus.FORBIDDEN, "NotAuthorized",
                                    f"The '{agent.role}' role may not issue compensation coupons "
                                    "(shop.yml `coupons: compensation_limits`).")
            raise HandoffError(409, f"The shop could not issue the coupon ({code}).")
        messages = result.get("message") or {}
        text = messages.get("en" if (h.language or "").startswith("en") else "zh") or messages.get("en") \
            or f"Compensation coupon: {result.get('coupon_code')}"
        reply = await service.agent_reply(h.id, agent, text=text, client_id=f"compensation-{h.id}",
                                          data={"custom": {"type": "coupon", "code": result.get("coupon_code"),
                                                           "amount_cents": result.get("amount_cents")}})
        return response.json({"coupon_code": result.get("coupon_code"), "amount_cents": result.get("amount_cents"),
                              "new": bool(result.get("new")), "message": reply})

    @bp.get(api + "/canned")
    @authed()
    async def canned(request: Request, agent: AgentSpec) -> HTTPResponse:
        return response.json(service.config.canned_replies)

    @bp.get(api + "/audit")
    @authed("admin")
    async def audit_log(request: Request, agent: AgentSpec) -> HTTPResponse:
        return response.json(await service.store.audit_log(handoff_id=request.args.get("handoff_id")))

    @bp.websocket(url_prefix + "/ws")
    async def live(request: Request, ws: Any) -> None:
        if "token" in request.args:
            await ws.send(json.dumps({"type": "error", "error": "token_in_url", "message": TOKEN_IN_URL}))
            await ws.close(code=4400, reason="token in URL refused")
            return
        agent = await _first_message_login(ws)
        if agent is None:
            await ws.send(json.dumps({"type": "error", "error": "unauthorized",
                                      "message": "Send {\"type\": \"auth\", \"token\": <token from "
                                                 "POST /handoff/api/login>} first."}))
            await ws.close(code=4401, reason="unauthorized")
            return
        await service.start()
        outbox: asyncio.Queue = asyncio.Queue(maxsize=1000)

        async def listener(event: dict[str, Any]) -> None:
            if service.wants(agent, event):
                try:
                    outbox.put_nowait(event)
                except asyncio.QueueFull:  # a stuck console reloads its lists via the API
                    pass

        service.subscribe(listener)
        interval = max(0.05, service.config.presence_ttl_s / 3) if service.config.presence_ttl_s > 0 else None
        try:
            await service.heartbeat(agent.id)
            await ws.send(json.dumps({"type": "hello", "agent": await service.agent_view(agent.id),
                                      "left_messages": await service.left_messages_for(agent)},
                                     ensure_ascii=False, default=str))
            beat = time.monotonic()
            while True:
                try:
                    event = await asyncio.wait_for(outbox.get(), timeout=interval)
                except asyncio.TimeoutError:
                    event = None
                # The open socket is the console's heartbeat, idle or busy: a console receiving
                # events non-stop for longer than the TTL must not be expired and requeued.
                if interval is not None and time.monotonic() - beat >= interval:
                    beat = time.monotonic()
                    await service.heartbeat(agent.id)
                if event is not None:
                    await ws.send(_encode(event))
        finally:
            service.unsubscribe(listener)

    async def _first_message_login(ws: Any) -> AgentSpec | None:
        """The agent named by a valid token in the socket's first message; None for anything else."""
        try:
            raw = await ws.recv(timeout=WS_AUTH_TIMEOUT_S)
            message = json.loads(raw) if raw else None
        except (ValueError, TypeError):
            return None
        if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
            return None
        return verify_token(service.config, message["token"])

    @bp.get("/console")
    async def console(request: Request) -> HTTPResponse:
        return await response.file(CONSOLE_DIR / "index.html", mime_type="text/html; charset=utf-8",
                                   headers={"Cache-Control": "no-cache"})

    @bp.get("/console/<name:path>")
    async def console_file(request: Request, name: str) -> HTTPResponse:
        path = (CONSOLE_DIR / name).resolve()
        if CONSOLE_DIR not in path.parents or not path.is_file():
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No console file '{name}'.")
        return await response.file(path, headers={"Cache-Control": "no-cache"})

    return bp
