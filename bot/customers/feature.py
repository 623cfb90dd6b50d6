"""Customer 360 as a server feature: the processor hook, the broker reader, the routes.

Enabled for a project with a ``customers:`` section (config.yml or endpoints.yml), a
``customers.yml`` or a ``health.yml``. Routes need ``customers:read`` / ``customers:write``
(bot/web/principals.py) from an API credential, or the agent console's login (the same
roles: agent reads, supervisor and admin write), so the console panel can call them.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.customers.ingress import CustomerHook, Ingest, Verification, from_broker, send_outcomes
from bot.customers.rules import load_rules
from bot.customers.service import CustomerError, CustomerService
from bot.customers.store import CustomerStore
from bot.feature import BackgroundTask, BaseFeature, FeatureContext, FeatureHealth, ProjectSettings
from bot.shared.concurrency import run_blocking
from bot.shared.exceptions import ConfigError
from bot.web.auth import ACCESS_ATTRIBUTE, bearer_token, not_authenticated, not_authorized, principal_of
from bot.web.errors import ErrorResponse, register_error
from bot.web.principals import Principal, Role, Scope, scopes_for
from bot.web.requests import int_arg, json_body

logger = logging.getLogger(__name__)

MAX_PAGE = 200
IDENTITY_KINDS = ("shop_customer", "widget", "wechat_openid", "phone", "conversation", "order")


class CustomersFeature(BaseFeature):
    name = "customers"

    def __init__(self, settings: ProjectSettings, service: CustomerService | None = None,
                 console_verify: "Callable[[str], Principal | None] | None" = None) -> None:
        """``service``: a ready service (the caller owns it); ``console_verify``: how to read a console
        login token (default: from the project's ``handoff:`` configuration)."""
        self.settings = settings
        section = settings.section("customers") or {}
        if hasattr(section, "as_dict"):  # endpoints.yml sections arrive as EndpointConfig
            section = section.as_dict()
        if not isinstance(section, dict):
            raise ConfigError("'customers' must be a mapping (url, verification).", filename="endpoints.yml",
                              fix="e.g. 'customers: {url: sqlite:///customers.db}'.")
        root = settings.root
        default_url = f"sqlite:///{(Path(root) / 'customers.db').as_posix()}" if root is not None else "sqlite://"
        self.url = str(section.get("url") or default_url)
        ver = section.get("verification") or {}
        self.verification = Verification(**{k: str(v) for k, v in ver.items()
                                            if k in ("order_slot", "orders_slot", "phone_slot")})
        self.rules = load_rules(root)  # validated now: a broken file stops the server with file:line
        self.service: CustomerService | None = service
        self.owns_service = service is None
        self.queue: asyncio.Queue[Ingest] = asyncio.Queue()
        self.audit: Any = None
        self.console_verify: Callable[[str], Principal | None] | None = console_verify
        self.owns_console_verify = console_verify is None
        self.broker: Any = None
        self.handoff_feature: Any = None  # the handoff feature (its notifier reaches the consoles), when it runs
        self.hooked = False
        self.processed = 0
        self.failed = 0

    # -- life cycle -------------------------------------------------------------------
    async def start(self, context: FeatureContext) -> None:
        self.audit = getattr(context, "audit", None)
        self.broker = getattr(context.agent, "event_broker", None)
        if self.owns_service:
            publish = self.broker.publish if self.broker is not None else None
            self.service = CustomerService(CustomerStore(self.url), self.rules, publish=publish)
            await self.service.open()
        if self.broker is not None and hasattr(self.broker, "subscribe"):
            if "group" in inspect.signature(self.broker.subscribe).parameters:
                self.broker.subscribe(self.on_broker_message, group="kefu-customers")
            else:
                self.broker.subscribe(self.on_broker_message)
        self.handoff_feature = (getattr(context, "peers", None) or {}).get("handoff")
        if self.service is not None:
            self.service.notify = self.notify_consoles
        self.hooked = hasattr(context.agent, "add_hook")  # an agent without hooks: broker events only
        setattr(context.agent, "customers", self)  # handoff routing and journeys ask context_for (optional)
        if self.owns_console_verify:
            self.console_verify = _console_verifier(self.settings)

    async def stop(self) -> None:
        if self.broker is not None and hasattr(self.broker, "unsubscribe"):
            try:
                self.broker.unsubscribe(self.on_broker_message)
            except Exception:
                logger.debug("Broker had no customers subscription", exc_info=True)
            self.broker = None
        if self.owns_service and self.service is not None:
            await self.service.close()
            self.service = None

    def hooks(self) -> Sequence[Any]:
        return (CustomerHook(self.queue, self.verification),) if self.hooked else ()

    def tasks(self) -> Sequence[BackgroundTask]:
        return (self._consume,)

    def health(self) -> FeatureHealth:
        return FeatureHealth(detail={"processed": self.processed, "failed": self.failed, "queued": self.queue.qsize()})

    async def notify_consoles(self, notice: dict[str, Any]) -> None:
        """A health.yml ``notify_agents`` action, live on the consoles through the handoff notifier (its bus
        reaches every worker), as ``bot/alerts`` sends its alerts.

        Who sees it (the handoff service's ``wants``): supervisors and admins always; when the customer
        has an open handoff (on any conversation proven theirs), also its agent and the agents who
        serve its queue — the people about to talk to them. No conversation id or shopper data is in
        the event: the Customer 360 id, the rule, the message, score and band.
        """
        handoff = getattr(getattr(self, "handoff_feature", None), "service", None)
        if handoff is None:
            return
        detail = notice["detail"]
        open_handoff = None
        for conversation in notice.get("conversations") or ():
            open_handoff = await handoff.store.active_for(conversation)
            if open_handoff is not None:
                break
        event = {"type": "customer_alert", "customer_id": notice["customer_id"], "rule": notice["rule"],
                 "at": notice["at"], "message": detail.get("message"), "score": detail.get("score"),
                 "band": detail.get("band"), "previous_band": detail.get("previous_band"),
                 "skill_group": detail.get("skill_group"),
                 "queue": open_handoff["queue"] if open_handoff else None,
                 "agent_id": open_handoff["agent_id"] if open_handoff else None,
                 "handoff_id": open_handoff["id"] if open_handoff else None}
        await handoff.notifier.notify(event)

    async def on_broker_message(self, body: dict[str, Any]) -> None:
        item = from_broker(body)
        if item is not None:
            self.queue.put_nowait(item)

    async def on_send_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """The trigger scheduler's sends and skips (journey, step, variant, outcome) → the timeline."""
        for item in send_outcomes(outcomes):
            self.queue.put_nowait(item)

    async def process(self, item: Ingest) -> None:
        assert self.service is not None
        try:
            if item.event is not None:
                await self.service.ingest(item.event, item.links, item.proof)
            else:
                await self.service.link(item.key[0], item.key[1], item.links, item.proof)
            self.processed += 1
        except Exception:
            self.failed += 1
            logger.exception("Customer 360 could not process an event (%s)",
                             item.event.type if item.event else "links")

    async def drain(self) -> None:
        """Process everything queued now (tests, shutdown)."""
        while not self.queue.empty():
            await self.process(self.queue.get_nowait())

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                item = await asyncio.wait_for(self.queue.get(), 0.5)
            except asyncio.TimeoutError:
                continue
            await self.process(item)
        await self.drain()

    async def context_for(self, kind: str, value: str) -> dict[str, Any] | None:
        """Tags, health and routing for a conversation or customer id (handoff routing, journeys)."""
        if self.service is None:
            return None
        try:
            return await self.service.context(kind, value)
        except Exception:
            logger.exception("Customer context lookup failed")
            return None

    async def reload(self) -> dict[str, Any]:
        rules = await run_blocking(load_rules, self.settings.root)
        self.rules = rules
        if self.service is not None:
            self.service.reload(rules)
        return {"segments": [s.name for s in rules.segments], "components": [c.name for c in rules.health.components],
                "sources": list(rules.sources)}

    # -- routes -----------------------------------------------------------------------
    def blueprints(self) -> Sequence[Blueprint]:
        if not self.settings.enable_api:
            return ()
        register_error(CustomerError)
        return (customers_blueprint(self),)


def _console_verifier(settings: ProjectSettings) -> Callable[[str], Principal | None] | None:
    """The agent console's login token → a principal with the agent's role (None without a console)."""
    if settings.root is None or settings.section("handoff") is None:
        return None
    try:
        from bot.handoff.config import HandoffConfig

        config = HandoffConfig.from_project(settings.root)
    except Exception:
        logger.exception("Customer 360: the console's logins are not accepted (handoff config unreadable)")
        return None
    return console_principal(config)


def console_principal(config: Any) -> Callable[[str], Principal | None]:
    """A console login token (``bot/handoff/auth.py``) → the agent's principal (agent/supervisor/admin)."""
    from bot.handoff.auth import verify_token

    def verify(token: str) -> Principal | None:
        agent = verify_token(config, token)
        if agent is None:
            return None
        role = Role(agent.role) if agent.role in ("agent", "supervisor", "admin") else Role.NONE
        return Principal(subject=f"console:{agent.id}", role=role, scopes=scopes_for(role), via="console")

    return verify


def customer_scope(feature: CustomersFeature, scope: Scope) -> Callable[[Any], Any]:
    """``requires_scope`` that also accepts the console's login: 401 for a stranger, 403 for a wrong role."""

    def decorator(handler: Any) -> Any:
        @functools.wraps(handler)
        async def decorated(request: Request, *args: Any, **kwargs: Any) -> Any:
            principal = principal_of(request)
            if principal is None and feature.console_verify is not None:
                token = bearer_token(request)
                principal = feature.console_verify(token) if token else None
            if principal is None:
                raise not_authenticated()
            if not principal.has(scope):
                raise not_authorized(principal, scope)
            request.ctx.customer_actor = principal
            return await handler(request, *args, **kwargs)

        setattr(decorated, ACCESS_ATTRIBUTE, scope)
        return decorated

    return decorator



def _cursor(raw: str | None) -> tuple[float, int] | None:
    if not raw:
        return None
    ts, sep, seq = raw.rpartition(":")
    try:
        return float(ts), int(seq)
    except ValueError:
        raise ErrorResponse(400, "BadRequest", f"'before' must be the 'next' cursor of a previous page, got '{raw}'.")


def _masked(record: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Phones and openids masked for everyone but an admin (as transcripts are, bot/privacy)."""
    if principal.is_admin:
        return record
    from bot.shared.masking import mask_openid, mask_phone

    maskers = {"phone": mask_phone, "wechat_openid": mask_openid}
    record["identities"] = [{**i, "value": maskers[i["kind"]](i["value"])} if i["kind"] in maskers else i
                            for i in record.get("identities", [])]
    record["conflicts"] = [{**c, "value": maskers[c["kind"]](c["value"])} if c["kind"] in maskers else c
                           for c in record.get("conflicts", [])]
    return record


def customers_blueprint(feature: CustomersFeature) -> Blueprint:
    bp = Blueprint("kefu_customers")
    read = customer_scope(feature, Scope.CUSTOMERS_READ)
    write = customer_scope(feature, Scope.CUSTOMERS_WRITE)

    def service() -> CustomerService:
        if feature.service is None:
            raise ErrorResponse(503, "NotReady", "Customer 360 has not started yet; retry shortly.")
        return feature.service

    async def audit(request: Request, action: str, target: str, detail: dict[str, Any]) -> None:
        actor = request.ctx.customer_actor
        if feature.audit is not None:
            await feature.audit.record(actor, action, target, address=request.remote_addr or request.ip or None,
                                       detail=detail)
        else:
            logger.warning("AUDIT %s by %s target=%s %s", action, actor.subject, target, detail)

    @bp.get("/customers")
    @read
    async def list_customers(request: Request) -> HTTPResponse:
        limit = int_arg(request, "limit", 50, 1, MAX_PAGE)
        offset = int_arg(request, "offset", 0, 0, 10_000_000)
        segment = request.args.get("segment")
        if segment:
            rows = await service().segment(segment, limit, offset)
        else:
            rows = await service().search(request.args.get("band"), limit, offset)
        return response.json({"customers": [{k: r[k] for k in ("id", "tags", "health_score", "health_band",
                                                                "updated_at")} for r in rows]})

    @bp.get("/customers/lookup")
    @read
    async def lookup(request: Request) -> HTTPResponse:
        kind, value = request.args.get("kind"), request.args.get("value")
        if kind not in IDENTITY_KINDS or not value:
            raise ErrorResponse(400, "BadRequest", f"Give 'kind' (one of {', '.join(IDENTITY_KINDS)}) and 'value'.")
        cid = await service().find(kind, value)
        if cid is None:
            raise ErrorResponse(404, "NotFound", f"No customer with that {kind}.")
        await audit(request, "customers.read", cid, {"route": "lookup", "kind": kind})
        return response.json(_masked(await service().get(cid), request.ctx.customer_actor))

    @bp.get("/customers/alerts")
    @read
    async def alerts(request: Request) -> HTTPResponse:
        since = float(request.args.get("since") or 0.0)
        return response.json({"alerts": await service().alerts(since, int_arg(request, "limit", 50, 1, MAX_PAGE))})

    @bp.get("/customers/<customer_id>")
    @read
    async def get_customer(request: Request, customer_id: str) -> HTTPResponse:
        data = await service().get(customer_id)
        await audit(request, "customers.read", customer_id, {"route": "customer"})
        return response.json(_masked(data, request.ctx.customer_actor))

    @bp.get("/customers/<customer_id>/timeline")
    @read
    async def timeline(request: Request, customer_id: str) -> HTTPResponse:
        types = [t for t in (request.args.get("types") or "").split(",") if t] or None
        page = await service().timeline(customer_id, _cursor(request.args.get("before")),
                                        int_arg(request, "limit", 50, 1, MAX_PAGE), types)
        await audit(request, "customers.timeline", customer_id, {"items": len(page["items"])})
        return response.json(page)

    @bp.post("/customers/<customer_id>/merge")
    @write
    async def merge(request: Request, customer_id: str) -> HTTPResponse:
        body = json_body(request)
        other = body.get("merge")
        if not isinstance(other, str) or not other:
            raise ErrorResponse(400, "BadRequest", "Send {\"merge\": \"<id of the customer to merge into this one>\"}.")
        result = await service().merge(customer_id, other, request.ctx.customer_actor.subject)
        await audit(request, "customers.merge", customer_id, result)
        return response.json(result)

    @bp.post("/customers/merges/<merge_id>/undo")
    @write
    async def unmerge(request: Request, merge_id: str) -> HTTPResponse:
        result = await service().unmerge(merge_id, request.ctx.customer_actor.subject)
        await audit(request, "customers.unmerge", result["restored"], result)
        return response.json(result)

    @bp.post("/customers/recompute")
    @write
    async def recompute(request: Request) -> HTTPResponse:
        count = await service().recompute_all()
        await audit(request, "customers.recompute", "*", {"customers": count})
        return response.json({"recomputed": count})

    @bp.post("/customers/reload")
    @write
    async def reload(request: Request) -> HTTPResponse:
        try:
            result = await feature.reload()
        except ConfigError as e:
            raise ErrorResponse(400, "InvalidRules", str(e))
        await audit(request, "customers.reload", "*", result)
        return response.json(result)

    return bp


def customers_feature(settings: ProjectSettings) -> CustomersFeature | None:
    root = settings.root
    if root is None:
        return None
    if settings.section("customers") is None and not (Path(root) / "customers.yml").is_file() \
            and not (Path(root) / "health.yml").is_file():
        return None
    return CustomersFeature(settings)
