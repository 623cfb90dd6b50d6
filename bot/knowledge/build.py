"""Build the KB into a model archive folder, and load it back (rebuilding when stale).

Integration: ``python -m bot train`` calls ``build_kb_into(work / "knowledge", root,
project_config)``; ``LoadedModel.load`` calls ``load_kb(unpacked / "knowledge", root,
project_config)``. A corrupt or mismatched stored index is rebuilt, never a crash.
"""
from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from bot.knowledge.base import ENTRIES_FILE, METADATA_FILE, KnowledgeBase, KnowledgeIndexError
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.entries import Entry, content_hash
from bot.knowledge.holder import KnowledgeHolder
from bot.knowledge.loader import entry_from_dict, kb_files, load_entries

logger = logging.getLogger(__name__)


def kb_encoder(config: KnowledgeConfig, project_root: str | Path | None = None) -> Any:
    from bot.embeddings import get_encoder

    return get_encoder(config.model, config.cache_dir, project_root)


def kb_source_dir(project_root: str | Path, config: KnowledgeConfig) -> Path:
    path = Path(config.path)
    return path if path.is_absolute() else Path(project_root) / path


def kb_fingerprint(project_root: str | Path, project_config: Any) -> dict[str, Any]:
    """What the archived index depends on; add it to the training fingerprint."""
    from bot.embeddings import canonical_model_name

    cfg = KnowledgeConfig.from_project_config(project_config)
    source = kb_source_dir(project_root, cfg)
    entries = load_entries(source, strict=False).entries if kb_files(source) else []
    return {"kb_content": content_hash(entries), "kb_embedder": canonical_model_name(cfg.model),
            "kb_index": json.dumps(cfg.index_params(), sort_keys=True),
            "kb_calibration": json.dumps(cfg.calibration)}


def build_kb_into(directory: str | Path, project_root: str | Path, project_config: Any,
                  encoder: Any = None) -> dict[str, Any] | None:
    """Validate the FAQ files (errors name file and line), build the index, save it.

    Returns the KB metadata (embedder, dimension, content_hash, ...) or ``None``
    when the project has no knowledge files.
    """
    cfg = KnowledgeConfig.from_project_config(project_config)
    source = kb_source_dir(project_root, cfg)
    if not kb_files(source):
        logger.info("No knowledge files under %s: no FAQ index built.", source)
        return None
    entries = load_entries(source, strict=True).entries
    kb = KnowledgeBase.build(entries, cfg, encoder or kb_encoder(cfg, project_root))
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    return kb.save(directory)


def _archived_entries(directory: Path) -> list[Entry]:
    try:
        data = json.loads((directory / ENTRIES_FILE).read_text(encoding="utf-8"))
        return [entry_from_dict(d, str(directory / ENTRIES_FILE)) for d in data]
    except (OSError, ValueError) as e:
        logger.warning("Archived knowledge entries unreadable (%s).", e)
        return []


def load_kb(directory: str | Path | None, project_root: str | Path | None, project_config: Any,
            encoder: Any = None, executor: Executor | None = None) -> KnowledgeHolder | None:
    """A ready ``KnowledgeHolder`` (one per worker), or ``None`` when there is no KB at all.

    The project's files are the source of truth (CRUD edits them); the archive's
    snapshot is used when the project folder has none. The stored index is reused
    when it matches; otherwise the base is rebuilt (and saved back, best effort).
    """
    cfg = KnowledgeConfig.from_project_config(project_config)
    directory = Path(directory) if directory else None
    source = kb_source_dir(project_root, cfg) if project_root is not None else None
    problems: list[str] = []
    if source is not None and kb_files(source):
        loaded = load_entries(source, strict=False)
        entries, problems = loaded.entries, loaded.problems
    elif directory is not None and (directory / METADATA_FILE).exists():
        entries = _archived_entries(directory)
    else:
        return None
    encoder = encoder or kb_encoder(cfg, project_root)
    kb = None
    if directory is not None and (directory / METADATA_FILE).exists():
        try:
            kb = KnowledgeBase.load(directory, entries, cfg, encoder)
        except KnowledgeIndexError as e:
            logger.warning("Rebuilding the knowledge index: %s", e)
    if kb is None:
        kb = KnowledgeBase.build(entries, cfg, encoder)
        if directory is not None:
            try:
                kb.save(directory)
            except OSError as e:
                logger.warning("Could not store the rebuilt knowledge index in %s: %s", directory, e)
    holder = KnowledgeHolder(kb, source, cfg, encoder, executor)
    holder.problems = problems
    return holder
