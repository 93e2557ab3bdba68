"""The per-item timeout of a thread stage.

A thread cannot be killed. Each worker notes when it starts pulling an item through
the stages of its scope; a watchdog thread looks at the notes, and when an item runs
longer than the timeout it fails the stage with ``TimeoutError`` and *abandons* the
stuck worker: that thread is renamed ``…-abandoned`` (it is a daemon, so it does not
keep the interpreter alive) and ``close()`` does not wait for it. The item is read
from the stuck thread's frame of the compiled per-item code (``x0``), so the path
without a timeout pays nothing for naming it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import add_item_note

__all__ = ["Watchdog"]

#: The code name of compiled per-item runs (``_compile``), whose ``x0`` is the item.
_FUSED = "<tinypl fused run>"
_UNKNOWN = object()


def _item_of(thread: threading.Thread) -> Any:
    """The item the stuck ``thread`` runs, when it is inside compiled per-item code."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_filename == _FUSED and "x0" in frame.f_locals:
            return frame.f_locals["x0"]
        frame = frame.f_back
    return _UNKNOWN


class Watchdog:
    """Watches the workers of one thread stage for items past ``timeout`` seconds;
    ``expired(error, thread)`` is called once, for the first."""

    def __init__(
        self, stage: str, name: str, workers: int, timeout: float,
        expired: Callable[[BaseException, threading.Thread], None],
    ) -> None:  # fmt: skip
        self.stage = stage
        self.timeout = timeout
        #: Per worker: when its current pull started (``time.monotonic()``), 0 when idle.
        self.started = [0.0] * workers
        self.threads: list[threading.Thread] = []
        self._expired = expired
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-watch", daemon=True)

    def start(self, threads: list[threading.Thread]) -> None:
        self.threads = threads
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        interval = min(0.1, self.timeout / 4)
        while not self._stop.wait(interval):
            now = time.monotonic()
            for index, start in enumerate(self.started):
                if start and now - start > self.timeout:
                    self._fire(index)
                    return

    def _fire(self, index: int) -> None:
        thread = self.threads[index]
        item = _item_of(thread)
        thread.name = f"{thread.name}-abandoned"
        error = TimeoutError(
            f"{self.stage}: an item took more than {self.timeout:g} s; worker thread"
            f" {thread.name} cannot be killed and is abandoned (a daemon thread, which"
            " close() does not wait for)"
        )
        if item is not _UNKNOWN:
            add_item_note(error, self.stage, item, None)
        self._expired(error, thread)
