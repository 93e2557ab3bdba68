"""Multi-threading stages of the module-level API (``pl.thread.map`` …)."""

from ._compat import thread_each as each
from ._compat import thread_map as map
from ._compat import thread_mutex as mutex
from ._compat import thread_queue as queue
from ._runtime import ThreadWorkerError as WorkerException

__all__ = ["WorkerException", "each", "map", "mutex", "queue"]
