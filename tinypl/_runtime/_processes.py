"""The process backend: a chain of per-item stages run by worker processes.

The parent keeps the source and every other stage. A feeder thread pulls them, packs
items into chunks (their size adapts to the measured cost per item) and sends each chunk
to the least busy worker through its own pipe. Readers wait on the result pipes, the
process sentinels and a wake-up pipe together, so a dead worker is noticed at once and
nothing is polled. Markers never enter a worker: the feeder hands them to the readers
directly (inside an ordered region their sequence number keeps them in place).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import wait
from queue import SimpleQueue
from typing import Any, NoReturn

import cloudpickle

from .. import _plan as plan
from .._errors import WorkerError
from .._marker import Marker
from .._shm import cleanup_orphans
from .._shm import loads as load_pooled
from ._failure import FailureHandling, Replicas
from ._registry import build
from ._stage import Stage, WorkerStage, worker_stage
from ._worker import PLAIN, STOP, WorkerSpec, run_worker, shared_memory_pool

__all__ = [
    "GRACE_PERIOD",
    "ProcessStage",
    "ProcessWorkerError",
    "RemoteTraceback",
    "WorkerDied",
    "default_start_method",
]

log = logging.getLogger("tinypl")

#: Seconds a closing process stage waits for workers to finish their current chunk
#: before it terminates them (and, half a second later, kills them).
GRACE_PERIOD = 1.0
#: Target seconds of worker time per chunk, and of feeder time to gather one.
CHUNK_SECONDS = 0.005
GATHER_SECONDS = 0.002
MAX_CHUNK = 4096
#: Shared memory each worker may use for result buffers (allocated as needed), and the
#: smallest buffer (in bytes) worth sending through it rather than through the pipe.
SHM_CAPACITY = 512 << 20
SHM_MIN_BUFFER = 64 << 10

_ids = itertools.count()


class ProcessWorkerError(WorkerError):
    """A worker process failed (``on_worker_error="forward"``); ``__cause__`` is the error.

    Examples:
        >>> import tinypl as pl
        >>> issubclass(pl.process.WorkerException, pl.WorkerError)
        True
    """


class WorkerDied(WorkerError):
    """A worker process ended without being asked to (killed, crashed, ``os._exit``).

    Examples:
        >>> import tinypl as pl
        >>> issubclass(pl.WorkerDied, pl.WorkerError)
        True
    """

    def __init__(self, message: str, pid: int | None, exitcode: int | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, attached as its cause."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def default_start_method() -> str:
    """``forkserver`` where it exists (POSIX): fork is unsafe once threads run, and
    forkserver forks workers from a clean single-threaded server, cheaper than spawn."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_main_reimport(method: str) -> Iterator[None]:
    """Start workers without re-running the parent's ``__main__`` in them.

    Under forkserver and spawn, multiprocessing re-imports the main script in every
    child, which runs an unguarded script (no ``if __name__ == "__main__"``) once more
    per worker. Workers need nothing from it: stage functions and items travel by
    value (cloudpickle). Naming the main module ``__main__`` for the moment the children
    are prepared makes multiprocessing skip that import.
    """
    main = sys.modules.get("__main__")
    if method == "fork" or main is None:
        yield
        return
    with _MAIN_LOCK:
        missing = object()
        saved = main.__dict__.get("__spec__", missing)
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
        try:
            yield
        finally:
            if saved is missing:
                del main.__spec__
            else:
                main.__spec__ = saved


def _forkserver_running() -> bool:
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver
    return server._forkserver_pid is not None


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


def _rebuild_error(stage: str, packed: tuple[str, str, str, bytes | None]) -> BaseException:
    type_name, message, text, data = packed
    if data is not None:
        try:
            error: BaseException = pickle.loads(data)
        except Exception:
            error = WorkerError(f"{stage}: a worker raised {type_name}: {message}\n{text}")
        else:
            error.__cause__ = RemoteTraceback(text)
            if not isinstance(error, SystemExit):
                return error
            # A SystemExit would end the consumer's program quietly.
            wrapped = WorkerError(f"{stage}: a worker raised {type_name}: {message}")
            wrapped.__cause__ = error
            return wrapped
    else:
        error = WorkerError(f"{stage}: a worker raised {type_name}: {message}\n{text}")
    error.__cause__ = RemoteTraceback(text)
    return error


def _unpicklable(items: list[Any]) -> str:
    for item in items:
        try:
            pickle.dumps(item, protocol=5)
        except Exception:
            return type(item).__qualname__
    return "unknown"


class _Control:
    __slots__ = ("error", "kind")

    def __init__(self, kind: str, error: BaseException | None = None) -> None:
        self.kind = kind
        self.error = error


