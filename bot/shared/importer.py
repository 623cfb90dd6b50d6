"""Find and load the files of a Rasa-style project.

Rasa's convention: ``config.yml``, ``domain.yml`` (or a ``domain/`` folder) and
training data under ``data/``. kefu's demo keeps training data in ``nlu_data/``;
both folders are searched. Every YAML file is classified by its top-level keys
(``nlu``, ``stories``, ``rules``), so a folder may mix them freely, as in Rasa.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from bot.shared.exceptions import ConfigError
from bot.shared.yaml_io import read_yaml_file, yaml_files

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIRS = ("data", "nlu_data")
DEFAULT_TEST_DIRS = ("tests",)


def _keys_of(path: Path) -> set[str]:
    try:
        content = read_yaml_file(path)
    except ConfigError:
        raise
    if isinstance(content, dict):
        return {str(k) for k in content.keys()}
    return set()


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
        if not domain_path.exists():
            raise ConfigError(
                "No domain found.",
                domain_path,
                fix="Create domain.yml (or a domain/ folder), or pass --domain.",
            )
        return cls(root=root, config_path=config_path, domain_path=domain_path, data_paths=data_paths)

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
        return yaml_files(self.domain_path)

    # -- loaders -----------------------------------------------------------------------
    def get_config(self) -> Any:
        from bot.shared.config import load_config

        return load_config(self.config_path)

    def get_domain(self) -> Any:
        from bot.shared.domain import Domain

        return Domain.load(self.domain_path)

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
