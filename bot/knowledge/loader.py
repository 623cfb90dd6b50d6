"""Read and write FAQ files: YAML (``entries:``) and CSV (merchants keep FAQs in spreadsheets).

Every problem names the file and line. ``strict=False`` (used when a server starts
or reloads from disk) skips a bad or duplicate entry with a logged warning instead
of refusing to serve; ``strict=True`` (validation, the CRUD API) raises.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bot.knowledge.entries import Answer, Button, Entry
from bot.shared.exceptions import TrainingDataError
from bot.shared.yaml_io import dump_yaml, line_of, read_yaml_file

logger = logging.getLogger(__name__)

ENTRY_KEYS = ("id", "category", "questions", "answers", "tags", "valid_from", "valid_until")
CSV_COLUMNS = ("id", "category", "language", "questions", "answer", "buttons", "links", "images", "tags",
               "valid_from", "valid_until")
LIST_SEPARATOR = "|"
YAML_HEADER = 'version: "1"\n'


@dataclass
class LoadResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # messages of skipped entries (strict=False)


def _norm_lang(value: Any) -> str:
    return str(value).strip().lower().replace("_", "-").split("-")[0]


def _date(value: Any, filename: str, line: int | None, key: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise TrainingDataError(f"'{key}' is not a date: {value!r}.", filename, line,
                                fix="Write dates as YYYY-MM-DD.") from e


def _answer(value: Any, filename: str, line: int | None, entry_id: str, lang: str) -> Answer:
    if isinstance(value, str):
        text, buttons, links, images = value, [], [], []
    elif isinstance(value, dict):
        text = value.get("text")
        buttons, links, images = value.get("buttons") or [], value.get("links") or [], value.get("images") or []
        unknown = set(value) - {"text", "buttons", "links", "images"}
        if unknown:
            raise TrainingDataError(f"Entry '{entry_id}': unknown answer key(s) {sorted(unknown)} for '{lang}'.",
                                    filename, line, fix="Use text, buttons, links, images.")
    else:
        text = None
    if not isinstance(text, str) or not text.strip():
        raise TrainingDataError(f"Entry '{entry_id}': the '{lang}' answer has no text.", filename, line,
                                fix=f"Write `{lang}: <answer text>` or `{lang}: {{text: ...}}` under answers.")
    try:
        return Answer(
            text=text.strip(),
            buttons=tuple(Button(str(b["title"]), str(b["payload"])) for b in buttons),
            links=tuple({"title": str(x.get("title") or x["url"]), "url": str(x["url"])} for x in links),
            images=tuple(str(x) for x in images),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise TrainingDataError(f"Entry '{entry_id}': malformed buttons/links/images in the '{lang}' answer.",
                                filename, line,
                                fix="Buttons need title and payload; links need url (and title); images are URLs.") from e


def entry_from_dict(data: Any, filename: str = "<api>", line: int | None = None) -> Entry:
    """Validate one entry mapping (YAML node or JSON body)."""
    if not isinstance(data, dict):
        raise TrainingDataError("An entry must be a mapping with id, questions and answers.", filename, line)
    unknown = sorted(set(data) - set(ENTRY_KEYS))
    if unknown:
        raise TrainingDataError(f"Unknown entry key(s): {', '.join(map(str, unknown))}.", filename, line,
                                fix=f"Use some of: {', '.join(ENTRY_KEYS)}.")
    entry_id = data.get("id")
    if not isinstance(entry_id, str) or not entry_id.strip() or any(ch.isspace() for ch in entry_id.strip()):
        raise TrainingDataError(f"Entry id {entry_id!r} is missing or has spaces.", filename, line,
                                fix="Give every entry a unique `id:` like shipping_time.")
    entry_id = entry_id.strip()
    questions_raw = data.get("questions")
    if not isinstance(questions_raw, dict) or not questions_raw:
        raise TrainingDataError(f"Entry '{entry_id}' has no questions.", filename, line_of(data, "questions") or line,
                                fix="Add `questions: {zh: [...], en: [...]}` with several phrasings per language.")
    questions: dict[str, tuple[str, ...]] = {}
    for lang, qs in questions_raw.items():
        if isinstance(qs, str):
            qs = [qs]
        if not isinstance(qs, list) or not all(isinstance(q, str) for q in qs):
            raise TrainingDataError(f"Entry '{entry_id}': questions for '{lang}' must be a list of strings.",
                                    filename, line_of(questions_raw, lang) or line)
        cleaned = tuple(dict.fromkeys(q.strip() for q in qs if q.strip()))
        if cleaned:
            questions[_norm_lang(lang)] = cleaned
    if not questions:
        raise TrainingDataError(f"Entry '{entry_id}' has no non-empty question.", filename, line)
    answers_raw = data.get("answers")
    if not isinstance(answers_raw, dict) or not answers_raw:
        raise TrainingDataError(f"Entry '{entry_id}' has no answers.", filename, line_of(data, "answers") or line,
                                fix="Add `answers: {zh: ..., en: ...}`.")
    answers = {
        _norm_lang(lang): _answer(value, filename, line_of(answers_raw, lang) or line, entry_id, str(lang))
        for lang, value in answers_raw.items()
    }
    tags = data.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.replace(LIST_SEPARATOR, ",").split(",") if t.strip()]
    valid_from = _date(data.get("valid_from"), filename, line_of(data, "valid_from") or line, "valid_from")
    valid_until = _date(data.get("valid_until"), filename, line_of(data, "valid_until") or line, "valid_until")
    if valid_from and valid_until and valid_until < valid_from:
        raise TrainingDataError(f"Entry '{entry_id}': valid_until is before valid_from.", filename, line)
    return Entry(
        id=entry_id,
        category=str(data.get("category") or ""),
        questions=questions,
        answers=answers,
        tags=tuple(str(t) for t in tags),
        valid_from=valid_from,
        valid_until=valid_until,
        source=filename if filename != "<api>" else None,
        line=line,
    )


def _entries_from_yaml(path: Path) -> tuple[list[tuple[Any, int | None]], str]:
    data = read_yaml_file(path)
    if data is None:
        return [], str(path)
    items = data.get("entries") if isinstance(data, dict) else data
    if items is None:
        return [], str(path)
    if not isinstance(items, list):
        raise TrainingDataError("`entries:` must be a list of FAQ entries.", path, line_of(data, "entries"),
                                fix="Write `entries:` followed by `- id: ...` items.")
    return [(item, line_of(items, index=i)) for i, item in enumerate(items)], str(path)


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    parts = value.replace("\r", "").replace("\n", LIST_SEPARATOR).split(LIST_SEPARATOR)
    return [p.strip() for p in parts if p.strip()]


def _pairs(value: str | None, left: str, right: str) -> list[dict[str, str]]:
    """``title=payload|title=payload`` cells."""
    out = []
    for part in _split(value):
        a, sep, b = part.partition("=")
        out.append({left: a.strip(), right: b.strip()} if sep else {left: part, right: part})
    return out


def read_csv_entries(path: str | Path) -> list[tuple[dict[str, Any], int]]:
    """Rows (one per entry and language) merged into entry dicts with their first line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = {"id", "language", "questions", "answer"} - set(reader.fieldnames or [])
    if missing:
        raise TrainingDataError(f"CSV header lacks column(s): {', '.join(sorted(missing))}.", path, 1,
                                fix=f"Use the header: {','.join(CSV_COLUMNS)}.")
    merged: dict[str, tuple[dict[str, Any], int]] = {}
    line = 1
    for row in reader:
        row_line = line + 1
        line = reader.line_num
        entry_id = (row.get("id") or "").strip()
        if not entry_id:
            raise TrainingDataError("CSV row has no id.", path, row_line, fix="Fill the id column.")
        lang = _norm_lang(row.get("language") or "")
        if not lang:
            raise TrainingDataError(f"CSV row for '{entry_id}' has no language.", path, row_line,
                                    fix="Fill the language column with zh or en.")
        data, first = merged.setdefault(entry_id, ({"id": entry_id, "questions": {}, "answers": {}}, row_line))
        for key in ("category", "valid_from", "valid_until"):
            if (row.get(key) or "").strip():
                data[key] = row[key].strip()
        if (row.get("tags") or "").strip():
            data["tags"] = sorted(set(data.get("tags", [])) | set(_split(row["tags"].replace(",", LIST_SEPARATOR))))
        data["questions"].setdefault(lang, []).extend(_split(row.get("questions")))
        if (row.get("answer") or "").strip():
            answer: dict[str, Any] = {"text": row["answer"].strip()}
            if _split(row.get("buttons")):
                answer["buttons"] = _pairs(row.get("buttons"), "title", "payload")
            if _split(row.get("links")):
                answer["links"] = _pairs(row.get("links"), "title", "url")
            if _split(row.get("images")):
                answer["images"] = _split(row.get("images"))
            data["answers"][lang] = answer
    return list(merged.values())


