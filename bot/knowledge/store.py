"""CRUD on FAQ entries that persists to the knowledge files, then reloads the base.

An edited entry is written back to the file it came from (YAML or CSV); a new
one goes to ``<knowledge_base>/custom.yml``. Files are replaced atomically, and
a failed validation changes nothing. Note: rewriting a YAML file drops its comments.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from bot.knowledge.entries import Entry
from bot.knowledge.holder import KnowledgeHolder
from bot.knowledge.loader import entry_from_dict, load_entries, write_entries_file
from bot.shared.exceptions import ConfigError

logger = logging.getLogger(__name__)

NEW_ENTRIES_FILE = "custom.yml"


class KnowledgeStore:
    def __init__(self, holder: KnowledgeHolder) -> None:
        if holder.source_dir is None:
            raise ConfigError("The knowledge base has no folder to write to.",
                              fix="Set `knowledge: {path: knowledge_base}` in config.yml.")
        self.holder = holder
        self.root = holder.source_dir
        self._lock = threading.Lock()

    def list(self, category: str | None = None, tag: str | None = None) -> list[Entry]:
        return [e for e in self.holder.current.entries
                if (category is None or e.category == category) and (tag is None or tag in e.tags)]

    def get(self, entry_id: str) -> Entry | None:
        return self.holder.current.get(entry_id)

    def _file_entries(self) -> dict[Path, list[Entry]]:
        by_file: dict[Path, list[Entry]] = {}
        for e in load_entries(self.root, strict=True).entries:
            by_file.setdefault(Path(e.source or self.root / NEW_ENTRIES_FILE), []).append(e)
        return by_file

    def put_sync(self, entry_id: str, data: dict[str, Any]) -> tuple[Entry, bool]:
        """Create or replace; returns (entry, created). Raises on invalid data."""
        data = dict(data)
        if data.get("id") not in (None, entry_id):
            raise ConfigError(f"Body id '{data.get('id')}' differs from the URL id '{entry_id}'.",
                              fix="Leave id out of the body or make them equal.")
        data["id"] = entry_id
        entry = entry_from_dict(data)
        with self._lock:
            by_file = self._file_entries()
            created = True
            for path, entries in by_file.items():
                for i, old in enumerate(entries):
                    if old.id == entry_id:
                        entries[i] = entry
                        created = False
                        write_entries_file(path, entries)
                        break
                if not created:
                    break
            if created:
                path = self.root / NEW_ENTRIES_FILE
                entries = by_file.get(path, [])
                entries.append(entry)
                write_entries_file(path, entries)
            self.holder.reload_sync(strict=True)
        return self.holder.current.get(entry_id) or entry, created

    def delete_sync(self, entry_id: str) -> bool:
        with self._lock:
            for path, entries in self._file_entries().items():
                kept = [e for e in entries if e.id != entry_id]
                if len(kept) != len(entries):
                    write_entries_file(path, kept)
                    self.holder.reload_sync(strict=True)
                    return True
        return False

    async def put(self, entry_id: str, data: dict[str, Any]) -> tuple[Entry, bool]:
        return await self.holder.run_heavy("knowledge edit", self.put_sync, entry_id, data)

    async def delete(self, entry_id: str) -> bool:
        return await self.holder.run_heavy("knowledge edit", self.delete_sync, entry_id)
