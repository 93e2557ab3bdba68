"""The worker processes of one process stage: starting them, their pipes, stopping them.

This is the one place that builds ``WorkerDied``, and the one place that undoes a start:
whatever step of a start fails, everything the earlier steps made is released.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from .._errors import WorkerDied
from .._shm import cleanup_orphans
from ._forkserver import PRELOAD, default_start_method, without_main_reimport
from ._worker import IDLE, STOP, WorkerSpec, run_worker

__all__ = ["WorkerSet", "default_start_method"]

#: Seconds a terminated worker gets to exit before it is killed.
TERMINATE_GRACE = 0.5

#: What to do with a result message nobody will load.
Discard = Callable[[bytes], None]


def _ignore(message: bytes) -> None:
    """No result can have arrived yet (a start that failed)."""


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "is gone"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        return f"was killed by signal {name}"
    return f"exited with code {exitcode}"


def _start_error(stage: str, error: BaseException) -> BaseException:
    """The error a failed start raises: an fd limit is named, with what to do about it."""
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        return OSError(
            error.errno,
            f"{stage}: too many open files: raise `ulimit -n` or use fewer workers"
            f" ({error.strerror})",
        )
    return error


def _check_fd_budget(stage: str, count: int) -> None:
    """Refuse a start that would run out of file descriptors half-way (the fork server
    prints a traceback of its own when a request breaks off)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        used = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError):  # pragma: no cover - not Linux: the start will tell
        return
    # Per worker: its task and result pipes (both ends while it starts) and its sentinel;
    # then the wake and stop pipes, and the fork server's or resource tracker's own.
    needed = 5 * count + 8
    if soft != resource.RLIM_INFINITY and used + needed > soft:
        raise _start_error(stage, OSError(errno.EMFILE, os.strerror(errno.EMFILE)))


