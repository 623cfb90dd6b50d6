"""Annotations written into the project's files: an intent example (with entities), an FAQ
phrasing, a test story; ``data validate`` after each save (new errors undo the save).

Every save holds one lock across the server's workers and the CLI (``fcntl.flock`` on
``.kefu/workbench.lock`` plus a thread lock), so two trainers saving at once both land,
one after the other, never one over the other. Blocking: call through ``run_blocking``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bot.shared.exceptions import BotError, ConfigError
from bot.shared.training_data.nlu import build_entity_annotation
from bot.workbench import yaml_edit
from bot.workbench.config import WorkbenchConfig

logger = logging.getLogger(__name__)

_THREAD_LOCK = threading.Lock()


class AnnotationRejected(BotError):
    """The save would make ``data validate`` fail (or the input is unusable); nothing was written."""

    def __init__(self, message: str, findings: list[str] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


def text_key(text: str) -> str:
    """The identity of a message across conversations: NFKC, case-folded, whitespace collapsed."""
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SaveResult:
    kind: str
    file: str  # relative to the project root
    line: int  # where the new text starts (1-based)
    added: str  # the new lines exactly as written
    warnings: int
    new_warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "file": self.file, "line": self.line, "added": self.added,
                "validation": {"errors": 0, "warnings": self.warnings, "new_warnings": list(self.new_warnings)}}


@contextlib.contextmanager
def project_lock(root: Path) -> Iterator[None]:
    """One writer at a time over the project's training files (threads and processes)."""
    lock_dir = root / ".kefu"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, open(lock_dir / "workbench.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Annotator:
    """Writes a project's training data; one instance per project (cheap)."""

    def __init__(self, root: str | Path, config: WorkbenchConfig | None = None, state: Any = None) -> None:
        self.root = Path(root).resolve()
        self.state = state  # bot/workbench/registry_sql.WorkbenchState: handled messages in SQL (None: state.json)
        self.config = config or WorkbenchConfig()
        self.state_path = self.root / ".kefu" / "workbench" / "state.json"
        self._validated: tuple[str, list[str], list[str]] | None = None  # (files digest, errors, warnings)
        self._importer_cache: tuple[Any, Any] | None = None

    # -- project files ----------------------------------------------------------------
    def _files_key(self) -> tuple[tuple[str, int, int], ...]:
        """Every YAML file the project's importer could read, with its size and mtime."""
        from bot.shared.importer import DEFAULT_DATA_DIRS

        paths = [self.root / "config.yml", self.root / "domain.yml"]
        for folder in (*DEFAULT_DATA_DIRS, "domain"):
            if (self.root / folder).is_dir():
                paths += sorted((self.root / folder).rglob("*.y*ml"))
        key = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            key.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(key)

    def _importer(self) -> Any:
        """The project's importer; its file classification (a YAML load per file) is reused
        while no file changed but by this annotator's own additions."""
        from bot.shared.importer import ProjectImporter

        key = self._files_key()
        if self._importer_cache is not None and self._importer_cache[0] == key:
            return self._importer_cache[1]
        importer = ProjectImporter.from_paths(self.root)
        importer.nlu_files  # classify now, once
        self._importer_cache = (key, importer)
        return importer

    def _rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def _validation(self, importer: Any = None) -> tuple[list[str], list[str]]:
        """``data validate`` of the project: (errors, warnings) as printed by the CLI.

        Cached by a digest of the files it reads, so a save validates once (after the write),
        not twice, when nobody changed the project since the previous save.
        """
        from bot.shared.importer import file_digest
        from bot.validation import validate_project

        importer = importer or self._importer()
        files = [p for p in [importer.config_path, *importer.domain_files, *importer.nlu_files,
                             *importer.story_files] if p is not None and Path(p).is_file()]
        digest = file_digest([Path(p) for p in files])
        cached = self._validated
        if cached is not None and cached[0] == digest:
            return list(cached[1]), list(cached[2])
        report = validate_project(importer)
        result = [str(f) for f in report.errors], [str(f) for f in report.warnings]
        self._validated = (digest, *result)
        return result

    def _save(self, kind: str, writes: list[tuple[Path, str]], edit: yaml_edit.Edit,
              importer: Any = None) -> SaveResult:
        """Write ``writes``, validate, undo them all when validation found a new error.

        ``importer`` (the save's own, its file list already read) is reused after the write
        unless the save creates a file, which a new importer must find.
        """
        importer = importer or self._importer()
        before_errors, before_warnings = self._validation(importer)
        originals = {p: (p.read_text(encoding="utf-8") if p.exists() else None) for p, _ in writes}
        for path, text in writes:
            atomic_write(path, text)
        try:
            after = importer if all(text is not None for text in originals.values()) else None
            errors, warnings = self._validation(after)
        except Exception as e:
            errors, warnings = [f"[error] {e}"], []
        new_errors = [e for e in errors if e not in before_errors]
        if new_errors:
            for path, text in originals.items():
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write(path, text)
            raise AnnotationRejected("`data validate` fails after this change; it was undone.", new_errors)
        if after is not None and self._importer_cache is not None and self._importer_cache[1] is importer:
            # Lines added under existing keys change no file's kind: keep the classification.
            self._importer_cache = (self._files_key(), importer)
        return SaveResult(kind, self._rel(edit.path), edit.line, edit.text if edit.text.endswith("\n")
                          else edit.text + "\n", len(warnings),
                          tuple(w for w in warnings if w not in before_warnings))

    # -- intents ----------------------------------------------------------------------
    def intent_file(self, intent: str, importer: Any = None) -> Path | None:
        """The NLU file that already has ``intent`` (first found), else None."""
        for path in (importer or self._importer()).nlu_files:
            text = path.read_text(encoding="utf-8")
            if f"intent: {intent}" not in text and f"intent: \"{intent}\"" not in text:
                continue
            data = yaml_edit.load(text, path)
            if yaml_edit.nlu_intent_index(data, intent) is not None:
                return path
        return None

    def _has_example(self, text: str, intent: str, importer: Any = None) -> bool:
        key = text_key(text)
        data = (importer or self._importer()).get_nlu_data()
        return any(m.intent == intent and text_key(m.text) == key for m in data.training_examples)

    def add_example(self, text: str, intent: str, entities: list[dict[str, Any]] | None = None) -> SaveResult:
        text = " ".join(str(text).split())
        intent = str(intent).strip()
        if not text:
            raise AnnotationRejected("The message text is empty.")
        if not intent or any(c.isspace() for c in intent) or intent.startswith("/"):
            raise AnnotationRejected(f"'{intent}' is not an intent name (letters, digits, _ ; no spaces).")
        entities = list(entities or [])
        for e in entities:
            try:
                start, end = int(e["start"]), int(e["end"])
            except (KeyError, TypeError, ValueError) as err:
                raise AnnotationRejected(f"Entity {e!r} needs integer 'start' and 'end'.") from err
            if not (0 <= start < end <= len(text)) or not str(e.get("entity") or "").strip():
                raise AnnotationRejected(f"Entity {e!r} is not a span of the text (0..{len(text)}) with a name.")
        example = build_entity_annotation(text, entities) if entities else text
        with project_lock(self.root):
            importer = self._importer()
            if entities:
                known = set(importer.get_domain().entities)
                unknown = sorted({str(e["entity"]) for e in entities} - known)
                if unknown:
                    raise AnnotationRejected(f"Entity {', '.join(unknown)} is not in the domain "
                                             f"(known: {', '.join(sorted(known)) or 'none'}); add it to the domain first.")
            path = self.intent_file(intent, importer)
            if path is not None and self._has_example(text, intent, importer):
                self._mark(text, "annotated", {"intent": intent})
                return SaveResult("unchanged", self._rel(path), 0, "", 0)
            writes: list[tuple[Path, str]] = []
            if path is None:
                path = self.new_intent_path()
                if path.exists() and path.read_text(encoding="utf-8").strip():
                    new_text, edit = yaml_edit.add_nlu_example(path, path.read_text(encoding="utf-8"), intent, example)
                else:
                    new_text = ('version: "3.1"\n\n# Intents added from the trainer workbench.\nnlu:\n'
                                f"- intent: {yaml_edit.scalar(intent)}\n  examples: |\n    - {example}\n")
                    edit = yaml_edit.Edit(path, 1, new_text)
                writes.append((path, new_text))
                domain_path = importer.domain_path
                if domain_path is not None and domain_path.is_file():
                    domain_text, _ = yaml_edit.add_domain_intent(
                        domain_path, domain_path.read_text(encoding="utf-8"), intent)
                    writes.append((domain_path, domain_text))
            else:
                new_text, edit = yaml_edit.add_nlu_example(path, path.read_text(encoding="utf-8"), intent, example)
                writes.append((path, new_text))
            result = self._save("intent", writes, edit, importer)
            self._mark(text, "annotated", {"intent": intent})
        return result

    def new_intent_path(self) -> Path:
        """``new_intent_file`` when configured, else ``workbench.yml`` beside the project's NLU data."""
        if self.config.new_intent_file:
            return self.root / self.config.new_intent_file
        for folder in ("nlu_data/nlu", "data/nlu", "data", "nlu_data"):
            if (self.root / folder).is_dir():
                return self.root / folder / "workbench.yml"
        return self.root / "data" / "workbench.yml"

    # -- FAQ --------------------------------------------------------------------------
    def kb_files(self) -> list[Path]:
        from bot.knowledge.config import DEFAULT_KB_DIR

        folder = self.root / DEFAULT_KB_DIR
        return sorted(p for p in folder.rglob("*.y*ml")) if folder.is_dir() else []

    def add_faq_phrasing(self, text: str, entry_id: str, language: str) -> SaveResult:
        text = " ".join(str(text).split())
        if not text:
            raise AnnotationRejected("The message text is empty.")
        with project_lock(self.root):
            for path in self.kb_files():
                original = path.read_text(encoding="utf-8")
                if f"id: {entry_id}" not in original:
                    continue
                new_text, edit = yaml_edit.add_faq_question(path, original, entry_id, language, text)
                result = self._save("faq", [(path, new_text)], edit)
                self._mark(text, "annotated", {"faq": entry_id})
                return result
        raise AnnotationRejected(f"No FAQ entry '{entry_id}' in {self.root / 'knowledge_base'}.")

    # -- test stories -----------------------------------------------------------------
    def save_test_story(self, name: str, steps: list[dict[str, Any]]) -> SaveResult:
        """A test story (``user:`` text + intent per turn) into ``test_stories`` (tests/ by default)."""
        return self.save_story_to(self.root / self.config.test_stories, name, steps)

    def save_story_to(self, path: Path, name: str, steps: list[dict[str, Any]]) -> SaveResult:
        """A story appended to ``path`` (created when missing); steps checked against the domain."""
        if not steps:
            raise AnnotationRejected("The conversation has no user message to save as a story.")
        domain = self._importer().get_domain()
        actions = set(domain.action_names_or_texts)
        for step in steps:
            if "intent" in step and step["intent"] not in domain.intents:
                raise AnnotationRejected(f"Story step {step} names intent '{step['intent']}', not in the domain.")
            if "action" in step and step["action"] not in actions:
                raise AnnotationRejected(f"Story step {step} names action '{step['action']}', not in the domain.")
        with project_lock(self.root):
            original = path.read_text(encoding="utf-8") if path.exists() else ""
            new_text, edit = yaml_edit.add_test_story(path, original, name, steps)
            return self._save("story", [(path, new_text)], edit)

    # -- inbox state ------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _mark(self, text: str, what: str, detail: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.mark([text_key(text)], what, detail)
            return
        state = self._read_state()
        state.setdefault("handled", {})[text_key(text)] = {"status": what, "at": time.time(), **detail}
        atomic_write(self.state_path, json.dumps(state, ensure_ascii=False, indent=1))

    def dismiss(self, texts: list[str], reason: str = "") -> int:
        if self.state is not None:
            self.state.mark([text_key(t) for t in texts], "dismissed", {"reason": reason[:200]})
            return len(texts)
        with project_lock(self.root):
            for text in texts:
                self._mark(text, "dismissed", {"reason": reason[:200]})
        return len(texts)

    def handled(self) -> dict[str, Any]:
        if self.state is not None:
            return self.state.handled()
        return dict(self._read_state().get("handled") or {})


def conversation_steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tracker's events as Rasa test-story steps (user text + intent, actions, slots)."""
    steps: list[dict[str, Any]] = []
    for e in events:
        kind = e.get("event")
        if kind == "user":
            text = e.get("text") or ""
            intent = ((e.get("parse_data") or {}).get("intent") or {}).get("name")
            if not intent or text.startswith("/"):
                continue
            entities = (e.get("parse_data") or {}).get("entities") or []
            annotated = build_entity_annotation(text, [x for x in entities if "start" in x and "end" in x])
            steps.append({"user": annotated, "intent": intent})
        elif kind == "action":
            name = e.get("name")
            if name and name not in ("action_listen", "action_session_start") and steps:
                steps.append({"action": name})
    return steps


def reject_config_errors(e: ConfigError) -> AnnotationRejected:
    return AnnotationRejected(str(e))
