"""Async sources: an async iterable as the source of a pipeline (issue 16).

Pulled from a thread (a thread stage, an order window, the consumer), an async source
runs each ``__anext__`` on a loop of its own in a background thread. An asyncio stage
directly below it *adopts* it instead, and iterates it on its own loop
(``_asyncio._AsyncInput``), with no thread hop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import warnings
import weakref
from typing import Any

from .. import _plan as plan
from ._failure import interpreter_exiting
from ._stage import SourceStage, Stage
from ._threads import JOIN_TIMEOUT

__all__ = [
    "AsyncSourceDriver",
    "AsyncSourceStage",
    "Failed",
    "async_source",
    "finish_loop",
    "join_threads",
    "wake",
]

_ids = itertools.count()
_END = object()  # the source has ended


class Failed:
    """Upstream raised ``error``: what a buffer holds in place of an element, so every
    reader that looks sees it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def wake(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` unless it is already done (a waiter may have been cancelled)."""
    if not future.done():
        future.set_result(None)


def join_threads(threads: list[threading.Thread], what: str) -> None:
    """Join ``threads`` (not the calling one), warning about one that does not stop."""
    current = threading.current_thread()
    if interpreter_exiting():
        return  # daemon threads end with the interpreter
    for thread in threads:
        if thread is current:
            continue
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            warnings.warn(
                f"tinypl: {what} thread {thread.name} did not stop within {JOIN_TIMEOUT} s",
                ResourceWarning,
                stacklevel=3,
            )


def finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what user code left running on ``loop`` (as ``asyncio.run`` does)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())


# -- async sources -----------------------------------------------------------------------


class AsyncSourceDriver:
    """The raw iterator of an async source pulled from threads: each ``__next__`` runs
    one ``__anext__`` on a loop of its own in a background thread (``tinypl-asource-N``).
    Also the source stage's core: closing it cancels the step in progress."""

    def __init__(self, iterable: Any) -> None:
        self.iterable = iterable
        self.name = f"tinypl-asource-{next(_ids)}"
        self._iterator: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._step: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.adopted = False  # an asyncio stage below iterates it on its own loop

    def __iter__(self) -> AsyncSourceDriver:
        return self

    def __next__(self) -> Any:
        with self._lock:
            if self._stopped:
                raise StopIteration
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            step = self._step = asyncio.run_coroutine_threadsafe(self._anext(), self._loop)
        try:
            x = step.result()
        except concurrent.futures.CancelledError:
            raise StopIteration from None
        if x is _END:
            self.signal()  # the loop thread ends with the source
            raise StopIteration
        return x

    async def _anext(self) -> Any:
        if self._iterator is None:
            self._iterator = self.iterable.__aiter__()
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return _END

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            close = getattr(self._iterator, "aclose", None)
            if close is not None:
                loop.run_until_complete(close())
            finish_loop(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def signal(self) -> None:
        with self._lock:
            first = not self._stopped
            self._stopped = True
            step, loop = self._step, self._loop
        if step is not None:
            step.cancel()
        if first and loop is not None:
            # Once: a second stop would cut short the clean-up that follows run_forever.
            loop.call_soon_threadsafe(loop.stop)

    def shutdown(self) -> None:
        self.signal()
        if self._thread is not None:
            join_threads([self._thread], "async source")


class AsyncSourceStage(SourceStage[Any]):
    """The source stage of an async iterable."""

    driver: AsyncSourceDriver

    def adopt(self) -> bool:
        """Let the asyncio stage directly below iterate the source on its own loop
        (False when another run has started pulling it already)."""
        driver = self.driver
        with driver._lock:
            if driver._loop is not None or driver._stopped or driver.adopted:
                return False
            driver.adopted = driver._stopped = True  # nobody else pulls it now
            return True


def async_source(node: plan.AsyncSource) -> Stage[Any]:
    driver = AsyncSourceDriver(node.source)
    stage = AsyncSourceStage(driver, None)
    stage.driver = driver
    stage._attach(
        raw=driver, node=None, upstream=None, may_mark=False, thread_safe=False, core=driver
    )
    weakref.finalize(stage, driver.shutdown)
    return stage
