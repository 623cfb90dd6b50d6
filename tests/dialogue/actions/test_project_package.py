"""Loading a project's custom-actions package from its folder without touching ``sys.path``."""
from __future__ import annotations

import gc
import importlib
import logging
import sys
from pathlib import Path

import pytest

from bot.dialogue.actions.inprocess import create_executor
from bot.dialogue.actions.project_package import load_action_package
from bot.shared.exceptions import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]

GREET_ACTION = '''
from rasa_sdk import Action

from actions.texts import GREETING
from .texts import NAME


class ActionGreet{suffix}(Action):
    def name(self):
        return NAME

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=GREETING)
        return []
'''


@pytest.fixture
def isolated_actions_modules():
    """Restores the ``actions`` entries of ``sys.modules`` after the test.

    rasa_sdk registers every live subclass of its ``Action``, so the classes loaded here
    are collected too, or later executors would pick them up.
    """
    saved = {k: v for k, v in sys.modules.items() if k == "actions" or k.startswith("actions.")}
    yield
    for name in [k for k in sys.modules if k == "actions" or k.startswith("actions.")]:
        del sys.modules[name]
    sys.modules.update(saved)
    gc.collect()


def _tiny_project(root: Path, greeting: str, action_name: str, suffix: str) -> Path:
    package = root / "actions"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "texts.py").write_text(f"GREETING = {greeting!r}\nNAME = {action_name!r}\n", encoding="utf-8")
    (package / "greet.py").write_text(GREET_ACTION.format(suffix=suffix), encoding="utf-8")
    return root


def _new_module_names(before: set[str]) -> set[str]:
    return set(sys.modules) - before


def test_load_action_package_demo_leaves_sys_path_alone(isolated_actions_modules) -> None:
    for name in [k for k in sys.modules if k == "actions" or k.startswith("actions.")]:
        del sys.modules[name]
    path_before, modules_before = list(sys.path), set(sys.modules)
    executor = create_executor("actions", project_root=REPO_ROOT)
    assert sys.path == path_before
    new = _new_module_names(modules_before)
    assert "actions.shop" in new  # the demo imports `actions.shop...` absolutely
    assert {n for n in new if n == "actions" or n.startswith("actions.")} == {
        n for n in new if n.split(".")[0] == "actions"
    }
    assert Path(sys.modules["actions"].__file__).resolve() == REPO_ROOT / "actions" / "__init__.py"
    assert "action_coupons" in executor.actions


def test_load_action_package_tiny_project_in_tmp_path(tmp_path: Path, isolated_actions_modules) -> None:
    root = _tiny_project(tmp_path / "shop", "hello", "action_greet_tiny", "Tiny")
    path_before = list(sys.path)
    module = load_action_package("actions", root)
    assert sys.path == path_before
    assert Path(module.__file__).resolve() == root.resolve() / "actions" / "__init__.py"
    executor = create_executor("actions", project_root=root)
    assert "action_greet_tiny" in executor.actions
    # a second load from the same folder reuses the module (a model reload)
    assert load_action_package("actions", root) is module


def test_load_action_package_second_project_gets_its_own_module(
    tmp_path: Path, isolated_actions_modules, caplog: pytest.LogCaptureFixture
) -> None:
    first = _tiny_project(tmp_path / "first", "hello from first", "action_greet_first", "First")
    second = _tiny_project(tmp_path / "second", "hello from second", "action_greet_second", "Second")
    load_action_package("actions", first)
    with caplog.at_level(logging.WARNING, logger="bot.dialogue.actions.project_package"):
        module = load_action_package("actions", second)
    assert Path(module.__file__).resolve().parent == (second / "actions").resolve()
    greet = importlib.import_module("actions.greet")  # absolute and relative imports inside it
    assert greet.GREETING == "hello from second" and greet.NAME == "action_greet_second"
    assert str(first.resolve() / "actions") in caplog.text and str(second.resolve() / "actions") in caplog.text


def test_executor_of_a_second_project_has_only_its_own_actions(tmp_path: Path, isolated_actions_modules) -> None:
    """rasa_sdk registers every live Action subclass: the first project's classes, still referenced
    by its executor, must not be registered for the second project (nor shadow its action of the
    same name)."""
    first = _tiny_project(tmp_path / "first", "hello from first", "action_greet", "First")
    (first / "actions" / "only_first.py").write_text(
        GREET_ACTION.format(suffix="OnlyFirst").replace("return NAME", "return 'action_only_first'"),
        encoding="utf-8")
    second = _tiny_project(tmp_path / "second", "hello from second", "action_greet", "Second")
    first_executor = create_executor("actions", first)  # keeps the first project's classes alive
    assert {"action_greet", "action_only_first"} <= set(first_executor.actions)
    executor = create_executor("actions", second)
    assert "action_only_first" not in executor.actions
    owner = executor.actions["action_greet"].__self__
    assert type(owner).__name__ == "ActionGreetSecond"
    assert first_executor.actions["action_greet"].__self__.__class__.__name__ == "ActionGreetFirst"


def test_load_action_package_missing_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no_such_pkg") as info:
        load_action_package("no_such_pkg", tmp_path)
    assert str(tmp_path.resolve()) in str(info.value)


def test_load_action_package_failed_import_leaves_no_entries(tmp_path: Path) -> None:
    package = tmp_path / "broken_actions_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import no_such_module_for_kefu_tests\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken_actions_pkg"):
        create_executor("broken_actions_pkg", project_root=tmp_path)
    assert "broken_actions_pkg" not in sys.modules
