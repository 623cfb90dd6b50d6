"""Micro-batching of concurrent parses, off the event loop.

Sentence encoders are several times faster per text in batches (USE multilingual:
~100 texts/s one at a time versus ~500/s in batches of 16 on a loaded 2-core box),
so concurrent ``/model/parse`` and webhook messages are parsed together in a
worker thread. Adaptive, with no timer: an idle batcher sends a request to the
worker at once (a lone request never waits); while a batch runs, new requests
queue and the next batch takes all of them. The event loop only queues and
resolves futures, it never runs the model.

Knobs (environment, read when a batcher is created, i.e. on model load):
``KEFU_PARSE_BATCH_SIZE`` (default 32; 0 or 1 turns batching off) and
``KEFU_PARSE_BATCHES_IN_FLIGHT`` (default 1: one core embeds, the other serves
HTTP; raise it on machines with more cores).
"""
from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bot.shared.concurrency import run_blocking
from bot.shared.exceptions import ConfigError, ModelNotFound

logger = logging.getLogger(__name__)

ENV_BATCH_SIZE = "KEFU_PARSE_BATCH_SIZE"
ENV_IN_FLIGHT = "KEFU_PARSE_BATCHES_IN_FLIGHT"


@dataclass(frozen=True)
class BatchingConfig:
    """How many messages one batch may hold and how many batches run at once."""

    max_batch_size: int = 32
    max_in_flight: int = 1

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "BatchingConfig":
        env = os.environ if environ is None else environ
        values = {}
        for key, field_name, minimum in ((ENV_BATCH_SIZE, "max_batch_size", 0), (ENV_IN_FLIGHT, "max_in_flight", 1)):
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError as e:
                raise ConfigError(
                    f"Environment variable {key}={raw!r} is not a whole number.",
                    fix=f"Set {key} to an integer >= {minimum} or unset it.",
                ) from e
            if value < minimum:
                raise ConfigError(
                    f"Environment variable {key}={value} is below {minimum}.",
                    fix=f"Set {key} to an integer >= {minimum} or unset it.",
                )
            values[field_name] = value
        return cls(**values)


class ParseBatcher:
    """Queues ``parse(text)`` calls and runs them in batches on an executor.

    ``parse_one(text)`` parses one message (sync, thread-safe); ``prepare(texts)``
    (optional) does the batched part up front, e.g. one encoder call for all texts.
    A failing ``prepare`` only costs speed; a failing ``parse_one`` fails only
    its own request.
    """

    def __init__(
        self,
        parse_one: Callable[[str], Any],
        prepare: Callable[[list[str]], Any] | None = None,
        executor: Executor | None = None,
        config: BatchingConfig | None = None,
    ) -> None:
        self.parse_one = parse_one
        self.prepare = prepare
        self.executor = executor
        self.config = config or BatchingConfig()
        self._queue: deque[tuple[str, asyncio.Future[Any]]] = deque()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[list[Any]]] = set()  # the loop keeps only weak references
        #: sizes of the batches run so far (bounded; for tests and diagnostics)
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    async def parse(self, text: str) -> Any:
        """The parse result of ``text``; raises what ``parse_one`` raised for it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests, a restarted worker): start clean
            self._loop, self._queue, self._in_flight = loop, deque(), 0
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((text, future))
        self._dispatch(loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        limit = max(1, self.config.max_batch_size)
        while self._queue and self._in_flight < max(1, self.config.max_in_flight):
            batch = []
            while self._queue and len(batch) < limit:
                text, future = self._queue.popleft()
                if not future.done():  # the client went away while queued
                    batch.append((text, future))
            if not batch:
                return
            self._in_flight += 1
            self.batch_sizes.append(len(batch))
            work = loop.create_task(run_blocking(self._run, [t for t, _ in batch], executor=self.executor))
            self._running.add(work)
            work.add_done_callback(self._running.discard)
            work.add_done_callback(lambda done, batch=batch: self._finish(loop, batch, done))

    def _run(self, texts: list[str]) -> list[Any]:
        """Worker thread: the batched step, then each message on its own."""
        if self.prepare is not None and len(texts) > 1:
            try:
                self.prepare(texts)
            except Exception as e:  # noqa: BLE001 - each parse below embeds on its own
                logger.warning("Batched preparation of %d messages failed (%s); parsing them one by one.",
                               len(texts), e)
        results: list[Any] = []
        for text in texts:
            try:
                results.append(self.parse_one(text))
            except Exception as e:  # noqa: BLE001 - one bad message must not fail the batch
                logger.exception("Parsing one message of a batch of %d failed.", len(texts))
                results.append(e)
        return results

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[str, asyncio.Future[Any]]],
                done: asyncio.Future[list[Any]]) -> None:
        if loop is self._loop:
            self._in_flight -= 1
        try:
            results = done.result()
        except BaseException as e:  # noqa: BLE001 - executor shut down, cancelled: fail this batch only
            results = [e] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if loop is self._loop and not loop.is_closed():
            self._dispatch(loop)


_PROCESSOR_BATCHERS: "weakref.WeakKeyDictionary[Any, ParseBatcher]" = weakref.WeakKeyDictionary()


def processor_batcher(processor: Any, config: BatchingConfig | None = None) -> ParseBatcher:
    """The batcher of one ``MessageProcessor`` (a model swap makes a new processor, so a new batcher).

    Parses go through ``processor._parse_sync`` (``/intent`` messages, no-NLU models)
    on the processor's inference executor; the NLU's ``prepare_batch`` embeds each batch
    once. The batcher holds the processor weakly, so an old model can be freed.
    """
    batcher = _PROCESSOR_BATCHERS.get(processor)
    if batcher is None:
        ref = weakref.ref(processor)

        def parse_one(text: str) -> Any:
            live = ref()
            if live is None:
                raise ModelNotFound("The model was unloaded while the message waited to be parsed.")
            return live._parse_sync(text)

        batcher = ParseBatcher(
            parse_one, getattr(processor.nlu, "prepare_batch", None), getattr(processor, "executor", None),
            config or BatchingConfig.from_env(),
        )
        _PROCESSOR_BATCHERS[processor] = batcher
    return batcher
