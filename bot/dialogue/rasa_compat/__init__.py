"""Rasa 3's Python import paths for project code written against Rasa's classes.

Projects in the wild ship custom policies that ``import rasa.core.policies.policy``
and friends (return-visit-robot-zh's ``policy.memoization.MemoizationPolicy``). When
Rasa itself is not installed, :func:`install` puts a finder on ``sys.meta_path`` that
serves the ``rasa.*`` modules listed in :data:`RASA_MODULES` with kefu's equivalents,
so such a class imports and runs (policies through
:class:`bot.dialogue.rasa_compat.adapter.RasaGraphPolicy`). Anything not in the table
is not offered: :func:`missing_apis` lets ``train`` stop before training and name each
missing module and name with file:line.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Iterable

_COMPAT = "bot.dialogue.rasa_compat"
_POLICY = "bot.dialogue.policies.policy"

# Rasa module -> {name: "kefu.module:attribute"}; "*" exports a module's public names.
RASA_MODULES: dict[str, dict[str, str]] = {
    "rasa.engine.graph": {
        "ExecutionContext": f"{_COMPAT}.engine:ExecutionContext",
        "GraphComponent": f"{_COMPAT}.engine:GraphComponent",
    },
    "rasa.engine.recipes.default_recipe": {"DefaultV1Recipe": f"{_COMPAT}.engine:DefaultV1Recipe"},
    "rasa.engine.storage.resource": {"Resource": f"{_COMPAT}.engine:Resource"},
    "rasa.engine.storage.storage": {"ModelStorage": f"{_COMPAT}.engine:ModelStorage"},
    "rasa.engine.storage.local_model_storage": {"LocalModelStorage": f"{_COMPAT}.engine:LocalModelStorage"},
    "rasa.core.policies.policy": {
        "Policy": f"{_COMPAT}.policy:Policy",
        "PolicyPrediction": f"{_POLICY}:PolicyPrediction",
        "SupportedData": f"{_POLICY}:SupportedData",
        "confidence_scores_for": f"{_POLICY}:confidence_scores_for",
    },
    "rasa.core.featurizers.tracker_featurizers": {
        "TrackerFeaturizer": f"{_COMPAT}.policy:TrackerFeaturizer",
        "MaxHistoryTrackerFeaturizer": f"{_COMPAT}.policy:MaxHistoryTrackerFeaturizer",
        "FullDialogueTrackerFeaturizer": f"{_COMPAT}.policy:FullDialogueTrackerFeaturizer",
        "FEATURIZER_FILE": f"{_COMPAT}.policy:FEATURIZER_FILE",
    },
    "rasa.core.featurizers.single_state_featurizer": {
        "SingleStateFeaturizer": f"{_COMPAT}.policy:SingleStateFeaturizer",
    },
    "rasa.core.constants": {
        name: f"{_POLICY}:{name}"
        for name in ("DEFAULT_POLICY_PRIORITY", "UNLIKELY_INTENT_POLICY_PRIORITY", "MEMOIZATION_POLICY_PRIORITY",
                     "RULE_POLICY_PRIORITY", "DEFAULT_CORE_FALLBACK_THRESHOLD", "DEFAULT_MAX_HISTORY",
                     "POLICY_PRIORITY", "POLICY_MAX_HISTORY")
    },
    "rasa.shared.core.domain": {"Domain": "bot.shared.domain:Domain", "State": f"{_POLICY}:State"},
    "rasa.shared.core.events": {"*": "bot.shared.events"},
    "rasa.shared.core.trackers": {
        "DialogueStateTracker": "bot.shared.tracker:DialogueStateTracker",
        "EventVerbosity": "bot.shared.tracker:EventVerbosity",
    },
    "rasa.shared.core.slots": {"*": "bot.shared.slots"},
    "rasa.shared.core.constants": {"*": "bot.shared.constants"},
    "rasa.shared.core.generator": {
        # kefu's generator yields plain trackers that cache their states themselves.
        "TrackerWithCachedStates": "bot.shared.tracker:DialogueStateTracker",
        "TrainingDataGenerator": "bot.dialogue.generator:TrainingDataGenerator",
    },
    "rasa.shared.core.training_data.structures": {
        "StoryGraph": "bot.shared.training_data.story_graph:StoryGraph",
        "StoryStep": "bot.shared.training_data.stories:StoryStep",
    },
    "rasa.shared.importers.importer": {"TrainingDataImporter": "bot.shared.importer:ProjectImporter"},
    "rasa.shared.importers.rasa": {"RasaFileImporter": "bot.shared.importer:ProjectImporter"},
    "rasa.shared.exceptions": {
        name: f"{_COMPAT}.io:{name}"
        for name in ("RasaException", "RasaCoreException", "FileIOException", "FileNotFoundException",
                     "InvalidConfigException", "YamlException")
    },
    "rasa.shared.utils.io": {
        name: f"{_COMPAT}.io:{name}"
        for name in ("DEFAULT_ENCODING", "read_file", "read_json_file", "json_to_string", "write_text_file",
                     "dump_obj_as_json_to_file", "create_directory_for_file", "create_directory",
                     "read_yaml_file", "is_logging_disabled", "raise_warning")
    },
    "rasa.utils.io": {
        name: f"{_COMPAT}.io:{name}"
        for name in ("pickle_dump", "pickle_load", "create_temporary_directory", "create_directory_for_file",
                     "json_to_string")
    },
}


def _packages() -> set[str]:
    """Every parent of a table module (``rasa``, ``rasa.core``, ...): empty packages."""
    parents: set[str] = set()
    for name in RASA_MODULES:
        parts = name.split(".")
        parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return parents


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def exported_names(rasa_module: str) -> dict[str, Any]:
    """The names a compatibility module offers, resolved to kefu's objects."""
    table = RASA_MODULES.get(rasa_module, {})
    names: dict[str, Any] = {}
    for name, target in table.items():
        if name == "*":
            module = importlib.import_module(target)
            public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
            names.update({n: getattr(module, n) for n in public if hasattr(module, n)})
        else:
            names[name] = _resolve(target)
    return names


class RasaCompatFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``rasa.*`` from :data:`RASA_MODULES` (installed only when Rasa is absent)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "rasa" and not fullname.startswith("rasa."):
            return None
        if fullname in RASA_MODULES or fullname in _packages():
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        raise ModuleNotFoundError(
            f"No module named '{fullname}': kefu's Rasa compatibility layer offers "
            f"{', '.join(sorted(RASA_MODULES))} (see docs/compatibility.md, 'Custom components and policies').",
            name=fullname,
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__path__ = []  # type: ignore[attr-defined]
        for name, value in exported_names(module.__name__).items():
            setattr(module, name, value)
        for child in RASA_MODULES.keys() | _packages():  # ``import rasa.shared.utils.io`` then attribute access
            parent, _, leaf = child.rpartition(".")
            if parent == module.__name__ and child in sys.modules:
                setattr(module, leaf, sys.modules[child])
        parent, _, leaf = module.__name__.rpartition(".")
        if parent and parent in sys.modules:
            setattr(sys.modules[parent], leaf, module)


_FINDER = RasaCompatFinder()


def rasa_installed() -> bool:
    """True when the real Rasa is importable (then project classes get the real one)."""
    if _FINDER in sys.meta_path:
        return False
    return importlib.util.find_spec("rasa") is not None


def install() -> bool:
    """Put the finder on ``sys.meta_path`` unless Rasa is installed; True when it is active."""
    if _FINDER in sys.meta_path:
        return True
    if importlib.util.find_spec("rasa") is not None:
        return False
    sys.meta_path.append(_FINDER)
    return True


def missing_apis(imports: Iterable[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    """Of ``(module, names)`` imports, those the table does not offer (module, missing names)."""
    missing: list[tuple[str, tuple[str, ...]]] = []
    packages = _packages()
    for module, names in imports:
        if module not in RASA_MODULES and module not in packages:
            missing.append((module, names))
            continue
        if not names:
            continue
        offered = exported_names(module) if module in RASA_MODULES else {}
        absent = tuple(n for n in names if n not in offered and f"{module}.{n}" not in RASA_MODULES
                       and f"{module}.{n}" not in packages)
        if absent:
            missing.append((module, absent))
    return missing


__all__ = ["RASA_MODULES", "RasaCompatFinder", "exported_names", "install", "missing_apis", "rasa_installed"]
