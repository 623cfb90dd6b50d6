"""Load a model archive into memory: domain, NLU pipeline and policy ensemble."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.model.archive import ModelMetadata, read_metadata, unpack_archive

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    path: Path
    metadata: ModelMetadata
    domain: Any
    nlu: Any | None
    ensemble: Any | None
    knowledge: Any | None = None
    unpacked_dir: Path | None = None

    def close(self) -> None:
        """Remove the unpacked files (after a hot swap replaced this model)."""
        if self.unpacked_dir is not None:
            shutil.rmtree(self.unpacked_dir, ignore_errors=True)
            self.unpacked_dir = None

    @property
    def model_id(self) -> str:
        return self.metadata.model_id

    @classmethod
    def load(cls, archive: str | Path, project_root: str | Path | None = None) -> "LoadedModel":
        """Unpack and load; heavy work, call it off the event loop."""
        from bot.shared.domain import Domain

        archive = Path(archive)
        unpacked = unpack_archive(archive)
        try:
            metadata = read_metadata(unpacked)
            domain = Domain.load(unpacked / "domain.yml")
            nlu = None
            if metadata.has_nlu and (unpacked / "nlu").is_dir():
                from bot.nlu import NLUPipeline

                nlu = NLUPipeline.load(unpacked / "nlu")
            ensemble = None
            if metadata.has_core and (unpacked / "core").is_dir():
                from bot.dialogue.policies.ensemble import PolicyEnsemble

                ensemble = PolicyEnsemble.load(unpacked / "core")
            knowledge = None
            if (unpacked / "knowledge").is_dir() or project_root is not None:
                from bot.knowledge.build import load_kb
                from bot.shared.config import load_config

                project_config = load_config(unpacked / "config.yml") if (unpacked / "config.yml").exists() else None
                knowledge = load_kb(
                    unpacked / "knowledge" if (unpacked / "knowledge").is_dir() else None,
                    project_root,
                    project_config,
                )
            logger.info("Loaded model %s (nlu=%s, core=%s)", metadata.model_id, nlu is not None, ensemble is not None)
            return cls(path=archive, metadata=metadata, domain=domain, nlu=nlu, ensemble=ensemble, knowledge=knowledge, unpacked_dir=unpacked)
        except BaseException:
            shutil.rmtree(unpacked, ignore_errors=True)
            raise
