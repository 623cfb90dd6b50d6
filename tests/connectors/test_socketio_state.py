"""``connectors.socketio`` keeps no module-level mutable state: each channel object owns its server."""
from __future__ import annotations

import __future__
import ast
import dataclasses
import importlib
import inspect
import logging
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

import pytest

import connectors.socketio as package

IMMUTABLE = (str, bytes, int, float, bool, type(None), tuple, frozenset, re.Pattern, Path, logging.Logger,
             __future__._Feature)


def modules() -> list[types.ModuleType]:
    names = [package.__name__] + [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    return [importlib.import_module(n) for n in names]


def is_immutable(value: Any) -> bool:
    if inspect.ismodule(value) or inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        return True
    if type(value).__module__ in ("typing", "types"):  # type aliases such as OnNewMessage
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.__dataclass_params__.frozen  # type: ignore[attr-defined]
    if isinstance(value, (tuple, frozenset)):
        return all(is_immutable(v) for v in value)
    return isinstance(value, IMMUTABLE)


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.__name__)
def test_socketio_module_globals_are_immutable(module: types.ModuleType) -> None:
    mutable = {name: type(value).__name__ for name, value in vars(module).items()
               if not name.startswith("__") and not is_immutable(value)}
    assert mutable == {}, f"{module.__name__} keeps mutable module state: {mutable}"


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.__name__)
def test_socketio_modules_never_rebind_globals(module: types.ModuleType) -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)]


def test_socketio_blueprint_leaves_the_modules_untouched() -> None:
    pytest.importorskip("socketio")
    from bot.server.app import create_app

    before = {m.__name__: dict(vars(m)) for m in modules()}
    channel = package.SocketIOInput(session_persistence=True)
    create_app(None, input_channels=[channel], name="kefu_socketio_state")
    assert channel.sio is not None
    after = {m.__name__: dict(vars(m)) for m in modules()}
    assert {n: {k for k in after[n] if after[n][k] is not before[n].get(k)} for n in after} == {n: set() for n in after}
    assert not hasattr(package, "get_output_channel_for") and not hasattr(package, "active_channel")
