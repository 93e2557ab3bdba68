"""The code that runs inside a worker process of a process stage.

Kept small and importable on its own: under the forkserver and spawn start methods a
worker imports this module, unpickles its chain of per-item stages once, and then loops
over chunks of items until its task pipe says stop or closes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._compile import chunk_function
from ._stepfigures import StepApply, failed_step, ok_answer

if TYPE_CHECKING:
    from .._shm import ShmPool

__all__ = ["WorkerSpec", "chunk_function", "pack_error", "run_worker", "unpicklable"]

STOP = b""  # a task message meaning "no more chunks"
#: A worker's last message of a run: it read the parent's ``STOP`` and waits, idle.
IDLE = b"I"


def _error_bytes(error: BaseException) -> bytes | None:
    """``error`` pickled by reference where its class can be imported, else by value
    (a class defined in the parent's ``__main__`` exists here only as cloudpickle made
    it); ``None`` when it cannot be rebuilt either way."""
    import cloudpickle

    for dumps in (pickle.dumps, cloudpickle.dumps):
        try:
            data: bytes = dumps(error, protocol=5)
            pickle.loads(data)  # some exceptions pickle but cannot be rebuilt
        except Exception:
            continue
        return data
    return None


def pack_error(error: BaseException) -> tuple[str, str, str, bytes | None]:
    """An exception as ``(type name, message, traceback text, pickle or None)``; its
    PEP 678 notes travel with it (in the pickle, and in the traceback text).

    Examples:
        >>> name, message, text, data = pack_error(KeyError("k"))
        >>> name, message, pickle.loads(data)
        ('builtins.KeyError', "'k'", KeyError('k'))
    """
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    return (kind, str(error), text, _error_bytes(error))


def _error_message(chunk_id: int, error: BaseException, step: int = -1) -> bytes:
    # ``step``: the index of the stage function that raised (-1: not one of them).
    return PLAIN + pickle.dumps((chunk_id, "error", pack_error(error), step), protocol=5)


class WorkerSpec:
    """Everything a worker needs, shipped once when it starts (cloudpickled ``ops``)."""

    def __init__(
        self,
        ops_payload: bytes,
        tagged: bool,
        limit_threads: bool,
        stage: str,
        pool: Any,
        *,
        init_payload: bytes | None = None,
        seed: int | None = None,
        count: int = 1,
        skip: bool = False,
        idle: float = 0.0,
    ) -> None:
        self.ops_payload = ops_payload
        #: The cloudpickled ``init`` function, run before the first chunk.
        self.init_payload = init_payload
        #: The run's base seed: worker ``i`` is seeded with ``seed + i``.
        self.seed = seed
        self.count = count
        #: In an ignore_errors scope: items whose ops raise are dropped and reported.
        self.skip = skip
        self.tagged = tagged
        self.limit_threads = limit_threads
        self.stage = stage
        self.pool = pool  # factory of the result serializer, called in the worker
        #: Seconds a worker waits, idle after this run, for the spec of a next run before
        #: it exits (0: it exits when the run ends). See ``_warm``.
        self.idle = idle
        #: The parent's ``sys.path``: a reused worker takes the one of each run.
        self.sys_path = list(sys.path)


def _limit_thread_pools() -> Any:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    return threadpool_limits(limits=1)


#: glibc's ``mallopt`` parameters and what a worker sets them to (see ``_reuse_freed_memory``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
WORKER_MMAP_THRESHOLD = 64 << 20
WORKER_TRIM_THRESHOLD = 256 << 20


def _reuse_freed_memory() -> bool:
    """Let glibc keep and reuse freed blocks of up to 64 MiB in this worker; True if set.

    A worker's typical cycle, many arrays of a few hundred KiB and then one large result
    that is freed once it went out, defeats glibc's adaptive thresholds: each batch
    was served by fresh ``mmap`` pages, each page a fault and a zeroed page (an image
    loader's workers spent a fifth of their time in the kernel; with these thresholds
    they loaded about 1.35 times as many images). A user's own ``MALLOC_*`` settings win.
    """
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # not glibc
        return False
    return bool(
        mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
        and mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD)
    )


def _enter(spec: WorkerSpec, index: int, send: Callable[[bytes], None]) -> bool:
    """Become worker ``index``: seed, then run ``init`` and report how it went (only
    with an ``init``: the parent then waits for every worker's report before its first
    item). False when ``init`` failed."""
    from .._workerinfo import WorkerInfo, entered_process, init_note, seed_globals

    if spec.seed is None:
        return True
    info = WorkerInfo(index, spec.count, "process", spec.seed + index)
    entered_process(info)
    seed_globals(info.seed)
    if spec.init_payload is None:
        return True
    try:
        import cloudpickle

        cloudpickle.loads(spec.init_payload)()
    except BaseException as error:
        init_note(error, spec.stage, info)
        send(_error_message(INIT, error))
        return False
    send(PLAIN + pickle.dumps((INIT, "ready"), protocol=5))
    return True


#: The chunk id of a worker's ``init`` report.
INIT = -2


def run_worker(
    spec: WorkerSpec,
    tasks: Any,
    results: Any,
    stop: Any,
    inherited: list[int],
    *,
    index: int = 0,
    progress: Any = None,
) -> None:
    """The main loop of a worker process (the ``Process`` target): runs ``spec``, then,
    while ``spec.idle`` allows, waits for the spec of the next run on its task pipe.

    ``stop`` is the read end of a pipe the parent writes to when it closes the stage:
    chunks still queued for this worker are then dropped unprocessed. ``index`` is the
    worker's id in ``pl.worker_info()``. ``progress`` (shared memory, with a timeout or
    restart): where the worker notes the item it runs and since when.
    """
    # The parent decides when workers stop; a Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in inherited:  # the parent's pipe ends, inherited through fork
        with contextlib.suppress(OSError):
            os.close(fd)
    limits = _limit_thread_pools() if spec.limit_threads else None
    _reuse_freed_memory()
    serializer: ShmPool | None = None
    try:
        while True:
            # One pool for every run this worker serves: fresh shared memory costs a
            # page fault and a zeroed page per 4 KiB (an 8 MB region: ~7 ms against
            # 0.5 ms to refill one), which a short run of large results paid again.
            if serializer is None or serializer.closed:
                serializer = spec.pool()
            if not _run(spec, serializer, tasks, results, stop, index=index, progress=progress):
                break
            serializer.trim(IDLE_POOL_BYTES)
            try:
                results.send_bytes(IDLE)
            except OSError:
                break
            try:
                if not tasks.poll(spec.idle):
                    break  # idle too long: the parent no longer hands this worker out
                message = tasks.recv_bytes()
            except (EOFError, OSError):
                break  # the parent is gone, or shut its warm workers down
            if message == STOP:
                break
            spec = pickle.loads(message)
            sys.path[:] = spec.sys_path
    finally:
        if serializer is not None:
            serializer.close()
        if limits is not None:
            limits.unregister()


#: Bytes of shared memory an idle worker keeps for its next run (the rest is unmapped).
IDLE_POOL_BYTES = 128 << 20


def _run(
    spec: WorkerSpec,
    serializer: ShmPool,
    tasks: Any,
    results: Any,
    stop: Any,
    *,
    index: int,
    progress: Any,
) -> bool:
    """One run: chunks until the parent's ``STOP``, results through ``serializer``. True
    when the worker read that ``STOP`` and may wait for a next run (it then
    acknowledges with ``IDLE``)."""
    from .._shm._lend import serve

    serve(serializer)  # the pool pl.process.empty lends from
    try:
        import cloudpickle

        ops = cloudpickle.loads(spec.ops_payload)
        drops: list[Any] | None = [] if spec.skip else None
        drop = None if drops is None else functools.partial(_record_drop, drops)
        apply = StepApply(ops, spec.tagged, drop)
        watch = None if progress is None else (progress, 3 * index)
        recv = tasks.recv_bytes
        send = results.send_bytes
        if not _enter(spec, index, send):
            return _finish_run(spec, recv)
        while True:
            try:
                message = recv()
            except (EOFError, OSError):
                return False  # the parent is gone or closed the pipe
            if message == STOP:
                return spec.idle > 0
            if stop.poll():
                return _finish_run(spec, recv)
            data = _answer(message, apply, serializer, spec.stage, drops, watch=watch)
            try:
                send(data)
            except OSError:
                return False  # the parent closed the stage: nobody waits for this answer
    finally:
        serve(None)


def _finish_run(spec: WorkerSpec, recv: Callable[[], bytes]) -> bool:
    """The stage is closing: drop the queued chunks up to the parent's ``STOP``."""
    if spec.idle <= 0:
        return False
    try:
        while recv() != STOP:
            pass
    except (EOFError, OSError):
        return False
    return True


