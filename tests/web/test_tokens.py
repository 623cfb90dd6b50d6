"""``python -m bot token create``: JWTs the server accepts, trusted only when asked."""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from bot.server.app import create_app
from bot.web.auth import principal_from_jwt_payload
from bot.web.principals import Scope
from bot.web.tokens import TokenError, mint_token, token_payload

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", "token", "create", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def test_token_create_cli_prints_a_verifiable_jwt():
    secret = secrets.token_urlsafe(48)
    result = run_cli("--role", "event_producer", "--subject", "shop-backend", "--trusted", "--ttl-days", "2",
                     env={"KEFU_JWT_SECRET": secret})
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    payload = jwt.decode(token, secret, algorithms=["HS256"])
    assert payload["user"] == {"username": "shop-backend", "role": "event_producer"}
    assert 2 * 86400 - 5 <= payload["exp"] - payload["iat"] <= 2 * 86400
    principal = principal_from_jwt_payload(payload)
    assert principal.has(Scope.EVENTS_TRUSTED) and principal.has(Scope.EVENTS_WRITE)
    assert not principal.has(Scope.CONVERSATIONS_READ)


def test_token_create_cli_without_secret_names_the_fix():
    result = run_cli("--role", "trainer", "--subject", "t")
    assert result.returncode == 2 and "KEFU_JWT_SECRET" in result.stderr and not result.stdout


def test_untrusted_producer_token_and_refusals():
    payload = token_payload("event_producer", "shop")
    assert "scopes" not in payload
    assert not principal_from_jwt_payload(payload).has(Scope.EVENTS_TRUSTED)
    with pytest.raises(TokenError, match="event producers only"):
        token_payload("trainer", "t", trusted=True)
    with pytest.raises(TokenError, match="Valid roles"):
        token_payload("root", "t")
    with pytest.raises(TokenError, match="--subject"):
        token_payload("trainer", " ")


@pytest.mark.asyncio
async def test_minted_trainer_token_works_on_the_server():
    secret = secrets.token_urlsafe(48)
    app = create_app(None, jwt_secret=secret)  # no agent: an authorised call gets 409 (no model)
    headers = {"Authorization": f"Bearer {mint_token(secret, 'trainer', 'tina')}"}
    _, ok = await app.asgi_client.post("/model/parse", headers=headers, json={"text": "hi"})
    assert ok.status == 409
    _, denied = await app.asgi_client.put("/model", headers=headers, json={"model_file": "x"})
    assert denied.status == 403
    expired = {"Authorization": f"Bearer {mint_token(secret, 'trainer', 'tina', ttl_days=1, now=0)}"}
    _, old = await app.asgi_client.post("/model/parse", headers=expired, json={"text": "hi"})
    assert old.status == 401
