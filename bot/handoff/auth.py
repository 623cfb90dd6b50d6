"""Agent login and expiring tokens (JWT, HS256) with roles agent < supervisor < admin."""
from __future__ import annotations

import time
from typing import Any

import jwt

from bot.handoff.config import AgentSpec, HandoffConfig

ROLE_RANK = {"agent": 0, "supervisor": 1, "admin": 2}


def issue_token(config: HandoffConfig, agent: AgentSpec, now: float | None = None) -> tuple[str, float]:
    now = time.time() if now is None else now
    expires = now + config.token_ttl_s
    payload = {"sub": agent.id, "role": agent.role, "iat": int(now), "exp": int(expires), "aud": "kefu-handoff"}
    return jwt.encode(payload, config.secret, algorithm="HS256"), expires


def verify_token(config: HandoffConfig, token: str | None) -> AgentSpec | None:
    """The agent a valid, unexpired token names; None otherwise (bad signature, expired, unknown agent)."""
    if not token:
        return None
    try:
        payload: dict[str, Any] = jwt.decode(token, config.secret, algorithms=["HS256"], audience="kefu-handoff")
    except jwt.PyJWTError:
        return None
    agent = config.agent(str(payload.get("sub")))
    if agent is None or agent.role != payload.get("role"):
        return None
    return agent


def has_role(agent: AgentSpec, role: str) -> bool:
    return ROLE_RANK.get(agent.role, -1) >= ROLE_RANK[role]
