"""The process stage as the registry sees it, light to import.

Registering the builder must not import multiprocessing, cloudpickle or numpy: a
pipeline without a process stage never needs them. The backend is imported on the
first build of a process stage.
"""

from __future__ import annotations

from typing import Any

from .. import _plan as plan
from ._registry import build
from ._stage import Stage, WorkerStage

__all__ = ["ProcessStage"]


class ProcessStage(WorkerStage[Any]):
    """A live process stage: per-item stages run by ``workers`` worker processes, with
    at most ``maxsize`` chunks in flight.

    Examples:
        >>> import tinypl as pl
        >>> with iter(pl.Pipe(range(4)).map(abs).process(2).order()) as stage:
        ...     print(list(stage))
        [0, 1, 2, 3]
    """


@build.register
def _process(node: plan.RunInProcesses, upstream: Stage[Any]) -> Stage[Any]:
    from ._forkserver import boot

    # A run's entry (``_checkpoint.start``, ``materialize``) booted the server before
    # building anything; a stage built on its own (``build_next`` outside a run) boots it
    # here, still before the backend is imported.
    boot(node.start_method)
    from ._processes import process_stage

    return process_stage(node, upstream, ProcessStage)
