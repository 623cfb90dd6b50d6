"""One knowledge base per worker, swapped atomically on reload.

Readers take ``holder.current`` once per query and keep using that object, so a
reload (``POST /knowledge/reload``, a CRUD edit, or the development file watcher)
never changes the base under a query in flight: the new base is built completely
off to the side and published with a single reference assignment.

Rebuilds run on the agent's ``HeavyJobs`` queue (``jobs``), one at a time and
never on ``executor``, the pool that parses shoppers' messages and runs their
searches: a reload must not make replies wait.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Callable, TypeVar

from bot.knowledge.base import KBResult, KnowledgeBase
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.loader import kb_files, load_entries
from bot.shared.concurrency import run_blocking
from bot.shared.jobs import HeavyJobs

logger = logging.getLogger(__name__)

T = TypeVar("T")


class KnowledgeHolder:
    def __init__(
        self,
        kb: KnowledgeBase,
        source_dir: str | Path | None,
        config: KnowledgeConfig,
        encoder: Any,
        executor: Executor | None = None,
        jobs: HeavyJobs | None = None,
    ) -> None:
        self._kb = kb
        self.source_dir = Path(source_dir) if source_dir else None
        self.config = config
        self.encoder = encoder
        self.executor = executor  # searches (shopper traffic)
        self.jobs = jobs  # rebuilds; the agent sets both when it loads a model
        self.generation = 0
        self.problems: list[str] = []
        self._build_lock = threading.Lock()  # one rebuild at a time; readers never take it
        self._watch_task: asyncio.Task | None = None

    @property
    def current(self) -> KnowledgeBase:
        return self._kb

    def swap(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        self.generation += 1

    # ------------------------------------------------------------------ reload
    def reload_sync(self, strict: bool = True) -> dict[str, Any]:
        """Re-read the files, rebuild (reusing cached embeddings) and swap.

        With ``strict`` a file error raises and the old base keeps serving.
        """
        if self.source_dir is None:
            return {"reloaded": False, "reason": "no knowledge_base folder configured"}
        with self._build_lock:
            loaded = load_entries(self.source_dir, strict=strict)
            old = self._kb
            new = KnowledgeBase.build(loaded.entries, self.config, self.encoder, vector_cache=old.vector_cache)
            self.problems = loaded.problems
            self.swap(new)
        logger.info("Knowledge base reloaded: %d entries (generation %d).", len(new.entries), self.generation)
        return {"reloaded": True, "entries": len(new.entries), "generation": self.generation,
                "problems": loaded.problems, "metadata": new.metadata}

    async def reload(self, strict: bool = True) -> dict[str, Any]:
        """Rebuild off the loop, queued behind other heavy jobs (``HeavyJobsBusy`` when full)."""
        return await self.run_heavy("knowledge reload", self.reload_sync, strict)

    async def run_heavy(self, label: str, func: Callable[..., T], *args: Any) -> T:
        """Run a rebuild-sized ``func`` (a reload, a CRUD edit) as one heavy job."""
        if self.jobs is None:  # a holder used on its own (CLI, tests): a thread of the loop's pool
            return await run_blocking(func, *args)
        return await self.jobs.run(label, func, *args)

    # ------------------------------------------------------------------ queries
    def search(self, text: str, language: str | None = None, top_k: int = 5) -> KBResult:
        return self.current.search(text, language, top_k)

    async def asearch(self, text: str, language: str | None = None, top_k: int = 5) -> tuple[KnowledgeBase, KBResult]:
        """Search off the event loop; returns the base it used (for answers)."""
        kb = self.current
        result = await run_blocking(kb.search, text, language, top_k, executor=self.executor)
        return kb, result

    # ------------------------------------------------------------------ development watcher
    def _signature(self) -> tuple:
        if self.source_dir is None:
            return ()
        out = []
        for f in kb_files(self.source_dir):
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
            except OSError:
                continue
        return tuple(out)

    def start_watching(self, interval: float | None = None) -> asyncio.Task:
        """Poll the files (development) and reload when they change; bad edits are logged."""
        interval = interval or self.config.watch_interval

        async def _watch() -> None:
            seen = self._signature()
            while True:
                await asyncio.sleep(interval)
                now = self._signature()
                if now != seen:
                    seen = now
                    try:
                        await self.reload(strict=False)
                    except Exception:  # noqa: BLE001 - keep serving the old base, say why
                        logger.exception("Knowledge reload after a file change failed; the old base keeps serving.")

        self._watch_task = asyncio.get_running_loop().create_task(_watch())
        return self._watch_task

    def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
