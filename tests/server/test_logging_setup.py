"""kefu's log handlers (bot/server/logging_setup.py)."""
from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.server.logging_setup import MARKER, configure_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_terminal_lines_follow_sys_stderr_after_the_first_one_is_closed(
        root_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO", tmp_path / "kefu.log")
    logging.getLogger("kefu.test").info("first line")
    first.close()  # e.g. a captured stream, gone with the test or the host that replaced it
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("kefu.test").info("second line")
    assert "second line" in second.getvalue()
    assert "first line" not in second.getvalue()
    assert "Logging error" not in second.getvalue()
    log_file = (tmp_path / "kefu.log").read_text(encoding="utf-8")
    assert "first line" in log_file and "second line" in log_file


def test_configuring_again_replaces_kefus_handlers(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    configure_logging("INFO")
    configure_logging("WARNING")
    root = logging.getLogger()
    assert len([h for h in root.handlers if getattr(h, MARKER, False)]) == 1
    assert root.level == logging.WARNING
    logging.getLogger("kefu.test").warning("once")
    assert sys.stderr.getvalue().count("once") == 1