def _watched(apply: Any, progress: Any, slot: int, items: list[Any], chunk_id: int) -> list[Any]:
    """``apply`` item by item, noting in ``progress[slot:slot + 3]`` which item runs
    since when, so the parent can tell a stuck item (timeout) or a fatal one (restart)."""
    out: list[Any] = []
    progress[slot] = chunk_id
    try:
        for position, item in enumerate(items):
            progress[slot + 2] = 0.0  # no torn read: the start time is written last
            progress[slot + 1] = position
            progress[slot + 2] = time.monotonic()
            out += apply([item])
    finally:
        progress[slot + 2] = 0.0
    return out


def _record_drop(
    drops: list[Any], error: BaseException, label: str, item: Any, position: int | None
) -> None:
    """A dropped item, as the parent's budget records it (``Budget.dropped``)."""
    from .._errors import describe_item

    drops.append((label, describe_item(item), position, pack_error(error)))


def _answer(
    message: bytes,
    apply: Any,
    serializer: Any,
    stage: str,
    drops: list[Any] | None = None,
    *,
    watch: tuple[Any, int] | None = None,
) -> bytes:
    """The result message for one task message (an error report if it failed). The
    items ``apply`` dropped (``drops``) travel with the results, in one message."""
    try:
        chunk_id, items = pickle.loads(message)
    except Exception as error:
        failure = TypeError(
            f"{stage}: a chunk of items cannot be unpickled in the worker"
            f" process: {type(error).__name__}: {error}"
        )
        return _error_message(-1, failure)
    start = time.perf_counter()
    try:
        out = apply(items) if watch is None else _watched(apply, *watch, items, chunk_id)
    except BaseException as error:
        if drops:
            drops.clear()
        return _error_message(chunk_id, error, failed_step(apply))
    result = (chunk_id, *ok_answer(apply, start, len(items), out, list(drops or ())))
    if drops:
        drops.clear()
    try:
        pooled: bytes = serializer.dumps(result)
    except Exception:
        return _by_value(result, stage, getattr(apply, "tagged", False))
    return POOLED + pooled


