"""Custom actions run in this process by rasa_sdk's ``ActionExecutor``.

Saves the action-server hop for single-machine deployments: the same rasa_sdk code,
the same payload and result handling as :class:`~.remote.RemoteAction`. Note that a
synchronous ``run`` in user code blocks the event loop while it runs.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import sys
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
    _keep_live_actions_only(executor)
    logger.info("Registered %d custom actions from '%s'.", len(executor.actions), package)
    return executor


# the module prefixes rasa_sdk's own registration skips (ActionExecutor._register_all_actions)
_SDK_MODULES = ("rasa_core.", "rasa.", "rasa_sdk.", "rasa_core_sdk.")


def _is_live(cls: type) -> bool:
    """``cls`` belongs to the module now loaded under its module's name.

    A class of a project package that :func:`~.project_package.load_action_package` replaced
    (another project's ``actions``) stays alive while anything refers to it, but its module is
    no longer the one in ``sys.modules``: its own methods' globals tell them apart.
    """
    module = sys.modules.get(cls.__module__)
    if module is None:
        return False
    own = cls.__dict__.get("name") or cls.__dict__.get("run")
    globals_of = getattr(own, "__globals__", None)
    if globals_of is not None:
        return globals_of is vars(module)
    return getattr(module, cls.__name__, None) is cls


def _keep_live_actions_only(executor: "ActionExecutor") -> None:
    """Register again, from the live classes only, what ``register_package`` registered.

    rasa_sdk registers every subclass of its ``Action`` alive in the process. After a second
    project's package replaced the first one's (tests, the workbench, two models in one
    process), the first project's classes were registered too — and one of the same action
    name could shadow the project's own (a ``validate_order_form`` of the demo shop answered
    another project's form).
    """
    from rasa_sdk import Action as SdkAction
    from rasa_sdk import utils as sdk_utils

    executor.actions.clear()
    for cls in sdk_utils.all_subclasses(SdkAction):
        if cls.__module__.startswith(_SDK_MODULES) or inspect.isabstract(cls) or not _is_live(cls):
            continue
        executor.register_action(cls)


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
