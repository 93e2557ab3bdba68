"""The executor backend: a chain of per-item stages run on a user's executor.

The parts of the process backend are reused: the feeder (``_feeder``) pulls upstream,
gathers adaptive chunks and hands markers (and, in an ordered region, their numbered
records) to the reader directly; here each chunk becomes one ``submit`` of
``_remote.run_chunk``. A future's completion callback puts it on the reader's queue,
with the feeder's markers and control messages, so nothing is polled. The executor is
the user's: closing cancels the futures still pending and leaves the executor running.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from queue import Empty, SimpleQueue
from typing import Any, NoReturn

import cloudpickle

from .. import _plan as plan
from .._errors import WorkerError, describe_item
from .._planner import EXECUTOR_MAXSIZE
from ._control import DONE, SIGNAL_CHECK, Control
from ._failure import Replicas
from ._feeder import Feeder, _Stopped
from ._processes import ChunkReading, ProcessReader, _rebuild_error, record_drops
from ._remote import MISSING, Program, record_drop, run_chunk
from ._skip import Budget, budget_for, keep_budget
from ._stage import Stage, WorkerStage, worker_stage
from ._stats import ChunkFigures, ChunkProbe, chunk_done
from ._stepfigures import StepApply

__all__ = ["CHUNK_SECONDS", "JOIN_SECONDS", "ExecutorCore", "executor_stage", "worker_count"]

#: Target seconds of work per chunk: a task costs a distributed engine about a
#: millisecond of scheduling, so chunks are larger than a process stage's.
CHUNK_SECONDS = 0.02
#: Seconds ``close()`` waits for the feeder thread (busy in an upstream call, say).
JOIN_SECONDS = 1.0
#: Stage functions pickled to more bytes than this (a closure over a model, say) go to a
#: worker only when it asks for them (``_remote.MISSING``); smaller ones with every chunk.
INLINE_BYTES = 64 << 10

_ids = itertools.count()


class _Done:
    """A finished future on the reader's queue, with the chunk it ran."""

    __slots__ = ("chunk_id", "future")

    def __init__(self, chunk_id: int, future: Future[Any]) -> None:
        self.chunk_id = chunk_id
        self.future = future


def worker_count(executor: Any) -> int | None:
    """The number of workers of ``executor``, where it can be known.

    Examples:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(3) as pool:
        ...     print(worker_count(pool), worker_count(object()))
        3 None
    """
    client = getattr(executor, "_client", None)  # Dask's ClientExecutor
    if client is not None and plan.is_dask_client(client):
        try:
            return sum(client.nthreads().values()) or None
        except Exception:  # a closed client: its submit will say so
            return None
    count = getattr(executor, "_max_workers", None)  # stdlib, loky, mpi4py
    return count if isinstance(count, int) and count > 0 else None


class _ChunkFeeder(Feeder):
    """The process feeder, submitting each chunk to the executor instead of a pipe."""

    chunk_seconds = CHUNK_SECONDS

    def __init__(self, core: ExecutorCore, upstream: Stage[Any], chunksize: int | None) -> None:
        super().__init__(
            upstream,
            stage=core.stage_name,
            workers=core.workers,
            maxsize=core.maxsize,
            chunksize=chunksize,
            send=_unused,
            post=core.queue.put,
        )
        self._core = core

    def _send(self, chunk: list[Any], *, credited: bool = False) -> None:
        if not credited:
            self._credits.get()
        if self.stopping:
            raise _Stopped
        with self._lock:
            self._chunk_ids += 1
            chunk_id = self._chunk_ids
            self.outstanding[0] += 1
        failure = self._core.submit(chunk_id, chunk)
        if failure is not None:
            # Reported by _run once the chunks before it are back. This frame stays in
            # the error's traceback (which the stage keeps to replicate the error), so
            # it must not keep the error itself: the reader's raise links the error to
            # the consumer's frames, and the stage would never be freed.
            try:
                raise failure
            finally:
                del failure


def _unused(index: int, data: bytes) -> None:  # pragma: no cover - _send is overridden
    raise AssertionError(index)


