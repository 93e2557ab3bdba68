"""The executor stage as the registry sees it, light to import.

Registering the builder must not import cloudpickle, concurrent.futures, dask or
mpi4py: the backend (``_executor``) is imported on the first build of an executor stage.
"""

from __future__ import annotations

from typing import Any

from .. import _plan as plan
from ._registry import build
from ._stage import Stage, WorkerStage

__all__ = ["ExecutorStage"]


class ExecutorStage(WorkerStage[Any]):
    """A live executor stage: per-item stages run in chunks on a user's executor, with
    at most ``maxsize`` chunks in flight (``workers``: the executor's, where known).

    Examples:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> import tinypl as pl
        >>> with ThreadPoolExecutor(2) as pool:
        ...     with iter(pl.Pipe(range(4)).map(abs).executor(pool).order()) as stage:
        ...         print(list(stage))
        [0, 1, 2, 3]
    """


@build.register
def _executor(node: plan.RunOnExecutor, upstream: Stage[Any]) -> Stage[Any]:
    from ._executor import executor_stage

    return executor_stage(node, upstream, ExecutorStage)
