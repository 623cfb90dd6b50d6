"""The modules of ``bot.dialogue.actions`` import one way: base <- concrete actions <- factory."""
from __future__ import annotations

import ast
from pathlib import Path

import bot.dialogue.actions as actions_package

PACKAGE = "bot.dialogue.actions"
PACKAGE_DIR = Path(actions_package.__file__).parent


def _module_names() -> set[str]:
    return {p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"}


def _imports_of(module: str, modules: set[str]) -> set[str]:
    """Sibling modules ``module`` imports, at any level (function-local imports count too)."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = node.module or ""
                names = [base] if base else [a.name for a in node.names]
                names = [f"{PACKAGE}.{n}" for n in names]
            else:
                base = node.module or ""
                names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE:
                found.add("__init__")
            elif name.startswith(PACKAGE + "."):
                found.add(name[len(PACKAGE) + 1 :].split(".")[0])
    return {m for m in found if m in modules or m == "__init__"} - {module}


def _graph() -> dict[str, set[str]]:
    modules = _module_names()
    return {m: _imports_of(m, modules) for m in sorted(modules)}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_actions_import_graph_is_acyclic() -> None:
    graph = _graph()
    assert {"base", "factory", "forms", "extract_slots"} <= set(graph)
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph) or [])}"


def test_actions_base_imports_no_sibling() -> None:
    assert _graph()["base"] == set()


def test_actions_only_factory_imports_factory() -> None:
    importers = {m for m, deps in _graph().items() if "factory" in deps}
    assert importers == set()


def test_actions_modules_do_not_import_package_init() -> None:
    assert not {m for m, deps in _graph().items() if "__init__" in deps}


def test_actions_find_cycle_reports_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