class ExecutorCore(ChunkReading):
    """The feeder, the futures in flight and the reader side of one executor stage
    (holds no reference to the stage)."""

    def __init__(self, upstream: Stage[Any], node: plan.RunOnExecutor, program: Program) -> None:
        self.upstream = upstream
        self.node = node
        self.name = f"tinypl-executor-{next(_ids)}"
        self.stage_name = f"executor({', '.join(op.label for op in node.ops)})"
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self.ready: deque[Any] = deque()
        self.insight = ChunkFigures()
        self._program = program
        #: What each chunk carries first: the program, or only its digest when large.
        self._light = program
        if not callable(program) and len(program[1] or b"") > INLINE_BYTES:
            self._light = (program[0], None, program[2], program[3])
        self._executor: Any = node.executor
        #: A ClientExecutor made here for a ``distributed.Client``: tinypl's to shut down.
        self._own: Any = None
        if plan.is_dask_client(node.executor):
            # pure=False: Dask would otherwise give equal chunks one key and run them
            # once, and a stage function may have effects (each) or draw random numbers.
            self._executor = self._own = node.executor.get_executor(pure=False)
        known = worker_count(self._executor)
        self.workers = known or 1
        default = EXECUTOR_MAXSIZE if known is None else 2 * known
        self.maxsize = default if node.maxsize is None else node.maxsize
        #: chunk id -> (future, chunk), until its result is read.
        self._pending: dict[int, tuple[Future[Any], list[Any]]] = {}
        self._pending_lock = threading.Lock()
        self._lock = threading.RLock()  # one reader at a time waits on the queue
        self._state = threading.Lock()
        self.feeder = _ChunkFeeder(self, upstream, node.chunksize)
        self._feeder_done = False
        self._upstream_error: BaseException | None = None
        self._started = self._stopping = self._finished = self._shut = False
        self.error: BaseException | None = None
        self._raised = False
        self._replicas: Replicas | None = None
        self._fail_lock = self._state
        #: The budget of the ignore_errors scope the stage is in (set by the builder).
        self.budget: Budget | None = None

    def _start(self) -> None:
        with self._state:
            if self._started:
                return
            self._started = True
        self.insight.started = time.perf_counter()
        self.feeder.start(f"{self.name}-feeder")

    # -- feeder side ---------------------------------------------------------------------

    def submit(self, chunk_id: int, chunk: list[Any], *, full: bool = False) -> WorkerError | None:
        """Submit one chunk (the feeder thread, or the reader for a ``MISSING`` answer);
        the reader hears of it when it is done. A failed submit is returned."""
        program = self._program if full else self._light
        try:
            future: Future[Any] = self._executor.submit(run_chunk, program, chunk)
        except BaseException as error:
            with self.feeder._lock:
                self.feeder.outstanding[0] -= 1
            if full:
                # Caught in the reader's frames, which reach the consumer's: a traceback
                # through them would keep the stage alive with the error.
                error.__traceback__ = None
            return self._executor_failed(chunk_id, chunk, error)
        with self._pending_lock:
            self._pending[chunk_id] = (future, chunk)
        if self._stopping:
            future.cancel()  # the run was closed while this chunk was being submitted
        future.add_done_callback(functools.partial(self._finished_future, chunk_id))
        return None

    def _finished_future(self, chunk_id: int, future: Future[Any]) -> None:
        self.queue.put(_Done(chunk_id, future))

    def _executor_failed(
        self, chunk_id: int, chunk: list[Any], error: BaseException
    ) -> WorkerError:
        count, first = len(chunk), chunk[0]
        if self.feeder.tagged:
            where = f"numbered item {first[0]}, {describe_item(first[1][0])}"
        else:
            where = describe_item(first)
        failure = WorkerError(
            f"{self.stage_name}: the executor failed on chunk {chunk_id} ({count} items from"
            f" {where}): {type(error).__name__}: {error}"
        )
        failure.__cause__ = error
        return failure

    # -- reader side ---------------------------------------------------------------------

    def _step(self) -> None:
        if self.error is not None:
            self.fail()
        if self._finished or self._stopping:
            raise StopIteration
        if not self._started:
            self._start()
        self._take(block=False)
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
            # Nothing in flight while the feeder waits on a slow source: submit what it
            # has gathered so far instead of waiting for the chunk to fill.
            self.feeder.flush(wait=False)
        # A bounded wait returns to refill's loop, where a pending Ctrl-C is raised.
        self._take(block=True)

    def _take(self, *, block: bool) -> None:
        queue = self.queue
        try:
            message = queue.get(timeout=SIGNAL_CHECK) if block else queue.get_nowait()
        except Empty:
            return
        # One result per step at most: each frees a slot the feeder fills again, so a
        # fast executor would otherwise keep this loop (and ``ready``) growing.
        while not self._handle(message):
            try:
                message = queue.get_nowait()
            except Empty:
                return

    def _handle(self, message: Any) -> bool:
        """Handle one message; True when it was a chunk's result."""
        if message.__class__ is _Done:
            self._receive(message)
            return True
        if message.__class__ is not Control:
            self.ready.append(message)  # a marker (or an ordered record) bypassing workers
        elif message is DONE:
            self._feeder_done = True
        else:
            self._upstream_error = message.error
        return False

    def _receive(self, done: _Done) -> None:
        with self._pending_lock:
            entry = self._pending.pop(done.chunk_id, None)
        if entry is None:
            return  # cancelled by close()
        chunk, future = entry[1], done.future
        # Read, not raised here: a traceback through this frame would keep the consumer's
        # frames, and with them the stage, alive as long as the error is kept.
        if future.cancelled():
            failure: BaseException | None = CancelledError("the executor cancelled the chunk")
        else:
            failure = future.exception(timeout=0)  # the executor's own failure
        if failure is not None:
            if self._stopping:
                raise StopIteration
            self.error = self._executor_failed(done.chunk_id, chunk, failure)
            self.fail()
        answer = future.result(timeout=0)
        if answer == MISSING:
            self.error = self.submit(done.chunk_id, chunk, full=True)  # still outstanding
            if self.error is not None:
                self.fail()
            return
        self.feeder.received(0)
        if answer[0] == "error":
            _, packed, step = answer
            self.insight.fail(step)
            self.error = _rebuild_error(self.stage_name, packed)
            self.fail()
        _, elapsed, count, out, drops, steps = answer
        chunk_done(self, count, elapsed, out, drops, steps=steps)
        if self.budget is not None:
            self._record(count, drops)
        self.ready.extend(out)

    def _record(self, count: int, drops: Any) -> None:
        record_drops(self, count, drops)

    def fail(self) -> NoReturn:
        """Raise the stage's error to a reader, stopping everything the first time."""
        self.ready.clear()
        self.raise_failure("raise")

    # -- Core protocol -------------------------------------------------------------------

    def signal(self) -> None:
        with self._state:
            if self._stopping:
                return
            self._stopping = True
        self.feeder.stop()
        self._cancel_pending()

    def _cancel_pending(self) -> None:
        with self._pending_lock:
            futures = [future for future, _ in self._pending.values()]
            self._pending.clear()
        for future in futures:
            future.cancel()  # a chunk already running finishes; nobody reads it

    def shutdown(self) -> None:
        self.signal()
        with self._state:
            if self._shut:
                return
            self._shut = True
        if self._own is not None:
            # The ClientExecutor made for a Client: cancels its Dask futures, not the client.
            self._own.shutdown(wait=False)
        if self._started:
            self.feeder.join(JOIN_SECONDS)
        self._cancel_pending()  # one the feeder submitted while it was being stopped
        self.ready.clear()


