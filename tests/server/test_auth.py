"""Token and JWT authentication with Rasa's admin / user rules."""
from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from bot.server.app import create_app
from connectors.rest import RestInput

SECRET = "jwt-secret-for-tests-0123456789abcdef"


def bearer(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm=algorithm)}"}


async def get(app: Any, path: str, **kwargs: Any) -> Any:
    _, resp = await app.asgi_client.get(path, **kwargs)
    return resp


@pytest.mark.asyncio
async def test_auth_token_required_for_api(agent):
    app = create_app(agent, auth_token="s3cret")
    missing = await get(app, "/status")
    assert missing.status == 401
    assert missing.json["reason"] == "NotAuthenticated"
    assert "Authorization: Bearer" in missing.json["message"]
    wrong = await get(app, "/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    ok = await get(app, "/status", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200 and ok.json["model_id"] == "model-1"
    token_scheme = await get(app, "/status", headers={"Authorization": "Token s3cret"})
    assert token_scheme.status == 200


@pytest.mark.asyncio
async def test_token_in_url_is_refused_naming_the_header(agent):
    """Old code accepted ?token= (it lands in access logs); now 401 with the fix."""
    app = create_app(agent, auth_token="s3cret")
    resp = await get(app, "/status?token=s3cret")
    assert resp.status == 401
    assert resp.json["details"] == {"parameter": "token", "in": "query"}
    assert "Authorization: Bearer" in resp.json["message"]
    assert "--allow-token-in-url" in resp.json["message"]


@pytest.mark.asyncio
async def test_token_in_url_accepted_with_legacy_flag(agent):
    app = create_app(agent, auth_token="s3cret", allow_token_in_url=True)
    assert (await get(app, "/status?token=s3cret")).status == 200
    assert (await get(app, "/status?token=nope")).status == 401


@pytest.mark.asyncio
async def test_root_version_and_webhooks_stay_open(agent):
    app = create_app(agent, input_channels=[RestInput()], auth_token="s3cret", jwt_secret=SECRET)
    assert (await get(app, "/")).status == 200
    assert (await get(app, "/version")).status == 200
    _, resp = await app.asgi_client.post("/webhooks/rest/webhook", json={"sender": "u", "message": "hi"})
    assert resp.status == 200


@pytest.mark.asyncio
async def test_jwt_admin_may_do_everything(agent):
    app = create_app(agent, jwt_secret=SECRET)
    headers = bearer({"user": {"username": "ops", "role": "admin"}})
    assert (await get(app, "/status", headers=headers)).status == 200
    assert (await get(app, "/conversations/anyone/tracker", headers=headers)).status == 200


@pytest.mark.asyncio
async def test_jwt_user_reads_only_own_conversation(agent):
    app = create_app(agent, jwt_secret=SECRET)
    headers = bearer({"user": {"username": "alice", "role": "user"}})
    own = await get(app, "/conversations/alice/tracker", headers=headers)
    assert own.status == 200 and own.json["sender_id"] == "alice"
    other = await get(app, "/conversations/bob/tracker", headers=headers)
    assert other.status == 403
    assert other.json["reason"] == "NotAuthorized"
    status = await get(app, "/status", headers=headers)
    assert status.status == 403


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        bearer({"user": {"role": "admin"}}, secret="another-secret-0123456789abcdef-xyz"),
        bearer({"user": {"role": "admin"}, "exp": int(time.time()) - 60}),
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {},
    ],
)
async def test_invalid_jwt_is_401(agent, headers):
    app = create_app(agent, jwt_secret=SECRET)
    resp = await get(app, "/status", headers=headers)
    assert resp.status == 401
    assert resp.json["status"] == "failure"


@pytest.mark.asyncio
async def test_jwt_without_role_is_403(agent):
    app = create_app(agent, jwt_secret=SECRET)
    resp = await get(app, "/status", headers=bearer({"user": {"username": "x"}}))
    assert resp.status == 403


@pytest.mark.asyncio
async def test_token_or_jwt_both_accepted_when_both_configured(agent):
    app = create_app(agent, auth_token="s3cret", jwt_secret=SECRET)
    assert (await get(app, "/status", headers={"Authorization": "Bearer s3cret"})).status == 200
    headers = bearer({"user": {"role": "admin"}})
    assert (await get(app, "/status", headers=headers)).status == 200


@pytest.mark.asyncio
async def test_no_auth_configured_leaves_api_open(agent):
    assert (await get(create_app(agent), "/status")).status == 200
