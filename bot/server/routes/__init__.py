"""Rasa's HTTP API, one blueprint per resource; ``create_app`` mounts them.

``version`` (always served), then behind ``--enable-api``: ``status``,
``model`` (parse, test, train, load), ``conversations`` (tracker, events,
messages, trigger_intent, execute, predict), ``domain`` and ``audit``
(transcript reads, for admins).
"""
from __future__ import annotations

from sanic import Blueprint

from bot.server.routes.audit import create_audit_blueprint
from bot.server.routes.conversations import create_conversations_blueprint
from bot.server.routes.domain import create_domain_blueprint
from bot.server.routes.model import create_model_blueprint
from bot.server.routes.status import create_status_blueprint


def api_blueprints() -> list[Blueprint]:
    """Fresh blueprints of the ``--enable-api`` routes (a blueprint serves one app)."""
    return [
        create_status_blueprint(),
        create_model_blueprint(),
        create_conversations_blueprint(),
        create_domain_blueprint(),
        create_audit_blueprint(),
    ]
