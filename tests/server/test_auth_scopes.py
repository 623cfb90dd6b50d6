"""Roles and scopes on every management route (issue #15 point 2).

The router walk builds the app the way ``python -m bot run`` does for this repository's
project (every feature, every channel) and fails for a route that declares neither a
scope (``requires_scope``) nor ``public``. On the old code no route declared anything,
a trainer's or event producer's JWT got 403 everywhere, and a stranger could not be
told apart from a role lacking a scope.
"""
from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from bot.alerts.config import parse_alerts
from bot.alerts.feature import AlertsFeature
from bot.feature import ProjectSettings
from bot.knowledge.feature import KnowledgeFeature
from bot.analytics.config import AnalyticsConfig, SurveyConfig
from bot.analytics.feature import AnalyticsFeature
from bot.server.app import create_app
from bot.customers.feature import CustomersFeature
from bot.privacy.feature import PrivacyFeature
from bot.workbench.feature import WorkbenchFeature
from bot.triggers.feature import TriggersFeature
from bot.web.auth import PUBLIC, declared_access, principal_from_jwt_payload
from bot.web.principals import OPT_IN_SCOPES, ROLE_SCOPES, Role, Scope
from connectors.rest import RestInput
from connectors.socketio.channel import SocketIOInput
from connectors.wechat.channel import WeChatInput

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = secrets.token_urlsafe(48)
API_TOKEN = secrets.token_urlsafe(32)

# Routes other packages serve and protect themselves; public as far as the API's scopes go.
PUBLIC_ELSEWHERE: dict[str, str] = {
    "webhooks/": "channels' webhooks and the widget's static files (connectors/, verified by each channel)",
    "socket.io": "the widget's socket (connectors/socketio, its own session ids / shop-signed token)",
    "console": "the console page and its static files (the console logs in through the handoff API)",
    # The handoff API and its websocket have their own agent login (bot/handoff/auth.py, owned by
    # engineer console-auth): agents and supervisors, not API tokens.
    "handoff/": "the handoff API (its own login: bot/handoff/auth.py)",
}


def bearer(payload: dict[str, Any], secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm='HS256')}"}


def role_headers(role: str, username: str = "someone", **claims: Any) -> dict[str, str]:
    return bearer({"user": {"username": username, "role": role}, "exp": int(time.time()) + 600, **claims})


def full_app() -> Any:
    channels = [RestInput(), SocketIOInput.from_credentials({}),
                WeChatInput.from_credentials({"token": "t", "app_id": "a", "app_secret": "s"})]
    return create_app(None, input_channels=channels, auth_token=API_TOKEN, jwt_secret=SECRET,
                      project_root=REPO_ROOT)


def routes_of(app: Any) -> list[Any]:
    if not app.router.finalized:
        app.router.finalize()
    return list(app.router.routes)


def concrete(path: str) -> str:
    """A request path for a route pattern: every ``<name:type>`` becomes a value."""
    return "/" + re.sub(r"<([a-z_]+)(:[a-z]+)?>", lambda m: f"x-{m.group(1)}", path).lstrip("/")


def public_elsewhere(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in PUBLIC_ELSEWHERE)


FULL_APP = full_app()
SCOPED = sorted(((sorted(r.methods)[0], r.path, declared_access(r.handler)) for r in routes_of(FULL_APP)
                 if isinstance(declared_access(r.handler), Scope)), key=lambda t: (t[1], t[0]))


def test_router_walk_every_route_declares_a_scope_or_public():
    undeclared = [f"{sorted(r.methods)} /{r.path} ({r.name})" for r in routes_of(FULL_APP)
                  if declared_access(r.handler) is None and not public_elsewhere(r.path)]
    assert not undeclared, ("Routes without @requires_scope(Scope.X) or @public (bot/web/auth.py):\n  "
                            + "\n  ".join(undeclared))
    assert ("GET", "conversations/<conversation_id:path>/tracker", Scope.CONVERSATIONS_READ) in SCOPED
    assert len(SCOPED) >= 25  # model, conversations, knowledge, triggers, audit...


