"""``GET /openapi.json``: a valid OpenAPI 3.1 document of exactly the routes the app mounts.

Built through the app factory with the repository's demo project (knowledge, handoff and
triggers features) and the REST and WeChat channels, so API, channel and feature routes
are all in the router. The fuzz run over the served document is test_openapi_fuzz.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from sanic import response

from bot.server.app import create_app
from bot.server.openapi import OPENAPI_ROUTE, openapi_path, routes_missing_from
from bot.web.errors import ERROR_BODY_SCHEMA
from connectors.base import create_input_channels

REPO_ROOT = Path(__file__).resolve().parents[2]
CHANNELS = {
    "rest": None,
    "wechat": {"app_id": "wx1234567890abcdef", "app_secret": "s", "token": "t", "mode": "safe",
               "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"},
}


def demo_app(**kwargs: Any) -> Any:
    return create_app(None, input_channels=create_input_channels(CHANNELS), project_root=REPO_ROOT, **kwargs)


async def served(app: Any) -> dict[str, Any]:
    _, resp = await app.asgi_client.get(OPENAPI_ROUTE)
    assert resp.status == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json


def router_operations(app: Any) -> set[tuple[str, str]]:
    return {(m.lower(), openapi_path(r.path)[0]) for r in app.router.routes for m in r.methods}


@pytest.mark.asyncio
async def test_document_is_valid_openapi_31_of_every_mounted_route():
    app = demo_app()
    document = await served(app)
    validate(document)  # openapi-spec-validator, 3.1 schema
    assert document["openapi"] == "3.1.0"
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    assert documented == router_operations(app)
    for expected in [("post", "/model/parse"), ("post", "/webhooks/wechat/webhook"), ("put", "/knowledge/entries/{entry_id}"),
                     ("post", "/events"), ("post", "/conversations/{conversation_id}/tracker/events"),
                     ("get", "/handoff/api/handoffs/{handoff_id}"), ("get", OPENAPI_ROUTE)]:
        assert expected in documented


@pytest.mark.asyncio
async def test_main_routes_have_bodies_parameters_and_shared_error_schema():
    document = await served(demo_app())
    paths = document["paths"]
    assert document["components"]["schemas"]["Error"] == ERROR_BODY_SCHEMA
    parse = paths["/model/parse"]["post"]
    assert parse["requestBody"]["content"]["application/json"]["schema"]["required"] == ["text"]
    for status in ("400", "401", "403", "413"):
        assert parse["responses"][status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    tracker = paths["/conversations/{conversation_id}/tracker"]["get"]
    assert {p["name"]: p["in"] for p in tracker["parameters"]} == {
        "conversation_id": "path", "include_events": "query", "until": "query"}
    for path, method in [("/conversations/{conversation_id}/messages", "post"), ("/model", "put"),
                         ("/conversations/{conversation_id}/trigger_intent", "post"), ("/model/train", "post"),
                         ("/conversations/{conversation_id}/execute", "post"), ("/events", "post"),
                         ("/knowledge/entries/{entry_id}", "put")]:
        assert paths[path][method]["requestBody"]["required"] is True, (method, path)
    wechat = paths["/webhooks/wechat/webhook"]["post"]
    assert wechat["security"] == [] and "text/plain" in wechat["responses"]["403"]["content"]


def test_every_row_of_the_table_is_a_mounted_route():
    assert routes_missing_from(demo_app()) == []


@pytest.mark.asyncio
async def test_error_bodies_match_the_shared_schema():
    app = demo_app()
    _, resp = await app.asgi_client.get("/no/such/route")
    assert resp.status == 404
    jsonschema.validate(resp.json, ERROR_BODY_SCHEMA)
    _, resp = await app.asgi_client.post("/model/parse", content=b"{not json")
    assert resp.status in (400, 401, 409)
    jsonschema.validate(resp.json, ERROR_BODY_SCHEMA)


@pytest.mark.asyncio
async def test_declared_scope_and_public_marks_become_security_requirements():
    """``requires_scope`` records the scope on the handler (bot/web/auth.py); the document lists it."""
    from bot.web.principals import Scope

    app = demo_app()

    async def audit(request: Any) -> Any:
        return response.json({})

    async def ping(request: Any) -> Any:
        return response.text("pong")

    audit.__kefu_access__ = Scope.AUDIT_READ  # what requires_scope(Scope.AUDIT_READ) sets
    ping.__kefu_access__ = "public"
    app.add_route(audit, "/probe/audit", methods=["GET"], name="probe_audit")
    app.add_route(ping, "/probe/ping", methods=["GET"], name="probe_ping")
    paths = (await served(app))["paths"]
    assert paths["/probe/audit"]["get"]["x-kefu-scope"] == "audit:read"
    assert paths["/probe/audit"]["get"]["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(paths["/probe/audit"]["get"]["responses"])
    assert paths["/probe/ping"]["get"]["security"] == []
    assert "401" not in paths["/probe/ping"]["get"]["responses"]


@pytest.mark.asyncio
async def test_document_is_public_but_grants_nothing():
    app = demo_app(auth_token="generated-" + "x" * 24, jwt_secret=None)
    await served(app)  # no credentials needed to read it
    _, resp = await app.asgi_client.get("/status")
    assert resp.status == 401
    _, resp = await app.asgi_client.post("/model/parse", json={"text": "hi"})
    assert resp.status == 401


@pytest.mark.asyncio
async def test_no_document_without_the_api():
    app = demo_app(enable_api=False)
    _, resp = await app.asgi_client.get(OPENAPI_ROUTE)
    assert resp.status == 404
