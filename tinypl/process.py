"""Multi-processing stages of the module-level API (``pl.process.map`` …)."""

from ._compat import process_each as each
from ._compat import process_map as map
from ._runtime import ProcessWorkerError as WorkerException
from ._runtime import RemoteTraceback
from ._shm import BufferClosedError, RingBufferRef, SharedMemoryRingBuffer

__all__ = [
    "BufferClosedError",
    "RemoteTraceback",
    "RingBufferRef",
    "SharedMemoryRingBuffer",
    "WorkerException",
    "each",
    "map",
]
