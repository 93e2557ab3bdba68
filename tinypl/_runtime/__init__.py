"""Runtime: materializes plans into live stages. Importing it registers every backend."""

from __future__ import annotations

from . import _processes, _sync, _threads  # noqa: F401  (registration)
from ._processes import ProcessStage, ProcessWorkerError, RemoteTraceback, WorkerDied
from ._registry import build, materialize
from ._stage import Stage
from ._threads import ThreadStage, ThreadWorkerError

__all__ = [
    "ProcessStage",
    "ProcessWorkerError",
    "RemoteTraceback",
    "Stage",
    "ThreadStage",
    "ThreadWorkerError",
    "WorkerDied",
    "build",
    "materialize",
]
