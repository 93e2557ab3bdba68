"""Runtime: materializes plans into live stages.

Importing the package is light: the worker processes import their modules from it, and a
forkserver boots on what they need, not on every backend. The backends register with
``_registry`` when the first node is built (``_registry.load_backends``); the process
backend's builder (``_procstage``) imports multiprocessing, cloudpickle and numpy when the
first process stage is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ProcessWorkerError, RemoteTraceback, ThreadWorkerError, WorkerDied
from ._stage import Stage

if TYPE_CHECKING:
    from ._procstage import ProcessStage
    from ._registry import build, materialize
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

_LAZY = {
    "ProcessStage": "._procstage",
    "ThreadStage": "._threads",
    "build": "._registry",
    "materialize": "._registry",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
