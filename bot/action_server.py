"""``python -m bot actions``: serve the project's rasa_sdk actions over HTTP.

The same protocol as ``rasa run actions`` (``POST /webhook``, ``GET /health``,
``GET /actions``), served by rasa_sdk's own Sanic app so behaviour matches exactly.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sanic import Sanic

logger = logging.getLogger(__name__)

DEFAULT_ACTIONS_PACKAGE = "actions"
DEFAULT_ACTION_SERVER_PORT = 5055


def create_action_app(
    package: str = DEFAULT_ACTIONS_PACKAGE,
    cors_origins: str | list[str] | None = "*",
    project_root: str | Path | None = None,
):
    """rasa_sdk's Sanic app with every action of ``package`` registered.

    ``package`` is loaded from ``project_root`` when given (``sys.path`` untouched), else
    imported by name. Raises ``ConfigError`` (not ``SystemExit`` as rasa_sdk would) when
    the package cannot be imported.
    """
    from rasa_sdk.endpoint import create_app

    from bot.dialogue.actions.inprocess import create_executor

    executor = create_executor(package, project_root=project_root)
    return create_app(executor, cors_origins=cors_origins)


def run_action_server(
    package: str = DEFAULT_ACTIONS_PACKAGE,
    port: int = DEFAULT_ACTION_SERVER_PORT,
    host: str = "0.0.0.0",
    project_root: str | Path | None = None,
) -> None:
    """Blocks serving the actions of ``package`` (from ``project_root``) on ``host:port`` (single process)."""
    app: Sanic = create_action_app(package, project_root=project_root)
    logger.info("Action server for package '%s' on http://%s:%d/webhook", package, host, port)
    app.run(host=host, port=port, single_process=True, access_log=False, motd=False)
