"""Checkpoint a SQLite file's write-ahead log from a background thread, not in a writer's commit.

In WAL mode SQLite's default is that the commit which takes the log past 1 000 pages copies them
into the database file and syncs it, inside that writer's own call. On a store that commits one
small transaction per event that is about one commit in a hundred, and it is the latency tail:
measured on Customer 360 with 1 M events of history (benchmarks/customers.py), the slowest 1 % of
per-event updates spent 9–12 ms of their 11–16 ms in that commit; ~2.5 ms with this module.

:class:`WalCheckpointer` moves the work off the writers: their automatic checkpoint is raised to
:data:`SAFETY_PAGES` (it still bounds the log should this thread stall or not run), and a daemon
thread with its own connection runs a PASSIVE checkpoint (it never waits for, nor blocks, readers
or writers) every ``interval`` seconds. Python's sqlite3 releases the GIL while SQLite works, so
the copy and the sync overlap the writers instead of delaying them.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

logger = logging.getLogger(__name__)

SAFETY_PAGES = 20_000  # ~80 MB of log with 4 KiB pages: the writers' own checkpoint, as a backstop
DEFAULT_INTERVAL_S = 0.5


def writer_pragmas(cursor: Any) -> None:
    """What a writing connection of a checkpointed file runs on connect (after ``journal_mode=WAL``)."""
    cursor.execute(f"PRAGMA wal_autocheckpoint={SAFETY_PAGES}")


class WalCheckpointer:
    """A PASSIVE checkpoint of ``path`` every ``interval`` seconds, in one daemon thread (start/stop)."""

    def __init__(self, path: str, interval: float = DEFAULT_INTERVAL_S) -> None:
        if interval <= 0:
            raise ValueError(f"WAL checkpoint interval must be > 0 seconds, got {interval}")
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # checkpoints that copied at least one page (tests and health read it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint (a clean close leaves a short log)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def checkpoint(self, connection: sqlite3.Connection) -> int:
        """One PASSIVE checkpoint; returns the pages it copied into the database file."""
        busy, log_pages, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if copied and copied > 0:
            self.checkpoints += 1
        return max(0, copied or 0)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        except sqlite3.Error:
            logger.exception("WAL checkpoints of %s: cannot open the file; writers checkpoint themselves", self.path)
            return
        try:
            connection.execute("PRAGMA synchronous=NORMAL")
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    self.checkpoint(connection)
                except sqlite3.Error as e:  # e.g. the file went away in a test; the writers' backstop remains
                    logger.debug("WAL checkpoint of %s failed: %s", self.path, e)
                if stopping:
                    return
        finally:
            connection.close()
