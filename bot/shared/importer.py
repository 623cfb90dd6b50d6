"""Find and load the files of a Rasa-style project.

Rasa's convention: ``config.yml``, ``domain.yml`` (or a ``domain/`` folder) and
training data under ``data/``. kefu's demo keeps training data in ``nlu_data/``;
both folders are searched. Every YAML file is classified by its top-level keys
(``nlu``, ``stories``, ``rules``), so a folder may mix them freely, as in Rasa.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import read_yaml_file, yaml_files

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIRS = ("data", "nlu_data")
DEFAULT_TEST_DIRS = ("tests",)
# Rasa's `importers:` in config.yml: kefu reads projects the way these two do.
RASA_FILE_IMPORTER = "RasaFileImporter"
MULTI_PROJECT_IMPORTER = "MultiProjectImporter"
SUPPORTED_IMPORTERS = (RASA_FILE_IMPORTER, MULTI_PROJECT_IMPORTER)


def _keys_of(path: Path) -> set[str]:
    try:
        content = read_yaml_file(path)
    except ConfigError:
        raise
    if isinstance(content, dict):
        return {str(k) for k in content.keys()}
    return set()


_DOMAIN_KEYS = {"intents", "entities", "slots", "responses", "actions", "forms", "session_config"}


def _imported_projects(config_path: Path) -> list[Path]:
    """The folders/files a config's ``imports:`` names (recursively), for MultiProjectImporter.

    An ``importers:`` entry kefu does not offer stops with the supported names.
    """
    if not config_path.exists():
        return []
    raw = read_yaml_file(config_path)
    if not isinstance(raw, dict):
        return []
    names = []
    for item in raw.get("importers") or []:
        name = item.get("name") if isinstance(item, dict) else item
        names.append(str(name))
        if str(name) not in SUPPORTED_IMPORTERS:
            raise ConfigError(
                f"The importer '{name}' is not available in kefu (it is a custom Rasa "
                "`TrainingDataImporter`).",
                config_path,
                fix=f"Use one of {', '.join(SUPPORTED_IMPORTERS)}, or remove `importers:` and "
                "pass --domain/--data.",
            )
    if MULTI_PROJECT_IMPORTER not in names:
        return []
    found: list[Path] = []

    def visit(parent: Path, imports: Any) -> None:
        for entry in imports or []:
            path = Path(os.path.normpath(parent / str(entry)))  # relative stays relative: short messages
            if path in found:
                continue
            if not path.exists():
                logger.warning("%s: imported project '%s' does not exist (skipped).", config_path, entry)
                continue
            found.append(path)
            sub = path / "config.yml" if path.is_dir() else path
            if sub.exists() and sub.suffix in (".yml", ".yaml"):
                content = read_yaml_file(sub)
                if isinstance(content, dict) and "imports" in content:
                    visit(sub.parent, content.get("imports"))

    visit(config_path.parent, raw.get("imports"))
    return found


def file_digest(paths: Iterable[Path]) -> str:
    """A content hash over files (names relative-insensitive, content exact)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class ProjectImporter:
    """Locates config, domain and training files of one project."""

    root: Path
    config_path: Path | None = None
    domain_path: Path | None = None
    data_paths: list[Path] = field(default_factory=list)
    extra_domain_paths: list[Path] = field(default_factory=list)

    @classmethod
    def from_paths(
        cls,
        root: str | Path = ".",
        config: str | Path | None = None,
        domain: str | Path | None = None,
        data: Iterable[str | Path] | None = None,
    ) -> "ProjectImporter":
        root = Path(root)
        config_path = Path(config) if config else root / "config.yml"
        if domain:
            domain_path = Path(domain)
        elif (root / "domain.yml").exists():
            domain_path = root / "domain.yml"
        elif (root / "domain").is_dir():
            domain_path = root / "domain"
        else:
            domain_path = root / "domain.yml"
        if data:
            data_paths = [Path(d) for d in data]
        else:
            data_paths = [root / d for d in DEFAULT_DATA_DIRS if (root / d).exists()]
        if not config_path.exists():
            raise ConfigError(
                "No config.yml found.",
                config_path,
                fix="Run `python -m bot init` for a starter project, or pass --config.",
            )
        imports = _imported_projects(config_path)
        if not domain_path.exists() and not imports:
            raise ConfigError(
                "No domain found.",
                domain_path,
                fix="Create domain.yml (or a domain/ folder), or pass --domain.",
            )
        extra_domains: list[Path] = []
        if imports:
            # Rasa's MultiProjectImporter: the sub-projects' domains are merged into the
            # root domain and their training files join the root's data.
            for folder in imports:
                for f in yaml_files(folder) if folder.is_dir() else [folder]:
                    if f.name.startswith("test_") or f.parent.name == "tests":
                        continue  # test stories, as Rasa's importer skips them
                    keys = _keys_of(f)
                    if keys & _DOMAIN_KEYS and not keys & {"nlu", "stories", "rules"}:
                        extra_domains.append(f)
                    elif keys & {"nlu", "stories", "rules"}:
                        data_paths.append(f)
        return cls(
            root=root, config_path=config_path, domain_path=domain_path, data_paths=data_paths,
            extra_domain_paths=extra_domains,
        )

    # -- files -------------------------------------------------------------------------
    def _all_data_files(self) -> list[Path]:
        files: list[Path] = []
        for p in self.data_paths:
            files.extend(yaml_files(p))
        return files

    @cached_property
    def _classified(self) -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = {"nlu": [], "stories": [], "rules": []}
        for f in self._all_data_files():
            keys = _keys_of(f)
            if "nlu" in keys or "sentiment" in keys:
                out["nlu"].append(f)
            if "stories" in keys:
                out["stories"].append(f)
            if "rules" in keys:
                out["rules"].append(f)
        return out

    @property
    def nlu_files(self) -> list[Path]:
        return self._classified["nlu"]

    @property
    def story_files(self) -> list[Path]:
        seen: list[Path] = []
        for f in self._classified["stories"] + self._classified["rules"]:
            if f not in seen:
                seen.append(f)
        return seen

    @property
    def domain_files(self) -> list[Path]:
        assert self.domain_path is not None
        own = yaml_files(self.domain_path) if self.domain_path.exists() else []
        return own + [p for p in self.extra_domain_paths if p not in own]

    # -- loaders -----------------------------------------------------------------------
    def get_config(self) -> Any:
        from bot.shared.config import load_config

        return load_config(self.config_path)

    def get_domain(self) -> Any:
        """The project's domain, completed as Rasa's importers complete it.

        Sub-project domains (``imports:``) are merged in, the root's definitions winning;
        every retrieval intent of the NLU data (``faq/ask_price`` examples) becomes a
        retrieval intent of the domain with its action ``utter_faq`` (Rasa's
        ``ResponsesSyncImporter``), so stories and rules may use ``utter_faq``.
        """
        from bot.shared.domain import Domain

        paths = ([self.domain_path] if self.domain_path and self.domain_path.exists() else [])
        domain = Domain.load(paths + list(self.extra_domain_paths))
        return self._with_retrieval_intents(domain)

    def _with_retrieval_intents(self, domain: Any) -> Any:
        from bot.shared.domain import IS_RETRIEVAL_INTENT_KEY, Domain

        if not self.nlu_files:
            return domain
        try:
            nlu = self.get_nlu_data()
        except ConfigError:
            return domain  # the NLU files' own error is raised where they are trained
        retrieval = sorted(nlu.retrieval_intents)
        responses = {k: v for k, v in (nlu.responses or {}).items() if k not in domain.responses}
        if not retrieval and not responses:
            return domain
        known = set(domain.retrieval_intents)
        missing = [i for i in retrieval if i not in known]
        actions = [f"utter_{i}" for i in retrieval if f"utter_{i}" not in domain.action_names_or_texts]
        if not missing and not actions and not responses:
            return domain
        extra = Domain.from_dict({
            "intents": [{i: {IS_RETRIEVAL_INTENT_KEY: True}} for i in missing],
            "actions": actions,
            "responses": responses,
        })
        return domain.merge(extra, override=True) if missing else domain.merge(extra)

    def get_nlu_data(self) -> Any:
        from bot.shared.training_data.nlu import load_nlu_data

        return load_nlu_data(self.nlu_files)

    def get_story_steps(self, domain: Any = None) -> list[Any]:
        from bot.shared.training_data.stories import load_story_steps

        return load_story_steps(self.story_files, domain)

    def test_story_files(self, paths: Iterable[str | Path] | None = None) -> list[Path]:
        candidates = [Path(p) for p in paths] if paths else [self.root / d for d in DEFAULT_TEST_DIRS]
        files: list[Path] = []
        for c in candidates:
            for f in yaml_files(c):
                keys = _keys_of(f)
                if "stories" in keys or "rules" in keys:
                    files.append(f)
        return files

    # -- fingerprints (retrain only what changed) --------------------------------------
    def nlu_digest(self) -> str:
        return file_digest(self.nlu_files)

    def core_digest(self) -> str:
        return file_digest(self.story_files + self.domain_files)

    def domain_digest(self) -> str:
        return file_digest(self.domain_files)
