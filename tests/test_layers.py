"""The import direction of the engine (issue #14), checked on the source with ``ast``.

shared <- web; shared <- stores, nlu <- dialogue <- features (knowledge, handoff,
triggers) <- server, which nobody but the CLI imports; connectors never import the
server. Every import counts, also those inside functions and under ``TYPE_CHECKING``:
a lazy import is still a dependency. A failure lists each offending
``file:line: import`` so the fix is one look away.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ENGINE_ROOTS = ("bot", "connectors")
FEATURES = ("bot.knowledge", "bot.handoff", "bot.triggers", "bot.relay_feature", "bot.workbench", "bot.alerts",
            "bot.customers", "bot.analytics")
# Whoever may import the server within the engine: the command line (tests and
# benchmarks may too; they are not scanned).
SERVER_IMPORTERS = ("bot.server", "bot.cli", "bot.__main__")


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported, and the source line."""

    importer: str  # dotted name of the importing module, e.g. "bot.server.app"
    module: str  # dotted name of what it imports, e.g. "bot.web.errors"
    path: str  # repository-relative file
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@lru_cache(maxsize=1)
def engine_imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for root in ENGINE_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            lines = source.splitlines()
            importer = _module_name(path)
            rel = path.relative_to(REPO_ROOT).as_posix()
            for node in ast.walk(ast.parse(source, rel)):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [_resolve(importer, path.name == "__init__.py", node)]
                else:
                    continue
                text = lines[node.lineno - 1].strip()
                found.extend(Import(importer, m, rel, node.lineno, text) for m in modules)
    return tuple(sorted(found, key=lambda i: (i.path, i.line)))


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _bot_package(module: str) -> str:
    """``bot.nlu.featurizers`` -> ``bot.nlu``; ``connectors.rest`` -> ``connectors``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 1 else parts[0]


def _report(offending: list[Import], rule: str) -> str:
    return f"{rule}; {len(offending)} offending import(s):\n" + "\n".join(f"  {i}" for i in offending)


def _imports_of(*packages: str) -> list[Import]:
    return [i for i in engine_imports() if _within(i.importer, *packages)]


def _third_party(module: str) -> str | None:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in ("bot", "connectors", "actions", ""):
        return None
    return top


# Each package of the lower layers and the bot packages it may import (besides itself).
# These are the edges the code has; a new one needs a decision, not a quiet import.
LOWER_LAYERS: dict[str, tuple[str, ...]] = {
    "bot.shared": (),
    "bot.version": (),
    "bot.embeddings": ("bot.shared",),  # the embedding-model cache that nlu and knowledge share
    "bot.web": ("bot.shared", "bot.version"),
    "bot.stores": ("bot.shared",),
    "bot.nlu": ("bot.shared", "bot.embeddings"),
    "bot.dialogue": ("bot.shared", "bot.nlu"),
}

# Upward edges the code has today, each by file and module: reported, to be removed.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset(
    {
        # `python -m bot test nlu` (the evaluation CLI) loads a trained model archive.
        ("bot/nlu/evaluation.py", "bot.model"),
    }
)


@pytest.mark.parametrize("package", sorted(LOWER_LAYERS))
def test_layers_lower_packages_import_only_their_allowed_bot_packages(package: str) -> None:
    allowed = (package, *LOWER_LAYERS[package])
    offending = [
        i
        for i in _imports_of(package)
        if _within(i.module, "bot", "connectors", "actions")
        and not _within(i.module, *allowed)
        and (i.path, _bot_package(i.module)) not in KNOWN_UPWARD
    ]
    assert not offending, _report(offending, f"{package} may import only {', '.join(allowed)} from the engine")


def test_layers_shared_imports_no_heavy_or_server_library() -> None:
    banned = ("torch", "sanic", "redis", "sqlalchemy")
    offending = [i for i in _imports_of("bot.shared") if _within(i.module, *banned)]
    assert not offending, _report(offending, f"bot.shared must not import {', '.join(banned)}")


def test_layers_web_imports_only_sanic_and_jwt_besides_the_standard_library() -> None:
    offending = [i for i in _imports_of("bot.web") if _third_party(i.module) not in (None, "sanic", "jwt")]
    assert not offending, _report(offending, "bot.web may import only the standard library, sanic and jwt")


@pytest.mark.parametrize("package", FEATURES)
def test_layers_features_never_import_the_server(package: str) -> None:
    offending = [i for i in _imports_of(package) if _within(i.module, "bot.server")]
    assert not offending, _report(offending, f"{package} must not import bot.server (use bot.web)")


@pytest.mark.parametrize("package", FEATURES)
def test_layers_features_never_import_channels(package: str) -> None:
    """Features reach shoppers through the output registry (bot/shared/outputs.py), not a channel module."""
    offending = [i for i in _imports_of(package) if _within(i.module, "connectors")]
    assert not offending, _report(offending, f"{package} must not import connectors (use bot.shared.outputs)")


def test_layers_connectors_import_only_shared_web_and_stores() -> None:
    allowed = ("bot.shared", "bot.web", "bot.stores", "connectors")
    offending = [i for i in _imports_of("connectors")
                 if _within(i.module, "bot", "connectors", "actions") and not _within(i.module, *allowed)]
    assert not offending, _report(offending, f"connectors may import only {', '.join(allowed)}")


def test_layers_connectors_never_import_the_server() -> None:
    offending = [i for i in _imports_of("connectors") if _within(i.module, "bot.server")]
    assert not offending, _report(offending, "connectors must not import bot.server (use bot.web)")


def test_layers_only_the_cli_imports_the_server() -> None:
    offending = [
        i
        for i in engine_imports()
        if _within(i.module, "bot.server") and not _within(i.importer, *SERVER_IMPORTERS)
    ]
    assert not offending, _report(
        offending, f"only {', '.join(SERVER_IMPORTERS)} (and tests, benchmarks) may import bot.server"
    )


def test_layers_engine_never_imports_actions() -> None:
    offending = [i for i in engine_imports() if _within(i.module, "actions")]
    assert not offending, _report(offending, "the engine (bot/, connectors/) must not import the project's actions")


def test_layers_scanner_finds_lazy_imports_with_file_and_line() -> None:
    """The scanner itself: an import inside a function counts and reads ``file:line: import``."""
    found = {str(i) for i in engine_imports() if i.path == "bot/server/routes/model.py"}
    assert any(s.endswith(": from bot.nlu.evaluation import evaluate_nlu_yaml") for s in found), found
    assert all(s.startswith("bot/server/routes/model.py:") for s in found)
