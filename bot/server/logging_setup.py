"""Where kefu's log lines go: the terminal and, with ``--log-file``, a file.

The command line configures the main process; Sanic's workers are spawned
processes that inherit none of it, so ``build_app`` configures each worker the
same way (``ServerOptions.log_level``/``log_file``). Calling it again replaces
kefu's own handlers instead of adding more, so nothing is logged twice.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from bot.shared.masking import install_log_masking

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s - %(message)s"
NOISY_LOGGERS = ("jieba", "urllib3", "httpx", "sanic.access")
MARKER = "_kefu_handler"  # set on the handlers installed here, so a second call replaces them


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to ``sys.stderr`` as it is when each record is emitted,
    as logging's own last-resort handler does, instead of the stream that was ``sys.stderr``
    when logging was configured.

    Whoever swaps ``sys.stderr`` later (a test harness capturing output, a host embedding
    kefu) gets the lines where they now go; a handler bound to the old object kept writing
    to it, and once it was closed every record became a "--- Logging error ---" with a
    formatted traceback.
    """

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, MARKER, True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def configure_logging(level: str, log_file: str | Path | None = None) -> None:
    """Root logging at ``level`` to (the current) stderr and, if given, appended to ``log_file`` (same format)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, MARKER, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    root.addHandler(_mark(StderrHandler()))
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        root.addHandler(_mark(logging.FileHandler(path, encoding="utf-8")))
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_masking()  # phones, openids, e-mails masked at INFO and above (bot/shared/masking.py)
