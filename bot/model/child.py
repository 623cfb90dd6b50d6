"""Run one function in a spawned process while this one goes on (``python -m bot train``
trains the policies beside the NLU pipeline this way).

The child's log records reach this process's loggers (their handlers, filters and PII
masking) through a queue; the warnings it raised are raised again here and its exception
is raised here. Spawned, not forked: torch's thread pools may already run in this
process; not a thread: two torch trainings would share torch's global thread count, its
RNG and the GIL.
"""
from __future__ import annotations

import logging
import multiprocessing
import warnings
from logging.handlers import QueueHandler, QueueListener
from typing import Any, Callable


class _ToParentLoggers(logging.Handler):
    """Hands a child's log records to the parent's loggers (their handlers, filters and
    masking), as if they had been logged here; the loggers' own levels still apply."""

    def handle(self, record: logging.LogRecord) -> bool:
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        pass


def _child_main(conn: Any, log_queue: Any, level: int, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Child process body: ``function(*args)``; log records go to the parent through
    ``log_queue``, the outcome (and the warnings raised) through ``conn``."""
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(log_queue)]
    root.setLevel(level)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the parent's filters decide when they are re-raised
        try:
            outcome: tuple[str, Any] = ("ok", function(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
            outcome = ("error", e)
    raised = [(str(w.message), w.category, w.filename, w.lineno) for w in caught]
    try:
        conn.send((*outcome, raised))
    except Exception as e:  # an exception that does not pickle: its text still reaches the parent
        conn.send(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({e})"), raised))
    conn.close()


class InChild:
    """``function(*args)`` in a spawned process, started at once; ``result()`` waits for it.

    ``function`` and ``args`` must pickle (a module-level function; the child imports its
    module)."""

    def __init__(self, function: Callable[..., Any], *args: Any, name: str = "kefu-child") -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._listener: QueueListener | None = QueueListener(self._queue, _ToParentLoggers())
        self._listener.start()
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main, name=name, daemon=True,
            args=(child_conn, self._queue, logging.getLogger().getEffectiveLevel(), function, args),
        )
        self._process.start()
        child_conn.close()

    def result(self) -> Any:
        """Wait for the child and return what the function returned; its warnings are raised
        here, and so is its exception."""
        try:
            try:
                status, value, raised = self._conn.recv()
            except EOFError:
                self._process.join()
                raise RuntimeError(
                    f"{self._process.name} stopped without a result (process exit code {self._process.exitcode})."
                ) from None
            self._process.join()
        finally:
            self.stop()
        for text, category, filename, lineno in raised:
            warnings.warn_explicit(text, category, filename, lineno)
        if status == "error":
            raise value
        return value

    def stop(self) -> None:
        """End the child (if still running) and the log relay; safe to call twice."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        if self._listener is not None:
            self._listener.stop()  # relays what the queue still holds, then ends its thread
            self._listener = None
            self._queue.close()
        self._conn.close()
