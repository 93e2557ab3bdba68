"""The process backend: a chain of per-item stages run by worker processes.

The parent keeps the source and every other stage. Three parts do the work, and the
core here only wires them: the feeder (``_feeder``) pulls upstream and sends chunks, the
worker set (``_workerset``) owns the processes and their pipes, and the reader side
(``ProcessCore.refill``) waits on the result pipes, the process sentinels and a wake-up
pipe together, so a dead worker is noticed at once and nothing is polled. Markers never
enter a worker: the feeder hands them to the reader directly (inside an ordered region
their sequence number keeps them in place).
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from queue import SimpleQueue
from typing import Any, NoReturn, Protocol

import cloudpickle

from .. import _plan as plan
from .. import _shm
from .._errors import (
    ProcessWorkerError,
    RemoteTraceback,
    TooManyErrors,
    WorkerDied,
    WorkerError,
)
from .._workerinfo import draw_seed
from . import _warm
from ._control import DONE, SIGNAL_CHECK, Control
from ._failure import FailureHandling, Replicas, interpreter_exiting
from ._feeder import Feeder
from ._replace import Replacer
from ._skip import Budget, budget_for, keep_budget
from ._stage import Stage, WorkerStage, worker_stage
from ._stats import ChunkFigures, ChunkProbe, chunk_done
from ._worker import INIT, PLAIN, POOLED, WorkerSpec, shared_memory_pool
from ._workerset import WorkerSet, default_start_method

__all__ = [
    "GRACE_PERIOD",
    "ChunkReading",
    "ProcessCore",
    "ProcessReader",
    "process_stage",
    "record_drops",
]

#: Seconds a closing process stage waits for workers to finish their current chunk
#: before it terminates them (and, half a second later, kills them).
GRACE_PERIOD = 1.0
#: Shared memory each worker may use for result buffers (allocated as needed), and the
#: smallest buffer (in bytes) worth sending through it rather than through the pipe.
SHM_CAPACITY = 512 << 20
SHM_MIN_BUFFER = 64 << 10

_ids = itertools.count()


def _rebuild_error(stage: str, packed: tuple[str, str, str, bytes | None]) -> BaseException:
    """The worker's exception, with its own type where it could travel."""
    type_name, message, text, data = packed
    error: BaseException | None = None
    if data is not None:
        try:
            error = pickle.loads(data)
        except Exception:
            error = None
        else:
            _drop_tracebacks(error)
    if error is None:
        error = WorkerError(f"{stage}: a worker raised {type_name}: {message}\n{text}")
    elif isinstance(error, SystemExit):
        # A SystemExit would end the consumer's program quietly.
        wrapped = WorkerError(f"{stage}: a worker raised {type_name}: {message}")
        wrapped.__cause__ = error
        error.__cause__ = RemoteTraceback(text)
        return wrapped
    error.__cause__ = RemoteTraceback(text)
    return error