def test_router_walk_root_and_version_are_public():
    access = {r.path: declared_access(r.handler) for r in routes_of(FULL_APP)}
    assert access[""] == PUBLIC and access["version"] == PUBLIC


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path", "scope"), SCOPED, ids=[f"{m} /{p}" for m, p, _ in SCOPED])
async def test_stranger_gets_401_on_every_management_route(method, path, scope):
    request = getattr(FULL_APP.asgi_client, method.lower())
    _, resp = await request(concrete(path))
    assert resp.status == 401, resp.text
    assert resp.json["reason"] == "NotAuthenticated"
    _, forged = await request(concrete(path), headers=bearer({"user": {"role": "admin"}}, secret="not-" + SECRET))
    assert forged.status == 401


# One representative route per scope a route declares (method, path, JSON body).
REPRESENTATIVE: dict[Scope, tuple[str, str, Any]] = {
    Scope.STATUS_READ: ("get", "/status", None),
    Scope.MODEL_PARSE: ("post", "/model/parse", {"text": "hi"}),
    Scope.MODEL_TEST: ("post", "/model/test/intents", None),
    Scope.MODEL_TRAIN: ("post", "/model/train", None),
    Scope.MODEL_WRITE: ("put", "/model", {}),
    Scope.CONVERSATIONS_READ: ("get", "/conversations/someone/tracker", None),
    Scope.CONVERSATIONS_WRITE: ("post", "/conversations/someone/predict", None),
    Scope.KNOWLEDGE_READ: ("get", "/knowledge/entries", None),
    Scope.KNOWLEDGE_WRITE: ("post", "/knowledge/reload", None),
    Scope.EVENTS_WRITE: ("post", "/events", None),
    Scope.TRIGGERS_READ: ("get", "/triggers/report", None),
    Scope.TRIGGERS_WRITE: ("post", "/triggers/journeys/j/steps/s/variants/v/stop", None),
    Scope.AUDIT_READ: ("get", "/audit", None),
    Scope.DATA_ADMIN: ("get", "/data/customers/c1/export", None),
    Scope.TRAINING_ANNOTATE: ("post", "/workbench/api/annotate/dismiss", {"texts": ["x"]}),
    Scope.METRICS_READ: ("get", "/metrics", None),
    Scope.HANDOFF_SUPERVISE: ("get", "/alerts", None),
    Scope.CUSTOMERS_READ: ("get", "/customers", None),
    Scope.CUSTOMERS_WRITE: ("post", "/customers/reload", None),
    Scope.ANALYTICS_READ: ("get", "/dashboard/api/metrics", None),
}


def test_every_route_scope_has_a_representative():
    assert {scope for _, _, scope in SCOPED} <= set(REPRESENTATIVE)


def light_app(agent: Any) -> Any:
    """The API with the knowledge, trigger and data routes (no engine: 409), a fake agent."""
    settings = ProjectSettings(root=None)
    return create_app(agent, auth_token=API_TOKEN, jwt_secret=SECRET,
                      features=[KnowledgeFeature(settings), TriggersFeature(settings), PrivacyFeature(settings),
                                WorkbenchFeature(settings), AlertsFeature(parse_alerts({"rules": []})),
                                CustomersFeature(settings),
                                AnalyticsFeature(AnalyticsConfig(survey=SurveyConfig(enabled=False)),
                                                 "sqlite:///:memory:")])


CASES = [(role, scope) for role in Role if role is not Role.NONE for scope in REPRESENTATIVE]


@pytest.mark.asyncio
@pytest.mark.parametrize(("role", "scope"), CASES, ids=[f"{r.value}-{s.value}" for r, s in CASES])
async def test_role_gets_403_without_the_scope_and_through_with_it(agent, role, scope):
    method, path, body = REPRESENTATIVE[scope]
    kwargs = {"json": body} if body is not None else {}
    _, resp = await getattr(light_app(agent).asgi_client, method)(path, headers=role_headers(role.value), **kwargs)
    if scope in ROLE_SCOPES[role]:
        assert resp.status not in (401, 403), resp.text
    else:
        assert resp.status == 403, resp.text
        assert resp.json["reason"] == "NotAuthorized"
        assert scope.value in resp.json["message"] or role is Role.USER
        assert resp.json["details"] == {"scope": scope.value}


