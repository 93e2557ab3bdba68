"""The thread backend: a bounded queue filled by worker threads.

Each worker pulls through every stage upstream, back to the previous thread boundary, so
the user functions of those stages run concurrently; the planner has already put a mutex
below them where a stage is not safe to enter from several threads.

Queues are ``queue.SimpleQueue`` (C-level, no Python lock dance per item); the bound is a
second ``SimpleQueue`` of free slots that a worker takes before it enqueues an item. The
slots are made as they are first needed, so a large bound costs nothing up front. A
default bound doubles (up to ``GROW`` times) when a worker finds the queue full after a
reader found it empty (``_grow``).
Control messages (a worker finished, a worker failed, the end) share the item queue, so
they arrive in order with the items; nothing is found by polling. A worker error is
raised once every worker has stopped: items produced before it are delivered first.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
import warnings
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, NoReturn

from .. import _plan as plan
from .._errors import ThreadWorkerError, TooManyErrors
from .._marker import Marker
from .._workerinfo import WorkerInfo, draw_seed, entered, init_note
from ._control import DONE, END, FAILED, SIGNAL_CHECK, Control
from ._failure import FailureHandling, Replicas, interpreter_exiting
from ._registry import build
from ._stage import Stage, WorkerStage, signal_stop, worker_stage
from ._stats import ThreadProbe, WorkerFigures, count_record
from ._watchdog import Watchdog

__all__ = ["JOIN_TIMEOUT", "ThreadStage", "ThreadWorkerError"]

#: Seconds ``close()`` waits for each worker thread (one inside a slow user function
#: finishes that call first) before it warns and gives up on it.
JOIN_TIMEOUT = 30.0

#: How far a default bound (``maxsize`` left unset) may grow: 8 times, so ``16 * workers``.
GROW = 8

_ids = itertools.count()


class ThreadCore(FailureHandling):
    """Workers, queues and shutdown of one thread stage (holds no reference to the stage)."""

    forward_error = ThreadWorkerError

    def __init__(
        self,
        upstream: Stage[Any],
        workers: int,
        maxsize: int,
        on_worker_error: str,
        *,
        init: Callable[[], Any] | None = None,
        timeout: float | None = None,
        grow_to: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.init = init
        #: Counts the workers whose ``init`` has returned or raised.
        self._inits_left = workers
        self._inits_done = threading.Event()
        self._init_failed = False
        self.workers = workers
        self.maxsize = maxsize
        self.on_worker_error = on_worker_error
        self.name = f"tinypl-thread-{next(_ids)}"
        self.out: SimpleQueue[Any] = SimpleQueue()
        self._slots: SimpleQueue[None] = SimpleQueue()  # slots freed by readers
        self._unissued = maxsize  # slots never handed out yet
        #: The bound may double up to this (see ``_grow``); ``maxsize`` is the bound now.
        self._cap = maxsize if grow_to is None else grow_to
        #: Set by a reader that found the queue empty; ``_grow`` clears it.
        self.waited = False
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
        #: With a timeout: watches items; the threads it gave up on are not joined.
        self._watchdog: Watchdog | None = None
        if timeout is not None:
            stage = f"thread({workers}) {self.name}"
            self._watchdog = Watchdog(stage, self.name, workers, timeout, self._expired)
        self._abandoned: set[threading.Thread] = set()
        #: The figures of ``stage.stats()``.
        self.insight = WorkerFigures()
        #: Whether it passes the records ``(n, items)`` of an ordered region: its figures
        #: count what they hold.
        self.records = upstream._tagger is not None
        self.poll = self.out.get_nowait

    # -- workers -------------------------------------------------------------------------

    def _start_and_get(self) -> Any:
        self.waited = False  # waiting for the workers to start says nothing of the reader
        with self._lock:
            if self.insight.started is None:
                self.insight.started = time.perf_counter()
            if not self._threads and not self._stopping:
                seed = draw_seed()
                for index in range(self.workers):
                    info = WorkerInfo(index, self.workers, "thread", seed + index)
                    thread = threading.Thread(
                        target=self._work, args=(info,), name=f"{self.name}-{index}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
                if self._watchdog is not None:
                    self._watchdog.start(list(self._threads))
            self.get = functools.partial(self.out.get, True, SIGNAL_CHECK)
        if self.init is not None:
            self._wait_for_inits()
        return self.get()

    def _wait_for_inits(self) -> None:
        """Block until every worker's ``init`` has run: an error in one is raised at
        this, the first pull, before any item."""
        while not self._inits_done.wait(SIGNAL_CHECK):
            pass  # back in Python code: a pending Ctrl-C is raised here
        if self._init_failed:
            self.fail()

    def _run_init(self, info: WorkerInfo) -> None:
        assert self.init is not None
        try:
            self.init()
        except BaseException as error:
            init_note(error, f"thread({self.workers}) {self.name}", info)
            with self._lock:  # recorded before the reader can wake to raise it
                if self.error is None:
                    self.error = error
                self._init_failed = True
            self._stopping = True
            raise
        finally:
            with self._lock:
                self._inits_left -= 1
                if self._inits_left == 0:
                    self._inits_done.set()

    def _take_slot(self) -> None:
        if self._unissued:
            with self._lock:
                if self._unissued:
                    self._unissued -= 1
                    return
        if self.maxsize < self._cap:
            try:
                return self._slots.get_nowait()
            except Empty:
                if self.waited and self._grow():
                    return
        self._slots.get()

    def _grow(self) -> bool:
        """Double the bound (up to its cap) and take one of the new slots.

        Called by a worker that finds the queue full when a reader has found it empty
        since the last growth: the reader keeps up on average and is only late to be
        scheduled (two busy workers on two cores), so the workers should not stall for
        it. A reader slower than the workers never finds the queue empty, and the bound
        stays.
        """
        with self._lock:
            if not self.waited or self.maxsize >= self._cap:
                return False
            added = min(self.maxsize, self._cap - self.maxsize)
            self.maxsize += added
            self._unissued += added - 1
            self.waited = False
            return True

    def _work(self, info: WorkerInfo) -> None:
        entered(info)
        pull = self._pull
        put = self.out.put
        take = self._take_slot
        item, marker = self.insight.pulled.__next__, self.insight.pulled_markers.__next__
        records = self.records
        try:
            if self.init is not None:
                self._run_init(info)
            if self._watchdog is not None:
                self._work_watched(info.id)
                return
            while not self._stopping:
                try:
                    x = pull()
                except StopIteration:
                    break
                if records:
                    count_record(x, item, marker)
                else:
                    (marker if x.__class__ is Marker else item)()
                take()
                put(x)  # even when stopping: an item pulled is delivered or dropped later
        except BaseException as error:
            with self._lock:
                first = self.error is None
                if first:
                    self.error = error
            self._stopping = True
            if first:
                # The error is raised once every worker is done; one that waits upstream
                # (an order window held open by the failed item) must be woken to finish.
                signal_stop(self.upstream)
        finally:
            put(DONE)

    def _work_watched(self, index: int) -> None:
        """The worker loop with a timeout: each pull is timed by the watchdog."""
        assert self._watchdog is not None
        started = self._watchdog.started
        pull, put, take, clock = self._pull, self.out.put, self._take_slot, time.monotonic
        figures = self.insight
        while not self._stopping:
            started[index] = clock()
            try:
                x = pull()
            except StopIteration:
                break
            finally:
                started[index] = 0.0
            if self.records:
                count_record(x, figures.pulled.__next__, figures.pulled_markers.__next__)
            else:
                next(figures.pulled_markers if x.__class__ is Marker else figures.pulled)
            take()
            put(x)

    def _expired(self, error: BaseException, thread: threading.Thread) -> None:
        """The watchdog gave up on ``thread``: fail the stage now, without it."""
        with self._lock:
            self._abandoned.add(thread)
            first = self.error is None
            if first:
                self.error = error
        self._stopping = True
        if first:
            signal_stop(self.upstream)
            self.out.put(FAILED)  # the reader fails at once, not when every worker is done

    # -- reader side ---------------------------------------------------------------------

    def fill(self) -> float:
        # Every queued item holds a slot; control messages hold none.
        queued = self.maxsize - self._unissued - self.free_slots()
        return min(max(queued, 0), self.maxsize) / self.maxsize

    def control(self, message: Control) -> None:
        """Handle a control message pulled by a reader: return to read on, or raise."""
        if message is DONE:
            with self._lock:
                self._finished += 1
                last = self._finished == self.workers
            if not last:
                return
        elif message is END:
            self.out.put(END)
            raise StopIteration
        if self.error is not None:
            self.fail()  # the last worker is done, or a failed run was shut down
        if self.insight.ended is None:
            self.insight.ended = time.perf_counter()
        self.out.put(END)
        raise StopIteration

    def fail(self) -> NoReturn:
        """Raise the first worker error to a reader, stopping everything the first time."""
        self.out.put(FAILED)  # other readers (downstream workers) fail as well
        self.raise_failure(self.on_worker_error, as_is=(TooManyErrors,))

    # -- Core protocol -------------------------------------------------------------------

    def signal(self) -> None:
        with self._lock:
            if self._signalled:
                return
            self._signalled = True
        self._stopping = True
        for _ in range(self.workers):
            self._slots.put(None)  # wakes workers waiting for a free slot
        self.out.put(END)  # wakes readers waiting for an item

    def shutdown(self) -> None:
        self.signal()
        with self._lock:
            if self._shut:
                return
            self._shut = True
            threads = [t for t in self._threads if t not in self._abandoned]
        if self._watchdog is not None:
            self._watchdog.stop()
        current = threading.current_thread()
        if interpreter_exiting():
            # Daemon threads end with the interpreter: waiting for a stuck one would
            # only delay the exit.
            threads = []
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
        with contextlib.suppress(Empty):  # another reader may take the last one first
            while True:
                out.get_nowait()
        out.put(FAILED if self.error is not None else END)


class QueueReader:
    """The raw iterator of a thread stage: items (and markers) from its queue."""

    __slots__ = ("_core",)

    def __init__(self, core: ThreadCore) -> None:
        self._core = core

    def __iter__(self) -> QueueReader:
        return self

    def __next__(self) -> Any:
        core = self._core
        # The loop runs in a call of its own: a Ctrl-C that Python raises at one of the
        # loop's jumps is then raised at this call, inside the try (CPython 3.11 can
        # report a signal raised at a backward jump outside the enclosing handler).
        try:
            return _read(core)
        except KeyboardInterrupt:
            core.close_in_background()
            raise


def _read(core: ThreadCore) -> Any:
    figures = core.insight
    while True:
        try:
            x = core.poll()
        except Empty:
            # Only a reader that has to wait reads the clock: the wait on this stage.
            start = time.perf_counter()
            core.waited = True
            try:
                x = core.get()
            except Empty:
                continue  # back in Python code: a pending Ctrl-C is raised here
            finally:
                figures.wait_s += time.perf_counter() - start
        if x.__class__ is not Control:
            core.free(None)
            figures.fill_sum += core.out.qsize()
            if core.records:
                count_record(x, figures.delivered.__next__, figures.markers.__next__)
            else:
                next(figures.markers if x.__class__ is Marker else figures.delivered)
            return x
        core.control(x)


class ThreadStage(WorkerStage[Any]):
    """A live thread stage: a queue of ``maxsize`` items filled by ``workers`` threads."""


@build.register
def _thread(node: plan.Thread, upstream: Stage[Any]) -> Stage[Any]:
    core = ThreadCore(
        upstream,
        node.workers,
        node.queue_size,
        node.on_worker_error,
        init=node.init,
        timeout=node.timeout,
        grow_to=GROW * node.queue_size if node.maxsize is None else None,
    )
    stage = worker_stage(ThreadStage, QueueReader(core), node, upstream, core)
    stage._probe = ThreadProbe(core, f"thread({node.workers})")
    return stage