_FEEDER_DONE = _Control("done")


class ProcessCore(FailureHandling):
    """Workers, feeder, pipes and shutdown of one process stage (no reference to it)."""

    forward_error = ProcessWorkerError

    def __init__(self, upstream: Stage[Any], node: plan.Process, ops_payload: bytes) -> None:
        self.upstream = upstream
        self.node = node
        self.workers = node.workers
        self.maxsize = node.queue_size
        self.tagged = upstream.tagger is not None
        self.name = f"tinypl-process-{next(_ids)}"
        self.stage_name = f"process({', '.join(kind for kind, _ in node.ops)})"
        self.ready: deque[Any] = deque()
        self._ops_payload = ops_payload
        self._lock = threading.RLock()  # one reader at a time waits on the pipes
        self._state = threading.Lock()
        self._credits: SimpleQueue[None] = SimpleQueue()
        for _ in range(self.maxsize):
            self._credits.put(None)
        self._control: SimpleQueue[Any] = SimpleQueue()
        self._wake_r, self._wake_w = -1, -1
        self._stop_reader: Any = None
        self._stop_writer: Any = None
        self._processes: list[Any] = []
        self._tasks: list[Any] = []
        self._results: list[Any] = []
        self._outstanding: list[int] = []
        self._feeder: threading.Thread | None = None
        self._feeder_done = False
        self._started = False
        self._stopping = False
        self._finished = False
        self._shut = False
        self.error: BaseException | None = None
        self._raised = False
        self._replicas: Replicas | None = None
        self._fail_lock = self._state
        self.item_cost = 0.0  # seconds of worker time per item (moving average)
        self._chunk: list[Any] = []  # the chunk being gathered
        self._chunk_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._chunk_ids = itertools.count()

    # -- starting ------------------------------------------------------------------------

    def _start(self) -> None:
        method = self.node.start_method or default_start_method()
        context: Any = multiprocessing.get_context(method)
        if method == "forkserver" and not _forkserver_running():
            # The server imports tinypl and numpy once, so each worker starts warm.
            context.set_forkserver_preload(["tinypl._runtime._worker", "tinypl._shm"])
        pool = functools.partial(shared_memory_pool, SHM_CAPACITY, SHM_MIN_BUFFER, os.getpid())
        spec = WorkerSpec(
            self._ops_payload, self.tagged, self.node.limit_threads, self.stage_name, pool
        )
        self._wake_r, self._wake_w = os.pipe()
        # A pipe rather than an Event: no named semaphore to clean up, and every worker
        # sees the one message, since workers only poll it and never read it.
        self._stop_reader, self._stop_writer = context.Pipe(duplex=False)
        with _without_main_reimport(method):
            self._spawn(context, spec)
        self._feeder = threading.Thread(target=self._feed, name=f"{self.name}-feeder", daemon=True)
        self._feeder.start()

    def _spawn(self, context: Any, spec: WorkerSpec) -> None:
        forked = context.get_start_method() == "fork"
        for index in range(self.workers):
            task_reader, task_writer = context.Pipe(duplex=False)
            result_reader, result_writer = context.Pipe(duplex=False)
            # A forked child inherits the parent's ends of every pipe; it closes them, or
            # its task pipe would never reach end-of-file when the parent dies.
            inherited = []
            if forked:
                inherited = [self._wake_r, self._wake_w, self._stop_writer.fileno()]
                inherited += [c.fileno() for c in (*self._tasks, *self._results)]
                inherited += [task_writer.fileno(), result_reader.fileno()]
            process = context.Process(
                target=run_worker,
                args=(spec, task_reader, result_writer, self._stop_reader, inherited),
                name=f"{self.name}-{index}",
                daemon=True,
            )
            process.start()
            task_reader.close()
            result_writer.close()
            self._processes.append(process)
            self._tasks.append(task_writer)
            self._results.append(result_reader)
            self._outstanding.append(0)

    # -- the feeder thread ---------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed during shutdown
            os.write(self._wake_w, b"!")

    def _post(self, item: Any) -> None:
        self._control.put(item)
        self._wake()

    def _feed(self) -> None:
        pull = self.upstream.raw.__next__
        tagged = self.tagged
        tagger = self.upstream.tagger
        fixed = self.node.chunksize
        size = 1 if fixed is None else fixed
        started = 0.0
        lock = self._chunk_lock
        try:
            while not self._stopping:
                if self._chunk and tagger is not None and tagger.would_block():
                    # The numbers we hold count against the order window: send them before
                    # waiting for it, or the load would wait for them forever.
                    self.flush()
                try:
                    x = pull()
                except StopIteration:
                    break
                if tagged:
                    items = x[1]
                    bypass = not items or any(i.__class__ is Marker for i in items)
                else:
                    bypass = x.__class__ is Marker
                if bypass:
                    self.flush()
                    self._post(x)
                    continue
                with lock:
                    chunk = self._chunk
                    if not chunk:
                        started = time.perf_counter()
                    chunk.append(x)
                    full = len(chunk) >= size
                    if full:
                        self._chunk = []
                if full:
                    gathered = (time.perf_counter() - started) / len(chunk)
                    self._send(chunk)
                    if fixed is None:
                        size = self._next_size(size, gathered)
                    if tagger is not None and tagger.adaptive:
                        wanted = (self.maxsize + self.workers) * size
                        tagger.window = max(tagger.window, wanted)
            if not self._stopping:
                self.flush()
        except _Stopped:
            pass
        except BaseException as error:
            self._post(_Control("failed", error))
        finally:
            self._post(_FEEDER_DONE)

    def _next_size(self, size: int, gathered: float) -> int:
        # Grow by doubling towards a chunk that keeps a worker busy for CHUNK_SECONDS,
        # but never so big that gathering it from a slow upstream delays the workers.
        if self.item_cost == 0:
            return size  # no cost measured yet: items might be large, stay small
        target = min(MAX_CHUNK, int(CHUNK_SECONDS / self.item_cost))
        if gathered > 0:
            target = min(target, int(GATHER_SECONDS / gathered))
        return max(1, min(size * 2, target))

    def flush(self) -> None:
        """Send the partial chunk, if any (the feeder, or a reader about to wait)."""
        with self._chunk_lock:
            chunk, self._chunk = self._chunk, []
        if chunk:
            self._send(chunk)

    def _send(self, chunk: list[Any]) -> None:
        self._credits.get()
        if self._stopping:
            raise _Stopped
        chunk_id = next(self._chunk_ids)
        try:
            # By value where needed: classes defined in __main__ do not exist in workers.
            data = cloudpickle.dumps((chunk_id, chunk), protocol=5)
        except Exception as error:
            bad = _unpicklable([x[1] if self.tagged else x for x in chunk])
            raise TypeError(
                f"{self.stage_name}: an item of type {bad} cannot be pickled to send it to"
                f" a worker process: {error}"
            ) from error
        with self._state:
            index = min(range(self.workers), key=self._outstanding.__getitem__)
            self._outstanding[index] += 1
        try:
            with self._send_lock:  # the feeder and a flushing reader share the pipes
                self._tasks[index].send_bytes(data)
        except OSError as error:
            process = self._processes[index]
            raise WorkerDied(
                f"{self.stage_name}: worker process {process.pid} "
                f"{_describe_exit(process.exitcode)}",
                process.pid,
                process.exitcode,
            ) from error

    # -- reader side ---------------------------------------------------------------------

    def fill(self) -> float:
        return min(sum(self._outstanding), self.maxsize) / self.maxsize

    def refill(self) -> Any:
        """Block until something is ready, then return the first ready element."""
        with self._lock:
            while not self.ready:
                self._step()
            return self.ready.popleft()

    def _step(self) -> None:
        if self.error is not None:
            self.fail()
        if self._finished or self._stopping:
            raise StopIteration
        if not self._started:
            with self._state:
                if not self._started:
                    self._started = True
                    self._start()
        control = self._control
        while not control.empty():
            message = control.get()
            if message.__class__ is not _Control:
                self.ready.append(message)  # a marker (or an ordered record) bypassing workers
            elif message is _FEEDER_DONE:
                self._feeder_done = True
            else:
                self.error = message.error
                self.fail()
        if self.ready:
            return
        if not any(self._outstanding):
            if self._feeder_done:
                self._finished = True
                self.shutdown()
                raise StopIteration
            # Nothing in flight while the feeder waits on a slow source: send what it has
            # gathered so far instead of waiting for the chunk to fill.
            self.flush()
        sentinels = {p.sentinel: p for p in self._processes}
        for ready in wait([self._wake_r, *self._results, *sentinels]):
            if ready == self._wake_r:
                os.read(self._wake_r, 65536)
            elif ready in sentinels:
                process = sentinels[ready]
                process.join(1.0)  # the sentinel fires a moment before the exit status
                self.error = WorkerDied(
                    f"{self.stage_name}: worker process {process.pid} "
                    f"{_describe_exit(process.exitcode)}",
                    process.pid,
                    process.exitcode,
                )
                self.fail()
            else:
                self._receive(ready)

    def _receive(self, connection: Any) -> None:
        index = self._results.index(connection)
        try:
            data = connection.recv_bytes()
        except (EOFError, OSError):
            process = self._processes[index]
            process.join(1.0)
            self.error = WorkerDied(
                f"{self.stage_name}: worker process {process.pid} "
                f"{_describe_exit(process.exitcode)}",
                process.pid,
                process.exitcode,
            )
            self.fail()
        with self._state:
            self._outstanding[index] -= 1
        self._credits.put(None)
        try:
            message = pickle.loads(data[1:]) if data[:1] == PLAIN else load_pooled(data[1:])
        except Exception as error:
            failure = WorkerError(
                f"{self.stage_name}: a result from worker process"
                f" {self._processes[index].pid} cannot be rebuilt here:"
                f" {type(error).__name__}: {error}"
            )
            failure.__cause__ = error
            self.error = failure
            self.fail()
        if message[1] == "error":
            self.error = _rebuild_error(self.stage_name, message[2])
            self.fail()
        _, _, elapsed, count, out = message
        if count:
            cost = elapsed / count
            self.item_cost = cost if self.item_cost == 0 else 0.8 * self.item_cost + 0.2 * cost
        self.ready.extend(out)

    def fail(self) -> NoReturn:
        """Raise the stage's error to a reader, stopping everything the first time."""
        self.ready.clear()
        self.raise_failure(self.node.on_worker_error, as_is=(WorkerDied,))

    # -- Core protocol -------------------------------------------------------------------

    def signal(self) -> None:
        with self._state:
            if self._stopping:
                return
            self._stopping = True
        self._credits.put(None)  # wakes the feeder waiting for a credit
        if self._started:
            self._wake()

    def shutdown(self) -> None:
        self.signal()
        with self._lock:
            with self._state:
                if self._shut:
                    return
                self._shut = True
            if not self._started:
                return
            # Workers drop queued chunks once the event is set; closing our result ends
            # makes a worker blocked on sending fail at once, which also frees the feeder
            # if it is blocked on sending to that worker.
            if self._stop_writer is not None:
                with contextlib.suppress(OSError):
                    self._stop_writer.send_bytes(b"stop")
            for connection in self._results:
                connection.close()
            feeder = self._feeder
            if feeder is not None and feeder is not threading.current_thread():
                feeder.join(GRACE_PERIOD)
            for connection in self._tasks:
                # A stop message, without blocking: under fork a sibling may hold a copy
                # of this pipe, so its closing alone is no end-of-file for the worker.
                with contextlib.suppress(OSError):
                    os.set_blocking(connection.fileno(), False)
                    connection.send_bytes(STOP)
                connection.close()
            deadline = time.monotonic() + GRACE_PERIOD
            for process in self._processes:
                process.join(max(0.0, deadline - time.monotonic()))
            for process in self._processes:
                if process.exitcode is None:
                    process.terminate()
            deadline = time.monotonic() + 0.5
            for process in self._processes:
                process.join(max(0.0, deadline - time.monotonic()))
            for process in self._processes:
                if process.exitcode is None:
                    process.kill()
                    process.join()
            pids = [process.pid for process in self._processes]
            for process in self._processes:
                process.close()
            for connection in (self._stop_reader, self._stop_writer):
                connection.close()
            # Results still in the closed pipes were never loaded: their segments would
            # outlive the workers otherwise.
            cleanup_orphans(pids=pids)
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
            self.ready.clear()


class _Stopped(Exception):
    """The stage was closed while the feeder waited."""


class ProcessReader:
    """The raw iterator of a process stage."""

    __slots__ = ("_core", "_ready")

    def __init__(self, core: ProcessCore) -> None:
        self._core = core
        self._ready = core.ready

    def __iter__(self) -> ProcessReader:
        return self

    def __next__(self) -> Any:
        try:
            return self._ready.popleft()
        except IndexError:
            pass
        core = self._core
        try:
            return core.refill()
        except KeyboardInterrupt:
            core.close_all()
            raise


class ProcessStage(WorkerStage[Any]):
    """A live process stage: per-item stages run by ``workers`` worker processes, with
    at most ``maxsize`` chunks in flight."""


@build.register
def _process(node: plan.Process, upstream: Stage[Any]) -> Stage[Any]:
    try:
        payload = cloudpickle.dumps(node.ops)
    except Exception as error:
        raise TypeError(
            f"process: the stage functions cannot be pickled for the worker processes: {error}"
        ) from error
    core = ProcessCore(upstream, node, payload)
    return worker_stage(ProcessStage, ProcessReader(core), node, upstream, core)
