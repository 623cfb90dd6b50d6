"""CORS: nothing by default, ``*`` without credentials, credentials only for listed origins.

The old ``configure_cors`` reflected any ``Origin`` with ``Allow-Credentials: true`` (and
``create_app``'s default was ``*``), so any web page could call the API with the
browser's credentials and read the answer.
"""
from __future__ import annotations

from typing import Any

import pytest

from bot.server.app import create_app

EVIL = "https://evil.example"
SHOP = "https://shop.example"


async def get(app: Any, origin: str) -> Any:
    _, resp = await app.asgi_client.get("/version", headers={"Origin": origin})
    return resp


async def preflight(app: Any, origin: str) -> Any:
    _, resp = await app.asgi_client.options(
        "/status", headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                            "Access-Control-Request-Headers": "Authorization"})
    return resp


@pytest.mark.asyncio
async def test_cors_default_sends_no_headers(agent):
    app = create_app(agent)
    resp = await get(app, EVIL)
    assert "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-credentials" not in resp.headers
    assert "access-control-allow-origin" not in (await preflight(app, EVIL)).headers


@pytest.mark.asyncio
async def test_cors_star_allows_any_origin_without_credentials(agent):
    app = create_app(agent, cors_origins="*")
    resp = await get(app, EVIL)
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    pre = await preflight(app, EVIL)
    assert pre.status == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in pre.headers


@pytest.mark.asyncio
async def test_cors_credentials_only_for_listed_origins(agent):
    app = create_app(agent, cors_origins=[SHOP, "*"])
    listed = await get(app, SHOP)
    assert listed.headers["access-control-allow-origin"] == SHOP
    assert listed.headers["access-control-allow-credentials"] == "true"
    assert listed.headers["vary"] == "Origin"
    other = await get(app, EVIL)
    assert other.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in other.headers

    only_shop = create_app(agent, cors_origins=[SHOP])
    assert "access-control-allow-origin" not in (await get(only_shop, EVIL)).headers
    pre = await preflight(only_shop, SHOP)
    assert pre.status == 204 and pre.headers["access-control-allow-credentials"] == "true"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