class WorkerSet:
    """``count`` worker processes, each with a task pipe and a result pipe, plus a wake-up
    pipe for the reader and a stop pipe every worker polls."""

    def __init__(self, stage: str, name: str, count: int) -> None:
        self.stage = stage
        self.name = name
        self.count = count
        self.processes: list[Any] = []
        self.tasks: list[Any] = []
        self.results: list[Any] = []
        self.wake_r, self.wake_w = -1, -1
        self._stop_reader: Any = None
        self._stop_writer: Any = None
        self._context: Any = None
        self._spec: WorkerSpec | None = None
        #: With ``watch``: per worker, the chunk id, index in the chunk and start time
        #: (``time.monotonic()``, 0 when idle) of the item it is running.
        self.progress: Any = None
        #: Workers being replaced: a send that fails on them is not a death.
        self.replacing: set[int] = set()
        #: Dead workers are replaced (``restart=True``): no send failure is a death.
        self.restart = False
        #: Held while a death's exit status is read: the feeder (a failed send) and the
        #: reader (a sentinel) may ask at once, and under forkserver the status is read
        #: off a pipe once; the second reader would see its end and report code 255.
        self._status = threading.Lock()

    # -- starting ------------------------------------------------------------------------

    def start(self, method: str, spec: WorkerSpec, *, watch: bool = False) -> None:
        """Start the workers; on any failure release what was made, then raise.
        ``watch``: workers report the item they run in ``progress``."""
        _check_fd_budget(self.stage, self.count)
        try:
            context: Any = multiprocessing.get_context(method)
            self._context, self._spec = context, spec
            if watch:
                self.progress = context.RawArray("d", 3 * self.count)
            if method == "forkserver":
                # The server imports what every worker needs once, so that each worker
                # starts warm (no effect once the server runs).
                context.set_forkserver_preload(PRELOAD)
            self.wake_r, self.wake_w = os.pipe()
            # A pipe rather than an Event: no named semaphore to clean up, and every
            # worker sees the one message, since workers only poll it and never read it.
            self._stop_reader, self._stop_writer = context.Pipe(duplex=False)
            with without_main_reimport(method):
                for index in range(self.count):
                    self._spawn(context, spec, index)
        except BaseException as error:
            self.finish(_ignore)
            raised = _start_error(self.stage, error)
            if raised is error:
                raise
            raise raised from error

    def _spawn(self, context: Any, spec: WorkerSpec, index: int, *, at: bool = False) -> None:
        """Start worker ``index`` (``at``: in the place of the one it replaces)."""
        task_reader, task_writer = context.Pipe(duplex=False)
        try:
            result_reader, result_writer = context.Pipe(duplex=False)
        except BaseException:
            task_reader.close()
            task_writer.close()
            raise
        # A forked child inherits the parent's ends of every pipe; it closes them, or its
        # task pipe would never reach end-of-file when the parent dies.
        inherited = []
        if context.get_start_method() == "fork":
            inherited = [self.wake_r, self.wake_w, self._stop_writer.fileno()]
            inherited += [c.fileno() for c in (*self.tasks, *self.results) if not c.closed]
            inherited += [task_writer.fileno(), result_reader.fileno()]
        process = context.Process(
            target=run_worker,
            args=(spec, task_reader, result_writer, self._stop_reader, inherited),
            kwargs={"index": index, "progress": self.progress},
            name=f"{self.name}-{index}",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            for connection in (task_reader, task_writer, result_reader, result_writer):
                connection.close()
            raise
        finally:
            task_reader.close()
            result_writer.close()
        if at:
            self.processes[index] = process
            self.tasks[index] = task_writer
            self.results[index] = result_reader
            return
        self.processes.append(process)
        self.tasks.append(task_writer)
        self.results.append(result_reader)

    def begin(self, spec: WorkerSpec) -> None:
        """Hand the run ``spec`` to the idle workers of an earlier run (``_warm``)."""
        self._spec = spec
        if self.progress is not None:
            self.progress[:] = [0.0] * len(self.progress)
        if wait([self.wake_r], 0):
            self.clear_wake()  # a wake-up meant for the run that released the set
        data = pickle.dumps(spec, protocol=5)
        for index, connection in enumerate(self.tasks):
            try:
                connection.send_bytes(data)  # an idle worker reads it at once
            except OSError as error:
                raise self.died(index) from error

    def kill(self, index: int) -> None:
        """Kill worker ``index`` (stuck, or about to be replaced) and wait for it."""
        self.replacing.add(index)
        process = self.processes[index]
        with self._status:
            if process.exitcode is None:
                process.kill()
            process.join()

    def respawn(self, index: int) -> None:
        """Start a new worker ``index`` in place of the killed or dead one."""
        assert self._spec is not None
        old = self.processes[index]
        for connection in (self.tasks[index], self.results[index]):
            connection.close()
        if self.progress is not None:
            self.progress[3 * index + 2] = 0.0
        with without_main_reimport(self._context.get_start_method()):
            self._spawn(self._context, self._spec, index, at=True)
        cleanup_orphans(pids=[old.pid])
        old.close()
        self.replacing.discard(index)

    # -- while running -------------------------------------------------------------------

    def died(self, index: int) -> WorkerDied:
        """The error for worker ``index``, which ended without being asked to."""
        process = self.processes[index]
        with self._status:
            process.join(1.0)  # the sentinel fires a moment before the exit status is known
            exitcode = process.exitcode
        return WorkerDied(
            f"{self.stage}: worker process {process.pid} {_describe_exit(exitcode)}",
            process.pid,
            exitcode,
        )

    def send(self, index: int, data: bytes) -> None:
        """Send a chunk to worker ``index``; ``WorkerDied`` if it is gone."""
        try:
            self.tasks[index].send_bytes(data)
        except OSError as error:
            if index in self.replacing or self.restart:
                # The chunk is held: it goes to the replacement (with ``restart``, once
                # the reader has seen the death through the worker's sentinel).
                return
            raise self.died(index) from error

    def wake(self) -> None:
        """Wake the reader waiting in ``multiprocessing.connection.wait``."""
        with contextlib.suppress(OSError):  # closed during shutdown
            os.write(self.wake_w, b"!")

    def clear_wake(self) -> None:
        os.read(self.wake_r, 65536)

    def sentinels(self) -> dict[int, int]:
        """The process sentinels, mapped to worker indices."""
        return {p.sentinel: index for index, p in enumerate(self.processes)}

    # -- stopping ------------------------------------------------------------------------

    def signal_stop(self) -> None:
        """Tell every worker to drop its queued chunks (through the stop pipe)."""
        if self._stop_writer is not None:
            with contextlib.suppress(OSError):
                self._stop_writer.send_bytes(b"stop")

    def clear_stop(self) -> None:
        """Empty the stop pipe, once every worker is idle, for the set's next run."""
        while self._stop_reader is not None and self._stop_reader.poll(0):
            self._stop_reader.recv_bytes()

    def ask_stop(self) -> None:
        """Tell every worker to drop its queued chunks and end after its current one."""
        self.signal_stop()
        for connection in self.tasks:
            # Wakes an idle worker; without blocking: a busy worker's pipe may be full,
            # and that worker sees the stop pipe after its chunk. Under fork a sibling
            # may hold a copy of this pipe, so closing it alone is no end-of-file.
            with contextlib.suppress(OSError):
                os.set_blocking(connection.fileno(), False)
                connection.send_bytes(STOP)

    def drain(self, deadline: float, discard: Discard) -> None:
        """Until every worker has exited (or ``deadline``, a ``time.monotonic()``), hand
        each result that arrives to ``discard``: a worker blocked on sending gets on,
        and the shared memory of results nobody will load goes back to its pool."""
        live = {p.sentinel for p in self.processes if p.exitcode is None}
        while live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for ready in wait([*self.results, *live], timeout=remaining):
                if ready in live:
                    live.discard(ready)
                else:
                    self._discard_from(ready, discard)

    def _discard_from(self, connection: Any, discard: Discard) -> None:
        with contextlib.suppress(EOFError, OSError):
            if connection.poll(0):
                data = connection.recv_bytes()
                if data == IDLE:
                    # A worker that could have been kept waits for a next run that
                    # will not come: it runs no code of the user's, end it now.
                    self.processes[self.results.index(connection)].terminate()
                else:
                    discard(data)

    def finish(self, discard: Discard) -> None:
        """Terminate (then kill) every worker still running, discard what is left in
        the result pipes and release every pipe; idempotent."""
        for connection in self.tasks:
            connection.close()
        self._reap()
        for connection in self.results:
            # Every writer is gone: what is in the pipe now is all there is.
            with contextlib.suppress(EOFError, OSError):
                while connection.poll(0):
                    discard(connection.recv_bytes())
            connection.close()
        pids = [process.pid for process in self.processes]
        for process in self.processes:
            process.close()
        for connection in (self._stop_reader, self._stop_writer):
            if connection is not None:
                connection.close()
        # Segments of results lost with a killed worker would outlive it otherwise.
        cleanup_orphans(pids=pids)
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        self.wake_r = self.wake_w = -1
        self.processes, self.tasks, self.results = [], [], []

    def _reap(self) -> None:
        processes = [p for p in self.processes if p.exitcode is None]
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.exitcode is None:
                process.kill()
                process.join()
