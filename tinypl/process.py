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
    from ._shm import BufferClosedError, RingBufferRef, SharedMemoryRingBuffer

__all__ = [
    "BufferClosedError",
    "RemoteTraceback",
    "RingBufferRef",
    "SharedMemoryRingBuffer",
    "WorkerException",
    "cleanup",
    "each",
    "map",
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

def __getattr__(name: str) -> object:
    if name in _SHM_NAMES:
        from . import _shm

        value = getattr(_shm, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SHM_NAMES)
