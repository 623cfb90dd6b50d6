"""Persistent text -> sentence-vector cache, so a retrain only embeds new or edited examples.

With the slower encoders (e5-small, all-MiniLM-L6-v2) embedding the examples is most of
an NLU training; after a small data edit almost every text is unchanged. One SQLite file
per encoder under ``<project root>/.kefu/embeddings/`` maps sha1(text) to the float32
bytes the encoder returned, so a cached vector is bit-identical to a fresh one from the
run that stored it. The cache is an optimisation only: any problem with the file (corrupt,
locked, read-only, written for another model) logs a warning and training embeds as usual.
"""
from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bot.embeddings import canonical_model_name

logger = logging.getLogger(__name__)

CACHE_DIR = Path(".kefu") / "embeddings"
SCHEMA_VERSION = "1"
#: rows kept per file; the least recently used beyond this are deleted after a write
MAX_ROWS = 200_000
#: SQLite's default limit of host parameters in one statement is 999
LOOKUP_CHUNK = 900
#: seconds a training waits for another process's write lock before giving up on the cache
BUSY_TIMEOUT_S = 30.0

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def text_key(text: str) -> str:
    """Key of one text exactly as the encoder receives it."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_path(root_dir: str | Path, model: str) -> Path:
    """``<root>/.kefu/embeddings/<safe model name>.sqlite``."""
    safe = _UNSAFE.sub("_", canonical_model_name(model)) or "model"
    return Path(root_dir) / CACHE_DIR / f"{safe}.sqlite"


@dataclass(frozen=True)
class CacheStats:
    """Distinct texts of one training: found in the cache vs sent to the encoder."""

    reused: int
    embedded: int

    def as_dict(self) -> dict[str, int]:
        return {"reused": self.reused, "embedded": self.embedded}


class EmbeddingCache:
    """One connection to one encoder's cache file, for the length of one training call.

    Never raises: every SQLite/OS error is logged once as a warning and the cache turns
    itself off (lookups find nothing, writes are skipped).
    """

    def __init__(self, path: Path, model: str, dim: int) -> None:
        self.path = path
        self.model = canonical_model_name(model)
        self.dim = int(dim)
        self._conn: sqlite3.Connection | None = None
        self._generation = 0
        self._warned = False
        self._recovered = False
        self._open()

    # ---- lifecycle
    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    @property
    def enabled(self) -> bool:
        return self._conn is not None

    def _warn(self, what: str, error: BaseException) -> None:
        if not self._warned:
            logger.warning(
                "Embedding cache %s: %s (%s). Training embeds these texts without it.", self.path, what, error
            )
            self._warned = True
        self.close()

    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.OperationalError as e:  # locked, read-only, cannot open: leave the file alone
            self._warn("cannot be used", e)
        except sqlite3.DatabaseError as e:  # not a database / malformed: move it aside and start over
            self._recover(e)
        except OSError as e:
            self._warn("cannot be created", e)

    def _recover(self, error: BaseException) -> None:
        """Move a corrupt file aside and continue with a new, empty one (once per training)."""
        if self._recovered:
            self._warn("is still unreadable after a rebuild", error)
            return
        self._recovered = True
        self._quarantine(error)
        try:
            self._connect()
        except (sqlite3.Error, OSError) as e:
            self._warn("cannot be rebuilt", e)

    def _connect(self) -> None:
        fresh = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            ignore = self.path.parent.parent / ".gitignore"
            if self.path.parent.parent.name == ".kefu" and not ignore.exists():
                ignore.write_text("# kefu's local build caches\n*\n", encoding="utf-8")
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            columns = [row[1] for row in conn.execute("PRAGMA table_info(vectors)")]
            wanted = {"schema": SCHEMA_VERSION, "model": self.model, "dim": str(self.dim)}
            stale = bool(columns) and (
                columns != ["key", "vec", "added"] or any(meta.get(k) != v for k, v in wanted.items())
            )
            if stale:
                logger.warning(
                    "Embedding cache %s was written for model '%s' (dim %s), not '%s' (dim %d): rebuilding it.",
                    self.path, meta.get("model"), meta.get("dim"), self.model, self.dim,
                )
            conn.execute("BEGIN IMMEDIATE")
            if stale:
                conn.execute("DROP TABLE IF EXISTS vectors")
                conn.execute("DELETE FROM meta")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL, added INTEGER NOT NULL)"
            )
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", wanted.items())
            generation = int(dict(conn.execute("SELECT key, value FROM meta").fetchall()).get("generation", 0)) + 1
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('generation', ?)", (str(generation),))
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._generation = generation

    def _quarantine(self, error: BaseException) -> None:
        """A corrupt file is renamed (kept for inspection), its WAL/SHM side files removed."""
        self.close()
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        logger.warning("Embedding cache %s is unreadable (%s): moved to %s and rebuilt.", self.path, error, target.name)
        try:
            self.path.replace(target)
        except OSError:
            self.path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    # ---- use
    def lookup(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached vectors of those ``texts`` that are in the cache (rows of the wrong size are skipped)."""
        if self._conn is None:
            return {}
        by_key = {text_key(t): t for t in texts}
        keys = list(by_key)
        found: dict[str, np.ndarray] = {}
        size = self.dim * 4
        try:
            for i in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[i : i + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, blob in self._conn.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                    if isinstance(blob, bytes) and len(blob) == size:
                        found[by_key[key]] = np.frombuffer(blob, dtype=np.float32)
        except sqlite3.OperationalError as e:
            self._warn("cannot be read", e)
            return {}
        except sqlite3.DatabaseError as e:
            self._recover(e)
            return {}
        return found

    def store(self, texts: list[str], vectors: np.ndarray, touched: Iterable[str] = ()) -> None:
        """Add new vectors and mark reused ones as recently used, in one transaction; then bound the file."""
        if self._conn is None:
            return
        gen = self._generation
        rows = [(text_key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes(), gen) for t, v in zip(texts, vectors)]
        touched_rows = [(gen, text_key(t), gen) for t in touched]
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO vectors (key, vec, added) VALUES (?, ?, ?)", rows)
                self._conn.executemany("UPDATE vectors SET added = ? WHERE key = ? AND added < ?",
                                       touched_rows)
                (count,) = self._conn.execute("SELECT count(*) FROM vectors").fetchone()
                if count > MAX_ROWS:
                    self._conn.execute(
                        "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY added, rowid LIMIT ?)",
                        (count - MAX_ROWS,),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            self._warn("cannot be written", e)
        except sqlite3.DatabaseError as e:
            self._recover(e)
            self.store(texts, vectors)  # once, into the new file (a second failure turns the cache off)


def open_cache(root_dir: str | Path | None, model: str, dim: int) -> EmbeddingCache | None:
    """The cache of ``model`` in the project at ``root_dir``; None without a project root."""
    if root_dir is None:
        return None
    return EmbeddingCache(cache_path(root_dir, model), model, dim)


def embed_with_cache(
    texts: list[str],
    encode: Callable[[list[str]], np.ndarray],
    cache: EmbeddingCache | None,
) -> tuple[np.ndarray, CacheStats]:
    """float32 vectors of ``texts`` (one row each): cached rows reused, only the others encoded.

    ``encode`` gets the distinct missing texts in their first-seen order (it may batch them).
    """
    distinct = list(dict.fromkeys(texts))
    found = cache.lookup(distinct) if cache is not None else {}
    todo = [t for t in distinct if t not in found]
    fresh = np.asarray(encode(todo), dtype=np.float32).reshape(len(todo), -1) if todo else np.zeros((0, 0), np.float32)
    rows: dict[str, np.ndarray] = {**found, **dict(zip(todo, fresh))}
    if cache is not None and distinct:
        cache.store(todo, fresh, touched=found)  # new rows, and the reused ones marked recently used
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), CacheStats(0, 0)
    return np.stack([rows[t] for t in texts]), CacheStats(len(found), len(todo))