def _program(node: plan.RunOnExecutor, tagged: bool) -> Program:
    skip = node.skip is not None
    if isinstance(node.executor, ThreadPoolExecutor):
        # Threads share this process: the functions are not copied, so closures over
        # local state behave as they do in a thread stage.
        return StepApply(node.ops, tagged, record_drop if skip else None)
    try:
        payload: bytes = cloudpickle.dumps(node.ops)
    except Exception as error:
        raise TypeError(
            f"executor: the stage functions cannot be pickled for the executor: {error}"
        ) from error
    return (hashlib.blake2b(payload, digest_size=16).digest(), payload, tagged, skip)


def executor_stage(
    node: plan.RunOnExecutor, upstream: Stage[Any], cls: type[WorkerStage[Any]]
) -> Stage[Any]:
    """A live executor stage of class ``cls`` running ``node`` on ``upstream``."""
    core = ExecutorCore(upstream, node, _program(node, upstream._tagger is not None))
    core.budget = budget_for(node.skip, upstream)  # in an ignore_errors scope
    stage = worker_stage(cls, ProcessReader(core), node, upstream, core)
    labels = " -> ".join(op.label for op in node.ops)
    where = f" on executor({core.workers})"
    stage._probe = ChunkProbe(core, f"{labels}{where}", node.ops, where)
    return keep_budget(stage, core.budget)