def kb_files(path: str | Path) -> list[Path]:
    path = Path(path)
    suffixes = (".yml", ".yaml", ".csv")
    if path.is_file():
        return [path] if path.suffix.lower() in suffixes else []
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return []


def load_entries(path: str | Path, strict: bool = True) -> LoadResult:
    """All entries under a file or folder (YAML and CSV)."""
    result = LoadResult()
    seen: dict[str, Entry] = {}
    for file in kb_files(path):
        try:
            if file.suffix.lower() == ".csv":
                raw_items = [(d, ln) for d, ln in read_csv_entries(file)]
            else:
                raw_items, _ = _entries_from_yaml(file)
        except TrainingDataError as e:
            if strict:
                raise
            result.problems.append(str(e))
            logger.warning("Skipped knowledge file: %s", e)
            continue
        for item, line in raw_items:
            try:
                entry = entry_from_dict(item, str(file), line)
                if entry.id in seen:
                    first = seen[entry.id]
                    raise TrainingDataError(
                        f"Duplicate entry id '{entry.id}' (first defined at {first.source}:{first.line}).",
                        file, line, fix="Give each entry a unique id or merge the two entries.")
            except TrainingDataError as e:
                if strict:
                    raise
                result.problems.append(str(e))
                logger.warning("Skipped knowledge entry: %s", e)
                continue
            seen[entry.id] = entry
            result.entries.append(entry)
    return result


