"""The thread backend: a bounded queue filled by worker threads.

Each worker pulls through every stage upstream, back to the previous thread boundary, so
the user functions of those stages run concurrently; the planner has already put a mutex
below them where a stage is not safe to enter from several threads.

Queues are ``queue.SimpleQueue`` (C-level, no Python lock dance per item); the bound is a
second ``SimpleQueue`` of free slots that a worker takes before it enqueues an item.
Control messages (a worker finished, a worker failed, the end) share the item queue, so
they arrive in order with the items; nothing is found by polling.
"""

from __future__ import annotations

import itertools
import logging
import threading
import warnings
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, NoReturn

from .. import _plan as plan
from .._errors import WorkerError
from ._failure import FailureHandling, Replicas
from ._registry import build
from ._stage import Stage, WorkerStage, worker_stage

__all__ = ["JOIN_TIMEOUT", "ThreadStage", "ThreadWorkerError"]

log = logging.getLogger("tinypl")

#: Seconds ``close()`` waits for each worker thread (one inside a slow user function
#: finishes that call first) before it warns and gives up on it.
JOIN_TIMEOUT = 30.0

_ids = itertools.count()


class ThreadWorkerError(WorkerError):
    """A worker thread failed (``on_worker_error="forward"``); ``__cause__`` is the error.

    Examples:
        >>> import tinypl as pl
        >>> def fail(x):
        ...     raise ValueError("bad")
        >>> stage = pl.thread.map([1], fail, workers=1, on_worker_error="forward")
        >>> try:
        ...     next(stage)
        ... except pl.thread.queue.WorkerException as error:
        ...     print(repr(error.__cause__))
        ValueError('bad')
    """


class _Control:
    """A message on the item queue that is not an item."""

    __slots__ = ("error", "kind")

    def __init__(self, kind: str, error: BaseException | None = None) -> None:
        self.kind = kind
        self.error = error


_DONE = _Control("done")  # one worker has finished
_END = _Control("end")  # every worker has finished; re-queued for every other reader
_FAILED = _Control("failed")  # wakes a reader so it sees ``ThreadCore.error``


class ThreadCore(FailureHandling):
    """Workers, queues and shutdown of one thread stage (holds no reference to the stage)."""

    forward_error = ThreadWorkerError

    def __init__(
        self,
        upstream: Stage[Any],
        workers: int,
        maxsize: int,
        on_worker_error: str,
    ) -> None:
        self.upstream = upstream
        self.workers = workers
        self.maxsize = maxsize
        self.on_worker_error = on_worker_error
        self.name = f"tinypl-thread-{next(_ids)}"
        self.out: SimpleQueue[Any] = SimpleQueue()
        self._slots: SimpleQueue[None] = SimpleQueue()
        for _ in range(maxsize):
            self._slots.put(None)
        self.free = self._slots.put
        self.free_slots = self._slots.qsize
        self.get: Callable[[], Any] = self._start_and_get
        self._pull = upstream.raw.__next__
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._signalled = False
        self._finished = 0
        #: The first worker error; readers check it before every item.
        self.error: BaseException | None = None
        self._raised = False
        self._replicas: Replicas | None = None
        self._fail_lock = self._lock
        self._shut = False

    # -- workers -------------------------------------------------------------------------

    def _start_and_get(self) -> Any:
        with self._lock:
            if not self._threads and not self._stopping:
                for index in range(self.workers):
                    thread = threading.Thread(
                        target=self._work, name=f"{self.name}-{index}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
            self.get = self.out.get
        return self.out.get()

    def _work(self) -> None:
        pull = self._pull
        put = self.out.put
        take = self._slots.get
        try:
            while not self._stopping:
                try:
                    x = pull()
                except StopIteration:
                    break
                take()
                if self._stopping:
                    break
                put(x)
        except BaseException as error:
            with self._lock:
                if self.error is None:
                    self.error = error
            self._stopping = True
            put(_FAILED)
        finally:
            put(_DONE)

    # -- reader side ---------------------------------------------------------------------

    def fill(self) -> float:
        # Every queued item holds a slot; control messages hold none.
        queued = self.maxsize - self.free_slots()
        return min(max(queued, 0), self.maxsize) / self.maxsize

    def control(self, message: _Control) -> None:
        """Handle a control message pulled by a reader: return to read on, or raise."""
        if message is _DONE:
            with self._lock:
                self._finished += 1
                last = self._finished == self.workers
            if last:
                self.out.put(_END)
                raise StopIteration
            return
        if message is _END:
            self.out.put(_END)
            raise StopIteration
        if self.error is not None:
            self.fail()

    def fail(self) -> NoReturn:
        """Raise the first worker error to a reader, stopping everything the first time."""
        self.out.put(_FAILED)  # other readers (downstream workers) fail as well
        self.raise_failure(self.on_worker_error)

    # -- Core protocol -------------------------------------------------------------------

    def signal(self) -> None:
        with self._lock:
            if self._signalled:
                return
            self._signalled = True
        self._stopping = True
        for _ in range(self.workers):
            self._slots.put(None)  # wakes workers waiting for a free slot
        self.out.put(_END)  # wakes readers waiting for an item

    def shutdown(self) -> None:
        self.signal()
        with self._lock:
            if self._shut:
                return
            self._shut = True
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is current:
                continue
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                warnings.warn(
                    f"tinypl: worker thread {thread.name} did not stop within"
                    f" {JOIN_TIMEOUT} s; it is still inside a call",
                    ResourceWarning,
                    stacklevel=2,
                )
        # Items left in the queue are dropped with the run; readers see the end.
        out = self.out
        while not out.empty():
            out.get_nowait()
        out.put(_FAILED if self.error is not None else _END)


class QueueReader:
    """The raw iterator of a thread stage: items (and markers) from its queue."""

    __slots__ = ("_core",)

    def __init__(self, core: ThreadCore) -> None:
        self._core = core

    def __iter__(self) -> QueueReader:
        return self

    def __next__(self) -> Any:
        core = self._core
        try:
            while True:
                if core.error is not None:
                    core.fail()
                x = core.get()
                if x.__class__ is not _Control:
                    core.free(None)
                    return x
                core.control(x)
        except KeyboardInterrupt:
            core.close_all()
            raise


class ThreadStage(WorkerStage[Any]):
    """A live thread stage: a queue of ``maxsize`` items filled by ``workers`` threads."""


@build.register
def _thread(node: plan.Thread, upstream: Stage[Any]) -> Stage[Any]:
    core = ThreadCore(upstream, node.workers, node.queue_size, node.on_worker_error)
    return worker_stage(ThreadStage, QueueReader(core), node, upstream, core)