def _drop_tracebacks(error: BaseException) -> None:
    """Drop tracebacks that unpickling rebuilt (``tblib.pickling_support``, which
    importing ``distributed`` installs): their frames chain back into this reader's
    frames, which hold the stage, so a failed stage would never be freed. The worker's
    traceback travels as text (``RemoteTraceback``) instead."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__context__


def _load(data: bytes) -> Any:
    return pickle.loads(data[1:]) if data[:1] == PLAIN else _shm.loads(data[1:])


def _discard(data: bytes) -> None:
    """Drop a result message that will never be loaded, freeing its shared memory."""
    if data[:1] == POOLED:
        _shm.discard(memoryview(data)[1:])


class ChunkReading(FailureHandling):
    """The reader side shared by process and executor stages, whose feeder sends chunks:
    ``_step`` takes in what came back until something is ready."""

    feeder: Feeder
    maxsize: int
    ready: deque[Any]
    _lock: threading.RLock
    #: The figures of ``stage.stats()``.
    insight: ChunkFigures

    def _step(self) -> None:
        raise NotImplementedError

    def fill(self) -> float:
        return min(self.feeder.in_flight(), self.maxsize) / self.maxsize

    def refill(self) -> Any:
        """Block until something is ready, then return the first ready element."""
        start = time.perf_counter()
        with self._lock:  # also over the sum: readers in several threads lose no wait
            try:
                while not self.ready:
                    self._step()
                return self.ready.popleft()
            finally:
                self.insight.wait_s += time.perf_counter() - start


class ProcessCore(ChunkReading):
    """Wires the feeder, the worker set and the reader side of one process stage (holds
    no reference to the stage)."""

    forward_error = ProcessWorkerError

    def __init__(
        self,
        upstream: Stage[Any],
        node: plan.RunInProcesses,
        ops_payload: bytes,
        init_payload: bytes | None = None,
    ) -> None:
        self.upstream = upstream
        self.node = node
        self.workers = node.workers
        self.maxsize = node.queue_size
        self.name = f"tinypl-process-{next(_ids)}"
        self.stage_name = f"process({', '.join(op.kind for op in node.ops)})"
        self.ready: deque[Any] = deque()
        self.insight = ChunkFigures()
        self._ops_payload = ops_payload
        self._init_payload = init_payload
        #: The budget of the ignore_errors scope the stage is in (set by the builder).
        self.budget: Budget | None = None
        self._lock = threading.RLock()  # one reader at a time waits on the pipes
        self._state = threading.Lock()
        self._control: SimpleQueue[Any] = SimpleQueue()
        self.pool = WorkerSet(self.stage_name, self.name, node.workers)
        self.feeder = Feeder(
            upstream,
            stage=self.stage_name,
            workers=node.workers,
            maxsize=node.queue_size,
            chunksize=node.chunksize,
            send=self._send,
            post=self._post,
            keep=node.timeout is not None or node.restart,
        )
        self.replacer = Replacer(self)
        self.pool.restart = node.restart
        self._feeder_done = False
        #: An error raised upstream: raised once every chunk sent before it is back.
        self._upstream_error: BaseException | None = None
        self._started = self._stopping = self._finished = self._shut = False
        self.error: BaseException | None = None
        self._raised = False
        self._replicas: Replicas | None = None
        self._fail_lock = self._state
        #: The settings under which warm workers may serve this run (set at the start).
        self._warm_key: _warm.Key | None = None

    def _send(self, index: int, data: bytes) -> None:
        self.pool.send(index, data)  # the pool of this run (a warm one once started)

    def _post(self, message: Any) -> None:
        self._control.put(message)
        self.pool.wake()

    def _start(self) -> None:
        with self._state:
            if self._started:
                return
            self._started = True
        method = self.node.start_method or default_start_method()
        pool = functools.partial(shared_memory_pool, SHM_CAPACITY, SHM_MIN_BUFFER, os.getpid())
        tagged = self.upstream._tagger is not None
        seed = draw_seed() if self.node.seed is None else self.node.seed
        spec = WorkerSpec(
            self._ops_payload,
            tagged,
            self.node.limit_threads,
            self.stage_name,
            pool,
            init_payload=self._init_payload,
            seed=seed,
            count=self.workers,
            skip=self.budget is not None,
            idle=_warm.worker_idle(method),
        )
        # Segments left by processes that died without cleaning up (kill -9 of a group),
        # and mappings of earlier runs whose last array died after their shutdown.
        _shm.cleanup_orphans()
        _shm.trim_cache()
        try:
            self._start_pool(method, spec)  # undone if it fails
        except BaseException:
            self.close_all()
            raise
        if self._init_payload is not None:
            self._await_inits()
        self.insight.started = time.perf_counter()  # utilization counts once workers run
        self.feeder.start(f"{self.name}-feeder")

    def _start_pool(self, method: str, spec: WorkerSpec) -> None:
        """Start the workers, or hand the run to warm ones of an earlier run."""
        key = (method, self.workers, self.node.limit_threads, self.feeder.keep)
        warm = _warm.checkout(key) if spec.idle > 0 else None
        if warm is None:
            self.pool.start(method, spec, watch=self.feeder.keep)
        else:
            warm.stage, warm.name = self.stage_name, self.name
            warm.restart = self.node.restart
            self.pool = warm
            warm.begin(spec)
        # Only a started set can be kept, and only workers that will wait (spec.idle).
        self._warm_key = key if spec.idle > 0 else None

    def close_in_background(self) -> None:
        self._warm_key = None  # a Ctrl-C: the user wants the workers gone, not kept
        super().close_in_background()

    def _keep_warm(self, deadline: float) -> bool:
        """Release the workers into the warm cache instead of stopping them, if they all
        end the run cleanly before ``deadline``."""
        pool = self.pool
        if self._warm_key is None or not _warm.reusable(self._warm_key[0]):
            return False
        if len(pool.processes) != self.workers:
            return False
        if interpreter_exiting() or pool.replacing or not _warm.release(
            pool, self.feeder, deadline, _discard
        ):
            return False
        self.pool = WorkerSet(self.stage_name, self.name, self.workers)  # nothing to touch
        _warm.checkin(self._warm_key, pool)
        return True

    def _await_inits(self) -> None:
        """Wait for every worker's ``init`` report; raise the first failure (or death)
        here, at the first pull, before any item is sent."""
        pool = self.pool
        waiting = set(range(self.workers))
        while waiting:
            sentinels = pool.sentinels()
            handles = [pool.results[i] for i in waiting] + [
                s for s, i in sentinels.items() if i in waiting
            ]
            for ready in wait(handles, SIGNAL_CHECK):
                if ready in sentinels:
                    if not pool.results[sentinels[ready]].poll(0):
                        self.error = pool.died(sentinels[ready])
                        self.fail()
                    continue  # its report is in the pipe: read it first
                index = pool.results.index(ready)
                try:
                    message = _load(pool.results[index].recv_bytes())
                except (EOFError, OSError):
                    self.error = pool.died(index)
                    self.fail()
                if message[1] == "error":
                    self.error = _rebuild_error(self.stage_name, message[2])
                    self.fail()
                waiting.discard(index)

    # -- reader side ---------------------------------------------------------------------

    def _step(self) -> None:
        if self.error is not None:
            self.fail()
        if self._finished or self._stopping:
            raise StopIteration
        if not self._started:
            self._start()
        self._take_control()
        if self.ready:
            return
        if not self.feeder.in_flight():
            if self._upstream_error is not None:
                self.error, self._upstream_error = self._upstream_error, None
                self.fail()
            if self._feeder_done:
                self._finished = True
                self.insight.ended = time.perf_counter()
                self.shutdown()
                raise StopIteration
            # Nothing in flight while the feeder waits on a slow source: send what it has
            # gathered so far instead of waiting for the chunk to fill.
            self.feeder.flush(wait=False)
        pool = self.pool
        sentinels = pool.sentinels()
        # An empty answer returns to refill's loop, where a pending Ctrl-C is raised.
        wake = SIGNAL_CHECK if self.node.timeout is None else min(SIGNAL_CHECK, self.node.timeout)
        for ready in wait([pool.wake_r, *pool.results, *sentinels], wake):
            if ready == pool.wake_r:
                pool.clear_wake()
            elif ready in sentinels:
                if not self.node.restart:
                    self.error = pool.died(sentinels[ready])
                    self.fail()
                self.replacer.died(sentinels[ready])
                return  # the pipes and sentinels changed
            else:
                self._receive(ready)
        if self.node.timeout is not None:
            self.replacer.check_timeouts(self.node.timeout)

    def _take_control(self) -> None:
        control = self._control
        while not control.empty():
            message = control.get()
            if message.__class__ is not Control:
                self.ready.append(message)  # a marker (or an ordered record) bypassing workers
            elif message is DONE:
                self._feeder_done = True
            else:
                self._upstream_error = message.error

    def _receive(self, connection: Any) -> None:
        index = self.pool.results.index(connection)
        try:
            data = connection.recv_bytes()
        except (EOFError, OSError):
            if self.node.restart:
                return  # its sentinel comes next: the worker is replaced then
            self.error = self.pool.died(index)
            self.fail()
        self.handle(index, data)

    def handle(self, index: int, data: bytes) -> None:
        """Take in one result message of worker ``index``."""
        if data[:1] == PLAIN and self.pool.progress is not None:
            message = pickle.loads(data[1:])
            if message[0] == INIT:  # a replacement's init report
                if message[1] == "error":
                    self.error = _rebuild_error(self.stage_name, message[2])
                    self.fail()
                return
        self.feeder.received(index)
        try:
            message = _load(data)
        except Exception as error:
            failure = WorkerError(
                f"{self.stage_name}: a result from worker process"
                f" {self.pool.processes[index].pid} cannot be rebuilt here:"
                f" {type(error).__name__}: {error}"
            )
            failure.__cause__ = error
            self.error = failure
            self.fail()
        if message[1] == "error":
            _, _, packed, step = message
            self.insight.fail(step)
            self.error = _rebuild_error(self.stage_name, packed)
            self.fail()
        _, _, elapsed, count, out, drops, steps = message
        chunk_done(self, count, elapsed, out, drops, steps=steps)
        if self.budget is not None:
            self._record(count, drops)
        self.ready.extend(out)

    def _record(self, count: int, drops: Any) -> None:
        record_drops(self, count, drops)

    def fail(self) -> NoReturn:
        """Raise the stage's error to a reader, stopping everything the first time."""
        self.ready.clear()
        self.raise_failure(self.node.on_worker_error, as_is=(WorkerDied, TooManyErrors))

    # -- Core protocol -------------------------------------------------------------------

    def signal(self) -> None:
        with self._state:
            if self._stopping:
                return
            self._stopping = True
        self.feeder.stop()
        if self._started:
            self.pool.wake()

    def shutdown(self) -> None:
        self.signal()
        with self._lock:
            with self._state:
                if self._shut:
                    return
                self._shut = True
            if not self._started:
                return
            # At interpreter exit nobody waits for a worker to finish its chunk.
            grace = 0.0 if interpreter_exiting() else GRACE_PERIOD
            deadline = time.monotonic() + grace
            if not self._keep_warm(deadline):
                self.pool.ask_stop()
                self.pool.drain(deadline, _discard)
            # Once the workers are gone, a feeder blocked on a task pipe gets an error.
            self.feeder.join(max(0.0, deadline - time.monotonic()))
            self.pool.finish(_discard)
            self.ready.clear()
            # Segments whose every result was discarded or dropped are unmapped now.
            _shm.trim_cache()