def _by_value(result: tuple[Any, ...], stage: str, tagged: bool) -> bytes:
    # Instances of classes that came by value (defined in the parent's __main__) do not
    # pickle by reference here; cloudpickle sends them by value.
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(result, protocol=5)
        return PLAIN + data
    except Exception as error:
        out = result[4]  # (chunk_id, "ok", seconds, count, out, ...)
        # In an ordered region each result is a record (n, items): name an item.
        bad = unpicklable([y for _, items in out for y in items] if tagged else out)
        failure = TypeError(
            f"{stage}: a result of type {bad} cannot be pickled to send it back to the"
            f" parent process: {error}"
        )
        return _error_message(result[0], failure)


def unpicklable(items: list[Any], dumps: Callable[..., bytes] | None = None) -> str:
    """The type name of the first of ``items`` that ``dumps`` (cloudpickle's by default)
    cannot pickle, for error messages.

    Examples:
        >>> import threading
        >>> unpicklable([1, threading.Lock()])
        'lock'
    """
    if dumps is None:
        import cloudpickle

        dumps = cloudpickle.dumps
    for item in items:
        try:
            dumps(item, protocol=5)
        except Exception:
            return type(item).__qualname__
    return "unknown"


# Every result message starts with one byte that says how to read the rest.
PLAIN = b"P"  # a pickle (cloudpickle where needed)
POOLED = b"S"  # a shared-memory pool message (tinypl._shm.loads)


def shared_memory_pool(capacity: int, min_buffer: int, reader_pid: int) -> ShmPool:
    """The default result serializer: large buffers travel through shared memory."""
    from .._shm import ShmPool

    return ShmPool(capacity, min_buffer, reader_pid=reader_pid)
