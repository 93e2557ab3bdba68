"""Runtime: materializes plans into live stages. Importing it registers every backend.

The process backend registers a light builder (``_procstage``): multiprocessing,
cloudpickle and numpy are imported when the first process stage is built.
"""

from __future__ import annotations

from .._errors import ProcessWorkerError, RemoteTraceback, ThreadWorkerError, WorkerDied
from . import _execstage, _insight, _loopstage, _procstage, _streams, _sync, _threads  # noqa: F401
from ._procstage import ProcessStage
from ._registry import build, materialize
from ._stage import Stage
from ._threads import ThreadStage

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
