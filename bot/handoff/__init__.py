"""Escalation to human agents: rules, handoff records, routing, agent API and console.

``install_handoff(app, agent, config)`` wires everything into a kefu server:
the processor hook, the agent API blueprint (``/handoff/api``, websocket
``/handoff/ws``) and the console page (``/console``). See docs/handoff.md.
"""
from __future__ import annotations

from typing import Any

from bot.handoff.config import AgentSpec, HandoffConfig, ServiceHours
from bot.handoff.hook import HandoffHook
from bot.handoff.rules import Escalation
from bot.handoff.service import HandoffError, HandoffService
from bot.handoff.store import SQLHandoffStore

__all__ = ["AgentSpec", "Escalation", "HandoffConfig", "HandoffError", "HandoffHook", "HandoffService",
           "SQLHandoffStore", "ServiceHours", "install_handoff"]


def install_handoff(app: Any, agent: Any, config: HandoffConfig, **service_kwargs: Any) -> HandoffService:
    """Create the service, hook it into ``agent``, mount the API and console on ``app``."""
    from bot.handoff.api import create_handoff_blueprint

    service = HandoffService(config, event_broker=getattr(agent, "event_broker", None), agent=agent,
                             **service_kwargs)
    service.register_input_channels(list(getattr(app.ctx, "input_channels", []) or []))
    agent.add_hook(HandoffHook(service))
    app.blueprint(create_handoff_blueprint(service))
    app.ctx.handoff = service

    @app.before_server_start
    async def _start_handoff(*_: Any) -> None:
        await service.start()

    return service
