"""Escalation to human agents: rules, handoff records, routing, agent API and console.

``install_handoff(app, agent, config)`` wires everything into a kefu server:
the processor hook, the agent API blueprint (``/handoff/api``, websocket
``/handoff/ws``) and the console page (``/console``). See docs/handoff.md.
"""
from __future__ import annotations

from typing import Any

from bot.handoff.config import AgentSpec, HandoffConfig, ServiceHours
from bot.handoff.errors import HandoffError
from bot.handoff.handoffs import Handoff
from bot.handoff.hook import HandoffHook
from bot.handoff.rules import Escalation
from bot.handoff.service import HandoffService
from bot.handoff.store import SQLHandoffStore
from bot.shared.outputs import OutputRegistry

__all__ = ["AgentSpec", "Escalation", "Handoff", "HandoffConfig", "HandoffError", "HandoffHook", "HandoffService",
           "SQLHandoffStore", "ServiceHours", "install_handoff"]


def install_handoff(app: Any, agent: Any, config: HandoffConfig, **service_kwargs: Any) -> HandoffService:
    """Create the service, hook it into ``agent``, mount the API and console on ``app``.

    Shoppers are reached through the app's input channels that are output providers
    (pass ``outputs=`` to choose them yourself).
    """
    from bot.handoff.api import create_handoff_blueprint

    if "outputs" not in service_kwargs:
        service_kwargs["outputs"] = OutputRegistry.from_channels(getattr(app.ctx, "input_channels", []) or [])
    service = HandoffService(config, event_broker=getattr(agent, "event_broker", None), agent=agent,
                             **service_kwargs)
    agent.add_hook(HandoffHook(service))
    app.blueprint(create_handoff_blueprint(service))
    app.ctx.handoff = service

    @app.before_server_start
    async def _start_handoff(*_: Any) -> None:
        await service.start()

    return service
