"""The file helpers of ``rasa.shared.utils.io`` and ``rasa.utils.io`` that project code calls."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

from bot.shared.yaml_io import read_yaml_file as _read_yaml_file, to_plain

DEFAULT_ENCODING = "utf-8"


class RasaException(Exception):
    """Base of Rasa's exceptions (``rasa.shared.exceptions.RasaException``)."""


class RasaCoreException(RasaException):
    pass


class FileIOException(RasaException):
    pass


class FileNotFoundException(RasaException, FileNotFoundError):
    pass


class InvalidConfigException(ValueError, RasaException):
    pass


class YamlException(RasaException):
    pass


def read_file(filename: str | Path, encoding: str = DEFAULT_ENCODING) -> str:
    try:
        return Path(filename).read_text(encoding=encoding)
    except FileNotFoundError as e:
        raise FileNotFoundException(f"Failed to read file, '{Path(filename).absolute()}' does not exist.") from e
    except UnicodeDecodeError as e:
        raise FileIOException(f"Failed to read file '{Path(filename).absolute()}', "
                              f"could not read the file using {encoding} to decode it.") from e


def read_json_file(filename: str | Path) -> Any:
    content = read_file(filename)
    try:
        return json.loads(content)
    except ValueError as e:
        raise FileIOException(f"Failed to read json from '{Path(filename).absolute()}'. Error: {e}") from e


def json_to_string(obj: Any, **kwargs: Any) -> str:
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(obj, **kwargs)


def write_text_file(content: str, file_path: str | Path, encoding: str = DEFAULT_ENCODING,
                    append: bool = False) -> None:
    with open(file_path, "a" if append else "w", encoding=encoding) as file:
        file.write(content)


def dump_obj_as_json_to_file(filename: str | Path, obj: Any) -> None:
    write_text_file(json_to_string(obj), filename)


def create_directory_for_file(file_path: str | Path) -> None:
    Path(file_path).parent.mkdir(parents=True, exist_ok=True)


def create_directory(directory_path: str | Path) -> None:
    Path(directory_path).mkdir(parents=True, exist_ok=True)


def read_yaml_file(filename: str | Path, reader_type: Any = None) -> Any:
    return to_plain(_read_yaml_file(Path(filename)))


def is_logging_disabled() -> bool:
    """Rasa's test: progress bars are hidden when ``LOG_LEVEL`` is ERROR or WARNING."""
    return os.environ.get("LOG_LEVEL", "INFO") in ("ERROR", "WARNING")


def raise_warning(message: str, category: Optional[type] = None, docs: Optional[str] = None,
                  **kwargs: Any) -> None:
    warnings.warn(message + (f" (docs: {docs})" if docs else ""), category or UserWarning, stacklevel=2)


def pickle_dump(filename: str | Path, obj: Any) -> None:
    with open(filename, "wb") as file:
        pickle.dump(obj, file)


def pickle_load(filename: str | Path) -> Any:
    with open(filename, "rb") as file:
        return pickle.load(file)


def create_temporary_directory() -> str:
    return tempfile.mkdtemp()
