"""Custom components and policies written against Rasa's Python API.

A ``config.yml`` entry naming a project class (``policy.memoization.MemoizationPolicy``)
that imports ``rasa.engine``/``rasa.core``... runs when kefu's compatibility layer
(``bot/dialogue/rasa_compat``) offers every Rasa API it imports — policies only.
Before anything trains, ``check_custom_classes`` reads each such module's source
(without importing it) and otherwise stops with one message that names the config
line, every Rasa API that is missing (file:line), and kefu's built-in of the same
name where there is one. Custom NLU components on Rasa's classes still stop.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from bot.shared.exceptions import ConfigError


@dataclass(frozen=True)
class RasaImport:
    """One ``import rasa...`` / ``from rasa... import X`` in a project file."""

    file: str
    line: int
    module: str
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        what = f"{self.module} ({', '.join(self.names)})" if self.names else self.module
        return f"{self.file}:{self.line}: {what}"


def rasa_imports_of(source: str, filename: str) -> list[RasaImport]:
    """The Rasa modules (and names) a Python source imports, in order."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError:
        return []
    found: list[RasaImport] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rasa" or alias.name.startswith("rasa."):
                    found.append(RasaImport(filename, node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "rasa" or node.module.startswith("rasa."):
                found.append(RasaImport(filename, node.lineno, node.module, tuple(a.name for a in node.names)))
    return sorted(found, key=lambda i: i.line)


def _module_file(module_name: str, root: Path) -> Path | None:
    """The source file of a project module, found on the project root (not imported)."""
    parts = module_name.split(".")
    for base in (root, *[Path(p) for p in sys.path if p]):
        candidate = base.joinpath(*parts)
        for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if path.is_file():
                return path
    return None


# Rasa 3.6 pipeline components kefu does not offer: why, and what to use instead.
NEEDS_DOWNLOAD_OR_SERVER: dict[str, str] = {
    "SpacyEntityExtractor": "needs a trained spaCy pipeline (`spacy download ...`, not installable "
    "offline); use DIETClassifier's entities or RegexEntityExtractor with a lookup table",
    "SpacyFeaturizer": "needs a spaCy pipeline with word vectors (a download); use "
    "SentenceEmbeddingFeaturizer or LanguageModelFeaturizer for dense features",
    "DucklingEntityExtractor": "needs a running Duckling server; use RegexEntityExtractor with "
    "regexes/lookup tables for numbers and dates, or parse them in a custom action",
    "MitieNLP": "needs a MITIE model file (a download); use WhitespaceTokenizer/JiebaTokenizer and "
    "SentenceEmbeddingFeaturizer",
    "MitieTokenizer": "needs MITIE (a download); use WhitespaceTokenizer or JiebaTokenizer",
    "MitieFeaturizer": "needs MITIE (a download); use SentenceEmbeddingFeaturizer",
    "MitieEntityExtractor": "needs MITIE (a download); use DIETClassifier's entities",
    "MitieIntentClassifier": "needs MITIE (a download); use DIETClassifier or LogisticRegressionClassifier",
    "ConveRTFeaturizer": "needs the ConveRT model (a download, withdrawn by its authors); use "
    "SentenceEmbeddingFeaturizer",
    "CRFEntityExtractor": "is not offered; DIETClassifier extracts entities with a CRF layer "
    "(`intent_classification: false` to use it for entities only)",
    "SklearnIntentClassifier": "is not offered; use LogisticRegressionClassifier (same role, "
    "dense or sparse features) or DIETClassifier",
}


def check_unavailable_components(
    pipeline: Iterable[tuple[dict[str, Any], int | None]], config_file: str | None = None
) -> None:
    """A Rasa component that needs a download or a server stops with the kefu alternative."""
    for entry, line in pipeline:
        name = str(entry.get("name") or "")
        short = name.rpartition(".")[2] if name.startswith("rasa.") else name
        reason = NEEDS_DOWNLOAD_OR_SERVER.get(short)
        if reason:
            raise ConfigError(
                f"Rasa's pipeline component '{short}' is not available in kefu: it {reason}.",
                config_file,
                line,
                fix=f"Replace or remove `- name: {name}` (see docs/compatibility.md, "
                "'NLU components').",
            )


def rasa_available() -> bool:
    from bot.dialogue.rasa_compat import rasa_installed

    return rasa_installed()


def _missing(imports: list[RasaImport]) -> list[str]:
    """Each import the compatibility layer does not offer, as ``file:line: module (names)``."""
    from bot.dialogue.rasa_compat import missing_apis

    out = []
    for item in imports:
        for module, names in missing_apis([(item.module, item.names)]):
            out.append(str(RasaImport(item.file, item.line, module, names)))
    return out


def check_custom_classes(
    entries: Iterable[tuple[str, dict[str, Any], int | None]],
    root: str | Path,
    builtin_names: Iterable[str],
    config_file: str | None = None,
) -> None:
    """Stop before training when a config entry's class needs Rasa's Python API.

    ``entries``: (kind, config entry, line) for each pipeline component and policy.
    """
    if rasa_available():
        return  # the classes import the real Rasa; let them try
    builtins = set(builtin_names)
    root = Path(root)
    for kind, entry, line in entries:
        name = str(entry.get("name") or "")
        if "." not in name or name in builtins:
            continue
        module_name, _, class_name = name.rpartition(".")
        path = _module_file(module_name, root)
        if path is None:
            continue  # the registry's own error names a missing module
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        imports = rasa_imports_of(path.read_text(encoding="utf-8", errors="replace"), shown)
        if not imports:
            continue
        if kind == "policy":
            # Policies run through kefu's Rasa compatibility layer when it offers every import.
            missing = _missing(imports)
            if not missing:
                continue
            raise ConfigError(
                f"The policy '{name}' is written against Rasa's Python API; kefu offers Rasa's policy "
                f"classes (bot/dialogue/rasa_compat) but not: {'; '.join(missing)}.",
                config_file,
                line,
                fix=f"Port those parts to what kefu offers (see docs/compatibility.md, 'Custom components "
                f"and policies'){' or use the built-in `- name: ' + class_name + '`' if class_name in builtins else ''}.",
            )
        listed = "; ".join(str(i) for i in imports[:12])
        more = f" and {len(imports) - 12} more" if len(imports) > 12 else ""
        if class_name in builtins:
            alternative = (
                f"use kefu's built-in `- name: {class_name}` (Rasa's class of that name), or port "
                f"the class to kefu's base class"
            )
        else:
            alternative = "port the class to kefu's base class"
        base = (
            "bot.dialogue.policies.policy.Policy" if kind == "policy" else "bot.nlu.base.Component"
        )
        raise ConfigError(
            f"The {kind} '{name}' is written against Rasa's Python API, which kefu does not "
            f"offer (kefu runs Rasa projects, not Rasa's classes). It imports: {listed}{more}.",
            config_file,
            line,
            fix=f"{alternative} ({base}; see docs/compatibility.md, 'Custom components and policies').",
        )