def record_drops(core: Any, count: int, drops: Any) -> None:
    """Count a chunk's items as seen (first stage of its scope) and record the drops its
    worker reported, failing the stage past the budget (process and executor stages)."""
    budget, scope = core.budget, core.node.skip
    assert budget is not None and scope is not None
    if scope.first:
        budget.add_seen(count)
    for label, item, position, packed in drops:
        error = _rebuild_error(core.stage_name, packed)
        try:
            budget.dropped(error, label, item, position)
        except TooManyErrors as too_many:
            core.error = too_many
            core.fail()


class Refilling(Protocol):
    """What a chunk reader needs of its core (process and executor stages)."""

    ready: deque[Any]

    def refill(self) -> Any: ...

    def close_in_background(self) -> None: ...


class ProcessReader:
    """The raw iterator of a process or executor stage."""

    __slots__ = ("_core", "_ready")

    def __init__(self, core: Refilling) -> None:
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
            core.close_in_background()
            raise


def process_stage(
    node: plan.RunInProcesses, upstream: Stage[Any], cls: type[WorkerStage[Any]]
) -> Stage[Any]:
    """A live process stage of class ``cls`` running ``node`` on ``upstream``."""
    try:
        payload = cloudpickle.dumps(node.ops)
        init = None if node.init is None else cloudpickle.dumps(node.init)
    except Exception as error:
        raise TypeError(
            f"process: the stage functions cannot be pickled for the worker processes: {error}"
        ) from error
    core = ProcessCore(upstream, node, payload, init)
    core.budget = budget_for(node.skip, upstream)
    stage = worker_stage(cls, ProcessReader(core), node, upstream, core)
    labels = " -> ".join(op.label for op in node.ops)
    where = f" in process({node.workers})"
    stage._probe = ChunkProbe(core, f"{labels}{where}", node.ops, where)
    return keep_budget(stage, core.budget)
