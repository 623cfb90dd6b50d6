"""Escalation to human agents: rules, handoff records, routing, agent API and console.

The server runs it as a feature (``bot/handoff/feature.py``): the processor hook,
the agent API blueprint (``/handoff/api``, websocket ``/handoff/ws``) and the console
page (``/console``). See docs/handoff.md.
"""
from __future__ import annotations

from bot.handoff.config import AgentSpec, HandoffConfig, ServiceHours
from bot.handoff.errors import HandoffError
from bot.handoff.handoffs import Handoff
from bot.handoff.hook import HandoffHook
from bot.handoff.rules import Escalation
from bot.handoff.service import HandoffService
from bot.handoff.store import SQLHandoffStore

__all__ = ["AgentSpec", "Escalation", "Handoff", "HandoffConfig", "HandoffError", "HandoffHook", "HandoffService",
           "SQLHandoffStore", "ServiceHours"]