# --------------------------------------------------------------------------- writing


def entries_to_yaml(entries: Iterable[Entry]) -> str:
    return YAML_HEADER + dump_yaml({"entries": [e.as_dict() for e in entries]})


def entries_to_csv(entries: Iterable[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for e in entries:
        for lang in dict.fromkeys([*e.questions, *e.answers]):
            answer = e.answers.get(lang)
            writer.writerow({
                "id": e.id,
                "category": e.category,
                "language": lang,
                "questions": LIST_SEPARATOR.join(e.questions.get(lang, ())),
                "answer": answer.text if answer else "",
                "buttons": LIST_SEPARATOR.join(f"{b.title}={b.payload}" for b in answer.buttons) if answer else "",
                "links": LIST_SEPARATOR.join(f"{x['title']}={x['url']}" for x in answer.links) if answer else "",
                "images": LIST_SEPARATOR.join(answer.images) if answer else "",
                "tags": LIST_SEPARATOR.join(e.tags),
                "valid_from": e.valid_from.isoformat() if e.valid_from else "",
                "valid_until": e.valid_until.isoformat() if e.valid_until else "",
            })
    return buf.getvalue()


def atomic_write(path: str | Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_entries_file(path: str | Path, entries: Iterable[Entry]) -> None:
    path = Path(path)
    entries = list(entries)
    atomic_write(path, entries_to_csv(entries) if path.suffix.lower() == ".csv" else entries_to_yaml(entries))
