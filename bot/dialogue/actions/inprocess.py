"""Custom actions run in this process by rasa_sdk's ``ActionExecutor``.

Saves the action-server hop for single-machine deployments: the same rasa_sdk code,
the same payload and result handling as :class:`~.remote.RemoteAction`. Note that a
synchronous ``run`` in user code blocks the event loop while it runs.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bot.dialogue.actions.base import Action
from bot.dialogue.actions.project_package import load_action_package
from bot.dialogue.actions.remote import action_call_payload, events_from_result
from bot.shared.events import Event
from bot.shared.exceptions import ActionExecutionError, ActionExecutionRejection, ConfigError

if TYPE_CHECKING:
    from rasa_sdk.executor import ActionExecutor

logger = logging.getLogger(__name__)

DEFAULT_ACTIONS_PACKAGE = "actions"


def create_executor(
    package: str = DEFAULT_ACTIONS_PACKAGE, project_root: str | Path | None = None
) -> ActionExecutor:
    """A rasa_sdk executor with every action of ``package`` registered.

    With ``project_root`` the package is loaded from that folder without touching
    ``sys.path`` (:func:`~.project_package.load_action_package`); without it, it is
    imported by name from ``sys.path``. rasa_sdk calls ``sys.exit`` when a package fails
    to import; here that becomes a ``ConfigError`` that names the package and the error.
    """
    from rasa_sdk.executor import ActionExecutor

    try:
        if project_root is not None:
            module = load_action_package(package, project_root)
        else:
            module = importlib.import_module(package)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"Cannot import the custom actions package '{package}': {type(e).__name__}: {e}",
            fix="make the package importable from the project root (an `actions/` folder "
            "with `__init__.py`) or pass the right --actions package name.",
        ) from e
    executor = ActionExecutor()
    try:
        executor.register_package(module)
    except SystemExit as e:
        raise ConfigError(
            f"A module of the custom actions package '{package}' failed to import "
            f"(see the log above).",
            fix="fix the import error in your actions code.",
        ) from e
    logger.info("Registered %d custom actions from '%s'.", len(executor.actions), package)
    return executor


def _rasa_sdk_version() -> str:
    try:
        import rasa_sdk

        return str(rasa_sdk.__version__)
    except Exception:  # noqa: BLE001 - only used to silence a version warning
        from bot.dialogue.actions.remote import RASA_PROTOCOL_VERSION

        return RASA_PROTOCOL_VERSION


class InProcessAction(Action):
    """A rasa_sdk action called through an in-process ``ActionExecutor``."""

    def __init__(self, name: str, executor: ActionExecutor) -> None:
        self._name = name
        self.executor = executor

    def name(self) -> str:
        return self._name

    async def run(self, output_channel, nlg, tracker, domain, metadata=None) -> list[Event]:
        from rasa_sdk.interfaces import ActionExecutionRejection as SdkRejection
        from rasa_sdk.interfaces import ActionNotFoundException

        # the executor's own version keeps rasa_sdk's compatibility warning quiet
        payload = action_call_payload(self._name, tracker, domain, version=_rasa_sdk_version())
        try:
            result = await self.executor.run(payload)
        except SdkRejection as e:
            raise ActionExecutionRejection(e.action_name, e.message) from e
        except ActionNotFoundException as e:
            known = ", ".join(sorted(getattr(self.executor, "actions", {}) or {})) or "none"
            raise ActionExecutionError(
                f"Custom action '{self._name}' is not registered in the in-process action "
                f"executor (registered: {known}). Fix: define a rasa_sdk Action whose name() "
                f"returns '{self._name}' in your actions package."
            ) from e
        except Exception as e:
            logger.exception("Custom action '%s' raised an exception.", self._name)
            raise ActionExecutionError(
                f"Custom action '{self._name}' failed: {type(e).__name__}: {e}. "
                f"Fix: see the traceback in the log and correct the action's code."
            ) from e
        result_dict = result.model_dump() if hasattr(result, "model_dump") else result
        return await events_from_result(self._name, result_dict, output_channel, nlg, tracker)
