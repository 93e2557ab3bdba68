"""Multi-processing stages of the module-level API (``pl.process.map`` …).

The shared-memory names (``SharedMemoryRingBuffer`` …) are loaded on first use, so that
``import tinypl`` does not import numpy and multiprocessing.
"""

import typing as _typing

from ._compat import process_each as each
from ._compat import process_map as map
from ._errors import ProcessWorkerError as WorkerException
from ._errors import RemoteTraceback

if _typing.TYPE_CHECKING:
    import numpy.typing as _npt

    from ._shm import BufferClosedError, RingBufferRef, SharedMemoryRingBuffer

__all__ = [
    "BufferClosedError",
    "RemoteTraceback",
    "RingBufferRef",
    "SharedMemoryRingBuffer",
    "WorkerException",
    "cleanup",
    "each",
    "empty",
    "keep_warm",
    "map",
    "shutdown",
]

_SHM_NAMES = frozenset({"BufferClosedError", "RingBufferRef", "SharedMemoryRingBuffer"})


def cleanup() -> list[str]:
    """Remove the shared memory left in ``/dev/shm`` by tinypl processes that died
    without cleaning up (``kill -9``, a crash); returns the names removed.

    Segments of live processes are never touched, so this is safe at any time. Every
    process stage also does it, for segments of dead processes, when it starts.

    Examples:
        >>> import tinypl as pl
        >>> isinstance(pl.process.cleanup(), list)
        True
    """
    from . import _shm

    _shm.trim_cache()  # mappings of finished runs whose arrays are gone
    return _shm.cleanup()


def empty(
    shape: int | tuple[int, ...], dtype: _typing.Any = float, *, order: str = "C"
) -> "_npt.NDArray[_typing.Any]":
    """An uninitialized NumPy array for a result that a process stage's worker returns
    without copying it: the array lives in the worker's shared memory from the start
    and reaches the consumer as a view on the same memory.

    Without it, a worker copies each large array of a result into shared memory once
    (see "Large arrays and shared memory" in the docs); for results of many megabytes
    that copy is most of the cost. Fill the array in place (``out=``, slice assignment,
    ``fill``) and return it, or a contiguous view of it, once. Do not write to it after
    returning it: the memory then belongs to the consumer. Outside a process-stage
    worker (in the calling thread, a thread stage, an executor's workers), and for
    arrays under 64 KiB, it is ``numpy.empty(shape, dtype, order=order)``.

    Examples:
        >>> import numpy as np
        >>> import tinypl as pl
        >>> def frame(i):
        ...     out = pl.process.empty((512, 512), np.float32)
        ...     np.multiply(np.ones((512, 512), np.float32), i, out=out)
        ...     return out
        >>> [float(a[0, 0]) for a in pl.Pipe(range(3)).map(frame).process(2).order()]
        [0.0, 1.0, 2.0]
        >>> pl.process.empty(4, "int8").shape  # here: numpy.empty
        (4,)
    """
    from ._shm._lend import empty as lend

    array: _npt.NDArray[_typing.Any] = lend(shape, dtype, order)
    return array


def shutdown() -> int:
    """Stop the idle worker processes that finished process stages left warm for the
    next run (see ``keep_warm``); returns how many were stopped.

    Safe at any time: running stages keep their workers. It also runs at interpreter
    exit, and idle workers end on their own after the idle timeout.

    Examples:
        >>> import tinypl as pl
        >>> _ = list(pl.Pipe(range(4)).map(abs).process(2))
        >>> pl.process.shutdown() in (0, 2)
        True
    """
    from ._runtime import _warm

    return _warm.shutdown()


def keep_warm(seconds: float) -> float:
    """How long the workers of a finished process stage wait, idle, for the next process
    stage with the same settings (start method, worker count, ``limit_threads``, and
    whether ``timeout=`` or ``restart=`` is set); returns the previous value.

    The default is 30 seconds; ``0`` turns reuse off (every run starts its own workers)
    and stops the idle ones. Only forkserver and spawn workers are kept.

    Examples:
        >>> import tinypl as pl
        >>> previous = pl.process.keep_warm(0)  # a fresh worker set for every run
        >>> pl.process.keep_warm(previous)
        0.0
    """
    from ._runtime import _warm

    return _warm.keep_warm(seconds)


def __getattr__(name: str) -> object:
    if name in _SHM_NAMES:
        from . import _shm

        value = getattr(_shm, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SHM_NAMES)
