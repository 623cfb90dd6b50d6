"""Import a project's custom-actions package from its folder, leaving ``sys.path`` alone.

Rasa projects keep their rasa_sdk actions in an ``actions/`` package whose modules import
each other absolutely (``from actions.shop import ...``) or relatively. Putting the project
root on ``sys.path`` would make every other module in that folder importable process-wide
and let it shadow installed packages; instead the package is loaded from its file and
registered in ``sys.modules`` under its own name only, so both kinds of import work inside it.

One process holds one module per name: loading a second project whose package has the
same name (``actions``) replaces the first one's ``actions`` and ``actions.*`` entries
(and logs a warning naming both folders) so the second project never gets the first's
code. The first project's executor keeps the action objects it registered, but its code
that imports ``actions...`` lazily at run time would then see the second project's
modules: give the packages distinct names (``--actions``) or run one project per process.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)


def load_action_package(package: str, project_root: str | Path) -> ModuleType:
    """The module ``package`` (dotted names allowed) loaded from ``project_root``.

    Reuses the loaded module when it already comes from this folder (a model reload);
    raises ``ConfigError`` when the folder has no such package or module.
    """
    root = Path(project_root).resolve()
    top, _, rest = package.partition(".")
    source = _source_in(root, top)
    if source is None:
        raise ConfigError(
            f"No custom actions package '{top}' in {root} (looked for {top}/ and {top}.py).",
            fix=f"create {root / top}/__init__.py or pass the right --actions package name.",
        )
    loaded = sys.modules.get(top)
    if loaded is None or _source_of(loaded) != source:
        if loaded is not None:
            logger.warning(
                "Replacing the custom actions package '%s' loaded from %s with the one in %s: "
                "one process holds one module per name. Give the projects' packages distinct "
                "names or run one project per process.",
                top, _source_of(loaded) or "an unknown place", source,
            )
            _forget(top)
        _load_top_level(top, source)
    return importlib.import_module(package) if rest else sys.modules[top]


def _source_in(root: Path, top: str) -> Path | None:
    """The package folder or module file named ``top`` directly in ``root``."""
    folder = root / top
    if folder.is_dir():
        return folder
    file = root / f"{top}.py"
    return file if file.is_file() else None


def _source_of(module: ModuleType) -> Path | None:
    """Where a loaded module comes from, in the form ``_source_in`` returns."""
    paths = list(getattr(module, "__path__", None) or [])
    if paths:
        return Path(paths[0]).resolve()
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _load_top_level(name: str, source: Path) -> ModuleType:
    """Execute ``source`` as module ``name``; its submodules then resolve through ``__path__``."""
    importlib.invalidate_caches()  # a project folder written just now (tests, `kefu init`)
    if source.is_dir():
        init = source / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[str(source)]
            )
        else:  # a namespace package, as a plain `import` would make of a folder without __init__.py
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(source)]
    else:
        spec = importlib.util.spec_from_file_location(name, source)
    if spec is None:  # pragma: no cover - only for files Python cannot load
        raise ConfigError(f"Cannot load the custom actions package '{name}' from {source}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        _forget(name)
        raise
    return module


def _forget(top: str) -> None:
    """Drop ``top`` and its submodules (and nothing else) from ``sys.modules``."""
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[name]