@pytest.mark.asyncio
async def test_shopper_only_on_own_conversation_message_names_it(agent):
    app = light_app(agent)
    _, own = await app.asgi_client.post("/conversations/alice/predict", headers=role_headers("user", "alice"))
    assert own.status == 200
    _, other = await app.asgi_client.get("/conversations/bob/tracker", headers=role_headers("user", "alice"))
    assert other.status == 403 and "own conversation 'alice'" in other.json["message"]


@pytest.mark.asyncio
async def test_scopes_claim_narrows_but_never_widens(agent):
    app = light_app(agent)
    narrowed = role_headers("admin", scopes=["status:read"])
    _, ok = await app.asgi_client.get("/status", headers=narrowed)
    assert ok.status == 200
    _, denied = await app.asgi_client.post("/model/parse", headers=narrowed, json={"text": "hi"})
    assert denied.status == 403 and "model:parse" in denied.json["message"]
    widened = role_headers("trainer", scopes=["model:write", "audit:read", "status:read"])
    _, refused = await app.asgi_client.put("/model", headers=widened, json={})
    assert refused.status == 403
    _, audit = await app.asgi_client.get("/audit", headers=widened)
    assert audit.status == 403


@pytest.mark.asyncio
async def test_unknown_role_is_authenticated_but_allowed_nothing(agent):
    _, resp = await light_app(agent).asgi_client.get("/status", headers=role_headers("superuser"))
    assert resp.status == 403


@pytest.mark.asyncio
async def test_expired_kefu_role_token_is_401(agent):
    headers = bearer({"user": {"username": "t", "role": "trainer"}, "exp": int(time.time()) - 5})
    _, resp = await light_app(agent).asgi_client.get("/status", headers=headers)
    assert resp.status == 401


def test_event_producer_is_untrusted_unless_its_token_says_so():
    plain = principal_from_jwt_payload({"user": {"username": "shop", "role": "event_producer"}})
    assert plain.has(Scope.EVENTS_WRITE) and not plain.has(Scope.EVENTS_TRUSTED)
    trusted = principal_from_jwt_payload({"user": {"username": "shop", "role": "event_producer"},
                                          "scopes": ["events:write", "events:trusted"]})
    assert trusted.has(Scope.EVENTS_TRUSTED) and trusted.via == "jwt" and trusted.subject == "shop"
    trainer = principal_from_jwt_payload({"user": {"username": "t", "role": "trainer"}, "scopes": ["events:trusted"]})
    assert not trainer.scopes  # opt-in scopes are per role: a trainer cannot claim them
    assert Scope.EVENTS_TRUSTED in OPT_IN_SCOPES[Role.EVENT_PRODUCER]


@pytest.mark.asyncio
async def test_principal_is_cached_on_the_request(agent):
    from sanic import response

    from bot.web.auth import principal_of

    app = light_app(agent)

    @app.get("/whoami")
    async def whoami(request):
        first = principal_of(request)
        assert principal_of(request) is first
        return response.json({"subject": first.subject, "role": first.role.value, "via": first.via})

    _, resp = await app.asgi_client.get("/whoami", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert resp.json == {"subject": "api-token", "role": "admin", "via": "token"}


@pytest.mark.asyncio
async def test_shopper_cannot_set_identity_metadata_through_the_messages_api(agent):
    """A shopper's JWT may post into its own conversation, but identity keys are the channel's word."""
    app = light_app(agent)
    body = {"sender": "user", "text": "hi", "metadata": {"identity": {"customer_id": "c9", "verified": True},
                                                        "page": "/p/1"}}
    _, resp = await app.asgi_client.post("/conversations/alice/messages", json=body,
                                         headers=role_headers("user", "alice"))
    assert resp.status == 200, resp.text
    assert (await agent.get_tracker("alice")).latest_message.metadata == {"page": "/p/1"}
    _, resp = await app.asgi_client.post("/conversations/alice/messages", json=body,
                                         headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert resp.status == 200  # an admin may (support staff replaying a verified conversation)
    assert (await agent.get_tracker("alice")).latest_message.metadata["identity"]["customer_id"] == "c9"
